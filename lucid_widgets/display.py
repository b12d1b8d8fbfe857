"""Turning rendered images into pictures: a grid array, PNG files, inline notebook output.

No external viewer is ever opened; ``show`` imports IPython only when called.
"""

from __future__ import annotations

import io
import math
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from lucid_widgets.optvis import arrays

__all__ = ["grid", "in_notebook", "png_bytes", "save", "show", "to_uint8", "unused_path"]

ImagesLike = np.ndarray | torch.Tensor | Sequence[np.ndarray]


def _as_batch(images: ImagesLike) -> np.ndarray:
    """Any of render_vis's outputs -> one ``(N, H, W, C)`` float array in [0, 1]."""
    if isinstance(images, torch.Tensor):  # (B, C, H, W) or (C, H, W)
        tensor = images[None] if images.dim() == 3 else images
        tensor = tensor.float() / 255.0 if tensor.dtype == torch.uint8 else tensor
        images = arrays.to_numpy(tensor)  # (B, H, W, C)
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
    """Any of render_vis's outputs -> ``(N, H, W, 3)`` uint8 RGB.

    Grey is repeated, alpha is composited over a light checkerboard, extra channels are dropped
    (see :func:`lucid_widgets.optvis.arrays.to_uint8`).
    """
    return arrays.to_uint8(_as_batch(images), rgb=True)


def grid(images: ImagesLike, columns: int | None = None, padding: int = 2) -> np.ndarray:
    """Tile images into one ``(H, W, 3)`` uint8 array, ``columns`` per row, on white."""
    return arrays.tile(to_uint8(images), columns, gap=padding, fill=255)


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


def in_notebook() -> bool:
    """Whether rich output can be displayed: an IPython kernel (Jupyter, VS Code, Colab) runs."""
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    shell = get_ipython()
    return shell is not None and getattr(shell, "kernel", None) is not None


def unused_path(directory: str | Path, stem: str, suffix: str = ".png") -> Path:
    """A new file ``stem.suffix`` in ``directory``, else ``stem-1.suffix``, ``stem-2.suffix``...

    The file is created empty (exclusively, so two callers never get the same name) and returned;
    an existing file is never overwritten.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    for number in range(100_000):
        path = directory / (f"{stem}{suffix}" if number == 0 else f"{stem}-{number}{suffix}")
        try:
            with open(path, "x"):
                return path
        except FileExistsError:
            continue
    raise FileExistsError(f"no free name {stem}-N{suffix} left in {directory}")


def show(images: ImagesLike, columns: int | None = None) -> Path | None:
    """Display images inline in a notebook (a PNG grid), or save them to a new file otherwise.

    Outside a notebook the grid goes to ``./lucid_widgets_show.png``, or, when that exists, to
    the first free ``./lucid_widgets_show-N.png`` (never overwritten; a temporary folder when the
    current one is not writable). The path is printed and returned.
    """
    if in_notebook():
        from IPython.display import Image, display

        display(Image(data=png_bytes(images, columns, min_side=128)))
        return None
    data = png_bytes(images, columns)
    try:
        path = unused_path(Path.cwd(), "lucid_widgets_show")
    except OSError:
        path = unused_path(tempfile.mkdtemp(prefix="lucid_widgets_"), "lucid_widgets_show")
    path.write_bytes(data)
    print(f"Not in a notebook: saved the images to {path}")
    return path
