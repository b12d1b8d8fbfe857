"""Pictures and renders for the building-blocks views (connections, groups, attribution).

Signed maps and kernels as colour images, neuron-group overlays on the photo, and the two renders
the views need in the widget's worker: unit thumbnails on demand (stored in the grid's cache, so
the grid reuses them) and one feature visualization per direction (a neuron group), as a batch.
Every render checks a stop signal between steps.
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np
import torch
from PIL import Image

from lucid_widgets.blocks.common import spatial_map
from lucid_widgets.optvis.arrays import to_uint8
from lucid_widgets.optvis.objective_base import Activations, Objective
from lucid_widgets.optvis.param import image as image_param
from lucid_widgets.optvis.preprocess import resolve
from lucid_widgets.optvis.render import Optimization, StopSignal, should_stop
from lucid_widgets.widget import engine

__all__ = [
    "GROUP_COLORS",
    "directions_batch",
    "group_overlay",
    "kernel_image",
    "render_directions",
    "render_unit_thumbnails",
    "signed_colors",
    "signed_overlay",
]

# one colour per neuron group (Lucid's building-blocks figures use a categorical palette)
GROUP_COLORS = np.array(
    [[230, 25, 75], [60, 180, 75], [0, 130, 200], [245, 130, 48], [145, 30, 180],
     [70, 240, 240], [240, 50, 230], [210, 245, 60], [250, 190, 212], [0, 128, 128],
     [170, 110, 40], [128, 0, 0]],
    dtype=np.float32,
)  # fmt: skip


def _resized(image: np.ndarray, side: int) -> Image.Image:
    picture = Image.fromarray(np.ascontiguousarray(to_uint8(image)[..., :3]), "RGB")
    scale = side / max(picture.size)
    size = (max(1, round(picture.width * scale)), max(1, round(picture.height * scale)))
    return picture.resize(size, Image.Resampling.BILINEAR)


def _upsampled(values: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """``(h, w)`` floats -> ``(H, W)`` at the picture's ``size`` (width, height), bilinear."""
    plane = Image.fromarray(np.nan_to_num(np.asarray(values, np.float32)))
    return np.asarray(plane.resize(size, Image.Resampling.BILINEAR), np.float32)


def signed_colors(values: np.ndarray) -> np.ndarray:
    """``(...)`` floats in [-1, 1] -> ``(..., 3)`` uint8: blue (negative), white, red (positive)."""
    v = np.clip(np.asarray(values, np.float32), -1.0, 1.0)[..., None]
    white = np.full(3, 255.0, np.float32)
    red, blue = np.array([200, 30, 40], np.float32), np.array([30, 90, 200], np.float32)
    colors = np.where(v >= 0, white + v * (red - white), white - v * (blue - white))
    return (colors + 0.5).astype(np.uint8)


def signed_overlay(image: np.ndarray, values: np.ndarray, side: int = 224) -> np.ndarray:
    """``image`` ``(H, W, 3)`` with a signed map ``(h, w)`` over it (red +, blue -).

    The map is scaled by the 99th percentile of its magnitude (clipped beyond); where it is near
    zero the photo shows through.
    """
    picture = _resized(image, side)
    values = np.atleast_2d(np.asarray(values, np.float32))
    # scaled by the 99th percentile of |values| (a few extreme positions would wash out the rest)
    peak = float(np.percentile(np.abs(values), 99)) if values.size else 0.0
    scaled = np.clip(_upsampled(values / peak if peak > 0 else values * 0, picture.size), -1, 1)
    colors = signed_colors(scaled).astype(np.float32)
    weight = np.abs(scaled)[..., None] * 0.85
    base = np.asarray(picture, np.float32)
    return np.clip(base * (1 - weight) + colors * weight + 0.5, 0, 255).astype(np.uint8)


def group_overlay(
    image: np.ndarray, spatial: np.ndarray, only: int | None = None, side: int = 224
) -> np.ndarray:
    """``image`` with neuron groups' maps ``(n, h, w)`` as coloured overlays.

    Each position takes the colour of its strongest group, blended by that group's map (scaled
    by the group's own maximum); ``only`` draws one group and dims the rest of the photo.
    """
    picture = _resized(image, side)
    maps = np.asarray(spatial, np.float32)
    peaks = maps.reshape(len(maps), -1).max(1)
    scaled = maps / np.where(peaks > 0, peaks, 1.0)[:, None, None]
    up = np.stack([_upsampled(plane, picture.size) for plane in scaled])  # (n, H, W)
    base = np.asarray(picture, np.float32)
    colors = GROUP_COLORS[np.arange(len(maps)) % len(GROUP_COLORS)]
    if only is not None:
        weight = np.clip(up[only], 0, 1)[..., None]
        dim = base * 0.35
        return np.clip(
            dim * (1 - weight) + (0.4 * base + 0.6 * colors[only]) * weight + 0.5, 0, 255
        ).astype(np.uint8)
    strongest = up.argmax(0)  # (H, W)
    weight = np.clip(up.max(0), 0, 1)[..., None] * 0.55
    return np.clip(base * (1 - weight) + colors[strongest] * weight + 0.5, 0, 255).astype(np.uint8)


def kernel_image(kernel: np.ndarray, peak: float | None = None, side: int = 40) -> np.ndarray:
    """An expanded-weight kernel ``(kh, kw)`` as a signed colour picture (nearest-enlarged)."""
    values = np.asarray(kernel, np.float32)
    scale = peak if peak else float(np.abs(values).max())
    colors = signed_colors(values / scale if scale > 0 else values * 0)
    factor = max(1, side // max(values.shape))
    return np.repeat(np.repeat(colors, factor, axis=0), factor, axis=1)


# ---- renders (worker thread) -------------------------------------------------------------------
def _run(model: Any, objective: Any, batch: int, config: engine.GridConfig, stop: StopSignal):
    """``(batch, H, W, 3)`` uint8 after ``config.steps`` steps, or None when stopped."""
    colours = resolve(model).channels
    param_f = functools.partial(
        image_param, config.size, batch=batch, channels=colours,
        decorrelate=config.decorrelate, fft=config.param == "fft",
    )  # fmt: skip
    transforms = None if config.transforms else []
    with Optimization(
        model, objective, param_f=param_f, transforms=transforms, seed=config.seed
    ) as run:
        for _ in range(config.steps):
            if should_stop(stop):
                return None
            run.step()
        return to_uint8(run.image())[..., :3]


def directions_batch(layer: str, directions: torch.Tensor) -> Objective:
    """Batch element ``b`` maximizes ``directions[b]`` ``(n, C)`` (dot product, mean over
    positions): every neuron group rendered in one optimization."""

    def inner(acts: Activations) -> torch.Tensor:
        maps = spatial_map(acts[layer], layer).maps  # (B, C, h, w)
        wanted = directions.to(maps)  # (B, C)
        return (maps.mean((2, 3)) * wanted).sum()

    return Objective(inner, f"directions({layer!r}, {len(directions)})", {layer})


def render_directions(
    model: Any, layer: str, directions: np.ndarray, config: engine.GridConfig, stop: StopSignal
) -> np.ndarray | None:
    """One feature visualization per row of ``directions`` ``(n, C)``: ``(n, H, W, 3)`` uint8."""
    vectors = torch.as_tensor(np.asarray(directions), dtype=torch.float32)
    return _run(model, directions_batch(layer, vectors), len(vectors), config, stop)


def render_unit_thumbnails(
    widget: Any, model: Any, layer: str, units: list[int], stop: StopSignal
) -> list[int]:
    """Render the ``units`` of ``layer`` missing from the widget's thumbnail cache (grid
    settings, current grid kind) and store them there; returns the units rendered."""
    missing = [unit for unit in dict.fromkeys(units) if unit not in widget.layer_thumbnails(layer)]
    config = widget.grid_config
    rendered: list[int] = []
    for start in range(0, len(missing), config.batch_size):
        chunk = missing[start : start + config.batch_size]
        run = engine.make_grid_batch(model, layer, chunk, widget.thumbnail_kind, config)
        try:
            for _ in range(config.steps):
                if should_stop(stop):
                    return rendered
                run.step()
            pixels = to_uint8(run.image())[..., :3]  # (b, H, W, 3)
        finally:
            run.close()
        widget.put_thumbnails(layer, chunk, pixels)
        rendered.extend(chunk)
    return rendered
