"""What a live preview costs the optimization: steps per second with and without a widget.

    python3 benchmarks/bench_widget_overhead.py [--model efficientnet_lite0] [--steps 64]

Three ways to run the same optimization (same model, objective, param, transforms, seed), all in
a worker thread as the widget does, alternating in one process, medians of several rounds:

- ``bare``: an ``Optimization`` stepped in a plain thread, nothing displayed;
- ``widget``: ``LivePreview`` streaming frames at its default 20 per second;
- ``widget, no frames``: ``LivePreview`` with frames throttled to almost never.

The goal (issue 4): streaming costs at most 5% of the optimization's speed. Run by hand; CI
does not run benchmarks.
"""

from __future__ import annotations

import argparse
import statistics
import threading
import time

import torch

import lucid_widgets as lw
from lucid_widgets.widget import LivePreview


def _bare(model, objective: str, steps: int, size: int) -> float:
    def work() -> None:
        with lw.Optimization(model, objective, param_f=lambda: lw.param.image(size), seed=0) as run:
            for _ in range(steps):
                run.step()

    thread = threading.Thread(target=work)
    start = time.perf_counter()
    thread.start()
    thread.join()
    return steps / (time.perf_counter() - start)


def _widget(model, objective: str, steps: int, size: int, fps: float) -> float:
    settings = {"size": size, "steps": steps, "seed": 0}
    widget = LivePreview(model, objective, settings=settings, fps=fps, autostart=False)
    try:
        start = time.perf_counter()  # the catalog's dry forward in the constructor is not counted
        widget.start()
        if not widget.wait(timeout=3600):
            raise RuntimeError("the widget did not finish")
        elapsed = time.perf_counter() - start
        if widget.step != steps:
            raise RuntimeError(f"the widget stopped at step {widget.step} of {steps}")
    finally:
        widget.close()
    return steps / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="efficientnet_lite0")
    parser.add_argument("--objective", default="block5:7")
    parser.add_argument("--steps", type=int, default=64)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    model = lw.zoo.load(args.model)
    setup = f"{args.model}, {args.objective}, {args.size} px, {args.steps} steps x {args.rounds}"
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {setup} rounds")
    runs = {
        "bare": lambda: _bare(model, args.objective, args.steps, args.size),
        "widget": lambda: _widget(model, args.objective, args.steps, args.size, fps=20.0),
        "widget, no frames": lambda: _widget(model, args.objective, args.steps, args.size, 1e-6),
    }
    _bare(model, args.objective, 4, args.size)  # warm-up
    rates: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(args.rounds):
        for name, run in runs.items():
            rates[name].append(run())
    bare = statistics.median(rates["bare"])
    print("\n| run | steps/s (median) | cost vs bare |")
    print("|---|---|---|")
    for name, values in rates.items():
        rate = statistics.median(values)
        print(f"| {name} | {rate:.2f} | {100 * (1 - rate / bare):+.1f}% |")


if __name__ == "__main__":
    main()
