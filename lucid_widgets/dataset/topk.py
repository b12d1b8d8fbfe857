"""Running top-k / bottom-k rankings of every unit over a stream of batches (dataset examples).

Every unit of every requested layer is stacked into one ``(units, ...)`` ranking, so one sort per
batch and direction merges all of them. Candidates of a batch are each unit's spatial **max**
(top) and **min** (bottom) per image, with where they are; merging is a stable sort of the ``k``
kept and the batch's candidates, so ties go to the earlier image whatever the batch size.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from lucid_widgets.dataset.cache import FIELDS, WHICH, ExamplesResult
from lucid_widgets.optvis.arrays import to_uint8

__all__ = ["Layout", "PassState", "Ranking", "candidates", "start_state", "thumbnails"]

Locate = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # (units, rows) -> (S, 2) (y, x)


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
        positions: torch.Tensor | Locate,
        k: int,
        descending: bool,
    ) -> Ranking:
        """Keep the k best of the kept and the new ``(units, B)`` candidates; ties: earlier first.

        ``positions`` is ``(units, B, 2)``, or a function ``locate(units, rows) -> (S, 2)``
        called for just the candidates that made it in (batch ``rows`` of ``units``).
        """
        kept = self.values.shape[1]
        all_values = torch.cat([self.values, values], 1)  # (units, m + B)
        order = torch.sort(all_values, dim=1, descending=descending, stable=True).indices[:, :k]
        at = order[..., None].expand(-1, -1, 2)
        if callable(positions):
            placeholder = self.positions.new_zeros(*values.shape, 2)
            merged = torch.cat([self.positions, placeholder], 1).gather(1, at)
            units, ranks = (order >= kept).nonzero(as_tuple=True)
            if len(units):
                merged[units, ranks] = positions(units, order[units, ranks] - kept)
        else:
            merged = torch.cat([self.positions, positions], 1).gather(1, at)
        all_indices = torch.cat([self.indices, indices], 1)
        return Ranking(all_values.gather(1, order), all_indices.gather(1, order), merged)


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


def _yx(flat_index: torch.Tensor, width: torch.Tensor | int) -> torch.Tensor:
    return torch.stack([flat_index // width, flat_index % width], -1)


def _locator(flats: list[torch.Tensor], layout: Layout, find: str) -> Locate:
    """``locate(units, rows) -> (S, 2)``: the arg-max / min position of stacked ``units``."""

    def locate(units: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        # units come sorted (from nonzero), so each layer's entries are one contiguous run
        starts = torch.tensor([layout.slices[p].start for p in layout.paths] + [layout.units])
        bounds = torch.searchsorted(units, starts.to(units.device)).tolist()
        found = torch.zeros(len(units), 2, dtype=torch.long, device=units.device)
        for index, (flat, path) in enumerate(zip(flats, layout.paths, strict=True)):
            first, last = bounds[index], bounds[index + 1]
            if last > first:
                picked = flat[rows[first:last], units[first:last] - starts[index]]  # (S', H*W)
                where = picked.argmax(1) if find == "max" else picked.argmin(1)
                found[first:last] = _yx(where, layout.widths[path])
        return found

    return locate


def candidates(acts: dict, layout: Layout, locate_later_on: tuple[str, ...]) -> tuple:
    """Per stacked unit and image ``(units, B)``: spatial max / min and where they are.

    Returns ``(top, top_positions, bottom, bottom_positions)``; positions are ``(units, B, 2)``
    tensors, or, on the device types in ``locate_later_on`` (CPU: a max with indices costs
    several times a plain max there), functions that locate only the candidates the merge keeps.
    """
    flats = [
        acts[path].detach().flatten(2) if acts[path].dim() == 4 else acts[path].detach()[..., None]
        for path in layout.paths
    ]  # (B, U, H*W)
    later = flats[0].device.type in locate_later_on
    if later:
        top = torch.cat([flat.amax(2) for flat in flats], 1)  # (B, units)
        bottom = torch.cat([flat.amin(2) for flat in flats], 1)
        top_at, bottom_at = _locator(flats, layout, "max"), _locator(flats, layout, "min")
    else:
        maxima, minima = zip(*[(flat.max(2), flat.min(2)) for flat in flats], strict=True)
        top = torch.cat([m.values for m in maxima], 1)
        bottom = torch.cat([m.values for m in minima], 1)
        widths = layout.unit_widths(top.device)
        top_at = _yx(torch.cat([m.indices for m in maxima], 1).T, widths)
        bottom_at = _yx(torch.cat([m.indices for m in minima], 1).T, widths)
    top = torch.nan_to_num(top.T.float(), nan=-torch.inf)  # (units, B)
    bottom = torch.nan_to_num(bottom.T.float(), nan=torch.inf)
    return top, top_at, bottom, bottom_at


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
