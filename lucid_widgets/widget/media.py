"""Pictures for the Microscope's dataset examples and sample panel, encoded for binary traits.

Plain numpy/Pillow (no torch): dataset-example thumbnails with the unit's receptive-field box
drawn in, enlarged crops, activation-map overlays, and packing several encoded images into one
blob plus a JSON index (the same layout as the unit grid's ``grid_blob``).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

from lucid_widgets.optvis.arrays import to_uint8
from lucid_widgets.widget.frames import encode, sniff_mime

__all__ = [
    "BlobWriter",
    "draw_box",
    "enlarge",
    "example_items",
    "heat_overlay",
    "heatmap_colors",
]

_BOX_COLOR = (255, 214, 0)  # amber: visible on photos, with a dark outline around it
_MIN_CROP_SIDE = 96


class BlobWriter:
    """Collects encoded images into one ``bytes`` blob: ``add(data) -> {offset, length, mime}``."""

    def __init__(self) -> None:
        self._chunks: list[bytes] = []
        self._offset = 0

    def add(self, data: bytes) -> dict[str, Any]:
        data = bytes(data)
        entry = {"offset": self._offset, "length": len(data), "mime": sniff_mime(data)}
        self._chunks.append(data)
        self._offset += len(data)
        return entry

    def add_image(self, image: np.ndarray, fmt: str = "jpeg") -> dict[str, Any]:
        """Encode ``(H, W, C)`` uint8 (or floats in [0, 1]) and add it."""
        return self.add(encode(image, fmt, quality=88))

    def blob(self) -> bytes:
        return b"".join(self._chunks)


def draw_box(
    image: np.ndarray, box: tuple[int, int, int, int], input_size: tuple[int, int]
) -> np.ndarray:
    """A copy of ``image`` ``(h, w, 3)`` uint8 with ``box`` drawn on it.

    ``box`` is ``(top, left, bottom, right)`` in ``input_size`` pixels (a receptive field, which
    may reach past the image); it is scaled to the image and clipped. A box covering the whole
    image is not drawn.
    """
    picture = to_uint8(image)
    height, width = picture.shape[:2]
    scale_y, scale_x = height / input_size[0], width / input_size[1]
    top, left, bottom, right = box
    y0, x0 = max(0, round(top * scale_y)), max(0, round(left * scale_x))
    y1, x1 = min(height, round(bottom * scale_y)) - 1, min(width, round(right * scale_x)) - 1
    if (y0, x0) == (0, 0) and (y1, x1) == (height - 1, width - 1):
        return picture.copy()
    pil = Image.fromarray(np.ascontiguousarray(picture[..., :3]), "RGB")
    draw = ImageDraw.Draw(pil)
    thick = 2 if min(height, width) >= 64 else 1
    x1, y1 = max(x1, x0), max(y1, y0)
    draw.rectangle((x0 - 1, y0 - 1, x1 + 1, y1 + 1), outline=(0, 0, 0), width=1)
    draw.rectangle((x0, y0, x1, y1), outline=_BOX_COLOR, width=thick)
    return np.asarray(pil)


def enlarge(image: np.ndarray, side: int = _MIN_CROP_SIDE) -> np.ndarray:
    """Scale a small crop up so its longer side is ``side`` pixels (never down)."""
    picture = to_uint8(image)
    height, width = picture.shape[:2]
    if max(height, width) >= side:
        return picture
    scale = side / max(height, width)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    resample = Image.Resampling.NEAREST if max(height, width) <= 12 else Image.Resampling.BICUBIC
    pil = Image.fromarray(np.ascontiguousarray(picture[..., :3]), "RGB").resize(size, resample)
    return np.asarray(pil)


def example_items(
    examples: Any, unit: int, blob: BlobWriter, which_list: Iterable[str] = ("top", "bottom")
) -> list[dict[str, Any]]:
    """Encoded top / bottom examples of ``unit`` (a ``LayerExamples``), strongest first.

    Each item: ``which, rank, value, index, source, box, image {offset, length, mime}, crop``.
    """
    items = []
    ranks = examples.values_top.shape[1]
    for which in which_list:
        for rank in range(ranks):
            value = examples.value(unit, rank, which)
            if not np.isfinite(value):
                continue  # fewer images than k
            index = examples.index(unit, rank, which)
            box = examples.box(unit, rank, which)
            thumbnail = examples.image(unit, rank, which)
            source = examples_source(examples, index)
            items.append({
                "which": which, "rank": rank, "value": value, "index": index, "source": source,
                "box": [int(v) for v in box],
                "image": blob.add_image(draw_box(thumbnail, box, examples.input_size)),
                "crop": blob.add_image(enlarge(examples.crop(unit, rank, which))),
            })  # fmt: skip
    return items


def examples_source(examples: Any, index: int) -> str:
    """A short label for a dataset image: its file name, else ``#index``."""
    sources = getattr(examples, "sources", None) or {}
    source = sources.get(index, index)
    if isinstance(source, str):
        return source.replace("\\", "/").rsplit("/", 1)[-1]
    return f"#{source}"


def heatmap_colors(values: np.ndarray) -> np.ndarray:
    """``(...)`` floats in [0, 1] -> ``(..., 3)`` uint8, dark purple -> orange -> pale yellow."""
    stops = np.array(
        [[0, 0, 4], [87, 16, 110], [188, 55, 84], [249, 142, 9], [252, 255, 164]], dtype=np.float32
    )
    position = np.clip(values, 0.0, 1.0) * (len(stops) - 1)
    low = np.floor(position).astype(int).clip(0, len(stops) - 2)
    fraction = (position - low)[..., None]
    colors = stops[low] * (1 - fraction) + stops[low + 1] * fraction
    return (colors + 0.5).astype(np.uint8)


def heat_overlay(image: np.ndarray, unit_map: np.ndarray, side: int = 112) -> np.ndarray:
    """``image`` ``(H, W, 3)`` uint8 with an activation map ``(h, w)`` blended over it.

    The map is scaled by its own maximum (negative values show as zero) and resized (bilinear)
    to the picture, which is resized so its longer side is ``side`` pixels.
    """
    picture = Image.fromarray(np.ascontiguousarray(to_uint8(image)[..., :3]), "RGB")
    scale = side / max(picture.size)
    size = (max(1, round(picture.width * scale)), max(1, round(picture.height * scale)))
    picture = picture.resize(size, Image.Resampling.BILINEAR)
    values = np.nan_to_num(np.asarray(unit_map, dtype=np.float32), nan=0.0)
    values = np.atleast_2d(values)
    peak = float(values.max())
    values = np.clip(values / peak, 0, 1) if peak > 0 else np.zeros_like(values)
    resized = Image.fromarray(values).resize(size, Image.Resampling.BILINEAR)
    heat = np.asarray(resized, dtype=np.float32)  # (H, W)
    colors = heatmap_colors(heat).astype(np.float32)
    base = np.asarray(picture, dtype=np.float32)
    blended = 0.5 * base + 0.5 * colors
    return np.clip(blended + 0.5, 0, 255).astype(np.uint8)
