"""Running top-k / bottom-k rankings of every unit over a stream of batches (dataset examples).

Every unit of every requested layer is stacked into one ``(units, ...)`` ranking, so one sort per
batch and direction merges all of them. Candidates of a batch are each unit's spatial **max**
(top) and **min** (bottom) per image, with where they are (computed during the forward pass by
:mod:`lucid_widgets.dataset.reduce`); merging is a stable sort of the ``k``
kept and the batch's candidates, so ties go to the earlier image whatever the batch size.
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
    positions: torch.Tensor  # (units, m, 2) int64 (y, x)

    @classmethod
    def empty(cls, units: int, device: torch.device) -> Ranking:
        return cls(
            torch.empty(units, 0, device=device),
            torch.empty(units, 0, dtype=torch.long, device=device),
            torch.empty(units, 0, 2, dtype=torch.long, device=device),
        )

    def merge(
        self,
        values: torch.Tensor,
        indices: torch.Tensor,
        positions: torch.Tensor,
        k: int,
        descending: bool,
    ) -> Ranking:
        """Keep the k best of the kept and the new ``(units, B)`` candidates; ties: earlier first.

        ``positions`` is ``(units, B, 2)``; only those of candidates that make it in are read.
        """
        all_values = torch.cat([self.values, values], 1)  # (units, m + B)
        order = torch.sort(all_values, dim=1, descending=descending, stable=True).indices[:, :k]
        at = order[..., None].expand(-1, -1, 2)
        merged = torch.cat([self.positions, positions], 1).gather(1, at)
        all_indices = torch.cat([self.indices, indices], 1)
        return Ranking(all_values.gather(1, order), all_indices.gather(1, order), merged)

    def floor(self, k: int, descending: bool) -> torch.Tensor:
        """``(units,)``: the value a new candidate must reach to enter (the k-th kept, or none).

        A candidate strictly worse than it can never be kept: the k kept ones beat it.
        """
        if self.values.shape[1] < k:
            bound = -torch.inf if descending else torch.inf
            return torch.full(self.values.shape[:1], bound, device=self.values.device)
        return self.values[:, k - 1]


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
        rankings.append(Ranking(*(torch.as_tensor(a).to(device) for a in arrays)))
    return PassState(
        *rankings,
        dict(resumed.thumbnails),
        resumed.num_images,
        resumed.next_index,
        len(resumed.skipped),
    )
