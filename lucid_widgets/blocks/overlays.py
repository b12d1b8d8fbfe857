"""Pictures of the blocks over the photo: signed heat maps and neuron-group colour maps.

Plain numpy and PIL, for notebooks and the widget: every function returns ``(H, W, 3)`` uint8.
"""

from __future__ import annotations

import colorsys

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from lucid_widgets.blocks.common import load_images
from lucid_widgets.optvis.arrays import to_uint8
from lucid_widgets.optvis.preprocess import Preprocess

__all__ = ["as_seen", "group_colors", "groups_overlay", "heatmap_overlay"]

POSITIVE, NEGATIVE = np.array([1.0, 0.35, 0.0]), np.array([0.0, 0.45, 1.0])  # orange, blue


def as_seen(
    model: nn.Module,
    image: object,
    size: int | tuple[int, int] | None = None,
    preprocess: Preprocess | None = None,
) -> np.ndarray:
    """``(H, W, 3)`` uint8: the image resized and centre-cropped as the blocks feed it."""
    batch, _ = load_images(model, image, size, preprocess)
    return to_uint8(batch[:1].float(), rgb=True)[0]  # (H, W, 3)


def _upsample(maps: np.ndarray, size: tuple[int, int], smooth: bool = True) -> np.ndarray:
    """``(n, h, w)`` -> ``(n, H, W)``, bilinear (or nearest, for kernels)."""
    tensor = torch.as_tensor(np.asarray(maps, dtype=np.float32))[None]
    if not smooth:
        return F.interpolate(tensor, size=size, mode="nearest")[0].numpy()
    return F.interpolate(tensor, size=size, mode="bilinear", align_corners=False)[0].numpy()


def heatmap_overlay(
    photo: np.ndarray,
    values: np.ndarray,
    alpha: float = 0.7,
    smooth: bool = True,
    scale: float | None = None,
) -> np.ndarray:
    """A signed ``(h, w)`` map over an ``(H, W, 3)`` uint8 photo: positive orange, negative
    blue, opacity proportional to ``|value|``, full from ``scale`` on (default: the 98th
    percentile of ``|values|``, so that one outlier does not wash out the rest; give one scale
    to compare several maps). ``smooth=False`` keeps the cells square."""
    photo = np.asarray(photo, dtype=np.float32) / 255
    values = np.asarray(values, dtype=np.float32)
    if scale is None:
        scale = float(np.percentile(np.abs(values), 98)) or float(np.abs(values).max())
    scaled = _upsample(values[None], photo.shape[:2], smooth)[0]
    scaled = np.clip(scaled / (scale + 1e-12), -1, 1)  # (H, W) in [-1, 1]
    colour = np.where(scaled[..., None] >= 0, POSITIVE, NEGATIVE)
    weight = alpha * np.abs(scaled)[..., None]
    mixed = (1 - weight) * photo + weight * colour
    return (mixed.clip(0, 1) * 255).round().astype(np.uint8)


def group_colors(count: int) -> np.ndarray:
    """``(count, 3)`` distinct colours in ``[0, 1]`` (evenly spaced hues)."""
    return np.array([colorsys.hsv_to_rgb(i / count, 0.85, 1.0) for i in range(count)])


def groups_overlay(
    photo: np.ndarray, spatial: np.ndarray, alpha: float = 0.75, only: int | None = None
) -> np.ndarray:
    """Neuron groups' ``(n, h, w)`` maps over a photo: each pixel takes the colour of its
    strongest group, as opaque as that group is strong there (relative to its own maximum).
    ``only=i`` draws group ``i`` alone, in its colour."""
    photo = np.asarray(photo, dtype=np.float32) / 255
    maps = _upsample(spatial, photo.shape[:2])  # (n, H, W)
    maps = maps / (maps.reshape(len(maps), -1).max(1)[:, None, None] + 1e-12)
    if only is not None:
        maps = np.where(np.arange(len(maps))[:, None, None] == only, maps, 0.0)
    strongest = maps.argmax(0)  # (H, W)
    weight = alpha * maps.max(0)[..., None]
    colour = group_colors(len(maps))[strongest]  # (H, W, 3)
    mixed = (1 - weight) * photo + weight * colour
    return (mixed.clip(0, 1) * 255).round().astype(np.uint8)
