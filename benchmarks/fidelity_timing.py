"""Seconds per step of the transfer benchmark's methods, timed alternately on a quiet machine.

    python3 benchmarks/fidelity_timing.py --rounds 2          # 30 classes, 224 px, 20 steps each

``bench_fidelity.py`` times each method within its own long run; when other jobs share the
cores those seconds drift by up to 3x between runs. This script renders the same batch (all 30
classes at once, as the benchmark does) with each method for a few steps, the methods
alternating round by round so that a drift hits all alike, and keeps each method's fastest
round. From the time to ``--warmup`` steps and to ``--steps`` steps it separates the fixed cost
(set-up, first steps) from the cost per step, and prints the seconds each method needs to reach
the benchmark's budgets (32 / 64 / 128 / 256 steps): the "equal time" axis of the hit rates in
``benchmarks/README.md``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import bench_fidelity as bf  # noqa: E402

import lucid_widgets as lw  # noqa: E402

METHODS = ("ours", "defaults", "lucent")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=bf.ALL_METHODS)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--warmup", type=int, default=4)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--size", type=int, default=bf.SIZE)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    sys.stdout.reconfigure(line_buffering=True)
    torch.set_num_threads(args.threads)
    model = lw.zoo.load("efficientnet_lite0")
    classes, budgets = bf.CLASSES, (args.warmup, args.steps)
    best: dict[str, tuple[float, float]] = {}
    for round_ in range(args.rounds):
        for method in args.methods:
            _, (first, last) = bf.render(method, model, classes, budgets, 0, args.size)
            per_step = (last - first) / (args.steps - args.warmup)
            fixed = first - args.warmup * per_step
            print(f"round {round_} {method}: {per_step:.3f} s/step, fixed {fixed:.1f} s")
            if method not in best or last < best[method][0] + args.steps * best[method][1]:
                best[method] = (fixed, per_step)
    print(f"\n{len(classes)} classes, {args.size} px, best of {args.rounds} rounds")
    print("| method | s / step | fixed s | " + " | ".join(f"{b} steps" for b in bf.BUDGETS) + " |")
    print("|---|---|---|" + "---|" * len(bf.BUDGETS))
    for method, (fixed, per_step) in best.items():
        cells = " | ".join(f"{fixed + b * per_step:.0f} s" for b in bf.BUDGETS)
        print(f"| {method} | {per_step:.2f} | {fixed:.1f} | {cells} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
