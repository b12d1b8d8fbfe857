"""Turning rendered images into pictures: a grid array, PNG files, inline notebook output.

No external viewer is ever opened; ``show`` imports IPython only when called.
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

__all__ = ["grid", "png_bytes", "save", "show", "to_uint8"]

ImagesLike = np.ndarray | torch.Tensor | Sequence[np.ndarray]


def _as_batch(images: ImagesLike) -> np.ndarray:
    """Any of render_vis's outputs -> one ``(N, H, W, C)`` float array in [0, 1]."""
    if isinstance(images, torch.Tensor):  # (B, C, H, W) or (C, H, W)
        tensor = images.detach().float().cpu()
        tensor = tensor[None] if tensor.dim() == 3 else tensor
        images = tensor.permute(0, 2, 3, 1).numpy()
    if isinstance(images, (list, tuple)):
        if not images:
            raise ValueError("No images to show: the list is empty.")
        images = np.concatenate([_as_batch(item) for item in images])
    array = np.asarray(images, dtype=np.float32)
    if array.ndim == 2:
        array = array[None, :, :, None]
    elif array.ndim == 3:
        array = array[None] if array.shape[-1] in (1, 3, 4) else array[..., None]
    if array.ndim != 4:
        raise ValueError(f"Expected images shaped (B, H, W, C), got {array.shape}.")
    if array.max(initial=0) > 1.0 + 1e-6:  # uint8-like values
        array = array / 255.0
    return array


def to_uint8(images: ImagesLike) -> np.ndarray:
    """``(N, H, W, C)`` uint8 RGB; alpha is composited over a light checkerboard."""
    array = _as_batch(images).clip(0, 1)
    if array.shape[-1] == 4:
        rgb, alpha = array[..., :3], array[..., 3:]
        height, width = array.shape[1:3]
        yy, xx = np.mgrid[:height, :width]
        checker = np.where(((yy // 8) + (xx // 8)) % 2 == 0, 0.95, 0.8)[None, :, :, None]
        array = rgb * alpha + checker * (1 - alpha)
    elif array.shape[-1] == 1:
        array = np.repeat(array, 3, axis=-1)
    elif array.shape[-1] != 3:
        array = array[..., :3]  # N-channel: show the first three
    return (array * 255 + 0.5).astype(np.uint8)


def grid(images: ImagesLike, columns: int | None = None, padding: int = 2) -> np.ndarray:
    """Tile images into one ``(H, W, 3)`` uint8 array, ``columns`` per row."""
    batch = to_uint8(images)
    count, height, width, _ = batch.shape
    columns = columns or min(count, max(1, math.ceil(math.sqrt(count))))
    rows = math.ceil(count / columns)
    canvas = np.full(
        (rows * (height + padding) - padding, columns * (width + padding) - padding, 3),
        255,
        dtype=np.uint8,
    )
    for index, picture in enumerate(batch):
        row, column = divmod(index, columns)
        top, left = row * (height + padding), column * (width + padding)
        canvas[top : top + height, left : left + width] = picture
    return canvas


def save(images: ImagesLike, path: str | Path, columns: int | None = None) -> Path:
    """Save images as one PNG (a grid when there are several); returns the path."""
    from PIL import Image

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(grid(images, columns)).save(path)
    return path


def png_bytes(images: ImagesLike, columns: int | None = None, min_side: int = 0) -> bytes:
    """The grid of ``images`` encoded as PNG bytes.

    Images smaller than ``min_side`` pixels are enlarged by a whole factor (nearest neighbour),
    so that a 32-pixel render stays visible in a notebook.
    """
    from PIL import Image

    batch = _as_batch(images)
    factor = max(1, math.ceil(min_side / max(1, min(batch.shape[1:3]))))
    picture = Image.fromarray(grid(batch, columns))
    if factor > 1:
        picture = picture.resize(
            (picture.width * factor, picture.height * factor), Image.Resampling.NEAREST
        )
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG")
    return buffer.getvalue()


def show(images: ImagesLike, columns: int | None = None) -> None:
    """Display images inline in a notebook (a PNG grid), or say where they went otherwise."""
    try:
        from IPython import get_ipython
        from IPython.display import Image, display
    except ImportError:
        get_ipython = None
    if get_ipython is None or get_ipython() is None:
        path = save(images, Path.cwd() / "lucid_widgets_show.png", columns)
        print(f"Not in a notebook: saved the images to {path}")
        return
    display(Image(data=png_bytes(images, columns, min_side=128)))
