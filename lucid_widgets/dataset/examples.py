"""Dataset examples: the images of a dataset that excite (and inhibit) each unit the most.

One streaming pass over the dataset keeps, for every unit of every requested layer, the top-k
images by the unit's spatial **max** and the bottom-k images by its spatial **min** (Microscope's
negative examples: the most negative activation anywhere in the image), with the position of
that max / min. Running results are merged batch by batch (a stable sort of the ``k`` kept and
the batch's candidates), so memory is ``O(k x units)`` whatever the dataset size, and ties go
to the earlier image, which makes the result independent of the batch size. Thumbnails are kept
only for the images currently referenced. Results are cached on disk (see
docs/EXAMPLES_CACHE.md); an interrupted pass (Ctrl-C) returns a partial result and resumes on
the next call. The rankings live in :mod:`lucid_widgets.dataset.topk`, the result type and its
disk format in :mod:`lucid_widgets.dataset.cache`, image reading in
:mod:`lucid_widgets.dataset.sources`.
"""

from __future__ import annotations

import os
import time
import warnings
from collections.abc import Iterator, Sequence
from contextlib import closing
from dataclasses import replace
from pathlib import Path

import torch
from torch import nn
from tqdm.auto import tqdm

from lucid_widgets.dataset.cache import (
    FIELDS,
    FORMAT_VERSION,
    WHICH,
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
from lucid_widgets.dataset.reduce import Candidates, Reducer
from lucid_widgets.dataset.sample import resolve_layers
from lucid_widgets.dataset.sources import Batch, DatasetSource, iter_batches, open_dataset, prefetch
from lucid_widgets.dataset.topk import Layout, PassState, start_state, thumbnails
from lucid_widgets.optvis.fast.folding import folded_network
from lucid_widgets.optvis.hooks import capture, model_device
from lucid_widgets.optvis.preprocess import Preprocess, resolve
from lucid_widgets.optvis.render import StopSignal, should_stop
from lucid_widgets.optvis.shadow import pass_network
from lucid_widgets.zoo.receptive_field import blank_input, model_dtype, receptive_field_boxes

__all__ = ["ExamplesResult", "LayerExamples", "dataset_examples"]

_CHECKPOINT_SECONDS = 600.0
_CPU_BUDGET_BYTES = 512 * 2**20


def _update(
    state: PassState,
    found: Candidates,
    batch: Batch,
    images: torch.Tensor,
    k: int,
    thumb: tuple[int, int],
) -> PassState:
    """The state after one batch (``images`` (B, C, H, W) float on the model's device)."""
    batch_indices = torch.tensor(batch.indices, dtype=torch.long, device=images.device)
    indices = batch_indices.expand(found.top.values.shape[0], -1)  # (units, B)
    top, bottom = (
        ranking.merge(new.values, indices, new.positions, k, descending, new.touched)
        for ranking, new, descending in (
            (state.top, found.top, True),
            (state.bottom, found.bottom, False),
        )
    )
    used = torch.zeros(batch.next_index, dtype=torch.bool, device=images.device)
    used[top.indices.reshape(-1)] = True  # a mask over the dataset: much faster than unique()
    used[bottom.indices.reshape(-1)] = True
    referenced = set(used.nonzero().view(-1).tolist())
    kept = {index: image for index, image in state.thumbnails.items() if index in referenced}
    rows = [row for row, index in enumerate(batch.indices) if index in referenced]
    if rows:
        new = thumbnails(images[rows], thumb)  # (rows, h, w, 3) uint8
        kept.update({batch.indices[row]: image for row, image in zip(rows, new, strict=True)})
    return PassState(
        top,
        bottom,
        kept,
        state.num_images + len(batch.indices),
        batch.next_index,
        state.num_skipped + len(batch.skipped),
    )


def _probe(model: nn.Module, run, pre: Preprocess, batch_size: int | None) -> tuple[dict, int]:
    """One forward of a single black image: layer shapes and an automatic batch size."""
    device = model_device(model)
    probe = pre(blank_input(model, pre))  # (1, C, H, W)
    if batch_size is not None:
        return {path: t.shape for path, t in run(probe).items()}, batch_size
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        baseline = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
        acts = run(probe)
        per_image = torch.cuda.max_memory_allocated(device) - baseline
        budget, limit = 0.25 * torch.cuda.mem_get_info(device)[0], 256
    else:  # no allocator statistics; the pass keeps no activation, so the forward's working
        # set is a few maps alive at once: a multiple of the largest hooked map and the input
        acts = run(probe)
        largest = max(t.numel() * t.element_size() for t in (probe, *acts.values()))
        per_image, budget, limit = 6 * largest, _CPU_BUDGET_BYTES, 64
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
    stop: StopSignal = None,
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
        each. Default: the model's browsable layers
        (:func:`lucid_widgets.dataset.sample.default_layers`).
    k
        Examples kept per unit and direction.
    batch_size
        Images per forward pass; default: estimated from one probe forward (activation memory).
    preprocess
        Overrides :func:`lucid_widgets.optvis.preprocess.resolve(model)`.
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
    stop
        An Event or a callable, checked before each batch: when set, the pass ends early with
        an incomplete result (saved, so the same call resumes it), as Ctrl-C does.

    Returns
    -------
    ExamplesResult
        ``result[layer].values_top (U, k)``, ``indices_top``, ``positions_top (U, k, 2)`` and
        the same for ``bottom``; ``image()``, ``crop()``, ``box()``. ``result.complete`` is
        False when interrupted with Ctrl-C or ``stop``; call again with the same arguments to
        resume.
    """
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ValueError(f"k must be a positive integer, got {k!r}.")
    if batch_size is not None and (not isinstance(batch_size, int) or batch_size < 1):
        raise ValueError(f"batch_size must be a positive integer or None, got {batch_size!r}.")
    pre = resolve(model, preprocess)
    names = resolve_layers(model, layers)
    source = open_dataset(dataset)
    root = None if cache_dir is False else Path(cache_dir or default_cache_dir()).expanduser()
    key = None
    if root is not None:
        key = _cache_key(model, source, names, pre, k, thumbnail_size, dataset_id)
    cached = lookup(root, key, names, resume)
    if cached is not None and cached.complete:
        return cached
    return _Pass(model, source, names, k, pre, root, key, cached, thumbnail_size).run(
        batch_size, progress, stop
    )


def _cache_key(
    model: nn.Module,
    source: DatasetSource,
    names: dict[str, str],
    pre: Preprocess,
    k: int,
    thumbnail_size: int,
    dataset_id: str | None,
) -> str | None:
    """The cache key of a pass; ``None`` when the dataset has no fingerprint (one-shot)."""
    fingerprint = f"id:{dataset_id}" if dataset_id is not None else dataset_fingerprint(source)
    if fingerprint is None:
        return None
    return cache_key(
        version=FORMAT_VERSION,
        model=model_digest(model),
        layers=list(names.values()),
        dataset=fingerprint,
        k=k,
        preprocess=preprocess_fields(pre),
        thumbnail_size=thumbnail_size,
    )


def _pass_layout(network_input: torch.Tensor) -> torch.Tensor:
    """The batch in channels-last memory on a CPU: its convolutions run ~1.3x faster there (and
    a ``(B, H, W, C)`` image loader's batch is already laid out so), and the maps they write are
    reduced along contiguous memory (see :mod:`lucid_widgets.dataset.reduce`).  # (B, C, H, W)"""
    if network_input.device.type != "cpu" or network_input.dim() != 4:
        return network_input
    return network_input.contiguous(memory_format=torch.channels_last)


def _folded(model: nn.Module, network: nn.Module, probe: torch.Tensor, paths) -> nn.Module:
    """``network`` with each conv -> batch norm pair folded (the same values, fewer passes over
    memory; see :mod:`lucid_widgets.optvis.fast.folding`), when it is a shadow copy (never the
    user's own model) and the hooked ``paths`` read the same tensors folded; else ``network``."""
    if network is model:
        return network
    folded = folded_network(network, probe)
    return folded.network if folded is not None and folded.can_read(paths) else network


class _Pass:
    """One (possibly resumed) streaming pass: its settings, state and result."""

    def __init__(self, model, source: DatasetSource, names, k, pre, root, key, resumed, size):
        self.model, self.source, self.names, self.k, self.pre = model, source, names, k, pre
        self.root, self.key, self.resumed = root, key, resumed
        scale = min(1.0, size / max(pre.input_size))
        self.thumb = tuple(max(1, round(side * scale)) for side in pre.input_size)
        self.skipped = list(resumed.skipped) if resumed is not None else []
        self.paths = list(names.values())

    def _setup(self, network: nn.Module, batch_size: int | None) -> int:
        """Probe forward (shapes, batch size), receptive fields and the starting state."""
        model = self.model
        with torch.no_grad(), capture(network, self.paths) as run:
            shapes, batch_size = _probe(network, run, self.pre, batch_size)
        self.layout = Layout.of(self.paths, shapes)
        self.boxes = self._receptive_fields(shapes)
        self.info = {
            "model": type(model).__name__,
            "model_name": getattr(model, "lucid_name", None),
            "dataset_kind": self.source.kind,
            "batch_size": batch_size,
            "shapes": {path: list(shape[1:]) for path, shape in shapes.items()},
            "top": "spatial max",
            "bottom": "spatial min",
        }
        self.state = start_state(self.resumed, self.layout, model_device(model))
        return batch_size

    def _receptive_fields(self, shapes: dict) -> dict:
        """Box maps ``(H', W', 4)`` of the spatial layers (kept from a resumed result)."""
        boxes = {}
        for examples in self.resumed.layers.values() if self.resumed is not None else ():
            boxes[examples.path] = examples.box_map
        for path in self.paths:
            if path not in boxes and len(shapes[path]) == 4:
                boxes[path] = receptive_field_boxes(
                    self.model, path, self.pre, output_shape=shapes[path]
                )
        return boxes

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
        floors = self.state.top.floor(self.k, True), self.state.bottom.floor(self.k, False)
        found = run(_pass_layout(self.pre(images)), *floors)
        self.state = _update(self.state, found, batch, images, self.k, self.thumb)

    def run(self, batch_size: int | None, progress: bool, stop: StopSignal) -> ExamplesResult:
        """The whole pass, on the model's shadow copy (see :func:`pass_network`), with its
        batch norms folded when that reads the same layers: the user may train the model
        meanwhile."""
        probe = self.pre(blank_input(self.model, self.pre))  # (1, C, H, W)
        with torch.no_grad(), pass_network(self.model, probe) as network:
            return self._run(
                _folded(self.model, network, probe, self.paths), batch_size, progress, stop
            )

    def _run(self, network: nn.Module, batch_size, progress, stop) -> ExamplesResult:
        batch_size = self._setup(network, batch_size)
        complete, last_save = False, time.monotonic()
        bar = tqdm(
            total=self.source.length,
            initial=self.state.next_index,
            unit="img",
            disable=not progress,
        )
        batches = prefetch(self._batches(batch_size))
        try:
            hooked = Reducer(network, self.layout, self.k)
            with closing(batches), torch.no_grad(), hooked as run:
                for batch in batches:
                    if should_stop(stop):
                        break
                    self._step(run, batch)
                    bar.update(batch.next_index - bar.n)
                    if time.monotonic() - last_save > _CHECKPOINT_SECONDS:
                        save_quietly(self.result(complete=False), self.root)
                        last_save = time.monotonic()
                else:
                    complete = True
        except KeyboardInterrupt:
            resume = " Call dataset_examples again with the same arguments to resume."
            warnings.warn(
                f"Interrupted after {self.state.num_images} images; the result is incomplete."
                + (resume if self.key else ""),
                stacklevel=4,
            )
        except Exception as error:  # any other failure: keep what is done, then raise it
            save_quietly(self.result(complete=False), self.root)
            if self.key is not None:
                error.add_note(
                    f"dataset_examples saved its first {self.state.next_index} items as a "
                    "checkpoint; the same call resumes from there once the cause is fixed."
                )
            raise
        finally:
            bar.close()
        result = self.result(complete)
        save_quietly(result, self.root)
        if self.skipped and complete:
            name, reason = self.skipped[0]
            warnings.warn(
                f"Skipped {len(self.skipped)} unreadable item(s), listed in result.skipped; "
                f"the first: {name}: {reason}",
                stacklevel=4,
            )
        return result

    def result(self, complete: bool) -> ExamplesResult:
        """The examples so far, per layer, with thumbnails and sources."""
        state, kept = self.state, self.state.thumbnails
        stacked = {
            which: [
                t.cpu().numpy()
                for t in (rank.values.float(), rank.indices, self.layout.split(rank.positions))
            ]
            for which, rank in zip(WHICH, (state.top, state.bottom), strict=True)
        }  # which -> [values (units, k), indices (units, k), positions (units, k, 2)]
        layers = {}
        for name, path in self.names.items():
            span = self.layout.slices[path]
            arrays = {
                f"{field}_{which}": stacked[which][position][span].copy()
                for which in WHICH
                for position, field in enumerate(FIELDS)
            }
            layers[name] = LayerExamples(
                layer=name,
                path=path,
                box_map=self.boxes.get(path),
                input_size=tuple(self.pre.input_size),
                thumbnails=kept,
                **arrays,
            )
        return ExamplesResult(
            layers=layers,
            k=self.k,
            input_size=tuple(self.pre.input_size),
            thumbnails=kept,
            sources={index: self.source.name(index) for index in kept},
            skipped=list(self.skipped[: state.num_skipped]),
            num_images=state.num_images,
            next_index=state.next_index,
            complete=complete,
            key=self.key,
            info=self.info,
        )
