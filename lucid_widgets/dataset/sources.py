"""Reading images for dataset examples: folders, tensors, torchvision-style datasets, iterables.

Every source is turned into a stream of ``(index, raw item)`` pairs; :func:`load_image` (from
:mod:`lucid_widgets.dataset.images`, re-exported here) converts a raw item into a ``(C, H, W)``
tensor at the model's input size (resized so the shorter side fits, then centre-cropped) with the
model's channel count. Unreadable items raise :class:`ImageLoadError`, which the caller records
and skips.
"""

from __future__ import annotations

import functools
import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from queue import Empty, Full, Queue

import numpy as np
import torch

from lucid_widgets.dataset.images import (
    ImageLoadError,
    as_float,
    check_float_range,
    load_image,
    resize_batch,
    unwrap,
)

__all__ = [
    "IMAGE_EXTENSIONS",
    "Batch",
    "DatasetSource",
    "ImageLoadError",
    "list_image_files",
    "iter_batches",
    "load_image",
    "open_dataset",
    "unwrap",
    "prefetch",
    "resize_batch",
]

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm")


# ---------------------------------------------------------------------------- sources


def list_image_files(root: str | os.PathLike) -> list[str]:
    """Image files under ``root`` (recursive, sorted), by extension, case-insensitive."""
    files = []
    for directory, subdirectories, names in os.walk(root):
        subdirectories.sort()
        for name in sorted(names):
            if name.lower().endswith(IMAGE_EXTENSIONS):
                files.append(os.path.join(directory, name))
    return sorted(files)


@dataclass
class DatasetSource:
    """A dataset as an indexable or iterable stream of raw items.

    ``kind`` is ``"folder"``, ``"tensor"``, ``"map"`` (``len`` + ``[]``) or ``"iterable"``.
    ``names`` are file paths for folders (else ``None``: items are named by their index).
    """

    kind: str
    data: object
    length: int | None
    names: list[str] | None = None

    def name(self, index: int) -> str | int:
        """The file path of item ``index``, or the index itself."""
        return self.names[index] if self.names is not None else index

    @property
    def one_shot(self) -> bool:
        """True for an iterator that can be read only once (no cache, no resume)."""
        return self.kind == "iterable" and iter(self.data) is self.data

    def items(self, start: int = 0) -> Iterator[tuple[int, object]]:
        """Yield ``(index, raw item)`` from ``start`` on (an iterable is read and skipped).

        A map-style dataset yields ``(index, fetch)``: calling ``fetch()`` reads the item, so
        that a failing ``__getitem__`` fails for that item alone (see :func:`iter_batches`).
        """
        if self.kind == "folder":
            for index in range(start, len(self.names)):
                yield index, self.names[index]
        elif self.kind == "map":
            for index in range(start, self.length):
                yield index, functools.partial(self.data.__getitem__, index)
        elif self.kind == "tensor":
            for index in range(start, self.length):
                yield index, self.data[index]
        else:
            for index, item in enumerate(self.data):
                if index >= start:
                    yield index, item


def _tensor_source(data: np.ndarray | torch.Tensor) -> DatasetSource:
    tensor = torch.from_numpy(np.ascontiguousarray(data)) if isinstance(data, np.ndarray) else data
    if tensor.dim() == 3:  # (N, H, W) grayscale
        tensor = tensor[:, None]
    if tensor.dim() != 4:
        raise ValueError(
            f"A tensor dataset must be (N, C, H, W) floats in [0, 1] or (N, H, W, C) uint8, got "
            f"shape {tuple(tensor.shape)}."
        )
    channels_last = tensor.shape[-1] in (1, 3, 4) and tensor.shape[1] not in (1, 3, 4)
    if tensor.dtype == torch.uint8 and channels_last:
        tensor = tensor.permute(0, 3, 1, 2)  # (N, C, H, W), a view
    elif tensor.dtype != torch.uint8:
        if not tensor.is_floating_point():
            raise ValueError(f"A tensor dataset must be float or uint8, got {tensor.dtype}.")
        check_float_range(tensor)
    return DatasetSource("tensor", tensor, len(tensor))


def open_dataset(dataset: object) -> DatasetSource:
    """Wrap ``dataset`` as a :class:`DatasetSource`.

    Accepts an image folder path (searched recursively for ``IMAGE_EXTENSIONS``), a tensor or
    numpy array of images, a torchvision-style dataset (``len`` and ``[]``, items ``(image,
    label)`` or images) or any iterable of images (PIL, arrays, tensors or file paths).
    """
    if isinstance(dataset, (str, os.PathLike)):
        root = Path(dataset).expanduser()
        if not root.is_dir():
            raise FileNotFoundError(
                f"Dataset folder {str(root)!r} does not exist or is not a directory; give a "
                "folder of images, a tensor, a torchvision dataset or an iterable of images."
            )
        files = list_image_files(root)
        if not files:
            raise ValueError(
                f"No image files under {str(root)!r} (searched recursively for "
                f"{', '.join(IMAGE_EXTENSIONS)})."
            )
        return DatasetSource("folder", str(root), len(files), names=files)
    if isinstance(dataset, (np.ndarray, torch.Tensor)):
        return _tensor_source(dataset)
    if hasattr(dataset, "__getitem__") and hasattr(dataset, "__len__"):
        return DatasetSource("map", dataset, len(dataset))
    if hasattr(dataset, "__iter__"):
        length = len(dataset) if hasattr(dataset, "__len__") else None
        return DatasetSource("iterable", dataset, length)
    raise TypeError(
        f"Cannot read images from a {type(dataset).__name__}; give a folder path, a tensor "
        "(N, C, H, W), a torchvision-style dataset or an iterable of images."
    )


# ---------------------------------------------------------------------------- batches


@dataclass
class Batch:
    """Images ready for the model, with the dataset positions they came from."""

    indices: list[int]  # dataset index of each row
    images: torch.Tensor | None  # (B, C, H, W) uint8 or float in [0, 1]; None if all skipped
    skipped: list[tuple[str | int, str]]  # (file name or index, reason)
    next_index: int  # the first dataset index not consumed yet


def _collate(images: list[torch.Tensor]) -> torch.Tensor | None:
    if not images:
        return None
    if any(image.dtype != torch.uint8 for image in images):  # mixed: all float in [0, 1]
        images = [as_float(image) for image in images]
    return torch.stack(images)


def _read(source: DatasetSource, item: object, size: tuple[int, int], channels: int):
    """One item as ``(C, H, W)``; any failure of a map dataset's ``__getitem__`` is that item's.

    Raises :class:`ImageLoadError` (the item is skipped), with the original error as reason.
    """
    if source.kind == "map":
        try:
            item = item()
        except Exception as error:  # noqa: BLE001 - a corrupt file, a bad transform: skip it
            raise ImageLoadError(f"dataset[i] raised {type(error).__name__}: {error}") from error
    return load_image(item, size, channels)


def iter_batches(
    source: DatasetSource, start: int, batch_size: int, size: tuple[int, int], channels: int
) -> Iterator[Batch]:
    """Yield batches of loaded images from dataset index ``start`` on; bad items are skipped.

    A tensor dataset is sliced (resized a whole batch at a time); other sources are read item by
    item with :func:`load_image`. An item that cannot be read (an exception in a map dataset's
    ``__getitem__`` included) is skipped and listed with its reason in ``Batch.skipped``.
    """
    if source.kind == "tensor":
        for first in range(start, source.length, batch_size):
            last = min(first + batch_size, source.length)
            images = resize_batch(source.data[first:last], size, channels)
            yield Batch(list(range(first, last)), images, [], last)
        return
    indices, images, skipped = [], [], []
    next_index = start
    for index, item in source.items(start):
        next_index = index + 1
        try:
            images.append(_read(source, item, size, channels))
            indices.append(index)
        except ImageLoadError as error:
            skipped.append((source.name(index), str(error)))
        if len(images) == batch_size:
            yield Batch(indices, _collate(images), skipped, next_index)
            indices, images, skipped = [], [], []
    if images or skipped:
        yield Batch(indices, _collate(images), skipped, next_index)


def prefetch(batches: Iterator[Batch], depth: int = 2) -> Iterator[Batch]:
    """Load the next batches in a background thread while the model runs on this one.

    An exception in the dataset (``KeyboardInterrupt`` included) is re-raised here, in order.
    """
    queue: Queue = Queue(maxsize=depth)
    stop = threading.Event()
    done = object()

    def put(item: object) -> None:
        while not stop.is_set():
            try:
                queue.put(item, timeout=0.1)
                return
            except Full:
                continue

    def work() -> None:
        try:
            for batch in batches:
                put(batch)
                if stop.is_set():
                    return
            put(done)
        except BaseException as error:  # noqa: BLE001 - handed to the consumer thread
            put(error)

    thread = threading.Thread(target=work, name="lucid_widgets-prefetch", daemon=True)
    thread.start()
    try:
        while True:
            try:
                item = queue.get(timeout=0.1)
            except Empty:
                continue
            if item is done:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
