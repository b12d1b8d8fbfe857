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
in rotating order and the medians of the ms per step are reported.
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
    with kind(model, f"{layer}:3", param_f=lambda: param.image(size), seed=seed) as run:
        run.step()  # the run's start (copy, fold, layout check) is not a step's cost
        start = time.perf_counter()
        for _ in range(steps):
            run.step()
        return 1000 * (time.perf_counter() - start) / steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--layers", nargs="+", default=["layer2", "layer3"])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
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
        print(f"{layer}: shadow {shadow:.1f} ms/step, frozen {old:.1f} ms/step, "
              f"ratio {shadow / old:.3f}")  # fmt: skip


if __name__ == "__main__":
    main()
