"""Running top-k / bottom-k rankings of every unit over a stream of batches (dataset examples).

Every unit of every requested layer is stacked into one ``(units, ...)`` ranking, so one sort per
batch and direction merges all of them. Candidates of a batch are each unit's spatial **max**
(top) and **min** (bottom) per image, with where they are (computed during the forward pass by
:mod:`lucid_widgets.dataset.reduce`); merging is a stable sort of the ``k`` kept and the batch's
candidates, so ties go to the earlier image whatever the batch size. Once k are kept, only the
units with a candidate that can enter are sorted (the others stay as they are). Positions are
kept flat (``y * W + x``) and split into ``(y, x)`` for the result (:meth:`Layout.split`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from lucid_widgets.dataset.cache import FIELDS, WHICH, ExamplesResult
from lucid_widgets.optvis.arrays import to_uint8

__all__ = ["Layout", "PassState", "Ranking", "start_state", "thumbnails"]


@dataclass(frozen=True)
class Ranking:
    """Running k best of every unit of every layer (stacked): values, indices, positions."""

    values: torch.Tensor  # (units, m), m <= k, best first
    indices: torch.Tensor  # (units, m) int64 dataset indices
    positions: torch.Tensor  # (units, m) int64 flat y * W + x

    @classmethod
    def empty(cls, units: int, device: torch.device) -> Ranking:
        return cls(
            torch.empty(units, 0, device=device),
            torch.empty(units, 0, dtype=torch.long, device=device),
            torch.empty(units, 0, dtype=torch.long, device=device),
        )

    def merge(
        self,
        values: torch.Tensor,
        indices: torch.Tensor,
        positions: torch.Tensor,
        k: int,
        descending: bool,
        touched: torch.Tensor | None = None,
    ) -> Ranking:
        """Keep the k best of the kept and the new ``(units, B)`` candidates; ties: earlier first.

        ``positions`` is ``(units, B)``; only those of candidates that make it in are read.
        ``touched`` ``(units,)`` bool, once k are kept: the units where a candidate may enter
        (strictly better than the k-th); only those are sorted, the others stay as they are.
        """
        if touched is None or self.values.shape[1] < k:
            return self._merged(values, indices, positions, k, descending)
        rows = touched.nonzero().view(-1)  # (T,)
        if len(rows) == len(touched):
            return self._merged(values, indices, positions, k, descending)
        kept = Ranking(self.values[rows], self.indices[rows], self.positions[rows])
        new = kept._merged(values[rows], indices[rows], positions[rows], k, descending)
        return Ranking(
            *(
                whole.index_copy(0, rows, part)
                for whole, part in zip(
                    (self.values, self.indices, self.positions),
                    (new.values, new.indices, new.positions),
                    strict=True,
                )
            )
        )

    def _merged(self, values, indices, positions, k: int, descending: bool) -> Ranking:
        all_values = torch.cat([self.values, values], 1)  # (units, m + B)
        order = torch.sort(all_values, dim=1, descending=descending, stable=True).indices[:, :k]
        return Ranking(
            all_values.gather(1, order),
            torch.cat([self.indices, indices], 1).gather(1, order),
            torch.cat([self.positions, positions], 1).gather(1, order),
        )

    def floor(self, k: int, descending: bool) -> torch.Tensor | None:
        """``(units,)``: the k-th kept, which a new candidate must beat to enter; ``None``
        while fewer than k are kept (every candidate may enter).

        A candidate not strictly better than it is never kept: the k kept ones, all earlier
        images, rank before it.
        """
        return self.values[:, k - 1] if self.values.shape[1] >= k else None


@dataclass(frozen=True)
class PassState:
    """Everything the pass has computed; replaced as a whole so Ctrl-C never splits it."""

    top: Ranking
    bottom: Ranking
    thumbnails: dict[int, np.ndarray]
    num_images: int
    next_index: int
    num_skipped: int


@dataclass(frozen=True)
class Layout:
    """Where each layer's units sit in the stacked rankings, and its map width."""

    paths: list[str]
    slices: dict[str, slice]
    widths: dict[str, int]
    units: int

    @classmethod
    def of(cls, paths: list[str], shapes: dict) -> Layout:
        slices, widths, start = {}, {}, 0
        for path in paths:
            shape = shapes[path]
            if len(shape) not in (2, 4):
                raise ValueError(
                    f"Dataset examples need (B, C, H, W) or (B, C) activations; layer {path!r} "
                    f"gives {tuple(shape)}. Pick a convolutional or linear layer."
                )
            slices[path] = slice(start, start + shape[1])
            widths[path] = shape[3] if len(shape) == 4 else 1
            start += shape[1]
        return cls(paths, slices, widths, start)

    def unit_widths(self, device: torch.device) -> torch.Tensor:
        """``(units, 1)``: the map width of each stacked unit's layer."""
        counts = [self.slices[p].stop - self.slices[p].start for p in self.paths]
        widths = torch.tensor([self.widths[p] for p in self.paths], device=device)
        return widths.repeat_interleave(torch.tensor(counts, device=device))[:, None]

    def split(self, flat: torch.Tensor) -> torch.Tensor:
        """Stacked flat positions ``(units, m)`` ``y * W + x`` -> ``(units, m, 2)`` ``(y, x)``."""
        width = self.unit_widths(flat.device)  # (units, 1)
        return torch.stack([flat // width, flat % width], -1)

    def flatten(self, positions: torch.Tensor) -> torch.Tensor:
        """Stacked ``(units, m, 2)`` ``(y, x)`` -> flat ``(units, m)`` ``y * W + x``."""
        return positions[..., 0] * self.unit_widths(positions.device) + positions[..., 1]


def thumbnails(images: torch.Tensor, size: tuple[int, int]) -> np.ndarray:
    """``(B, C, H, W)`` float in [0, 1] -> ``(B, h, w, 3)`` uint8 thumbnails."""
    small = images.float()
    if small.shape[-2:] != size:
        small = F.interpolate(small, size=size, mode="area")
    return to_uint8(small, rgb=True)


def start_state(resumed: ExamplesResult | None, layout: Layout, device: torch.device) -> PassState:
    """An empty state, or the state of an interrupted pass (``resumed``) on ``device``."""
    if resumed is None:
        empty = Ranking.empty(layout.units, device)
        return PassState(empty, empty, {}, 0, 0, 0)
    by_path = {examples.path: examples for examples in resumed.layers.values()}
    rankings = []
    for which in WHICH:
        arrays = [
            np.concatenate([getattr(by_path[path], f"{name}_{which}") for path in layout.paths])
            for name in FIELDS
        ]  # (units, m), (units, m), (units, m, 2)
        values, indices, positions = (torch.as_tensor(a).to(device) for a in arrays)
        rankings.append(Ranking(values, indices, layout.flatten(positions)))
    return PassState(
        *rankings,
        dict(resumed.thumbnails),
        resumed.num_images,
        resumed.next_index,
        len(resumed.skipped),
    )
