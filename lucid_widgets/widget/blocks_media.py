"""Pictures and renders for the building-blocks views (connections, groups, attribution).

Kernels as signed pictures (drawn by :func:`lucid_widgets.blocks.heatmap_overlay`, which also
draws the attribution maps, as :func:`~lucid_widgets.blocks.groups_overlay` draws the groups),
and the renders the views need in the widget's worker: unit thumbnails on demand (stored in the
grid's cache, so the grid reuses them) and one feature visualization per direction (a neuron
group), as a batch. Every render checks a stop signal between steps."""

from __future__ import annotations

import functools
from typing import Any

import numpy as np
import torch
from PIL import Image

from lucid_widgets.blocks import group_colors, heatmap_overlay
from lucid_widgets.blocks.common import spatial_map
from lucid_widgets.optvis.arrays import to_uint8
from lucid_widgets.optvis.objective_base import Activations, Objective
from lucid_widgets.optvis.param import image as image_param
from lucid_widgets.optvis.preprocess import resolve
from lucid_widgets.optvis.render import Optimization, StopSignal, should_stop
from lucid_widgets.widget import engine

__all__ = [
    "directions_batch",
    "group_rgb",
    "kernel_image",
    "render_directions",
    "render_unit_thumbnails",
    "resized",
]


def resized(image: np.ndarray, side: int) -> np.ndarray:
    """``image`` ``(H, W, 3)`` scaled so its longer side is ``side`` pixels (bilinear), uint8."""
    picture = Image.fromarray(np.ascontiguousarray(to_uint8(image)[..., :3]), "RGB")
    scale = side / max(picture.size)
    size = (max(1, round(picture.width * scale)), max(1, round(picture.height * scale)))
    return np.asarray(picture.resize(size, Image.Resampling.BILINEAR))


def group_rgb(count: int) -> list[list[int]]:
    """The colours :func:`~lucid_widgets.blocks.groups_overlay` gives ``count`` groups, 0..255."""
    return (group_colors(count) * 255).round().astype(int).tolist()


def kernel_image(kernel: np.ndarray, peak: float | None = None, side: int = 40) -> np.ndarray:
    """An expanded-weight kernel ``(kh, kw)`` as a signed picture (orange +, blue -, white 0),
    cells kept square; ``peak`` is the magnitude drawn at full colour (default the kernel's)."""
    values = np.asarray(kernel, np.float32)
    factor = max(1, side // max(values.shape))
    white = np.full((values.shape[0] * factor, values.shape[1] * factor, 3), 255, np.uint8)
    scale = peak if peak else float(np.abs(values).max()) or 1.0
    return heatmap_overlay(white, values, alpha=1.0, smooth=False, scale=scale)


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
