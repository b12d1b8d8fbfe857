"""Reading one image for dataset examples and sample views: any item -> ``(C, H, W)`` tensor.

:func:`load_image` converts a raw dataset item (path, PIL image, array, tensor, or an ``(image,
label)`` pair) into a ``(C, H, W)`` tensor at the model's input size (resized so the shorter side
fits, then centre-cropped) with the model's channel count. Unreadable items raise
:class:`ImageLoadError`, which the caller records and skips.
"""

from __future__ import annotations

import io
import os
import warnings

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

__all__ = [
    "ImageLoadError",
    "as_float",
    "MAX_IMAGE_BYTES",
    "MAX_IMAGE_PIXELS",
    "check_float_range",
    "decode_image_bytes",
    "load_image",
    "resize_batch",
    "unwrap",
]

_LUMA = (0.299, 0.587, 0.114)  # ITU-R 601, what PIL's convert("L") uses
MAX_IMAGE_BYTES = 64 * 2**20  # an encoded image (upload) larger than this is not decoded
MAX_IMAGE_PIXELS = 50_000_000  # width x height: larger images are not decoded (a bomb)


class ImageLoadError(ValueError):
    """An item that is not a readable image (corrupt file, wrong shape, unknown type)."""


def as_float(image: torch.Tensor) -> torch.Tensor:
    """A uint8 image (0..255) or float image in ``[0, 1]`` as float32 in ``[0, 1]``, same shape."""
    return image.float().div(255) if image.dtype == torch.uint8 else image.float()


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
    batch = as_float(images)
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
    if isinstance(array, np.ndarray):
        array = torch.as_tensor(np.ascontiguousarray(array))  # flipped views have negative strides
    tensor = array
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


def check_float_range(tensor: torch.Tensor) -> torch.Tensor:
    """A uint8 tensor as is; a float one checked to be in ``[0, 1]`` and clamped (float32)."""
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
        chw = check_float_range(_array_to_chw(item, channels_first=isinstance(item, torch.Tensor)))
        return resize_batch(chw[None], size, channels)[0]
    raise ImageLoadError(
        f"Cannot read a {type(item).__name__} as an image; use a path, PIL image, numpy array or "
        "tensor (or an (image, label) pair)."
    )


def decode_image_bytes(
    data: bytes | bytearray | memoryview,
    channels: int = 3,
    *,
    max_bytes: int = MAX_IMAGE_BYTES,
    max_pixels: int = MAX_IMAGE_PIXELS,
) -> Image.Image:
    """Decode an encoded image file (an upload) into a PIL image of ``channels`` channels.

    The same conversion as the file-path route (:func:`load_image`): 16-bit and float
    grayscale are scaled to 8 bits (not clipped), transparency is composited over white.

    Limits, checked before any pixel is decoded: more than ``max_bytes`` bytes (default 64 MiB)
    are rejected without being read; an image whose header declares more than ``max_pixels``
    pixels (default 50 million, e.g. 8660 x 5773; decompression bombs) is rejected from its
    header alone.

    Raises
    ------
    ImageLoadError
        Empty or too large data, too many pixels, or bytes that are not a readable image.
    """
    size = memoryview(data).nbytes
    if size == 0:
        raise ImageLoadError("the image file is empty")
    if size > max_bytes:
        raise ImageLoadError(
            f"the image file is {size / 2**20:.1f} MiB, over the {max_bytes / 2**20:.0f} MiB "
            "limit; use a smaller file (a photo of a few megapixels is plenty)"
        )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            image = Image.open(io.BytesIO(data))  # reads the header only
        except Image.DecompressionBombError as error:
            raise ImageLoadError(f"the image has too many pixels ({error})") from None
        except (OSError, ValueError) as error:  # UnidentifiedImageError is an OSError
            raise ImageLoadError(
                f"could not read the file ({size} bytes) as an image; use a PNG, JPEG, WebP, "
                "GIF or BMP file"
            ) from error
        with image:
            width, height = image.size
            if width * height > max_pixels:
                raise ImageLoadError(
                    f"the image is {width} x {height} pixels, over the limit of {max_pixels:,} "
                    "pixels; resize it first"
                )
            if channels not in (1, 3):
                raise ImageLoadError(f"images can be decoded to 1 or 3 channels, not {channels}")
            try:
                image.load()
                return _pil_to_mode(image, channels)
            except (OSError, ValueError) as error:  # truncated or corrupt pixel data
                raise ImageLoadError(f"the image file is damaged: {error}") from error


def unwrap(item: object) -> object:
    """The image in a dataset item: ``(image, label)`` -> image, ``{"image": ...}`` -> image."""
    if isinstance(item, (tuple, list)) and item:
        return item[0]
    if isinstance(item, dict):
        for key in ("image", "img", "pixel_values"):
            if key in item:
                return item[key]
    return item
