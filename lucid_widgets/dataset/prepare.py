"""Loading real images as network-ready tensors: any format -> ``(1, C, H, W)`` in ``[0, 1]``."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

__all__ = [
    "CROP_FRACTION",
    "center_crop",
    "convert_channels",
    "prepare_image",
    "resize_shorter",
    "to_tensor",
]

CROP_FRACTION = 0.875  # ImageNet evaluation: resize the shorter side to 256, centre-crop 224
LUMA = (0.299, 0.587, 0.114)  # ITU-R 601, as PIL's convert("L")


def _from_pil(image: Any) -> np.ndarray:
    if image.mode not in ("L", "RGB", "RGBA", "LA"):
        image = image.convert("RGBA" if "A" in image.getbands() else "RGB")
    return np.asarray(image)


def _array_to_tensor(array: np.ndarray) -> torch.Tensor:
    if array.ndim == 2:
        array = array[:, :, None]  # (H, W, 1)
    if array.ndim != 3:
        raise ValueError(f"expected an image of shape (H, W) or (H, W, C), got {array.shape}")
    if array.dtype == np.uint8:
        tensor = torch.from_numpy(array.astype(np.float32)) / 255.0  # a copy: PIL's are read-only
    elif array.dtype == np.uint16:
        tensor = torch.from_numpy(array.astype(np.float32)) / 65535.0
    elif array.dtype == np.bool_ or np.issubdtype(array.dtype, np.floating):
        tensor = torch.from_numpy(array.astype(np.float32))
    else:
        raise TypeError(
            f"unsupported image dtype {array.dtype}: use uint8 (0..255), uint16 or float in [0, 1]"
        )
    return tensor.permute(2, 0, 1).unsqueeze(0)  # (1, C, H, W)


def to_tensor(image: Any) -> torch.Tensor:
    """Convert an image to a float tensor ``(1, C, H, W)`` in ``[0, 1]``, channels as given.

    Parameters
    ----------
    image
        A file path, a PIL image, a numpy array ``(H, W)`` / ``(H, W, C)`` (uint8 in 0..255,
        uint16, or float in ``[0, 1]``), or a torch tensor ``(C, H, W)`` / ``(1, C, H, W)`` in
        ``[0, 1]``.
    """
    if isinstance(image, (str, Path)):
        from PIL import Image

        with Image.open(image) as opened:
            return _array_to_tensor(_from_pil(opened))
    if isinstance(image, torch.Tensor):
        tensor = image.detach().float()
        if tensor.dim() == 3:
            tensor = tensor.unsqueeze(0)
        if tensor.dim() != 4 or tensor.shape[0] != 1:
            raise ValueError(
                f"expected a tensor of shape (C, H, W) or (1, C, H, W), got {tuple(image.shape)}"
            )
        return tensor
    if hasattr(image, "getbands"):  # PIL.Image.Image, without importing PIL eagerly
        return _array_to_tensor(_from_pil(image))
    if isinstance(image, np.ndarray):
        return _array_to_tensor(image)
    raise TypeError(
        f"cannot read an image from {type(image).__name__}: pass a path, a PIL image, "
        "a numpy array (H, W[, C]) or a tensor (C, H, W)"
    )


def convert_channels(image: torch.Tensor, channels: int) -> torch.Tensor:
    """Convert ``(B, C, H, W)`` to ``channels``: drop alpha, gray <-> RGB, or repeat one channel."""
    current = image.shape[1]
    if current in (2, 4) and channels != current:  # LA / RGBA: drop the alpha channel
        image, current = image[:, :-1], current - 1
    if current == channels:
        return image
    if current == 1:
        return image.expand(-1, channels, -1, -1).clone()
    if current == 3 and channels == 1:
        weights = image.new_tensor(LUMA).view(1, 3, 1, 1)
        return (image * weights).sum(dim=1, keepdim=True)
    raise ValueError(f"cannot convert an image with {current} channels to {channels} channels")


def resize_shorter(image: torch.Tensor, size: int) -> torch.Tensor:
    """Resize ``(B, C, H, W)`` so that its shorter side is ``size`` (bilinear, antialiased)."""
    height, width = image.shape[-2:]
    scale = size / min(height, width)
    new_size = (max(size, round(height * scale)), max(size, round(width * scale)))
    if new_size == (height, width):
        return image
    return F.interpolate(image, size=new_size, mode="bilinear", antialias=True, align_corners=False)


def center_crop(image: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Crop the centre ``(height, width)`` of ``(B, C, H, W)``."""
    height, width = image.shape[-2:]
    if height < size[0] or width < size[1]:
        raise ValueError(f"cannot crop {size} from an image of size {(height, width)}")
    top, left = (height - size[0]) // 2, (width - size[1]) // 2
    return image[..., top : top + size[0], left : left + size[1]]


def prepare_image(
    image: Any,
    preprocess: Any = None,
    size: int | tuple[int, int] | None = None,
    channels: int | None = None,
    crop_fraction: float = CROP_FRACTION,
) -> torch.Tensor:
    """Load ``image`` as a network-ready ``(1, C, H, W)`` tensor in ``[0, 1]``.

    ImageNet evaluation framing: the shorter side is resized to ``size / crop_fraction`` (256 for
    224), then the centre ``size`` is cropped. Normalization is *not* applied: that is
    ``preprocess(image)``'s job.

    Parameters
    ----------
    image
        Anything :func:`to_tensor` accepts (path, PIL image, numpy array, tensor).
    preprocess
        A ``Preprocess`` (e.g. ``model.lucid_preprocess``) giving ``input_size`` and ``channels``.
    size
        Output ``(height, width)`` (or one int for a square); overrides ``preprocess``.
        Default 224.
    channels
        Output channels (grayscale / RGBA converted); overrides ``preprocess``. Default 3.
    crop_fraction
        Fraction of the resized image kept by the centre crop; 1.0 resizes straight to ``size``
        (shorter side) before cropping.
    """
    if size is None:
        size = tuple(getattr(preprocess, "input_size", None) or (224, 224))
    if isinstance(size, int):
        size = (size, size)
    if channels is None:
        channels = int(getattr(preprocess, "channels", None) or 3)
    if not 0.0 < crop_fraction <= 1.0:
        raise ValueError(f"crop_fraction must be in (0, 1], got {crop_fraction}")
    tensor = convert_channels(to_tensor(image), channels)  # (1, C, H, W)
    tensor = resize_shorter(tensor, math.floor(max(size) / crop_fraction))
    return center_crop(tensor, size).clamp(0.0, 1.0).contiguous()
