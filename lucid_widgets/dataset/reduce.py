"""Per-(image, unit) spatial max / min of every hooked layer, reduced inside the forward pass.

The dataset pass needs, for each image and unit, only the spatial max and min of the unit's map
and where they are. :class:`Reducer` hooks the layers itself and reduces each output the moment
it is produced, then lets it go: no clone, no activation kept.

Each map is reduced in two stages: first along its rows (``(B, U, H, W) -> (B, U, H)``, the
only pass over the whole activation: a slice of ~1 MB at a time, its max and then its min, so
the second reads from the cache), then the small row
maxima give each unit's max. Only the candidates that can still enter the ranking (see
:func:`_entering`: once k are kept, those strictly better than the k-th) are located: their row
is the first row holding the max, and only that row of the map is read again to find the
column. So the positions cost a few small operations on a few candidates instead of the ~3x
that a max with indices costs on a CPU, and every candidate that can be kept gets its exact
position (the first in row-major order, as ``argmax`` of the flattened map gives). The row
reduction reads the activation in its memory order: a channels-last map (what convolutions on a
CPU produce from NHWC images) is reduced as the ``(B, H, W, U)`` view along ``W``, where a
reduction of the logical last axis would be ~10x slower.
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

__all__ = ["Candidates", "Found", "Reducer"]

Entering = Callable[[torch.Tensor], torch.Tensor]


class _PassDone(Exception):  # noqa: N818 (control flow, not an error)
    """Raised in the last hook: the layers after it are not needed."""


@dataclass(frozen=True)
class Found:
    """One batch's candidates in one direction, every layer's units stacked in :class:`Layout`
    order."""

    values: torch.Tensor  # (units, B) float32 spatial max (min), NaN -> -inf (+inf)
    positions: torch.Tensor  # (units, B) int64 flat y * W + x; 0 where not located
    touched: torch.Tensor  # (units,) bool: the unit has a located candidate (one may enter)


@dataclass(frozen=True)
class Candidates:
    """One batch's candidates: the spatial max of each (unit, image), and the spatial min."""

    top: Found
    bottom: Found


@dataclass(frozen=True)
class Located:
    """Candidates of one layer located in their maps: ``(S,)`` each."""

    images: torch.Tensor  # int64 row in the batch
    units: torch.Tensor  # int64 unit of the layer
    where: torch.Tensor  # int64 flat y * W + x


_CHUNK_BYTES = 2**20


def _rows(acts: torch.Tensor, chunk_bytes: int = _CHUNK_BYTES) -> tuple[torch.Tensor, ...]:
    """``(B, U, H, W) -> (B, U, H)`` twice: the max and the min of every row, read in memory
    order, a slice of about ``chunk_bytes`` at a time, so that the min reads what the max has
    just brought into the cache."""
    last = acts.is_contiguous()
    batch, units, height, width = acts.shape
    if last:  # reduced along the last axis of (B * U * H, W)
        lines, shape = acts.view(-1, width), (batch, units, height)
    elif acts.is_contiguous(memory_format=torch.channels_last):  # along W of (B * H, W, U)
        lines, shape = acts.permute(0, 2, 3, 1).reshape(-1, width, units), (batch, height, units)
    else:  # another layout: as it is, whole
        return torch.amax(acts, 3), torch.amin(acts, 3)
    step = max(1, chunk_bytes // (lines[0].numel() * lines.element_size()))
    high = lines.new_empty(lines.shape[0], *lines.shape[2:])  # (lines, [U])
    low = torch.empty_like(high)
    for start in range(0, lines.shape[0], step):
        chunk = lines[start : start + step]
        torch.amax(chunk, 1, out=high[start : start + step])
        torch.amin(chunk, 1, out=low[start : start + step])
    if last:
        return high.view(shape), low.view(shape)
    return high.view(shape).transpose(1, 2), low.view(shape).transpose(1, 2)  # (B, U, H)


def _extreme(
    acts: torch.Tensor,
    find: str,
    entering: Entering | None = None,
    rows: torch.Tensor | None = None,
) -> tuple[torch.Tensor, Located]:
    """``(B, U, H, W)`` -> the spatial max (or min) ``(B, U)``, and where the candidates are.

    Ties go to the first position in row-major order; a NaN anywhere is the result (as
    ``amax``), at the first NaN's position. With ``entering`` (values ``(B, U)`` -> a mask, see
    :func:`_entering`), only the masked candidates are located; else all of them. ``rows``: the
    row maxima (minima) ``(B, U, H)`` when already known (see :func:`_rows`).
    """
    if rows is None:
        rows = _rows(acts)[0 if find == "max" else 1]  # (B, U, H)
    value = rows.amax(2) if find == "max" else rows.amin(2)  # (B, U)
    located = torch.ones_like(value, dtype=torch.bool) if entering is None else entering(value)
    images, units = located.nonzero(as_tuple=True)  # (S,) each
    if not len(images):
        return value, Located(images, units, images)
    line = rows[images, units]  # (S, H): the row extremes of each candidate's map
    rows_at = line.argmax(1) if find == "max" else line.argmin(1)  # the first, or first NaN
    line = acts[images, units, rows_at]  # (S, W): the row holding each extreme
    column = line.argmax(1) if find == "max" else line.argmin(1)
    return value, Located(images, units, rows_at * acts.shape[3] + column)


def _entering(floor: torch.Tensor | None, k: int, find: str) -> Entering:
    """The candidates ``(B, U)`` that can enter a ranking whose k-th kept is ``floor`` ``(U,)``.

    Once k are kept (``floor`` given), only those strictly better than it: an equal one ranks
    after the k kept (earlier images), a NaN enters as -inf / +inf and never beats it. Before
    (``floor`` None), those not worse than the k-th best of their own batch (k better ones there
    keep them out), where NaN candidates count as open.
    """
    largest = find == "max"
    if floor is not None:
        return (lambda values: values > floor) if largest else (lambda values: values < floor)

    def open_(values: torch.Tensor) -> torch.Tensor:
        if values.shape[0] <= k:
            return torch.ones_like(values, dtype=torch.bool)
        kth = values.topk(k, dim=0, largest=largest).values[-1]  # (U,)
        return ~(values < kth) if largest else ~(values > kth)

    return open_


def _stack(parts: list[tuple[torch.Tensor, Located]], layout: Layout, fill: float) -> Found:
    """Every layer's ``(B, U)`` values and sparse locations -> one :class:`Found`."""
    values = torch.cat([value for value, _ in parts], 1)  # (B, units)
    batch, units = values.shape
    offsets = [layout.slices[path].start for path in layout.paths]
    unit = torch.cat([at.units + offset for (_, at), offset in zip(parts, offsets, strict=True)])
    images = torch.cat([at.images for _, at in parts])  # (S,)
    positions = torch.zeros(units, batch, dtype=torch.long, device=values.device)
    positions[unit, images] = torch.cat([at.where for _, at in parts])
    touched = torch.zeros(units, dtype=torch.bool, device=values.device)
    touched[unit] = True
    values = torch.nan_to_num(values.T.float(), nan=fill)  # (units, B)
    return Found(values, positions, touched)


class Reducer:
    """Runs ``model`` with hooks on ``layout.paths`` that reduce each output on the spot.

    Use as a context manager (the hooks are removed on exit); call it with a network input
    ``(B, C, H, W)`` and the current floors to get the batch's :class:`Candidates` for a
    ranking of ``k`` per unit: positions only of candidates that can still enter it (the others
    get 0, which the merge never keeps).
    """

    def __init__(self, model: nn.Module, layout: Layout, k: int):
        self.model, self.layout, self.k = model, layout, k
        self.logits = "logits" in layout.paths
        self._thread = threading.get_ident()
        self._parts: dict[str, tuple] = {}
        self._floors: tuple[torch.Tensor | None, torch.Tensor | None] = (None, None)
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
        span = self.layout.slices[path]
        floor_top, floor_bottom = (None if f is None else f[span] for f in self._floors)
        high, low = _rows(acts)  # (B, U, H) each
        top = _extreme(acts, "max", _entering(floor_top, self.k, "max"), high)
        bottom = _extreme(acts, "min", _entering(floor_bottom, self.k, "min"), low)
        self._parts[path] = (top, bottom)

    def __call__(
        self,
        network_input: torch.Tensor,
        floor_top: torch.Tensor | None,
        floor_bottom: torch.Tensor | None,
    ) -> Candidates:
        """Candidates of one batch; floors ``(units,)``: the k-th best kept, or ``None`` while
        fewer than k are kept (see :meth:`lucid_widgets.dataset.topk.Ranking.floor`)."""
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
        return Candidates(
            _stack([top for top, _ in parts], self.layout, -torch.inf),
            _stack([bottom for _, bottom in parts], self.layout, torch.inf),
        )
