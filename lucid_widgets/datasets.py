"""Reading images for dataset examples: folders, tensors, torchvision-style datasets, iterables.

Every source is turned into a stream of ``(index, raw item)`` pairs; :func:`load_image` converts a
raw item into a ``(C, H, W)`` tensor at the model's input size (resized so the shorter side fits,
then centre-cropped) with the model's channel count. Unreadable items raise
:class:`ImageLoadError`, which the caller records and skips.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from queue import Empty, Full, Queue

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

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
_LUMA = (0.299, 0.587, 0.114)  # ITU-R 601, what PIL's convert("L") uses


class ImageLoadError(ValueError):
    """An item that is not a readable image (corrupt file, wrong shape, unknown type)."""


# ---------------------------------------------------------------------------- single images


def _pil_to_mode(image: Image.Image, channels: int) -> Image.Image:
    """Convert to ``RGB`` (3 channels) or ``L`` (1); transparency is composited over white."""
    target = "RGB" if channels == 3 else "L"
    if image.mode in ("I", "I;16", "I;16B", "I;16L", "F"):  # 16-bit / float grayscale
        array = np.asarray(image, dtype=np.float32)
        scale = 65535.0 if array.max(initial=0) > 255 else 255.0
        image = Image.fromarray(np.clip(array / scale * 255, 0, 255).astype(np.uint8), "L")
    if image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info:
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        image = Image.alpha_composite(background, rgba)
    return image if image.mode == target else image.convert(target)


def _cover_box(height: int, width: int, size: tuple[int, int]) -> tuple[float, ...]:
    """The centred region of a ``height x width`` image with the aspect ratio of ``size``."""
    target_h, target_w = size
    scale = max(target_h / height, target_w / width)
    crop_h, crop_w = target_h / scale, target_w / scale
    top, left = (height - crop_h) / 2, (width - crop_w) / 2
    return (left, top, left + crop_w, top + crop_h)


def _load_pil(image: Image.Image, size: tuple[int, int], channels: int) -> torch.Tensor:
    if channels not in (1, 3):
        raise ImageLoadError(f"Image files can be read for 1 or 3 channel models, not {channels}.")
    if image.format == "JPEG":
        image.draft("RGB" if channels == 3 else "L", (size[1], size[0]))  # faster JPEG decode
    image = _pil_to_mode(image, channels)
    box = _cover_box(image.height, image.width, size)
    resized = image.resize((size[1], size[0]), Image.BILINEAR, box=box)
    array = np.asarray(resized, dtype=np.uint8)  # (H, W) or (H, W, 3)
    if array.ndim == 2:
        array = array[:, :, None]
    return torch.from_numpy(array.copy()).permute(2, 0, 1)  # (C, H, W) uint8


def _convert_channels(image: torch.Tensor, channels: int) -> torch.Tensor:
    """Map a ``(B, C, H, W)`` float image in ``[0, 1]`` to ``channels`` channels."""
    have = image.shape[1]
    if have == 4 and channels != 4:  # RGBA: composite over white
        alpha = image[:, 3:4]
        image = image[:, :3] * alpha + (1 - alpha)
        have = 3
    if have == channels:
        return image
    if have == 1:
        return image.expand(-1, channels, -1, -1)
    if have == 3 and channels == 1:
        luma = torch.tensor(_LUMA, dtype=image.dtype, device=image.device).view(1, 3, 1, 1)
        return (image * luma).sum(1, keepdim=True)
    raise ImageLoadError(f"Cannot convert a {have}-channel image to {channels} channels.")


def resize_batch(images: torch.Tensor, size: tuple[int, int], channels: int) -> torch.Tensor:
    """Resize + centre-crop ``(B, C, H, W)`` images (uint8 or float in [0, 1]) to ``size``.

    The dtype is kept: uint8 in, uint8 out.
    """
    is_uint8 = images.dtype == torch.uint8
    if images.shape[-2:] == torch.Size(size) and images.shape[1] == channels:
        return images
    batch = images.float().div(255) if is_uint8 else images.float()
    batch = _convert_channels(batch, channels)
    height, width = batch.shape[-2:]
    if (height, width) != tuple(size):
        scale = max(size[0] / height, size[1] / width)
        new_h = max(size[0], round(height * scale))
        new_w = max(size[1], round(width * scale))
        batch = F.interpolate(batch, size=(new_h, new_w), mode="bilinear", antialias=True)
        top, left = (new_h - size[0]) // 2, (new_w - size[1]) // 2
        batch = batch[:, :, top : top + size[0], left : left + size[1]].clamp(0, 1)
    if is_uint8:
        return batch.mul(255).round_().to(torch.uint8)
    return batch


def _array_to_chw(array: np.ndarray | torch.Tensor, channels_first: bool) -> torch.Tensor:
    """A 2-D or 3-D array as a ``(C, H, W)`` tensor; numpy is HWC, torch is CHW by default."""
    tensor = torch.as_tensor(np.asarray(array)) if isinstance(array, np.ndarray) else array
    if tensor.dtype == torch.bool:
        tensor = tensor.to(torch.uint8) * 255
    if tensor.dim() == 2:
        return tensor[None]
    if tensor.dim() != 3:
        raise ImageLoadError(f"An image array must be 2-D or 3-D, got shape {tuple(tensor.shape)}.")
    first, last = tensor.shape[0] in (1, 3, 4), tensor.shape[-1] in (1, 3, 4)
    if (channels_first and first) or not last:
        if not first:
            shape = tuple(tensor.shape)
            raise ImageLoadError(f"No channel axis of size 1, 3 or 4 in shape {shape}.")
        return tensor
    return tensor.permute(2, 0, 1)


def _check_range(tensor: torch.Tensor) -> torch.Tensor:
    if tensor.dtype == torch.uint8:
        return tensor
    tensor = tensor.float()
    low, high = float(tensor.min()), float(tensor.max())
    if low < -1e-3 or high > 1 + 1e-3:
        raise ValueError(
            f"Float images must be in [0, 1], got values in [{low:.3g}, {high:.3g}]. Pass images "
            "before normalization (remove Normalize from a torchvision transform), or uint8."
        )
    return tensor.clamp(0, 1)


def load_image(item: object, size: tuple[int, int], channels: int = 3) -> torch.Tensor:
    """Convert one item into a ``(channels, *size)`` image tensor.

    Parameters
    ----------
    item
        A file path, a PIL image, a numpy array (``(H, W)`` or ``(H, W, C)``, uint8 or float in
        ``[0, 1]``), a tensor (``(C, H, W)``, uint8 or float in ``[0, 1]``), or a tuple / list /
        dict whose first element (or ``"image"`` / ``"img"`` entry) is one of those.
    size
        ``(height, width)``: the image is resized (shorter side first) and centre-cropped.
    channels
        Channel count of the result: grayscale is repeated, RGBA composited over white.

    Returns
    -------
    torch.Tensor
        ``(channels, height, width)``, uint8 for files / PIL / uint8 arrays, else float in [0, 1].

    Raises
    ------
    ImageLoadError
        When the item cannot be read as an image.
    """
    item = unwrap(item)
    if isinstance(item, (str, os.PathLike)):
        try:
            with Image.open(item) as image:
                return _load_pil(image, size, channels)
        except ImageLoadError:
            raise
        except Exception as error:  # PIL raises many types for a bad file
            raise ImageLoadError(f"{type(error).__name__}: {error}") from error
    if isinstance(item, Image.Image):
        return _load_pil(item, size, channels)
    if isinstance(item, (np.ndarray, torch.Tensor)):
        chw = _check_range(_array_to_chw(item, channels_first=isinstance(item, torch.Tensor)))
        return resize_batch(chw[None], size, channels)[0]
    raise ImageLoadError(
        f"Cannot read a {type(item).__name__} as an image; use a path, PIL image, numpy array or "
        "tensor (or an (image, label) pair)."
    )


def unwrap(item: object) -> object:
    """The image in a dataset item: ``(image, label)`` -> image, ``{"image": ...}`` -> image."""
    if isinstance(item, (tuple, list)) and item:
        return item[0]
    if isinstance(item, dict):
        for key in ("image", "img", "pixel_values"):
            if key in item:
                return item[key]
    return item


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
        """Yield ``(index, raw item)`` from ``start`` on (an iterable is read and skipped)."""
        if self.kind == "folder":
            for index in range(start, len(self.names)):
                yield index, self.names[index]
        elif self.kind in ("tensor", "map"):
            for index in range(start, self.length):
                yield index, self.data[index]
        else:
            for index, item in enumerate(self.data):
                if index >= start:
                    yield index, item


def _tensor_source(data: np.ndarray | torch.Tensor) -> DatasetSource:
    tensor = torch.from_numpy(np.asarray(data)) if isinstance(data, np.ndarray) else data
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
        _check_range(tensor)
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
    if any(image.dtype != torch.uint8 for image in images):
        images = [im.float().div(255) if im.dtype == torch.uint8 else im for im in images]
    return torch.stack(images)


def iter_batches(
    source: DatasetSource, start: int, batch_size: int, size: tuple[int, int], channels: int
) -> Iterator[Batch]:
    """Yield batches of loaded images from dataset index ``start`` on; bad items are skipped.

    A tensor dataset is sliced (resized a whole batch at a time); other sources are read item by
    item with :func:`load_image`.
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
            images.append(load_image(item, size, channels))
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
