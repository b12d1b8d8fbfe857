"""Atlas build costs, by hand: local build vs render_units, Ray vs local, units/hour on a GPU.

    python3 benchmarks/bench_atlas.py                    # CPU: overhead and Ray, small settings
    python3 benchmarks/bench_atlas.py --skip-ray         # only the build-overhead comparison
    python3 benchmarks/bench_atlas.py --skip-overhead    # only Ray vs local
    python3 benchmarks/bench_atlas.py --device cuda      # units / hour / GPU: lite0 and GoogLeNet

1. Build overhead: ``atlas.build`` (local executor, one view, no connections) of the same units
   as ``render_units`` called layer by layer with the same settings, alternating rounds in this
   process. Target: within 5%.
2. Ray (2 actors of 1 thread) against the local executor on the same work; Ray's startup is
   timed apart (``ray.init``, then a small build that starts the pool of actors: model load,
   first pieces). Then alternating local / Ray rounds reuse the pool, as builds in one process
   do. Target: >= 0.9x the local speed.
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
    """Ray against local on the same builds: the pool warmed first (timed as startup), then
    ``args.rounds`` alternating local / Ray rounds, so that load on a shared machine hits both."""
    from lucid_widgets.atlas.distributed import shutdown_workers, start_ray, worker_pids

    options = dict(layers=layers, units=units, views=("channel",), connections=False)
    options.update(progress=False, **_options(args))
    warm = {**options, "units": units[: 2 * 4]}  # a micro-batch per actor and layer

    def timed_build(executor: str | None, settings: dict, pids=()) -> tuple[float, float]:
        """(wall seconds, CPU seconds of this process or of the actors ``pids``)."""
        folder = Path(tempfile.mkdtemp(prefix=f"bench-{executor or 'local'}-"))
        processes = pids or [os.getpid()]
        before = sum(_cpu_seconds(pid) for pid in processes)
        try:
            wall = _seconds(lambda: atlas.build(model, folder, executor=executor, **settings))
        finally:
            shutil.rmtree(folder)
        return wall, sum(_cpu_seconds(pid) for pid in processes) - before

    startup = _seconds(lambda: start_ray(None))
    first = timed_build("ray", warm)[0]  # actors start, load the model, run their first pieces
    pids = worker_pids()
    timed_build(None, warm)  # the same first-run costs for the local side
    local_runs, ray_runs = [], []
    for _ in range(args.rounds):
        local_runs.append(timed_build(None, options))
        ray_runs.append(timed_build("ray", options, pids))
    reused = worker_pids() == pids
    shutdown_workers()
    local_times, ray_times = [run[0] for run in local_runs], [run[0] for run in ray_runs]
    paired = [local / ray for local, ray in zip(local_times, ray_times, strict=True)]
    return {
        "ray_init_s": startup,
        "pool_start_s": first,
        "local_s": local_times,
        "ray_s": ray_times,
        "ray_speed": statistics.median(local_times) / statistics.median(ray_times),
        "paired_speed": statistics.median(paired),
        "pool_reused": reused,
        "local_cpu_s": statistics.median(run[1] for run in local_runs),
        "ray_cpu_s": statistics.median(run[1] for run in ray_runs),
    }


def _cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process of this host so far (Linux ``/proc``)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime, stime


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
    parser.add_argument("--skip-overhead", action="store_true", help="only Ray vs local")
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
    if not args.skip_overhead:
        result = overhead(model, args.layers, units, args)
        print(
            f"build {result['build_s']:.2f} s vs render_units {result['render_units_s']:.2f} s:"
            f" overhead {100 * result['overhead']:+.1f}% (target within 5%)"
        )
    if not args.skip_ray:
        load = os.getloadavg()[0]
        result = ray_vs_local(model, args.layers, units, args)
        rounds = lambda times: ", ".join(f"{t:.2f}" for t in times)  # noqa: E731
        print(
            f"Ray startup apart: ray.init {result['ray_init_s']:.1f} s, pool start + first "
            f"pieces {result['pool_start_s']:.1f} s (pool reused by every round: "
            f"{result['pool_reused']})\n"
            f"local rounds {rounds(result['local_s'])} s; Ray rounds {rounds(result['ray_s'])} s"
            f"\nRay {result['ray_speed']:.2f}x local (medians), {result['paired_speed']:.2f}x "
            f"(median of paired rounds); target >= 0.9x. CPU seconds per build: local "
            f"{result['local_cpu_s']:.1f}, Ray actors {result['ray_cpu_s']:.1f}. Load average "
            f"{load:.2f} -> "
            f"{os.getloadavg()[0]:.2f} (1 min, {os.cpu_count()} CPUs)"
        )


if __name__ == "__main__":
    main()
