"""A/B of the engine's step: the run on a shadow copy with image-only gradients (now) vs the
frozen user model with ``loss.backward()`` (before issue 10), side by side in one process.

Run by hand, never by pytest or CI::

    python3 benchmarks/bench_engine_ab.py                    # resnet18 layer2 / layer3, CPU
    python3 benchmarks/bench_engine_ab.py --size 224 --steps 20 --rounds 5

Side ``shadow``: :class:`~lucid_widgets.optvis.render.Optimization` as it is (a checked shadow
copy made at the run's start, folded, ``torch.autograd.grad`` into the image parameters).
Side ``frozen``: the same class with the former mechanism put back (the user's model frozen
with :func:`~lucid_widgets.optvis.hooks.frozen`, folded from the model, ``loss.backward()``).
Both run the same objective, parameterization, transforms and seed; each round runs both sides
in rotating order; the medians of the CPU ms per step are reported, and the wall time of a
run's start.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from statistics import median

import torch
import torchvision

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout

from lucid_widgets.optvis import param  # noqa: E402
from lucid_widgets.optvis.fast.folding import folded_network  # noqa: E402
from lucid_widgets.optvis.hooks import frozen  # noqa: E402
from lucid_widgets.optvis.render import Optimization  # noqa: E402


class FrozenOptimization(Optimization):
    """The step as it was: the user's model frozen for the run, weights' flags toggled."""

    def _start(self, network_input: torch.Tensor) -> None:
        self._eval.enter_context(frozen(self.model))
        self._base = self.model
        if self.fold_batchnorm:
            self._folded = folded_network(self.model, network_input[:1].detach().contiguous())
        self._modules = dict(self.model.named_modules())

    def _backward(self, loss: torch.Tensor) -> None:
        loss.backward()


def ms_per_step(kind: type, model, layer: str, size: int, steps: int, seed: int) -> float:
    """Process CPU ms per step (steadier than wall time on a shared machine)."""
    with kind(model, f"{layer}:3", param_f=lambda: param.image(size), seed=seed) as run:
        run.step()  # the run's start (copy, fold, layout check) is not a step's cost
        start = time.process_time()
        for _ in range(steps):
            run.step()
        return 1000 * (time.process_time() - start) / steps


def start_ms(model, layer: str, size: int) -> float:
    """Wall ms of a run's start: shadow copy, its check and the fold (first step minus later)."""
    with Optimization(model, f"{layer}:3", param_f=lambda: param.image(size), seed=0) as run:
        begin = time.perf_counter()
        run.step()
        first = time.perf_counter() - begin
        begin = time.perf_counter()
        run.step()
        return 1000 * (first - (time.perf_counter() - begin))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--layers", nargs="+", default=["layer2", "layer3"])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (CPU)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = torchvision.models.resnet18().eval().to(args.device)  # random weights: no download
    sides = {"shadow": Optimization, "frozen": FrozenOptimization}
    print(f"resnet18, {args.size}px, {args.steps} steps x {args.rounds} rounds, {args.device}")
    for layer in args.layers:
        times = {name: [] for name in sides}
        for index in range(args.rounds):
            order = list(sides) if index % 2 == 0 else list(sides)[::-1]
            for name in order:
                times[name].append(
                    ms_per_step(sides[name], model, layer, args.size, args.steps, index)
                )
        shadow, old = median(times["shadow"]), median(times["frozen"])
        start = start_ms(model, layer, args.size)
        print(f"{layer}: CPU ms/step median shadow {shadow:.1f}, frozen {old:.1f} "
              f"(ratio {shadow / old:.3f}); min shadow {min(times['shadow']):.1f}, "
              f"frozen {min(times['frozen']):.1f}; run start {start:.0f} ms")  # fmt: skip


if __name__ == "__main__":
    main()
