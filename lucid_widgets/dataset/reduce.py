"""Per-(image, unit) spatial max / min of every hooked layer, reduced inside the forward pass.

The dataset pass needs, for each image and unit, only the spatial max and min of the unit's map
and where they are. A capture that returns whole activations clones each of them (a later
in-place op must not change what was read) and then reduces them once the forward pass is over:
two more passes over every activation, out of cache. :class:`Reducer` instead hooks the layers
itself and reduces each output the moment it is produced (one ``amax`` and one ``amin`` over the
flattened spatial axes, on data that is still hot in cache), then lets it go: no clone, no
activation kept.

Positions: on a GPU a max with indices costs as much as a plain max, so both are taken at once.
On a CPU it costs about three times as much, so positions are found only for the candidates that
can still enter the running top-k: those not below the unit's current k-th best value (the
``floor``). Every other candidate gets ``(0, 0)``, which the merge never keeps: the result is
the same as locating everything.
"""

from __future__ import annotations

import contextlib
import threading
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


def _locate(flat: torch.Tensor, values: torch.Tensor, floor: torch.Tensor, k: int, find: str):
    """Flat arg-max / min ``(B, U)`` of the candidates that can enter the ranking (else 0).

    Those are the candidates not worse than ``floor`` (the k-th kept) nor than the k-th best of
    their own batch (k better ones in the batch would keep them out too).
    """
    largest = find == "max"
    if values.shape[0] > k:
        kth = values.topk(k, dim=0, largest=largest).values[-1]  # (U,)
        floor = torch.maximum(floor, kth) if largest else torch.minimum(floor, kth)
    # ~(a < b) keeps NaN candidates too: they enter the ranking as -inf / +inf
    open_ = ~(values < floor) if largest else ~(values > floor)  # (B, U)
    where = torch.zeros(values.shape, dtype=torch.long, device=values.device)
    rows, units = open_.nonzero(as_tuple=True)
    if len(rows):
        picked = flat[rows, units]  # (S, H*W)
        where[rows, units] = picked.argmax(1) if find == "max" else picked.argmin(1)
    return where


class Reducer:
    """Runs ``model`` with hooks on ``layout.paths`` that reduce each output on the spot.

    Use as a context manager (the hooks are removed on exit); call it with a network input
    ``(B, C, H, W)`` and the current floors to get the batch's :class:`Candidates` for a
    ranking of ``k`` per unit.
    ``locate_all`` takes every position with the max itself (GPUs); otherwise only candidates
    that can enter the ranking are located (CPUs).
    """

    def __init__(self, model: nn.Module, layout: Layout, k: int, locate_all: bool):
        self.model, self.layout, self.k, self.locate_all = model, layout, k, locate_all
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
        flat = acts.flatten(2) if acts.dim() == 4 else acts[..., None]  # (B, U, S)
        if self.locate_all:
            top, top_at = flat.max(2)  # (B, U), (B, U)
            bottom, bottom_at = flat.min(2)
        else:
            span = self.layout.slices[path]
            top, bottom = flat.amax(2), flat.amin(2)  # (B, U)
            top_at = _locate(flat, top, self._floors[0][span], self.k, "max")
            bottom_at = _locate(flat, bottom, self._floors[1][span], self.k, "min")
        self._parts[path] = (top, top_at, bottom, bottom_at)

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
