"""Atlas build costs, by hand: local build vs render_units, Ray vs local, units/hour on a GPU.

    python3 benchmarks/bench_atlas.py                    # CPU: overhead and Ray, small settings
    python3 benchmarks/bench_atlas.py --skip-ray         # only the build-overhead comparison
    python3 benchmarks/bench_atlas.py --device cuda      # units / hour / GPU: lite0 and GoogLeNet

1. Build overhead: ``atlas.build`` (local executor, one view, no connections) of the same units
   as ``render_units`` called layer by layer with the same settings, alternating rounds in this
   process. Target: within 5%.
2. Ray (2 actors of 1 thread) against the local executor on the same work; Ray's startup is
   timed apart (``ray.init`` and the actors' first task). Target: >= 0.9x the local speed.
3. ``--device cuda``: full settings (128 px, 256 steps, batch 32) on a sample of units of a few
   layers of each model, extrapolated to units per hour per GPU.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lucid_widgets import atlas, zoo  # noqa: E402
from lucid_widgets.optvis import render_units  # noqa: E402


def _seconds(function) -> float:
    start = time.perf_counter()
    function()
    return time.perf_counter() - start


def _options(args) -> dict:
    return dict(size=args.size, steps=args.steps, batch_size=args.batch)


def overhead(model, layers, units, args) -> dict:
    """Median seconds of build vs render_units over ``args.rounds`` alternating rounds."""
    options = _options(args)
    build_times, direct_times = [], []
    for _ in range(args.rounds):
        folder = Path(tempfile.mkdtemp(prefix="bench-atlas-"))
        direct_times.append(
            _seconds(
                lambda: [
                    render_units(model, layer, units, progress=False, **options) for layer in layers
                ]
            )
        )
        build_times.append(
            _seconds(
                lambda folder=folder: atlas.build(
                    model,
                    folder,
                    layers=layers,
                    units=units,
                    views=("channel",),
                    connections=False,
                    progress=False,
                    **options,
                )
            )
        )
        shutil.rmtree(folder)
    build, direct = statistics.median(build_times), statistics.median(direct_times)
    return {"build_s": build, "render_units_s": direct, "overhead": build / direct - 1}


def ray_vs_local(model, layers, units, args) -> dict:
    import ray

    from lucid_widgets.atlas.distributed import start_ray

    options = dict(
        layers=layers,
        units=units,
        views=("channel",),
        connections=False,
        progress=False,
        **_options(args),
    )
    local_dir, ray_dir = (Path(tempfile.mkdtemp(prefix=f"bench-{n}-")) for n in ("local", "ray"))
    startup = _seconds(lambda: start_ray(None))
    warm_dir = Path(tempfile.mkdtemp(prefix="bench-warm-"))
    first = _seconds(
        lambda: atlas.build(
            model, warm_dir, executor="ray", **{**options, "units": units[:1], "layers": layers[:1]}
        )
    )
    local = _seconds(lambda: atlas.build(model, local_dir, **options))
    distributed = _seconds(lambda: atlas.build(model, ray_dir, executor="ray", **options))
    ray.shutdown()
    for folder in (local_dir, ray_dir, warm_dir):
        shutil.rmtree(folder)
    return {
        "ray_init_s": startup,
        "first_task_s": first,
        "local_s": local,
        "ray_s": distributed,
        "ray_speed": local / distributed,
    }


def gpu_rate(name: str, layers, args) -> float:
    """Units per hour per GPU at full settings, from a sample of units of ``layers``."""
    model = zoo.load(name, device="cuda")
    units = list(range(args.gpu_units))
    options = dict(size=128, steps=256, batch_size=32)
    render_units(model, layers[0], units[:2], progress=False, size=64, steps=4)  # warm up
    torch.cuda.synchronize()
    seconds = 0.0
    for layer in layers:
        folder = Path(tempfile.mkdtemp(prefix="bench-gpu-"))
        seconds += _seconds(
            lambda folder=folder, layer=layer: atlas.build(
                model,
                folder,
                layers=[layer],
                units=units,
                views=("channel",),
                connections=False,
                progress=False,
                **options,
            )
        )
        shutil.rmtree(folder)
    return len(layers) * len(units) / seconds * 3600


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--layers", nargs="+", default=["block3", "block9"])
    parser.add_argument("--units", type=int, default=8, help="units per layer")
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--steps", type=int, default=16)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--gpu-units", type=int, default=64)
    parser.add_argument("--skip-ray", action="store_true")
    args = parser.parse_args()
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    if args.device == "cuda":
        lite0 = gpu_rate("efficientnet_lite0", ["block3", "block9", "block15"], args)
        print(f"efficientnet_lite0: {lite0:,.0f} units/hour/GPU ({torch.cuda.get_device_name()})")
        googlenet = gpu_rate("inceptionv1", ["mixed3b", "mixed4c", "mixed5b"], args)
        print(f"inceptionv1 (GoogLeNet): {googlenet:,.0f} units/hour/GPU")
        return
    model = zoo.load("efficientnet_lite0")
    units = list(range(args.units))
    print(
        f"efficientnet_lite0 {args.layers} x {args.units} units, size {args.size}, "
        f"{args.steps} steps, batch {args.batch}, {torch.get_num_threads()} threads"
    )
    result = overhead(model, args.layers, units, args)
    print(
        f"build {result['build_s']:.2f} s vs render_units {result['render_units_s']:.2f} s: "
        f"overhead {100 * result['overhead']:+.1f}% (target within 5%)"
    )
    if not args.skip_ray:
        result = ray_vs_local(model, args.layers, units, args)
        print(
            f"Ray startup {result['ray_init_s']:.1f} s + first task {result['first_task_s']:.1f}"
            f" s; local {result['local_s']:.2f} s, Ray {result['ray_s']:.2f} s: "
            f"{result['ray_speed']:.2f}x local (target >= 0.9x)"
        )


if __name__ == "__main__":
    main()
