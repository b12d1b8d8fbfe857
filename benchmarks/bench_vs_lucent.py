"""lucid_widgets vs Lucent (torch-lucent 0.1.8) vs a bare torch loop: time per optimization step.

Run by hand, never by pytest or CI::

    python3 benchmarks/bench_vs_lucent.py --quick            # smoke run, ~1 min (quiet CPU)
    python3 benchmarks/bench_vs_lucent.py                    # full: ~4 min, quiet 2-core CPU
    python3 benchmarks/bench_vs_lucent.py --profile inception4c   # where our step spends its time

Three comparisons, all at 224 x 224 (Lucent upsamples smaller images to 224, so neither side
resizes), FFT + decorrelated image, the standard transforms, ImageNet normalization, Adam lr 0.05,
a channel objective, frozen weights:

1. per layer, ms per step for one unit: Lucent's ``render_vis`` vs our ``Optimization.step``;
2. a 16-unit layer grid: Lucent renders one unit per run, we use ``render_units(batch_size=16)``;
3. ms per step of a hand-written torch loop doing our math (same param, composed transforms,
   normalization and truncated forward) vs our ``Optimization.step``.

Needs ``torch-lucent`` and ``kornia`` (installed with ``--no-deps``); see benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import pstats
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout
sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import (  # noqa: E402
    GRID_UNITS,
    RESULTS_DIR,
    ModelCase,
    Times,
    alternate,
    document,
    environment,
    googlenet_case,
    lite0_case,
    lucent_hooks_removed,
    medians,
    now,
    per_step,
    report,
    set_cuda_sync,
    timed,
    write,
)

import lucid_widgets as lw  # noqa: E402
from lucid_widgets.optvis import transforms as lw_transforms  # noqa: E402
from lucid_widgets.optvis.hooks import frozen  # noqa: E402
from lucid_widgets.optvis.preprocess import resolve as resolve_preprocess  # noqa: E402

SIZE = 224  # Lucent upsamples anything smaller to 224: render at 224 so that neither side resizes
UNIT = 0
LR = 0.05

DIFFERENCES = """\
Remaining differences between the sides (same model, objective, param, transforms otherwise):
- Lucent runs the whole network every step (it hooks every module); we and the bare loop stop the
  forward pass after the objective's layer (that is the point of the truncated forward).
- Lucent applies pad, jitter, scale, rotate, jitter as five ops (F.pad, kornia translate,
  Upsample, kornia warp_affine, kornia translate); we fuse them into one grid_sample warp.
- Lucent's random_scale resizes the tensor, so its network input is 248..273 px (248 px when
  scale <= 1); ours zooms about the centre and keeps 248 px. Lucent's jitter draws shifts in
  [0, d), ours in [-d, d].
- Lucent uses its own param.image(224) (same FFT / decorrelation / sigmoid formulas, irfftn with
  norm='ortho'); we use lucid_widgets.optvis.param.image(224). Lucent normalizes with torchvision's
  Normalize per image; we use the model's Preprocess (ImageNet statistics for both models here).
- Lucent runs as its users run it: weights keep requires_grad, so its backward also computes
  every weight's gradient (freezing them is one of our design choices). --lucent-frozen
  freezes them for Lucent too (its best case).
- Where our engine feeds the network channels-last tensors (its CPU default, when it has that
  option), the bare loop does too; Lucent feeds contiguous (NCHW) tensors.
- All our timings use redirected_relu_steps=0 (Lucent has no redirected ReLU; in a 512-step
  render it is on for 16 steps); its cost is measured separately where the model has nn.ReLU /
  nn.ReLU6 modules (torchvision GoogLeNet has none: its ReLUs are F.relu calls).
"""


# --------------------------------------------------------------------------- the three sides


def lucent_steps(case: ModelCase, layer: str, steps: int, seed: int) -> Times:
    """ms per step of Lucent's render_vis, over its last ``steps`` steps (the first is skipped)."""
    from lucent.optvis import param as lucent_param
    from lucent.optvis import render as lucent_render

    stamps: list[tuple[float, float]] = []

    class TimedAdam(torch.optim.Adam):
        def step(self, closure=None):  # Lucent calls optimizer.step(closure)
            result = super().step(closure)
            stamps.append(now())
            return result

    torch.manual_seed(seed)
    np.random.seed(seed)  # Lucent's transforms draw from numpy's global RNG
    with lucent_hooks_removed(case.model):
        lucent_render.render_vis(
            case.model,
            f"{case.lucent_layer(layer)}:{UNIT}",
            param_f=lambda: lucent_param.image(SIZE),
            optimizer=lambda params: TimedAdam(params, lr=LR),
            thresholds=(steps + 1,),
            show_image=False,
            progress=False,
        )
    return per_step(stamps[0], stamps[-1], steps)


def ours_steps(case: ModelCase, layer: str, steps: int, seed: int, redirect: int = 0) -> Times:
    """ms per step of ``Optimization.step``, over ``steps`` steps after a first one.

    ``redirect`` is ``redirected_relu_steps`` (0: off, as Lucent, which has no redirected ReLU).
    """
    with lw.Optimization(
        case.model,
        f"{layer}:{UNIT}",
        param_f=lambda: lw.param.image(SIZE),
        optimizer=lambda params: torch.optim.Adam(params, lr=LR),
        seed=seed,
        redirected_relu_steps=redirect,
    ) as run:
        run.step()
        start = now()
        for _ in range(steps):
            run.step()
        end = now()
        # the bare loop copies the layout our engine chose (channels-last on CPU, if it has that)
        case.channels_last = bool(getattr(run, "channels_last", False))
        # ... and runs the network our engine ran (the batch-norm-folded shadow, if any)
        case.network = getattr(run, "network", case.model)
        return per_step(start, end, steps)


class _Stop(Exception):  # noqa: N818 (control flow)
    pass


def bare_steps(case: ModelCase, layer: str, steps: int, seed: int) -> Times:
    """ms per step of a hand-written loop doing the same math as ``Optimization.step``."""
    model = case.model
    network = case.network if case.network is not None else model
    module = dict(network.named_modules())[case.path(layer)]
    preprocess = resolve_preprocess(model)
    transform = lw_transforms.compose(lw_transforms.standard_transforms)
    generator = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    with torch.device(next(model.parameters()).device):
        params, image_f = lw.param.image(SIZE)
    optimizer = torch.optim.Adam(params, lr=LR)
    captured: list[torch.Tensor] = []

    def hook(module, inputs, output):
        captured.append(output)
        raise _Stop

    layout = torch.channels_last if case.channels_last else torch.contiguous_format

    def step() -> None:
        captured.clear()
        optimizer.zero_grad(set_to_none=True)
        network_input = preprocess(transform(image_f(), generator))
        with contextlib.suppress(_Stop):
            network(network_input.contiguous(memory_format=layout))
        loss = -captured[0][:, UNIT].mean()
        loss.backward()
        optimizer.step()

    handle = module.register_forward_hook(hook)
    try:
        with frozen(model):  # the same math as our engine: no weight gradients
            step()
            start = now()
            for _ in range(steps):
                step()
            return per_step(start, now(), steps)
    finally:
        handle.remove()


def lucent_grid(case: ModelCase, steps: int, seed: int) -> Times:
    """Seconds for Lucent to render GRID_UNITS units of the grid layer, one run per unit."""
    from lucent.optvis import param as lucent_param
    from lucent.optvis import render as lucent_render

    torch.manual_seed(seed)
    np.random.seed(seed)
    name = case.lucent_layer(case.grid_layer)

    def render_all() -> None:
        for unit in range(GRID_UNITS):
            with lucent_hooks_removed(case.model):
                lucent_render.render_vis(
                    case.model,
                    f"{name}:{unit}",
                    param_f=lambda: lucent_param.image(SIZE),
                    thresholds=(steps,),
                    show_image=False,
                    progress=False,
                )

    return timed(render_all)


def ours_grid(case: ModelCase, steps: int, seed: int, batch_size: int = 16) -> Times:
    """Seconds for ``render_units`` to render the same units (redirected ReLU off, as Lucent)."""
    return timed(
        lambda: lw.render_units(
            case.model,
            case.grid_layer,
            units=range(GRID_UNITS),
            size=SIZE,
            steps=steps,
            batch_size=batch_size,
            progress=False,
            seed=seed,
            redirected_relu_steps=0,
        )
    )


# --------------------------------------------------------------------------- the measurements


def warm_up(case: ModelCase, layer: str) -> None:
    """Build every kernel once (oneDNN primitives, allocator) before timing."""
    lucent_steps(case, layer, 2, 0)
    ours_steps(case, layer, 2, 0)
    bare_steps(case, layer, 2, 0)


def measure_steps(case: ModelCase, args: argparse.Namespace, log: Callable) -> list[dict]:
    """Per-layer medians of ms per step for Lucent, ours and the bare loop."""
    warm_up(case, case.layers[-1])
    rows = []
    for layer in case.layers:
        sides = {
            "lucent": lambda s, layer=layer: lucent_steps(case, layer, args.steps, s),
            "ours": lambda s, layer=layer: ours_steps(case, layer, args.steps, s),
        }
        if not args.no_bare:
            sides["bare"] = lambda s, layer=layer: bare_steps(case, layer, args.steps, s)
        runs = alternate(sides, args.rounds, seed=1)
        row = {"layer": layer, **medians(runs), "runs": runs}
        rows.append(row)
        bare = f"  bare {row['bare']:7.1f}" if "bare" in row else ""
        log(
            f"  {layer:<12} ms/step wall (cpu): lucent {row['lucent']:7.1f} "
            f"({row['lucent_cpu']:7.1f})  ours {row['ours']:7.1f} ({row['ours_cpu']:7.1f})"
            f"{bare}  ratio {row['lucent'] / row['ours']:.2f}x"
        )
    return rows


def measure_grid(case: ModelCase, args: argparse.Namespace, log: Callable) -> dict:
    """Seconds per 16-unit grid at ``--grid-steps`` steps, both sides, medians."""
    sides = {"lucent": lambda s: lucent_grid(case, args.grid_steps, s)}
    for batch_size in args.grid_batch:
        sides[f"ours_b{batch_size}"] = lambda s, b=batch_size: ours_grid(
            case, args.grid_steps, s, b
        )
    runs = alternate(sides, args.grid_rounds, seed=1)
    grid = {"layer": case.grid_layer, "steps": args.grid_steps, **medians(runs), "runs": runs}
    grid["batch_sizes"] = list(args.grid_batch)
    timings = "  ".join(f"{name} {grid[name]:.1f} ({grid[name + '_cpu']:.1f})" for name in sides)
    log(f"  grid {case.grid_layer}, s wall (cpu): {timings}")
    return grid


def has_relu_modules(model: torch.nn.Module) -> bool:
    """Whether the redirected ReLU changes anything (it replaces nn.ReLU / nn.ReLU6 modules)."""
    return any(type(module) in (torch.nn.ReLU, torch.nn.ReLU6) for module in model.modules())


def measure_redirect(case: ModelCase, args: argparse.Namespace, log: Callable) -> dict:
    """Our ms per step at the grid layer with the redirected ReLU off and on (batch 1)."""
    layer = case.grid_layer
    runs = alternate(
        {
            "off": lambda s: ours_steps(case, layer, args.steps, s, redirect=0),
            "on": lambda s: ours_steps(case, layer, args.steps, s, redirect=10**9),
        },
        args.rounds,
        seed=1,
    )
    result = {"layer": layer, **medians(runs), "runs": runs}
    log(f"  redirected ReLU at {layer}: off {result['off']:.1f} ms, on {result['on']:.1f} ms")
    return result


# --------------------------------------------------------------------------- profiling


def profile(case: ModelCase, layer: str, steps: int, batch: int) -> None:
    """Where ``Optimization.step`` spends its time: torch.profiler ops and cProfile functions."""
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    with lw.Optimization(
        case.model,
        f"{layer}:{UNIT}" if batch == 1 else lw.units.unit_batch_objective(layer, range(batch)),
        param_f=lambda: lw.param.image(SIZE, batch=batch),
        seed=0,
        redirected_relu_steps=0,
    ) as run:
        run.step()
        run.step()
        with torch_profile(activities=[ProfilerActivity.CPU]) as prof:
            for _ in range(steps):
                run.step()
        print(f"\n## torch.profiler: {case.name} {layer}, batch {batch}, {steps} steps")
        print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=25))
        profiler = cProfile.Profile()
        profiler.enable()
        for _ in range(steps):
            run.step()
        profiler.disable()
    print(f"\n## cProfile: {case.name} {layer}, batch {batch}, {steps} steps (cumulative)")
    pstats.Stats(profiler).sort_stats("cumulative").print_stats(30)


# --------------------------------------------------------------------------- main


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="few layers and rounds (smoke run)")
    parser.add_argument(
        "--model", choices=("googlenet", "efficientnet_lite0", "all"), default="all"
    )
    parser.add_argument("--steps", type=int, help="timed steps per run (default 8, quick 6)")
    parser.add_argument("--rounds", type=int, help="rounds per layer (default 4, quick 3)")
    parser.add_argument("--grid-steps", type=int, help="steps per grid render (default 4, quick 3)")
    parser.add_argument("--grid-rounds", type=int, help="rounds of the grid (default 2, quick 1)")
    parser.add_argument(
        "--grid-batch",
        type=int,
        nargs="+",
        default=[16],
        help="render_units batch sizes to time for the grid (default 16)",
    )
    parser.add_argument("--threads", type=int, default=2, help="torch.set_num_threads (2)")
    parser.add_argument(
        "--device",
        default="cpu",
        help="cpu (default) or cuda; Lucent uses cuda:0 whenever CUDA is visible, so hide the GPU "
        "(CUDA_VISIBLE_DEVICES=) for CPU runs on a machine that has one",
    )
    parser.add_argument("--no-bare", action="store_true", help="skip the bare-loop comparison")
    parser.add_argument(
        "--lucent-frozen", action="store_true", help="freeze the weights for Lucent too"
    )
    parser.add_argument("--no-grid", action="store_true", help="skip the grid comparison")
    parser.add_argument("--layers", nargs="+", help="only these layers (names as lucid_widgets)")
    parser.add_argument("--profile", metavar="LAYER", help="profile our step at LAYER and exit")
    parser.add_argument("--profile-batch", type=int, default=1, help="batch for --profile")
    parser.add_argument("--out", type=Path, default=RESULTS_DIR / "latest.md")
    args = parser.parse_args(argv)
    args.steps = args.steps or (6 if args.quick else 8)
    args.rounds = args.rounds or (3 if args.quick else 4)
    args.grid_steps = args.grid_steps or (3 if args.quick else 4)
    args.grid_rounds = args.grid_rounds or (1 if args.quick else 2)
    return args


def cases(args: argparse.Namespace, log: Callable) -> list[ModelCase]:
    found = []
    if args.model in ("googlenet", "all"):
        found.append(googlenet_case(args.quick))
    if args.model in ("efficientnet_lite0", "all"):
        case = lite0_case(args.quick)
        if isinstance(case, str):
            log(case)
        else:
            found.append(case)
    kept = []
    for case in found:
        case.model.to(args.device)
        if args.lucent_frozen:
            case.model.requires_grad_(False)
        if args.layers:  # the ones this model has
            case.layers = tuple(layer for layer in args.layers if _has_layer(case, layer))
        if args.profile and not _has_layer(case, args.profile):
            continue
        if case.layers:
            kept.append(case)
        else:
            log(f"{case.name} skipped: it has none of the layers {args.layers}")
    return kept


def _has_layer(case: ModelCase, layer: str) -> bool:
    try:
        lw.hooks.resolve_layer(case.model, layer)
    except lw.LayerNotFoundError:
        return False
    return True


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.device.startswith("cuda"):
        set_cuda_sync(True)
    try:
        import lucent.optvis.render  # noqa: F401
    except ImportError as error:
        print(f"Lucent is not importable ({error}); see benchmarks/README.md.")
        return 1
    notes: list[str] = []

    def log(message: str) -> None:
        print(message, flush=True)
        if "skipped" in message:
            notes.append(message)

    found = cases(args, log)
    if args.profile:
        profile(found[0], args.profile, args.steps, args.profile_batch)
        return 0
    env = environment()
    env["device"] = args.device
    print(DIFFERENCES)
    log(f"{env}\nsteps {args.steps}, rounds {args.rounds}, grid steps {args.grid_steps}")
    settings = (
        f"steps per timed run {args.steps} (after 1 untimed), rounds {args.rounds}, grid "
        f"{GRID_UNITS} units at {args.grid_steps} steps x {args.grid_rounds} rounds, image "
        f"{SIZE} px, unit {UNIT}, medians over rounds, sides alternated"
    )
    sections: list[str] = []
    raw: dict[str, dict] = {}
    started = time.perf_counter()
    for case in found:
        log(f"\n{case.name}: layers {', '.join(case.layers)}")
        rows = measure_steps(case, args, log)
        grid = None if args.no_grid else measure_grid(case, args, log)
        redirect = None
        if has_relu_modules(case.model) and not args.no_grid:
            redirect = measure_redirect(case, args, log)
        sections.append(report(case, rows, grid, redirect))
        raw[case.name] = {"steps": rows, "grid": grid, "redirected_relu": redirect}
        env["load average at the end"] = environment()["load average (1, 5, 15 min)"]
        env["wall time"] = f"{time.perf_counter() - started:.0f} s"
        text = document(env, settings, notes, sections, DIFFERENCES)
        write(args.out, text, {"env": env, "results": raw})  # after every model: partial runs count
    print("\n" + text)
    print(f"Wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
