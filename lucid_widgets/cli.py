"""``lucid-widgets``: render feature visualizations from scripts and batch jobs, no notebook.

Examples
--------
``lucid-widgets render efficientnet_lite0 block5:12 -o unit.png``
``lucid-widgets units efficientnet_lite0 block3 --units 0-15 -o grid.png``
``lucid-widgets units efficientnet_lite0 block3 --recipe lucid -o grid.png`` (classic Lucid)

Renders use MACO's recipe (``lucid_widgets.optvis.recipes``) unless ``--recipe lucid`` or a flag
of Lucid's image (``--pixel``, ``--no-decorrelate``, ``--alpha``) is given.
``lucid-widgets layers efficientnet_lite0``
"""

from __future__ import annotations

import argparse
import functools
import importlib
import os
import sys
from collections.abc import Sequence
from pathlib import Path

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


_MAX_SIZE = 4096  # pixels per side: a 4096 x 4096 render already needs gigabytes


def _parse_units(text: str) -> list[int]:
    """``"0-15"``, ``"3,7,9"`` or ``"0-3,8"`` -> unit indices (an argparse type)."""
    units: list[int] = []
    for part in text.split(","):
        start, dash, end = part.strip().partition("-")
        if not start.isdigit() or (dash and not end.isdigit()):
            raise argparse.ArgumentTypeError(
                f"invalid units {text!r}: give non-negative unit numbers and ranges, "
                "e.g. 0-15, 3,7,9 or 0-3,8"
            )
        first, last = int(start), int(end) if dash else int(start)
        if last < first:
            raise argparse.ArgumentTypeError(f"invalid range {part!r}: {last} < {first}")
        units.extend(range(first, last + 1))
    return units


def _bounded(kind: type, low: float, high: float | None = None, above: bool = False):
    """An argparse type: ``kind`` within ``[low, high]`` (``(low, high]`` when ``above``)."""

    def convert(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a {kind.__name__}") from None
        too_low = value <= low if above else value < low
        if too_low or (high is not None and value > high) or value != value:  # NaN
            bound = f"> {low}" if above else f">= {low}"
            limit = f"{bound} and <= {high}" if high is not None else bound
            raise argparse.ArgumentTypeError(f"{text} is out of range: must be {limit}")
        return value

    convert.__name__ = kind.__name__  # argparse names the type in its messages
    return convert


def _check_output(text: str) -> Path:
    """The ``-o`` path, checked before any work: a ``.png`` file name in a writable place."""
    path = Path(text).expanduser()
    if text.endswith(("/", os.sep)) or path.is_dir():
        raise ValueError(f"-o {text!r} is a directory; give a file name, e.g. {path / 'out.png'}")
    if path.suffix.lower() != ".png":
        raise ValueError(f"-o {text!r} must be a .png file name, e.g. {path.with_suffix('.png')}")
    existing = next(parent for parent in (path, *path.parents) if parent.exists())
    if existing == path and not os.access(path, os.W_OK):
        raise ValueError(f"-o {text!r}: the file exists and is not writable")
    if existing != path and (not existing.is_dir() or not os.access(existing, os.W_OK)):
        raise ValueError(f"-o {text!r}: cannot create it under {str(existing)!r}")
    return path


_LUCID_FLAGS = (("pixel", "--pixel"), ("no_decorrelate", "--no-decorrelate"), ("alpha", "--alpha"))


def _recipe_name(args: argparse.Namespace) -> str:
    """``--recipe``, else ``"lucid"`` when a flag of Lucid's image is given, else ``"maco"``."""
    flags = [flag for name, flag in _LUCID_FLAGS if getattr(args, name)]
    if args.recipe == "maco" and flags:
        raise ValueError(
            f"{', '.join(flags)} shape Lucid's image; MACO has its own: drop them or use "
            "--recipe lucid"
        )
    return args.recipe or ("lucid" if flags else "maco")


def _recipe(args: argparse.Namespace, name: str, batch: int, channels: int):
    from lucid_widgets.optvis import recipes

    lr = {} if args.lr is None else {"lr": args.lr}
    if name == "maco":
        return recipes.maco_recipe(args.size, batch, channels=channels, **lr)
    return recipes.lucid_recipe(
        args.size, batch, fft=not args.pixel, decorrelate=not args.no_decorrelate,
        alpha=args.alpha, channels=channels, **lr,
    )  # fmt: skip


def _render_options(args: argparse.Namespace, channels: int) -> dict:
    """Optimization options of ``render`` / ``units``; ``param_f(batch)`` for ``units``."""
    name = _recipe_name(args)
    first = _recipe(args, name, getattr(args, "batch", 1), channels)
    options = {**first.options(), "seed": args.seed}
    if args.no_transforms:
        options["transforms"] = []
    if args.command == "units":
        options["param_f"] = lambda batch: _recipe(args, name, batch, channels).param_f()
    return options


def _add_model_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", help="zoo name (see `lucid-widgets models`) or module:factory")
    parser.add_argument("--weights", help="path to a weights file for the model")
    parser.add_argument("--random-weights", action="store_true", help="skip pretrained weights")
    parser.add_argument("--device", help="torch device, e.g. cuda or cpu (default: cpu)")


def _add_render_arguments(parser: argparse.ArgumentParser, steps: int) -> None:
    parser.add_argument("-o", "--output", required=True, help="PNG file to write")
    size = _bounded(int, 1, _MAX_SIZE)
    parser.add_argument("--size", type=size, default=128, help="image side in pixels")
    parser.add_argument("--steps", type=_bounded(int, 1), default=steps, help="optimizer steps")
    parser.add_argument(
        "--recipe", choices=["maco", "lucid"],
        help="maco (default) or lucid (the classic Lucid defaults: FFT image, Adam 0.05)",
    )  # fmt: skip
    lr = _bounded(float, 0, above=True)
    parser.add_argument("--lr", type=lr, help="learning rate (default: maco 1.0, lucid 0.05)")
    seed = _bounded(int, 0, 2**63 - 1)
    parser.add_argument("--seed", type=seed, default=0, help="random seed (reproducible)")
    parser.add_argument("--pixel", action="store_true", help="lucid: pixel, not FFT param")
    parser.add_argument("--no-decorrelate", action="store_true", help="lucid: plain RGB colour")
    parser.add_argument("--alpha", action="store_true", help="lucid: a transparency channel")
    parser.add_argument(
        "--no-transforms", action="store_true", help="no jitter/scale/rotate (maco: no crops)"
    )


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lucid-widgets", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    render = commands.add_parser("render", help="render one objective to a PNG")
    _add_model_arguments(render)
    render.add_argument("objective", help="'layer:unit', or an expression like 'a:1 - 0.5 * a:2'")
    render.add_argument("--batch", type=_bounded(int, 1), default=1, help="images at once")
    _add_render_arguments(render, steps=512)
    units = commands.add_parser("units", help="render a grid of a layer's units to a PNG")
    _add_model_arguments(units)
    units.add_argument("layer")
    units.add_argument(
        "--units", type=_parse_units, default="0-15", help="e.g. 0-15 or 3,7,9 (default 0-15)"
    )
    units.add_argument(
        "--batch-size", type=_bounded(int, 1), default=16, help="units per optimization"
    )
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
    from lucid_widgets.optvis.activations import check_units

    if args.command == "models":
        print(zoo.available())
        return 0
    if args.command == "atlas":
        from lucid_widgets.atlas import cli as atlas_cli

        return atlas_cli.run(args, _load_model)
    output = _check_output(args.output) if args.command in ("render", "units") else None
    model = _load_model(args.model, args.weights, not args.random_weights, args.device)
    if args.command == "layers":
        print(zoo.layer_table(zoo.layers(model)))
        return 0
    if args.command == "units":  # every unit checked before the first step
        check_units(args.layer, units.layer_units(model, args.layer), args.units)
    from lucid_widgets.optvis.preprocess import resolve

    options = _render_options(args, resolve(model).channels)
    if args.command == "render":
        images = render.render_vis(
            model, _objective(model, args.objective), thresholds=(args.steps,), **options
        )
        path = display.save(images[-1], output)
    else:
        grid = units.render_units(
            model, args.layer, args.units, size=args.size, steps=args.steps,
            batch_size=args.batch_size, kind=args.kind, **options,
        )  # fmt: skip
        path = display.save(grid, output)
    print(f"wrote {path}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``lucid-widgets`` console script."""
    try:
        args = _parser().parse_args(argv)
    except SystemExit as done:  # argparse printed usage and the error (or --help)
        return done.code if isinstance(done.code, int) else 2
    try:
        return _run(args)
    except (KeyError, ValueError, IndexError, TypeError, RuntimeError, OSError) as error:
        message = error.args[0] if isinstance(error, KeyError) and error.args else error
        print(f"lucid-widgets: error: {message}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
