"""``lucid-widgets atlas build|site|info``: the atlas from the command line.

``lucid-widgets atlas build efficientnet_lite0 atlases/lite0 --layers block3 block9``
``lucid-widgets atlas site atlases/lite0 site/``
``lucid-widgets atlas info atlases/lite0``
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

__all__ = ["add_parser", "info_text", "run"]


def _units(text: str) -> list[int]:
    """``"0-15"``, ``"3,7,9"`` or ``"0-3,8"`` -> unit indices."""
    units: list[int] = []
    for part in text.split(","):
        start, _, end = part.partition("-")
        units.extend(range(int(start), int(end) + 1) if end else [int(start)])
    return units


def add_parser(commands, add_model_arguments: Callable[[argparse.ArgumentParser], None]) -> None:
    """Add the ``atlas`` command (with ``build``, ``site``, ``info``) to ``commands``."""
    atlas = commands.add_parser("atlas", help="precompute a whole model; publish it as a site")
    actions = atlas.add_subparsers(dest="atlas_command", required=True)
    build = actions.add_parser("build", help="build or resume an atlas folder")
    add_model_arguments(build)
    build.add_argument("folder", help="the atlas folder (created or resumed)")
    build.add_argument("--layers", nargs="+", help="layer names (default: browsable layers)")
    build.add_argument("--units", type=_units, help="e.g. 0-15 or 3,7,9 (default: all)")
    build.add_argument(
        "--views",
        nargs="+",
        default=["channel", "negative"],
        help="channel, negative, neuron, diversity",
    )
    build.add_argument("--dataset", help="image folder for dataset examples")
    build.add_argument("--k", type=int, default=9, help="dataset examples per unit")
    build.add_argument("--no-connections", action="store_true", help="skip connections")
    build.add_argument("--size", type=int, default=128, help="image side in pixels")
    build.add_argument("--steps", type=int, default=256, help="optimizer steps")
    build.add_argument("--batch-size", type=int, help="units per optimization (default 16)")
    build.add_argument("--seed", type=int, default=0)
    build.add_argument(
        "--recipe", choices=["maco", "lucid"], default="maco",
        help="how pictures are rendered: maco (default) or lucid (the classic Lucid defaults)",
    )  # fmt: skip
    build.add_argument("--executor", choices=["local", "ray"], default="local")
    build.add_argument("--address", help="Ray address: auto or ray://host:10001")
    build.add_argument("--variant", help="store other settings as this named variant")
    site = actions.add_parser("site", help="export a static website of an atlas")
    site.add_argument("folder")
    site.add_argument("out")
    info = actions.add_parser("info", help="what is done, missing or broken; sizes")
    info.add_argument("folder")


def info_text(folder: str | Path) -> str:
    """The report of ``atlas info``: settings, per-layer progress, problems, sizes."""
    from lucid_widgets.atlas.site import estimate_site_bytes
    from lucid_widgets.atlas.store import Atlas

    atlas = Atlas.load(folder)
    problems = atlas.check()
    missing = atlas.missing()
    manifest = atlas.manifest
    lines = [
        f"atlas {atlas.folder}  model {manifest['model']}  format v{manifest['version']}",
        "settings: " + ", ".join(f"{k}={v}" for k, v in sorted(atlas.settings.items())),
        f"views: {', '.join(atlas.views)}",
    ]
    for entry in atlas.manifest["layers"]:
        tasks = [t for t in atlas.manifest["tasks"] if t["layer"] == entry["name"]]
        done = sum(atlas.done(t["id"]) for t in tasks)
        lines.append(
            f"  {entry['name']:<24} {len(entry['units']):>5}/{entry['count']:<5} units  "
            f"tasks {done}/{len(tasks)} done"
        )
    lines.append(f"tasks: {len(atlas.records)} done, {len(missing)} missing")
    lines += [f"  missing: {task}" for task in missing[:20]]
    lines.append(f"problems: {len(problems)}")
    lines += [
        f"  {p.reason}: {p.path} (task {p.task}, rebuilt by the next build)" for p in problems
    ]
    per_unit = estimate_site_bytes(atlas)
    units = sum(len(entry["units"]) for entry in atlas.manifest["layers"])
    lines.append(
        f"store: {atlas.store_bytes() / 1e6:.2f} MB; site: ~{per_unit / 1e3:.1f} KB per "
        f"unit, ~{per_unit * units / 1e6:.2f} MB for {units} units"
    )
    return "\n".join(lines)


def run(args: argparse.Namespace, load_model: Callable) -> int:
    """Run a parsed ``atlas`` command; ``load_model(spec, weights, pretrained, device)``."""
    from lucid_widgets.atlas.build import build
    from lucid_widgets.atlas.site import export_site

    if args.atlas_command == "info":
        print(info_text(args.folder))
        return 0
    if args.atlas_command == "site":
        print(export_site(args.folder, args.out))
        return 0
    model = load_model(args.model, args.weights, not args.random_weights, args.device)
    if ":" not in args.model and args.executor == "ray" and not args.weights:
        model = args.model  # the actors load the zoo model themselves
    atlas = build(
        model,
        args.folder,
        layers=args.layers,
        units=args.units,
        views=tuple(args.views),
        dataset=args.dataset,
        k=args.k,
        connections=not args.no_connections,
        size=args.size,
        steps=args.steps,
        batch_size=args.batch_size,
        seed=args.seed,
        executor=args.executor,
        address=args.address,
        variant=args.variant,
        recipe=args.recipe,
    )
    print(atlas)
    return 0 if not atlas.missing() else 1
