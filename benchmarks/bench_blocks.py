"""Speed of the building blocks (lw.blocks) on the embedded model and scikit-image's chelsea.

Not run by CI. Usage::

    python3 benchmarks/bench_blocks.py                  # everything, a few minutes on a CPU
    python3 benchmarks/bench_blocks.py --quick          # fewer repeats, a smaller grid
    python3 benchmarks/bench_blocks.py --device cuda

Measures, in one process:

1. ``connections`` of one unit (median over units) and of every unit of one layer
   (``layer_connections``: the set-up shared, one backward pass per unit), for three pairs of
   layers: a linear path (``block10_depthwise -> block10``: expanded weights), a block with its
   ReLU6s treated as the identity (``block9 -> block10``, ``relu_identity=True``), and the same
   block with attribution over the photo (``images=chelsea``). Target: one unit under 1 s.
2. ``neuron_groups`` (6 groups) and ``attribution`` ("Egyptian cat": activation x gradient and
   integrated gradients with 16 steps) per image, at ``block9``.
3. ``activation_grid`` of ``block11`` (7 x 7 positions) as one batch against a loop that renders
   one position per run (``batch_size=1``), same cells, steps and seed.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import lucid_widgets as lw  # noqa: E402
from lucid_widgets.blocks import (  # noqa: E402
    activation_grid,
    attribution,
    connections,
    layer_connections,
    neuron_groups,
)

PAIRS = (
    ("block10", "block10_depthwise", {}),
    ("block10", "block9", {"relu_identity": True}),
    ("block10", "block9", {"images": "chelsea"}),
)


def _time(function, repeats: int = 1) -> tuple[float, object]:
    times, result = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        result = function()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def _one_pair(model, layer: str, source: str, options: dict, units: int, rows: list) -> None:
    def one(unit: int) -> object:
        return connections(model, layer, unit, source=source, **options)

    one(0)  # warm-up: the catalog (cached per model), the allocator
    per_unit = statistics.median(_time(lambda u=u: one(u))[0] for u in range(units))
    total, every = _time(lambda: layer_connections(model, layer, source=source, **options))
    label = f"{source} -> {layer}{' ' + ', '.join(sorted(options)) if options else ''}"
    rows.append((f"connections, one unit ({label}; {every[0].method})", per_unit))
    rows.append((f"layer_connections, all {len(every)} units ({label})", total))
    rows.append(("  ... per unit", total / len(every)))


def bench_connections(model, photo, units: int, rows: list) -> None:
    for layer, source, options in PAIRS:
        options = {k: (photo if v == "chelsea" else v) for k, v in options.items()}
        _one_pair(model, layer, source, options, units, rows)


def bench_per_image(model, photo, repeats: int, rows: list) -> None:
    seconds, _ = _time(lambda: neuron_groups(model, photo, "block9", n_groups=6), repeats)
    rows.append(("neuron_groups, block9, 6 groups, one image", seconds))
    seconds, _ = _time(lambda: attribution(model, photo, "block9", "Egyptian cat"), repeats)
    rows.append(("attribution, block9 -> 'Egyptian cat', one image", seconds))
    target = "Egyptian cat"
    seconds, _ = _time(lambda: attribution(model, photo, "block9", target, steps=16), repeats)
    rows.append(("attribution, integrated gradients (16 steps), one image", seconds))


def bench_grid(model, photo, cell: int, steps: int, rows: list) -> None:
    options = {"cell": cell, "steps": steps, "seed": 0}
    batched, grid = _time(lambda: activation_grid(model, photo, "block11", **options))
    looped, _ = _time(lambda: activation_grid(model, photo, "block11", batch_size=1, **options))
    cells = int((grid.reshape(grid.shape[0], grid.shape[1], -1).max(-1) > 0).sum())
    rows.append(
        (f"activation_grid block11, {cells} cells {cell}px x {steps} steps, one batch", batched)
    )
    rows.append(("  ... a loop of one position per run", looped))
    rows.append(("  ... speed-up of the batch", looped / batched))


class _Rows(list):
    """Rows of the report, each printed as soon as it is measured."""

    def append(self, row: tuple[str, float]) -> None:
        super().append(row)
        print(f"| {row[0]} | {row[1]:.3f} |", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    import skimage.data

    model = lw.zoo.load("efficientnet_lite0").to(args.device)
    photo = skimage.data.chelsea()
    threads = torch.get_num_threads()
    print(f"| lw.blocks on efficientnet_lite0, {args.device}, {threads} torch threads | s |")
    print("|---|---|", flush=True)
    rows = _Rows()
    bench_connections(model, photo, 2 if args.quick else 8, rows)
    bench_per_image(model, photo, 1 if args.quick else 3, rows)
    if args.quick:
        bench_grid(model, photo, 32, 4, rows)
    else:
        bench_grid(model, photo, 48, 16, rows)


if __name__ == "__main__":
    main()
