"""Dataset examples: the images of a dataset that excite (and inhibit) each unit the most.

One streaming pass over the dataset keeps, for every unit of every requested layer, the top-k
images by the unit's spatial **max** and the bottom-k images by its spatial **min** (Microscope's
negative examples: the most negative activation anywhere in the image), with the position of
that max / min. Running results are merged batch by batch (a stable sort of the ``k`` kept and
the batch's candidates), so memory is ``O(k x units)`` whatever the dataset size, and ties go
to the earlier image, which makes the result independent of the batch size. Thumbnails are kept
only for the images currently referenced. Results are cached on disk (see
docs/EXAMPLES_CACHE.md); an interrupted pass (Ctrl-C) returns a partial result and resumes on
the next call.
"""

from __future__ import annotations

import os
import time
import warnings
from collections.abc import Iterator, Sequence
from contextlib import closing
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from lucid_widgets.datasets import Batch, DatasetSource, iter_batches, open_dataset, prefetch
from lucid_widgets.examples_cache import (
    FORMAT_VERSION,
    ExamplesResult,
    LayerExamples,
    cache_key,
    dataset_fingerprint,
    default_cache_dir,
    lookup,
    model_digest,
    preprocess_fields,
    save_quietly,
)
from lucid_widgets.hooks import capture, frozen, model_device
from lucid_widgets.preprocess import Preprocess, resolve
from lucid_widgets.receptive_field import model_dtype, receptive_field_boxes
from lucid_widgets.sample import resolve_layers

__all__ = ["ExamplesResult", "LayerExamples", "dataset_examples"]

_CHECKPOINT_SECONDS = 600.0
_CPU_BUDGET_BYTES = 512 * 2**20
_KINDS = ("top", "bottom")
_LOCATE_LATER_ON = ("cpu",)  # device types that find positions only for kept candidates


@dataclass(frozen=True)
class _Ranking:
    """Running k best of every unit of every layer (stacked): values, indices, positions."""

    values: torch.Tensor  # (units, m), m <= k, best first
    indices: torch.Tensor  # (units, m) int64 dataset indices
    positions: torch.Tensor  # (units, m, 2) int64 (y, x)

    @classmethod
    def empty(cls, units: int, device: torch.device) -> _Ranking:
        return cls(
            torch.empty(units, 0, device=device),
            torch.empty(units, 0, dtype=torch.long, device=device),
            torch.empty(units, 0, 2, dtype=torch.long, device=device),
        )

    def merge(self, values, indices, positions, k: int, descending: bool) -> _Ranking:
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
        return _Ranking(all_values.gather(1, order), all_indices.gather(1, order), merged)


@dataclass(frozen=True)
class _State:
    """Everything the pass has computed; replaced as a whole so Ctrl-C never splits it."""

    top: _Ranking
    bottom: _Ranking
    thumbnails: dict[int, np.ndarray]
    num_images: int
    next_index: int
    num_skipped: int


@dataclass(frozen=True)
class _Layout:
    """Where each layer's units sit in the stacked rankings, and its map width."""

    paths: list[str]
    slices: dict[str, slice]
    widths: dict[str, int]
    units: int

    @classmethod
    def of(cls, paths: list[str], shapes: dict) -> _Layout:
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


def _locator(flats: list[torch.Tensor], layout: _Layout, find: str):
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


def _candidates(acts: dict, layout: _Layout) -> tuple:
    """Per stacked unit and image ``(units, B)``: spatial max / min and where they are.

    Returns ``(top, top_positions, bottom, bottom_positions)``; positions are ``(units, B, 2)``
    tensors, or on CPU functions that locate only the candidates the merge keeps (a max with
    indices costs several times a plain max there).
    """
    flats = [
        acts[path].detach().flatten(2) if acts[path].dim() == 4 else acts[path].detach()[..., None]
        for path in layout.paths
    ]  # (B, U, H*W)
    later = flats[0].device.type in _LOCATE_LATER_ON
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


def _thumbnails(images: torch.Tensor, size: tuple[int, int]) -> np.ndarray:
    """``(B, C, H, W)`` float in [0, 1] -> ``(B, h, w, 3)`` uint8 thumbnails."""
    small = images.float()
    if small.shape[-2:] != size:
        small = F.interpolate(small, size=size, mode="area")
    small = small[:, :3] if small.shape[1] >= 3 else small[:, :1].expand(-1, 3, -1, -1)
    return small.clamp(0, 1).mul(255).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()


def _update(
    state: _State, acts: dict, layout: _Layout, batch: Batch, images: torch.Tensor, k: int, thumb
) -> _State:
    """The state after one batch (``images`` (B, C, H, W) float on the model's device)."""
    top_values, top_at, bottom_values, bottom_at = _candidates(acts, layout)
    batch_indices = torch.tensor(batch.indices, dtype=torch.long, device=images.device)
    indices = batch_indices.expand(top_values.shape[0], -1)  # (units, B)
    top = state.top.merge(top_values, indices, top_at, k, descending=True)
    bottom = state.bottom.merge(bottom_values, indices, bottom_at, k, descending=False)
    used = torch.zeros(batch.next_index, dtype=torch.bool, device=images.device)
    used[top.indices.reshape(-1)] = True  # a mask over the dataset: much faster than unique()
    used[bottom.indices.reshape(-1)] = True
    referenced = set(used.nonzero().view(-1).tolist())
    thumbnails = {index: image for index, image in state.thumbnails.items() if index in referenced}
    rows = [row for row, index in enumerate(batch.indices) if index in referenced]
    if rows:
        new = _thumbnails(images[rows], thumb)
        thumbnails.update({batch.indices[row]: image for row, image in zip(rows, new, strict=True)})
    return _State(
        top,
        bottom,
        thumbnails,
        state.num_images + len(batch.indices),
        batch.next_index,
        state.num_skipped + len(batch.skipped),
    )


def _probe(model: nn.Module, run, pre: Preprocess, batch_size: int | None) -> tuple[dict, int]:
    """One forward of a single black image: layer shapes and an automatic batch size."""
    device = model_device(model)
    probe = pre(
        torch.zeros(1, pre.channels, *pre.input_size, device=device, dtype=model_dtype(model))
    )
    if batch_size is not None:
        return {path: t.shape for path, t in run(probe).items()}, batch_size
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        baseline = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
        acts = run(probe)
        per_image = torch.cuda.max_memory_allocated(device) - baseline
        budget, limit = 0.25 * torch.cuda.mem_get_info(device)[0], 256
    else:  # no allocator statistics: a multiple of what the hooked layers and input hold
        acts = run(probe)
        held = sum(t.numel() * t.element_size() for t in (probe, *acts.values()))
        per_image, budget, limit = 8 * held, _CPU_BUDGET_BYTES, 64
    size = int(max(1, min(limit, budget // max(per_image, 1))))
    return {path: t.shape for path, t in acts.items()}, 2 ** (size.bit_length() - 1)


def dataset_examples(
    model: nn.Module,
    dataset: object,
    layers: str | Sequence[str] | None = None,
    k: int = 9,
    batch_size: int | None = None,
    preprocess: Preprocess | None = None,
    cache_dir: str | os.PathLike | bool | None = None,
    progress: bool = True,
    resume: bool = True,
    thumbnail_size: int = 128,
    dataset_id: str | None = None,
) -> ExamplesResult:
    """Top-k and bottom-k dataset images of every unit of ``layers``, in one pass.

    Parameters
    ----------
    model
        Any ``nn.Module`` taking ``(B, C, H, W)`` images.
    dataset
        An image folder (recursive), a tensor ``(N, C, H, W)`` in [0, 1] or uint8 ``(N, H, W,
        C)``, a torchvision-style dataset (items ``(image, label)`` or images) or an iterable of
        images (PIL, arrays, tensors, paths). Images are converted to the model's channel count
        and resized + centre-cropped to ``preprocess.input_size``; unreadable ones are skipped
        and listed in ``result.skipped``.
    layers
        A layer name or list of names (aliases or dotted paths, or ``"logits"``); every unit of
        each. Default: the model's browsable layers (:func:`lucid_widgets.sample.default_layers`).
    k
        Examples kept per unit and direction.
    batch_size
        Images per forward pass; default: estimated from one probe forward (activation memory).
    preprocess
        Overrides :func:`lucid_widgets.preprocess.resolve(model)`.
    cache_dir
        Where results are cached (default ``~/.cache/lucid_widgets/examples``); ``False``
        disables the cache (and resuming).
    progress
        Show a tqdm progress bar.
    resume
        Continue an interrupted pass from its checkpoint (else start again).
    thumbnail_size
        Longest side of the stored thumbnails (never larger than the input size).
    dataset_id
        A name that identifies the dataset's content, used for the cache key instead of hashing
        it (required for caching a one-shot iterator; saves a hashing pass over a generic
        dataset).

    Returns
    -------
    ExamplesResult
        ``result[layer].values_top (U, k)``, ``indices_top``, ``positions_top (U, k, 2)`` and
        the same for ``bottom``; ``image()``, ``crop()``, ``box()``. ``result.complete`` is
        False when interrupted with Ctrl-C; call again with the same arguments to resume.
    """
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ValueError(f"k must be a positive integer, got {k!r}.")
    if batch_size is not None and (not isinstance(batch_size, int) or batch_size < 1):
        raise ValueError(f"batch_size must be a positive integer or None, got {batch_size!r}.")
    pre = resolve(model, preprocess)
    names = resolve_layers(model, layers)
    source = open_dataset(dataset)
    root = None if cache_dir is False else Path(cache_dir or default_cache_dir()).expanduser()
    fingerprint = f"id:{dataset_id}" if dataset_id is not None else None
    if root is not None and fingerprint is None:
        fingerprint = dataset_fingerprint(source)
    key = None
    if root is not None and fingerprint is not None:
        key = cache_key(
            version=FORMAT_VERSION,
            model=model_digest(model),
            layers=list(names.values()),
            dataset=fingerprint,
            k=k,
            preprocess=preprocess_fields(pre),
            thumbnail_size=thumbnail_size,
        )
    cached = lookup(root, key, names, resume)
    if cached is not None and cached.complete:
        return cached
    return _Pass(model, source, names, k, pre, root, key, cached, thumbnail_size).run(
        batch_size, progress
    )


class _Pass:
    """One (possibly resumed) streaming pass: its settings, state and result."""

    def __init__(self, model, source: DatasetSource, names, k, pre, root, key, resumed, size):
        self.model, self.source, self.names, self.k, self.pre = model, source, names, k, pre
        self.root, self.key, self.resumed = root, key, resumed
        scale = min(1.0, size / max(pre.input_size))
        self.thumb = tuple(max(1, round(side * scale)) for side in pre.input_size)
        self.skipped = list(resumed.skipped) if resumed is not None else []
        self.paths = list(names.values())

    def _setup(self, batch_size: int | None) -> int:
        """Probe forward (shapes, batch size), receptive fields and the starting state."""
        model, pre, device = self.model, self.pre, model_device(self.model)
        with frozen(model), torch.no_grad(), capture(model, self.paths) as run:
            shapes, batch_size = _probe(model, run, pre, batch_size)
        self.layout = _Layout.of(self.paths, shapes)
        self.boxes = {}
        for examples in self.resumed.layers.values() if self.resumed is not None else ():
            self.boxes[examples.path] = examples.box_map
        for path in self.paths:
            if path not in self.boxes and len(shapes[path]) == 4:
                self.boxes[path] = receptive_field_boxes(
                    model, path, pre, output_shape=shapes[path]
                )
        self.info = {
            "model": type(model).__name__,
            "model_name": getattr(model, "lucid_name", None),
            "dataset_kind": self.source.kind,
            "batch_size": batch_size,
            "shapes": {path: list(shape[1:]) for path, shape in shapes.items()},
            "top": "spatial max",
            "bottom": "spatial min",
        }
        self.state = _start_state(self.resumed, self.layout, device)
        return batch_size

    def _batches(self, batch_size: int) -> Iterator[Batch]:
        """Loaded batches (pinned for a fast copy to a GPU), read in a background thread."""
        pin = model_device(self.model).type == "cuda"
        pre, start = self.pre, self.state.next_index
        for batch in iter_batches(self.source, start, batch_size, pre.input_size, pre.channels):
            if pin and batch.images is not None:
                batch.images = batch.images.pin_memory()
            yield batch

    def _step(self, run, batch: Batch) -> None:
        self.skipped.extend(batch.skipped)
        if batch.images is None:
            self.state = replace(
                self.state, next_index=batch.next_index, num_skipped=len(self.skipped)
            )
            return
        dtype = model_dtype(self.model)
        images = batch.images.to(model_device(self.model), non_blocking=True)
        images = images.to(dtype).div_(255) if images.dtype == torch.uint8 else images.to(dtype)
        acts = run(self.pre(images))
        self.state = _update(self.state, acts, self.layout, batch, images, self.k, self.thumb)

    def run(self, batch_size: int | None, progress: bool) -> ExamplesResult:
        batch_size = self._setup(batch_size)
        complete, last_save = False, time.monotonic()
        bar = tqdm(
            total=self.source.length,
            initial=self.state.next_index,
            unit="img",
            disable=not progress,
        )
        batches = prefetch(self._batches(batch_size))
        try:
            hooked = capture(self.model, self.paths)
            with closing(batches), frozen(self.model), torch.no_grad(), hooked as run:
                for batch in batches:
                    self._step(run, batch)
                    bar.update(batch.next_index - bar.n)
                    if time.monotonic() - last_save > _CHECKPOINT_SECONDS:
                        save_quietly(self.result(complete=False), self.root)
                        last_save = time.monotonic()
            complete = True
        except KeyboardInterrupt:
            resume = " Call dataset_examples again with the same arguments to resume."
            warnings.warn(
                f"Interrupted after {self.state.num_images} images; the result is incomplete."
                + (resume if self.key else ""),
                stacklevel=3,
            )
        finally:
            bar.close()
        result = self.result(complete)
        save_quietly(result, self.root)
        return result

    def result(self, complete: bool) -> ExamplesResult:
        """The examples so far, per layer, with thumbnails and sources."""
        state, thumbnails = self.state, self.state.thumbnails
        stacked = {
            kind: [t.cpu().numpy() for t in (rank.values.float(), rank.indices, rank.positions)]
            for kind, rank in zip(_KINDS, (state.top, state.bottom), strict=True)
        }
        layers = {}
        for name, path in self.names.items():
            span = self.layout.slices[path]
            arrays = {
                f"{field}_{kind}": stacked[kind][position][span].copy()
                for kind in _KINDS
                for position, field in enumerate(("values", "indices", "positions"))
            }
            layers[name] = LayerExamples(
                layer=name,
                path=path,
                box_map=self.boxes.get(path),
                input_size=tuple(self.pre.input_size),
                thumbnails=thumbnails,
                **arrays,
            )
        return ExamplesResult(
            layers=layers,
            k=self.k,
            input_size=tuple(self.pre.input_size),
            thumbnails=thumbnails,
            sources={index: self.source.name(index) for index in thumbnails},
            skipped=list(self.skipped[: state.num_skipped]),
            num_images=state.num_images,
            next_index=state.next_index,
            complete=complete,
            key=self.key,
            info=self.info,
        )


def _start_state(resumed: ExamplesResult | None, layout: _Layout, device) -> _State:
    if resumed is None:
        empty = _Ranking.empty(layout.units, device)
        return _State(empty, empty, {}, 0, 0, 0)
    by_path = {examples.path: examples for examples in resumed.layers.values()}
    rankings = []
    for kind in _KINDS:
        arrays = [
            np.concatenate([getattr(by_path[path], f"{name}_{kind}") for path in layout.paths])
            for name in ("values", "indices", "positions")
        ]
        rankings.append(_Ranking(*(torch.as_tensor(a).to(device) for a in arrays)))
    return _State(
        *rankings,
        dict(resumed.thumbnails),
        resumed.num_images,
        resumed.next_index,
        len(resumed.skipped),
    )
