"""Per-(image, unit) spatial max / min of every hooked layer, reduced inside the forward pass.

The dataset pass needs, for each image and unit, only the spatial max and min of the unit's map
and where they are. :class:`Reducer` hooks the layers itself and reduces each output the moment
it is produced, then lets it go: no clone, no activation kept.

Each map is reduced in two stages: first along its rows (``(B, U, H, W) -> (B, U, H)``, the
only pass over the whole activation, one for the max and one for the min), then the small row
maxima give each unit's max and its row, and only that row of the map is read again to find the
column. So the positions cost ``1 / H`` of a pass instead of the ~3x that a max with indices
costs on a CPU, and every candidate gets its exact position (the first in row-major order, as
``argmax`` of the flattened map gives). The row reduction reads the activation in its memory
order: a channels-last map (what convolutions on a CPU produce from NHWC images) is reduced as
the ``(B, H, W, U)`` view along ``W``, where a reduction of the logical last axis would be ~10x
slower.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from lucid_widgets.dataset.topk import Layout
from lucid_widgets.optvis.hooks import LayerNotReachedError, first_tensor, internal_hook

__all__ = ["Candidates", "Reducer"]


class _PassDone(Exception):  # noqa: N818 (control flow, not an error)
    """Raised in the last hook: the layers after it are not needed."""


@dataclass(frozen=True)
class Candidates:
    """One batch's candidates, every layer's units stacked in :class:`Layout` order."""

    top: torch.Tensor  # (units, B) float32 spatial max, NaN -> -inf
    top_at: torch.Tensor  # (units, B, 2) int64 (y, x) of the max
    bottom: torch.Tensor  # (units, B) float32 spatial min, NaN -> +inf
    bottom_at: torch.Tensor  # (units, B, 2) int64 (y, x) of the min


def _yx(flat_index: torch.Tensor, width: torch.Tensor | int) -> torch.Tensor:
    return torch.stack([flat_index // width, flat_index % width], -1)


def _rows(acts: torch.Tensor, find: str) -> torch.Tensor:
    """``(B, U, H, W) -> (B, U, H)``: the max (or min) of every row, read in memory order."""
    reduce = torch.amax if find == "max" else torch.amin
    if acts.is_contiguous() or not acts.is_contiguous(memory_format=torch.channels_last):
        return reduce(acts, 3)
    return reduce(acts.permute(0, 2, 3, 1), 2).transpose(1, 2)  # (B, H, U) -> (B, U, H)


def _extreme(
    acts: torch.Tensor, find: str, entering: Callable[[torch.Tensor], torch.Tensor] | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(B, U, H, W)`` -> the spatial max (or min) ``(B, U)`` and its flat index ``y * W + x``.

    Ties go to the first position in row-major order; a NaN anywhere is the result (as
    ``amax``), at the first NaN's position. With ``entering`` (values ``(B, U)`` -> a mask, see
    :func:`_entering`), only the masked candidates are located; the others get index 0.
    """
    rows = _rows(acts, find)  # (B, U, H)
    value, row = rows.max(2) if find == "max" else rows.min(2)  # (B, U)
    located = torch.ones_like(value, dtype=torch.bool) if entering is None else entering(value)
    images, units = located.nonzero(as_tuple=True)  # (S,) each
    where = torch.zeros(value.shape, dtype=torch.long, device=value.device)
    if len(images):
        rows_at = row[images, units]  # (S,)
        line = acts[images, units, rows_at]  # (S, W): the row holding each extreme
        column = line.argmax(1) if find == "max" else line.argmin(1)
        where[images, units] = rows_at * acts.shape[3] + column
    return value, where


def _entering(floor: torch.Tensor, k: int, find: str):
    """The candidates ``(B, U)`` that can enter a ranking whose k-th kept is ``floor`` ``(U,)``.

    Not worse than ``floor``, nor than the k-th best of their own batch (k better ones there
    keep them out too); NaN candidates count as open (they enter as -inf / +inf).
    """
    largest = find == "max"

    def open_(values: torch.Tensor) -> torch.Tensor:
        bound = floor
        if values.shape[0] > k:
            kth = values.topk(k, dim=0, largest=largest).values[-1]  # (U,)
            bound = torch.maximum(bound, kth) if largest else torch.minimum(bound, kth)
        return ~(values < bound) if largest else ~(values > bound)

    return open_


class Reducer:
    """Runs ``model`` with hooks on ``layout.paths`` that reduce each output on the spot.

    Use as a context manager (the hooks are removed on exit); call it with a network input
    ``(B, C, H, W)`` and the current floors to get the batch's :class:`Candidates` for a
    ranking of ``k`` per unit: positions only of candidates that can still enter it (the others
    get ``(0, 0)``, which the merge never keeps).
    """

    def __init__(self, model: nn.Module, layout: Layout, k: int):
        self.model, self.layout, self.k = model, layout, k
        self.logits = "logits" in layout.paths
        self._thread = threading.get_ident()
        self._parts: dict[str, tuple] = {}
        self._floors: tuple[torch.Tensor, torch.Tensor] | None = None
        self._handles = []
        modules = dict(model.named_modules())
        for path in layout.paths:
            if path != "logits":
                self._handles.append(modules[path].register_forward_hook(self._hook_for(path)))

    def __enter__(self) -> Reducer:
        return self

    def __exit__(self, *exc) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles = []

    def _hook_for(self, path: str):
        def hook(module: nn.Module, inputs: tuple, output: object) -> None:
            if threading.get_ident() != self._thread or path in self._parts:
                return  # another thread's forward, or a module called twice: keep the first
            tensor = first_tensor(output)
            if tensor is None:
                raise LayerNotReachedError(
                    f"Layer {path!r} ({type(module).__name__}) returned "
                    f"{type(output).__name__}, which holds no tensor to read."
                )
            self._reduce(path, tensor)
            if not self.logits and len(self._parts) == len(self.layout.paths):
                raise _PassDone

        return internal_hook(hook)

    def _reduce(self, path: str, tensor: torch.Tensor) -> None:
        acts = tensor.detach()
        acts = acts if acts.dim() == 4 else acts[..., None, None]  # (B, U, H, W)
        span, (floor_top, floor_bottom) = self.layout.slices[path], self._floors
        top = _extreme(acts, "max", _entering(floor_top[span], self.k, "max"))
        bottom = _extreme(acts, "min", _entering(floor_bottom[span], self.k, "min"))
        self._parts[path] = (*top, *bottom)

    def __call__(
        self, network_input: torch.Tensor, floor_top: torch.Tensor, floor_bottom: torch.Tensor
    ) -> Candidates:
        """Candidates of one batch; floors ``(units,)``: the k-th best kept (or -inf / +inf)."""
        self._parts, self._floors = {}, (floor_top, floor_bottom)
        logits = None
        with contextlib.suppress(_PassDone):
            logits = self.model(network_input)
        if self.logits:
            tensor = first_tensor(logits)
            if tensor is None:
                raise LayerNotReachedError("The model's output holds no tensor for 'logits'.")
            self._reduce("logits", tensor)
        missing = [path for path in self.layout.paths if path not in self._parts]
        if missing:
            raise LayerNotReachedError(
                f"The forward pass of {type(self.model).__name__} never called layer(s) "
                f"{', '.join(missing)}. Is the module used in forward(), or only defined?"
            )
        parts = [self._parts.pop(path) for path in self.layout.paths]
        columns = zip(*parts, strict=True)  # top, top_at, bottom, bottom_at: (B, U) each
        top, top_at, bottom, bottom_at = (torch.cat(column, 1).T for column in columns)
        widths = self.layout.unit_widths(top.device)  # (units, 1)
        return Candidates(
            torch.nan_to_num(top.float(), nan=-torch.inf),  # (units, B)
            _yx(top_at, widths),  # (units, B, 2)
            torch.nan_to_num(bottom.float(), nan=torch.inf),
            _yx(bottom_at, widths),
        )
