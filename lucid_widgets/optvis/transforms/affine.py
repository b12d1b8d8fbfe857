"""Affine transforms (jitter, random scale, random rotate) and the bilinear warp they share.

Each affine transform draws a 3x3 matrix: the inverse map from centred pixel coordinates
``(x, y, 1)`` of an output pixel to the input coordinates it samples. Consecutive ones multiply
into a single matrix, so :func:`lucid_widgets.optvis.transforms.compose` runs them as one warp.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from lucid_widgets.optvis.param.spatial import to_device_async
from lucid_widgets.optvis.transforms.base import (
    Generator,
    Transform,
    choice,
    options_of,
    pixel_count,
)

__all__ = ["AffineTransform", "jitter", "random_rotate", "random_scale", "warp"]


class AffineTransform(Transform):
    """A random warp. `matrix(generator)` returns a `(3, 3)` float64 inverse map: centred pixel
    coordinates `(x, y, 1)` of an output pixel -> coordinates of the input it samples."""

    def matrix(self, generator: Generator) -> np.ndarray:
        raise NotImplementedError

    def __call__(self, image: torch.Tensor, generator: Generator = None) -> torch.Tensor:
        return warp(image, self.matrix(generator))


class _Jitter(AffineTransform):
    def __init__(self, d: int) -> None:
        self.d = pixel_count(d, "jitter(d): d")
        self.label = f"jitter({d})"

    def matrix(self, generator: Generator) -> np.ndarray:
        shift_x, shift_y = torch.randint(
            -self.d, self.d + 1, (2,), generator=generator, device="cpu"
        ).tolist()
        # Content moves by (+shift_x, +shift_y): output pixel p samples input p - shift.
        return np.array([[1.0, 0.0, -shift_x], [0.0, 1.0, -shift_y], [0.0, 0.0, 1.0]])


class _RandomScale(AffineTransform):
    def __init__(self, scales: Sequence[float]) -> None:
        self.scales = options_of(scales, "random_scale(scales)")
        if min(self.scales) <= 0:
            raise ValueError(f"random_scale: scales must be positive, got {self.scales}")
        self.label = f"random_scale({list(self.scales)})"

    def matrix(self, generator: Generator) -> np.ndarray:
        scale = choice(self.scales, generator)
        return np.diag([1.0 / scale, 1.0 / scale, 1.0])  # zoom by `scale` about the centre


class _RandomRotate(AffineTransform):
    def __init__(self, angles: Sequence[float], units: str = "degrees") -> None:
        self.angles = options_of(angles, "random_rotate(angles)")
        units = units.lower()
        if units not in ("degrees", "radians", "rads", "rad", "deg"):
            raise ValueError(f"random_rotate: units must be 'degrees' or 'radians', got {units!r}")
        self.to_radians = math.pi / 180 if units.startswith("deg") else 1.0
        self.label = f"random_rotate({list(self.angles)}, units={units!r})"

    def matrix(self, generator: Generator) -> np.ndarray:
        angle = choice(self.angles, generator) * self.to_radians
        cos, sin = math.cos(angle), math.sin(angle)
        # Counter-clockwise on screen (y points down): output p samples input R(-angle) p.
        return np.array([[cos, -sin, 0.0], [sin, cos, 0.0], [0.0, 0.0, 1.0]])


def jitter(d: int) -> AffineTransform:
    """Translate by random integers in `[-d, d]` (x and y drawn separately), keeping the size.

    Uncovered pixels are 0, or the pad value when a constant :func:`pad` precedes it in
    :func:`compose`. Lucid's jitter crops instead (the image shrinks by `d`).
    """
    return _Jitter(d)


def random_scale(scales: Sequence[float]) -> AffineTransform:
    """Zoom about the centre by a factor drawn from `scales`, keeping the size (Lucent resizes)."""
    return _RandomScale(scales)


def random_rotate(angles: Sequence[float], units: str = "degrees") -> AffineTransform:
    """Rotate counter-clockwise about the centre by an angle drawn from `angles`."""
    return _RandomRotate(angles, units)


_IDENTITY = np.eye(3)
_BASE_GRIDS: dict[tuple, torch.Tensor] = {}


def _base_grid(height: int, width: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """Normalized output pixel centres `(x, y, 1)` as `(H * W, 3)`, as `affine_grid` makes them
    (align_corners=False); cached so each step costs one small matmul."""
    key = (height, width, device, dtype)
    if key not in _BASE_GRIDS:
        if len(_BASE_GRIDS) > 32:
            _BASE_GRIDS.clear()
        ys = (torch.arange(height, dtype=torch.float64, device="cpu") * 2 + 1) / height - 1
        xs = (torch.arange(width, dtype=torch.float64, device="cpu") * 2 + 1) / width - 1
        y, x = torch.meshgrid(ys, xs, indexing="ij")  # (H, W) each
        base = torch.stack([x, y, torch.ones_like(x)], dim=-1).view(-1, 3)
        _BASE_GRIDS[key] = base.to(device=device, dtype=dtype)
    return _BASE_GRIDS[key]


def warp(
    image: torch.Tensor,
    matrix: np.ndarray,
    size: tuple[int, int] | None = None,
    fill: float = 0.0,
) -> torch.Tensor:
    """Resample `image` `(B, C, H, W)` through an inverse affine map (bilinear).

    Parameters
    ----------
    matrix : np.ndarray
        `(3, 3)`: centred pixel coordinates of an output pixel -> input coordinates.
    size : (int, int), optional
        Output `(height, width)`, centred on the input (default: the input size).
    fill : float
        Value of samples outside the input.
    """
    batch, _, height, width = image.shape
    out_height, out_width = size or (height, width)
    if (out_height, out_width) == (height, width) and np.array_equal(matrix, _IDENTITY):
        return image
    to_input = np.diag([2.0 / width, 2.0 / height, 1.0])  # pixels -> normalized (input)
    from_output = np.diag([out_width / 2.0, out_height / 2.0, 1.0])  # normalized -> pixels
    theta = (to_input @ matrix @ from_output)[:2].T  # (3, 2)
    theta = to_device_async(torch.as_tensor(theta, dtype=image.dtype, device="cpu"), image.device)
    base = _base_grid(out_height, out_width, image.device, image.dtype)  # (H_out * W_out, 3)
    grid = (base @ theta).view(1, out_height, out_width, 2).expand(batch, -1, -1, -1)
    shifted = image - fill if fill else image  # zeros padding then + fill: outside -> fill
    out = F.grid_sample(shifted, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    return out + fill if fill else out
