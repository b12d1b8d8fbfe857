"""``lucid-widgets``: render feature visualizations from scripts and batch jobs, no notebook.

Examples
--------
``lucid-widgets render efficientnet_lite0 block5:12 -o unit.png``
``lucid-widgets units efficientnet_lite0 block3 --units 0-15 -o grid.png``
``lucid-widgets layers efficientnet_lite0``
"""

from __future__ import annotations

import argparse
import functools
import importlib
import sys
from collections.abc import Sequence

import torch
from torch import nn

__all__ = ["main"]


def _load_model(spec: str, weights: str | None, pretrained: bool, device: str | None) -> nn.Module:
    """A zoo name, or ``package.module:factory`` returning an ``nn.Module``."""
    if ":" in spec:
        module_name, _, attribute = spec.partition(":")
        factory = getattr(importlib.import_module(module_name), attribute)
        model = factory() if callable(factory) and not isinstance(factory, nn.Module) else factory
        return model.to(device) if device else model
    from lucid_widgets import zoo

    return zoo.load(spec, pretrained=pretrained, weights=weights, device=device)


def _parse_units(text: str) -> list[int]:
    """``"0-15"``, ``"3,7,9"`` or ``"0-3,8"`` -> unit indices."""
    units: list[int] = []
    for part in text.split(","):
        start, _, end = part.partition("-")
        units.extend(range(int(start), int(end) + 1) if end else [int(start)])
    return units


def _render_options(args: argparse.Namespace) -> dict:
    from lucid_widgets.optvis import param, transforms

    def param_f():
        return param.image(
            args.size, batch=args.batch, fft=not args.pixel,
            decorrelate=not args.no_decorrelate, alpha=args.alpha,
        )  # fmt: skip

    return dict(
        param_f=param_f,
        optimizer=lambda params: torch.optim.Adam(params, lr=args.lr),
        transforms=[] if args.no_transforms else transforms.standard_transforms,
        seed=args.seed,
    )


def _add_model_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", help="zoo name (see `lucid-widgets models`) or module:factory")
    parser.add_argument("--weights", help="path to a weights file for the model")
    parser.add_argument("--random-weights", action="store_true", help="skip pretrained weights")
    parser.add_argument("--device", help="torch device, e.g. cuda or cpu (default: cpu)")


def _add_render_arguments(parser: argparse.ArgumentParser, steps: int) -> None:
    parser.add_argument("-o", "--output", required=True, help="PNG file to write")
    parser.add_argument("--size", type=int, default=128, help="image side in pixels")
    parser.add_argument("--steps", type=int, default=steps, help="optimizer steps")
    parser.add_argument("--lr", type=float, default=0.05, help="Adam learning rate")
    parser.add_argument("--seed", type=int, default=0, help="random seed (reproducible)")
    parser.add_argument("--pixel", action="store_true", help="pixel instead of FFT param")
    parser.add_argument("--no-decorrelate", action="store_true", help="plain RGB colour")
    parser.add_argument("--alpha", action="store_true", help="add a transparency channel")
    parser.add_argument("--no-transforms", action="store_true", help="no jitter/scale/rotate")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lucid-widgets", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    render = commands.add_parser("render", help="render one objective to a PNG")
    _add_model_arguments(render)
    render.add_argument("objective", help="'layer:unit', or an expression like 'a:1 - 0.5 * a:2'")
    render.add_argument("--batch", type=int, default=1, help="images rendered at once")
    _add_render_arguments(render, steps=512)
    units = commands.add_parser("units", help="render a grid of a layer's units to a PNG")
    _add_model_arguments(units)
    units.add_argument("layer")
    units.add_argument("--units", default="0-15", help="e.g. 0-15 or 3,7,9 (default 0-15)")
    units.add_argument("--batch-size", type=int, default=16, help="units per optimization")
    units.add_argument("--kind", default="channel", help="channel, neuron, negative_channel")
    _add_render_arguments(units, steps=256)
    layers = commands.add_parser("layers", help="list a model's layers")
    _add_model_arguments(layers)
    commands.add_parser("models", help="list the zoo's models")
    from lucid_widgets.atlas import cli as atlas_cli

    atlas_cli.add_parser(commands, _add_model_arguments)
    return parser


def _objective(model: nn.Module, text: str):
    """Parse ``text`` with the objective grammar (never ``eval``), checking its layers."""
    from lucid_widgets.expression.compiler import compile_objective
    from lucid_widgets.optvis.hooks import layer_names, resolve_layer

    known = dict.fromkeys(layer_names(model))  # name -> unit count (unknown here)
    return compile_objective(
        text, layers=known, resolve_layer=functools.partial(resolve_layer, model)
    )


def _run(args: argparse.Namespace) -> int:
    from lucid_widgets import display, zoo
    from lucid_widgets.optvis import render, units

    if args.command == "models":
        print(zoo.available())
        return 0
    if args.command == "atlas":
        from lucid_widgets.atlas import cli as atlas_cli

        return atlas_cli.run(args, _load_model)
    model = _load_model(args.model, args.weights, not args.random_weights, args.device)
    if args.command == "layers":
        print(zoo.layer_table(zoo.layers(model)))
        return 0
    options = _render_options(args)
    if args.command == "render":
        images = render.render_vis(
            model, _objective(model, args.objective), thresholds=(args.steps,), **options
        )
        path = display.save(images[-1], args.output)
    else:
        options["param_f"] = None
        grid = units.render_units(
            model, args.layer, _parse_units(args.units), size=args.size, steps=args.steps,
            batch_size=args.batch_size, kind=args.kind, **options,
        )  # fmt: skip
        path = display.save(grid, args.output)
    print(f"wrote {path}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``lucid-widgets`` console script."""
    args = _parser().parse_args(argv)
    try:
        return _run(args)
    except (KeyError, ValueError, IndexError, TypeError, RuntimeError, OSError) as error:
        message = error.args[0] if isinstance(error, KeyError) and error.args else error
        print(f"lucid-widgets: error: {message}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
