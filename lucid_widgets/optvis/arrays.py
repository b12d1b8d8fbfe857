"""Images as arrays: tensors -> numpy, floats -> uint8, a batch -> one tiled picture.

The one home of these conversions for the whole package (display, widget, dataset examples,
sample views). Plain numpy and torch, no Pillow.

Conventions: tensors are channels-first ``(B, C, H, W)`` (or one ``(C, H, W)`` image), numpy
arrays channels-last ``(..., H, W, C)``; float values are in ``[0, 1]`` and are clipped there;
float -> uint8 rounds half up (``floor(x * 255 + 0.5)``).
"""

from __future__ import annotations

import math

import numpy as np
import torch

__all__ = ["checkerboard", "to_numpy", "to_uint8", "tile"]

ArrayLike = np.ndarray | torch.Tensor


def to_numpy(image: torch.Tensor) -> np.ndarray:
    """``(B, C, H, W)`` tensor in [0, 1] -> ``(B, H, W, C)`` float32 numpy array (clipped)."""
    return image.detach().float().clamp(0, 1).permute(0, 2, 3, 1).cpu().numpy()


def checkerboard(height: int, width: int, light: float = 0.95, dark: float = 0.8) -> np.ndarray:
    """A ``(height, width, 1)`` float32 checkerboard of 8-pixel squares (behind transparency)."""
    yy, xx = np.mgrid[:height, :width]
    board = np.where(((yy // 8) + (xx // 8)) % 2 == 0, light, dark).astype(np.float32)
    return board[..., None]


def _rgb(array: np.ndarray) -> np.ndarray:
    """Channels-last floats in [0, 1] -> 3 channels: grey repeated, alpha over a checkerboard,
    extra channels (N-channel models) dropped."""
    channels = array.shape[-1]
    if channels in (2, 4):  # grey + alpha, RGBA
        colour, alpha = array[..., :-1], array[..., -1:]
        array = colour * alpha + checkerboard(*array.shape[-3:-1]) * (1 - alpha)
        channels -= 1
    if channels == 1:
        return np.repeat(array, 3, axis=-1)
    return array[..., :3]


def to_uint8(images: ArrayLike, *, rgb: bool = False) -> np.ndarray:
    """Images -> channels-last uint8 numpy.

    Parameters
    ----------
    images
        A tensor ``(B, C, H, W)`` or ``(C, H, W)`` (converted on its device, so only a quarter of
        the bytes leave an accelerator), or a numpy array ``(..., H, W, C)``. Floats must be in
        ``[0, 1]`` (clipped); uint8 passes through unchanged.
    rgb
        Return exactly 3 channels: grey is repeated, grey+alpha and RGBA are composited over a
        light checkerboard, channels past the third are dropped.

    Returns
    -------
    numpy.ndarray
        ``(B, H, W, C)`` (``(H, W, C)`` for one ``(C, H, W)`` tensor) uint8, ``C == 3`` if ``rgb``.
    """
    if isinstance(images, torch.Tensor):
        tensor = images.detach()
        tensor = tensor.movedim(-3, -1)  # (..., H, W, C)
        if tensor.dtype != torch.uint8 and not (rgb and tensor.shape[-1] in (2, 4)):
            with torch.no_grad():
                tensor = (tensor.float().clamp(0, 1) * 255.0 + 0.5).to(torch.uint8)
        images = tensor.contiguous().cpu().numpy()
    array = np.asarray(images)
    if rgb and (array.ndim < 3 or array.shape[-1] != 3):
        if array.ndim < 3:
            raise ValueError(f"rgb images need a channel axis, got shape {array.shape}")
        floats = array.astype(np.float32) / 255.0 if array.dtype == np.uint8 else array
        array = _rgb(np.clip(floats, 0.0, 1.0))
    if array.dtype == np.uint8:
        return array
    return (np.clip(array, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def tile(
    images: np.ndarray, columns: int | None = None, gap: int = 2, fill: int = 128
) -> np.ndarray:
    """Tile a batch ``(B, H, W, C)`` (uint8, or floats in [0, 1]) into one ``(H', W', C)`` uint8.

    Parameters
    ----------
    images
        The batch; row-major order, ``columns`` per row (default ``ceil(sqrt(B))``, near-square).
    gap
        Pixels between tiles.
    fill
        Value of the gaps (and of the empty cells of the last row). With an alpha channel
        (C = 2 or 4) they are transparent instead.

    Returns
    -------
    numpy.ndarray
        ``(rows * (H + gap) - gap, columns * (W + gap) - gap, C)`` uint8 (one image: itself).
    """
    batch = to_uint8(images)
    if batch.ndim != 4:
        raise ValueError(f"tile expects images shaped (B, H, W, C), got {batch.shape}")
    count, height, width, channels = batch.shape
    if count == 0:
        raise ValueError("tile needs at least one image, got an empty batch")
    columns = min(count, max(1, columns or math.ceil(math.sqrt(count))))
    rows = math.ceil(count / columns)
    shape = (rows * (height + gap) - gap, columns * (width + gap) - gap, channels)
    canvas = np.full(shape, 0 if channels in (2, 4) else fill, dtype=np.uint8)
    for index, picture in enumerate(batch):
        row, column = divmod(index, columns)
        top, left = row * (height + gap), column * (width + gap)
        canvas[top : top + height, left : left + width] = picture
    return canvas
