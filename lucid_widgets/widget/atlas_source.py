"""The Microscope on an atlas: grids, unit views, dataset examples and connections from the store.

``Microscope(model, atlas="atlases/lite0")`` opens the folder with
:func:`lucid_widgets.atlas.open_atlas` (a model whose weights differ from the manifest's is the
store's :class:`~lucid_widgets.atlas.AtlasWeightsError`). :class:`AtlasSource` then puts the stored
thumbnails of a grid page into the widget's thumbnail cache before the page is asked of the worker,
so the worker renders only the units the store lacks (not built, missing or corrupt: the store
checks every file's checksum and a bad one is rendered again, never shown). With
``write_back=True`` what the worker renders with the atlas's settings is written back
(:meth:`~lucid_widgets.atlas.Atlas.put`), so the next Microscope finds it.
"""

from __future__ import annotations

import io
import json
import os
import threading
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import nn

from lucid_widgets.atlas import AtlasCorruptError, open_atlas
from lucid_widgets.atlas.plan import slug
from lucid_widgets.atlas.tasks import image_path
from lucid_widgets.blocks import Connections
from lucid_widgets.widget.connections import UnitConnections
from lucid_widgets.widget.engine import GridConfig
from lucid_widgets.widget.jobs import GridRequest, ThumbnailCache
from lucid_widgets.widget.media import BlobWriter, draw_box, enlarge

__all__ = ["GRID_VIEWS", "AtlasSource"]

# the engine's grid kind -> the atlas view holding it (negative neurons are not stored)
GRID_VIEWS = {"channel": "channel", "negative_channel": "negative", "neuron": "neuron"}


class AtlasSource:
    """An atlas folder seen by one Microscope (read in the calling thread, written by the worker).

    Parameters
    ----------
    folder
        The atlas folder (``lucid_widgets.atlas.build`` made it).
    model
        The Microscope's model: its weights must be the atlas's.
    write_back
        Store what the widget renders with the atlas's settings into the atlas.
    on_write
        Called (in the worker thread) after each write-back, e.g. to publish :meth:`info`.
    """

    def __init__(
        self,
        folder: str | os.PathLike,
        model: nn.Module,
        write_back: bool = False,
        on_write: Callable[[], None] | None = None,
    ) -> None:
        self.atlas = open_atlas(folder, model)
        self.write_back = bool(write_back)
        self._on_write = on_write
        self._lock = threading.Lock()  # the worker writes back while the kernel reads pages
        self.stored = 0  # thumbnails taken from the store
        self.written = 0  # thumbnails written back
        self.write_error = ""
        self.unit_source = ""  # the open unit's picture: "atlas" (stored) or "live"

    # ---- settings and names -----------------------------------------------------------------
    def grid_settings(self) -> dict[str, Any]:
        """The grid settings that reproduce the atlas's pictures (size, steps, batch, seed,
        param: ``"maco"`` for a MACO atlas, ``"fft"`` for a Lucid one)."""
        settings = self.atlas.settings
        grid: dict[str, Any] = {
            name: int(settings[name]) for name in ("size", "steps", "batch_size", "seed")
        }
        grid["param"] = "maco" if settings.get("recipe", "lucid") == "maco" else "fft"
        return grid

    def matches(self, config: GridConfig) -> bool:
        """Whether thumbnails rendered with ``config`` are the atlas's kind of picture."""
        wanted = self.grid_settings()
        same = config.param == wanted["param"] and config.decorrelate and config.transforms
        return same and all(getattr(config, name) == wanted[name] for name in ("size", "steps"))

    def layer(self, row: dict) -> str | None:
        """The atlas name of a catalog ``row``'s layer (None: not in the atlas)."""
        for name in (row.get("name"), row.get("alias")):
            if name:
                try:
                    return self.atlas.layer_info(name)["name"]
                except KeyError:
                    continue
        return None

    def info(self) -> dict[str, Any]:
        """The ``atlas_info`` trait: folder, model, layers, views and the counters."""
        atlas = self.atlas
        return {
            "folder": str(atlas.folder), "model": atlas.manifest.get("model", ""),
            "views": list(atlas.views), "write_back": self.write_back, "stored": self.stored,
            "written": self.written, "write_error": self.write_error, "unit": self.unit_source,
            "layers": {entry["path"]: entry["name"] for entry in atlas.manifest["layers"]},
        }  # fmt: skip

    # ---- grid pages -------------------------------------------------------------------------
    def fill(self, cache: ThumbnailCache, request: GridRequest, row: dict) -> list[int]:
        """Put the stored thumbnails of ``request``'s units into ``cache``; return the others.

        Nothing is taken when the grid settings are not the atlas's (those pictures differ).
        With ``write_back``, what the worker renders for the page is stored.
        """
        target = self._target(row, request.kind, request.config)
        if target is not None and self.write_back:
            request.on_rendered = self._writer(*target)
        return self.fill_units(cache, request.key, row, request.units, request.kind, request.config)

    def fill_units(
        self, cache: ThumbnailCache, key: tuple, row: dict, units: list[int], kind: str,
        config: GridConfig,
    ) -> list[int]:  # fmt: skip
        """Put the stored ``kind`` thumbnails of ``units`` of ``row``'s layer into ``cache``
        under ``key``; return the units the atlas lacks (all when ``config`` is not its)."""
        target = self._target(row, kind, config)
        if target is None:
            return list(units)
        missing = []
        for unit in units:
            if cache.get(key, unit) is not None:
                continue
            data = self._read(image_path(*target, unit))
            if data is None:
                missing.append(unit)
                continue
            pixels = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))  # (H, W, 3)
            cache.put(key, unit, data, pixels)
            self.stored += 1
        return missing

    def _target(self, row: dict, kind: str, config: GridConfig) -> tuple[str, str] | None:
        """(atlas layer, atlas view) holding ``kind`` thumbnails rendered with ``config``."""
        name, view = self.layer(row), GRID_VIEWS.get(kind)
        if name is None or view is None or not self.matches(config):
            return None
        return name, view

    def _read(self, path: str) -> bytes | None:
        with self._lock:
            if not self.atlas.has(path):
                return None
            try:
                return self.atlas.read(path)
            except AtlasCorruptError:  # missing or changed on disk: rendered again, never shown
                return None

    def _writer(self, name: str, view: str):
        def write(units: list[int], pixels: np.ndarray) -> None:  # worker thread
            try:
                with self._lock:
                    self.atlas.put(name, units, pixels, view=view)  # (b, H, W, C) uint8
            except OSError as error:  # a read-only atlas: the grid still shows what it rendered
                self.write_error = f"write-back to {str(self.atlas.folder)!r} failed: {error}"
            else:
                self.written += len(units)
            if self._on_write is not None:
                self._on_write()

        return write

    # ---- the open unit ----------------------------------------------------------------------
    def unit_images(self, row: dict, unit: int, view: str, grid_kind: str) -> np.ndarray | None:
        """The stored picture(s) of a unit view, ``(B, H, W, 3)`` uint8, or None.

        The diversity view's strip is split into its images side by side.
        """
        name = self.layer(row)
        stored = _UNIT_VIEWS.get((view, grid_kind))
        if name is None or stored is None:
            return None
        data = self._read(image_path(name, stored, int(unit)))
        if data is None:
            return None
        image = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))  # (H, W', 3)
        height, width = image.shape[:2]
        count = width // height if stored == "diversity" and width % height == 0 else 1
        return np.stack(np.split(image, count, axis=1))  # (count, H, W, 3)

    def unit_traits(
        self, row: dict, unit: int, view: str, grid_kind: str, examples: bool = True
    ) -> tuple[dict[str, Any], torch.Tensor | None]:
        """The traits of an opened unit (examples, ``atlas_info``) and its stored
        picture as a ``(B, 3, H, W)`` tensor in [0, 1] (None: not stored, render it live)."""
        stored = self.unit_images(row, unit, view, grid_kind)  # (B, H, W, 3) uint8
        traits: dict[str, Any] = {}
        if examples:
            traits.update(self.examples(row, unit))
        self.unit_source = "live" if stored is None else "atlas"
        traits["atlas_info"] = self.info()
        if stored is None:
            return traits, None
        return traits, torch.from_numpy(stored).permute(0, 3, 1, 2).float() / 255.0

    def examples(self, row: dict, unit: int) -> dict[str, Any]:
        """The ``unit_examples`` (and ``examples_status``) traits of a unit from the atlas's
        dataset pass (empty without one)."""
        empty = {"unit_examples": {}, "unit_examples_blob": b""}
        table = self._examples_table(row)
        if table is None or str(int(unit)) not in table["units"]:
            return empty
        input_size = tuple(table["input_size"])
        blob, items = BlobWriter(), []
        for which in ("top", "bottom"):
            for rank, item in enumerate(table["units"][str(int(unit))][which]):
                thumbnail = self._example_image(item["index"])
                if thumbnail is None:
                    continue
                box = [int(v) for v in item["box"]]
                items.append({
                    "which": which, "rank": rank, "value": float(item["value"]),
                    "index": int(item["index"]), "source": _short(item.get("source")),
                    "box": box, "image": blob.add_image(draw_box(thumbnail, box, input_size)),
                    "crop": blob.add_image(enlarge(_crop(thumbnail, box, input_size))),
                })  # fmt: skip
        info = {"layer": row["name"], "unit": int(unit), "k": table["k"], "items": items,
                "source": "atlas"}  # fmt: skip
        status = self.grid_examples(row, [], 0)["examples_status"]
        return {"unit_examples": info, "unit_examples_blob": blob.blob(), "examples_status": status}

    def grid_examples(self, row: dict, units: list[int], page: int) -> dict[str, Any]:
        """The ``grid_examples`` traits: each page unit's top example crop (empty without any)."""
        table = self._examples_table(row)
        if table is None:
            return {}
        input_size = tuple(table["input_size"])
        blob, items = BlobWriter(), []
        for unit in units:
            top = table["units"].get(str(unit), {}).get("top") or []
            thumbnail = self._example_image(top[0]["index"]) if top else None
            if thumbnail is not None:
                entry = blob.add_image(enlarge(_crop(thumbnail, top[0]["box"], input_size), 64))
                items.append({"unit": unit, "value": float(top[0]["value"]), **entry})
        info = {"layer": row["name"], "page": page, "items": items}
        status = {"state": "done", "layer": row["name"], "k": table["k"], "source": "atlas",
                  "size": self._dataset_size()}  # fmt: skip
        return {"grid_examples": info, "grid_examples_blob": blob.blob(), "examples_status": status}

    def _dataset_size(self) -> int | None:
        """Images in the atlas's dataset pass: the end of its last shard (``shard.H.A-B``)."""
        stops = [
            int(task["id"].rsplit("-", 1)[1])
            for task in self.atlas.manifest.get("tasks", [])
            if task.get("kind") == "shard"
        ]
        return max(stops, default=None)

    def _examples_table(self, row: dict) -> dict | None:
        name = self.layer(row)
        data = None if name is None else self._read(f"layers/{slug(name)}/examples.json")
        return None if data is None else json.loads(data)

    def _example_image(self, index: int) -> np.ndarray | None:
        data = self._read(f"dataset/{int(index):08d}.webp")
        return None if data is None else np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))

    def connections(self, row: dict, unit: int) -> UnitConnections | None:
        """The unit's stored connections (``source="atlas"``, no kernels), or None: not stored
        (the Microscope then computes them live)."""
        name = self.layer(row)
        try:
            with self._lock:
                links = None if name is None else self.atlas.connections(name, int(unit))
        except AtlasCorruptError:
            links = None
        if not links or links.get("available") is False:
            return None
        paths = {entry["name"]: entry["path"] for entry in self.atlas.manifest["layers"]}
        sides, errors = {}, {}
        for direction in ("in", "out"):
            entry = links.get(direction)
            if not (entry and entry.get("layer") and entry.get("units")):
                errors[direction] = _no_link(direction, entry)
                continue
            sides[direction] = Connections(
                layer=row["name"], unit=int(unit), direction=direction,
                source=paths.get(entry["layer"], entry["layer"]),
                units=np.asarray(entry["units"], dtype=np.int64),  # (k,)
                strength=np.asarray(entry["strength"], dtype=np.float64),  # (k,)
                kernels=None, method=str(entry.get("method", "")),
            )  # fmt: skip
        return UnitConnections(
            row["name"], int(unit), sides.get("in"), sides.get("out"), errors, source="atlas"
        )


def _no_link(direction: str, entry: dict | None) -> str:
    """Why the atlas holds no connections in ``direction`` ("none: <reason>" from the build)."""
    method = str((entry or {}).get("method", ""))
    if method.startswith("none:"):
        return method[len("none:") :].strip()
    if direction == "out":
        return "none stored: this is the atlas's last layer"
    return "none stored in the atlas"


# (unit_view, grid_kind) -> the atlas view with that picture
_UNIT_VIEWS = {
    ("channel", "channel"): "channel", ("channel", "neuron"): "channel",
    ("neuron", "channel"): "neuron", ("neuron", "neuron"): "neuron",
    ("negative", "channel"): "negative", ("diversity", "channel"): "diversity",
}  # fmt: skip


def _crop(image: np.ndarray, box: list[int], input_size: tuple[int, int]) -> np.ndarray:
    """The part of a thumbnail ``(h, w, 3)`` inside ``box`` (input pixels), at least 1 pixel."""
    height, width = image.shape[:2]
    top, left, bottom, right = box
    y0 = min(height - 1, max(0, round(top * height / input_size[0])))
    x0 = min(width - 1, max(0, round(left * width / input_size[1])))
    y1 = max(y0 + 1, min(height, round(bottom * height / input_size[0])))
    x1 = max(x0 + 1, min(width, round(right * width / input_size[1])))
    return image[y0:y1, x0:x1]


def _short(source: Any) -> str:
    if isinstance(source, str):
        return source.replace("\\", "/").rsplit("/", 1)[-1]
    return f"#{source}"
