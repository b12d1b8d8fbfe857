"""The Microscope's unit grid, a part it owns: layer rows, grid pages and the thumbnail cache.

:class:`UnitGrid` knows the layer catalog (names and aliases), checks the grid's trait values,
builds the :class:`~lucid_widgets.widget.jobs.GridRequest` of the current page (on an atlas, the
stored thumbnails go into the cache first, so the worker renders only what the store lacks) and
is the thumbnail cache as the other panels see it (``layer_thumbnails``, ``put_thumbnails``).
The Microscope declares the synced traits, submits the requests to its worker and keeps its
public methods of the same names (``page_units``, ``grid_images`` ...), which call this part.
"""

from __future__ import annotations

import difflib
import math
from typing import Any

import numpy as np
import traitlets

from lucid_widgets.widget import engine
from lucid_widgets.widget.atlas_source import AtlasSource
from lucid_widgets.widget.connections import UnitConnections
from lucid_widgets.widget.examples import GRID_VIEWS
from lucid_widgets.widget.frames import encode
from lucid_widgets.widget.jobs import GridRequest, ThumbnailCache

__all__ = ["UnitGrid"]


class UnitGrid:
    """The grid of one :class:`~lucid_widgets.widget.Microscope` (kernel thread; the worker
    reads and fills the same cache).

    Parameters
    ----------
    widget
        The Microscope: its ``layer``, ``page``, ``page_size``, ``grid_kind`` and
        ``grid_negative`` traits are the grid's state.
    cache
        The widget's thumbnail cache (the worker renders into it).
    """

    def __init__(self, widget: Any, cache: ThumbnailCache) -> None:
        self._widget = widget
        self._cache = cache
        self.config = engine.GridConfig()  # the grid_settings validator merges into it
        self.atlas: AtlasSource | None = None  # Microscope(model, atlas=...)
        self._rows: dict[str, dict] = {}  # layer name or alias -> catalog row

    def open_atlas(self, folder: Any, model: Any, write_back: bool) -> AtlasSource:
        """Read grid pages (and what the panels store) from the atlas ``folder`` from now on."""
        self.atlas = AtlasSource(
            folder, model, write_back, lambda: self._widget.publish(atlas_info=self.atlas.info())
        )
        return self.atlas

    # ---- layers -----------------------------------------------------------------------------
    def add_rows(self, rows: list[dict]) -> None:
        """Index the catalog ``rows`` by name and alias."""
        for row in rows:
            self._rows.setdefault(row["name"], row)
            if row.get("alias"):
                self._rows.setdefault(row["alias"], row)

    def row(self, layer: str) -> dict:
        """The catalog row of ``layer`` (name or alias); ``TraitError`` with close names."""
        row = self._rows.get(layer)
        if row is None:
            close = difflib.get_close_matches(layer, list(self._rows), n=3, cutoff=0.5)
            hint = f"; did you mean {', '.join(close)}?" if close else ""
            raise traitlets.TraitError(f"unknown layer {layer!r}{hint}")
        return row

    def unit_row(self, unit: int, layer: str) -> dict:
        """The catalog row of ``layer``, after checking that it has a unit ``unit``."""
        if not layer:
            raise ValueError("no layer selected: set w.layer first or pass layer=")
        row = self.row(layer)
        count = row.get("units") or 0
        if not 0 <= unit < count:
            raise ValueError(
                f"unit {unit} is out of range for layer {row['name']!r} (0..{count - 1})"
            )
        return row

    def layer_name(self, layer: str) -> str:
        """The dotted module path of ``layer`` (a name or an alias)."""
        return self.row(layer)["name"]

    def layer_units(self, layer: str) -> int:
        """Number of units of ``layer``."""
        return int(self.row(layer).get("units") or 0)

    def check(self, name: str, value: Any) -> Any:
        """The value of the grid trait ``name`` (``layer``, ``page_size``, ``grid_kind``,
        ``grid_view``) as stored, or a ``TraitError`` saying what is valid."""
        if name == "layer":
            return self.row(value)["name"] if value else ""
        if name == "page_size" and not 1 <= value <= 1024:
            raise traitlets.TraitError(f"page_size must be 1..1024, got {value}")
        if name == "grid_kind":
            try:
                engine.unit_kind(value, False)
            except ValueError as error:
                raise traitlets.TraitError(f"grid_kind: {error}") from None
        if name == "grid_view" and value not in GRID_VIEWS:
            raise traitlets.TraitError(f"grid_view must be one of {GRID_VIEWS}, got {value!r}")
        return value

    # ---- pages ------------------------------------------------------------------------------
    def key(self, layer: str, kind: str, negative: bool) -> tuple:
        """The cache key of ``layer``'s thumbnails of one kind with the current settings."""
        return (layer, engine.unit_kind(kind, negative), self.config.cache_key())

    def set_config(self, settings: dict) -> bool:
        """Take the ``grid_settings`` value; True when the thumbnails it makes differ."""
        config = engine.GridConfig.from_dict(settings)
        changed, self.config = config != self.config, config
        return changed

    def page_units(self) -> list[int]:
        """Unit indices on the current page of the current layer."""
        widget = self._widget
        if not widget.layer:
            return []
        count = self.row(widget.layer).get("units") or 0
        start = widget.page * widget.page_size
        return list(range(start, min(count, start + widget.page_size)))

    def request(self) -> GridRequest | None:
        """The current page's request for the worker (None: nothing to render). On an atlas the
        stored thumbnails are in the cache first, and its examples are published."""
        widget = self._widget
        if not widget.layer:
            return None
        row = self.row(widget.layer)
        count = row.get("units") or 0
        if count == 0:
            widget.message = f"layer {widget.layer!r} has no units to render"
            return None
        pages = math.ceil(count / widget.page_size)
        if not 0 <= widget.page < pages:
            widget.page = min(max(widget.page, 0), pages - 1)  # its observer asks again
            return None
        kind = engine.unit_kind(widget.grid_kind, widget.grid_negative)
        key = self.key(widget.layer, widget.grid_kind, widget.grid_negative)
        request = GridRequest(key, widget.layer, self.page_units(), kind, self.config, widget.page)
        if self.atlas is not None:  # stored thumbnails go into the cache: no rendering
            self.atlas.fill(self._cache, request, row)
            examples = (
                {}
                if widget.dataset is not None
                else self.atlas.grid_examples(row, request.units, widget.page)
            )  # a dataset given to set_dataset wins
            widget.publish(atlas_info=self.atlas.info(), **examples)
        return request

    def grid_images(
        self, layer: str | None, kind: str | None, negative: bool | None
    ) -> dict[int, np.ndarray]:
        """Rendered thumbnails, unit -> ``(H, W, C)`` float32 in [0, 1] (see the Microscope's)."""
        widget = self._widget
        name = self.row(layer)["name"] if layer else widget.layer
        if not name:
            raise ValueError("no layer selected: pass layer= or set w.layer first")
        kind = widget.grid_kind if kind is None else kind
        negative = widget.grid_negative if negative is None else negative
        cached = self._cache.units(self.key(name, kind, negative))
        return {unit: pixels.astype(np.float32) / 255.0 for unit, (_, pixels) in cached.items()}

    def grid_thumbnails(self) -> dict[int, bytes]:
        """Encoded thumbnails of the current layer's rendered units, current settings."""
        widget = self._widget
        key = self.key(widget.layer, widget.grid_kind, widget.grid_negative)
        return {unit: data for unit, (data, _) in self._cache.units(key).items()}

    # ---- thumbnails for the other panels ----------------------------------------------------
    @property
    def thumbnail_kind(self) -> str:
        """The objective kind thumbnails are rendered with (the grid's channel / neuron)."""
        return engine.unit_kind(self._widget.grid_kind, False)

    def layer_thumbnails(self, layer: str) -> dict[int, bytes]:
        """Encoded thumbnails of ``layer``'s rendered units (grid settings, positive kind)."""
        key = self.key(self.layer_name(layer), self._widget.grid_kind, False)
        return {unit: data for unit, (data, _) in self._cache.units(key).items()}

    def put_thumbnails(self, layer: str, units: list[int], pixels: np.ndarray) -> None:
        """Store rendered thumbnails ``(n, H, W, 3)`` uint8 of ``units`` in the cache."""
        key = self.key(self.layer_name(layer), self._widget.grid_kind, False)
        for unit, picture in zip(units, pixels, strict=True):
            self._cache.put(key, int(unit), encode(picture, "jpeg", quality=85), picture)

    def stored_connections(self, layer: str, unit: int) -> UnitConnections | None:
        """The connections the atlas stores for ``unit`` of ``layer`` (None: none, or no
        atlas), the connected units' stored thumbnails put into the cache first."""
        if self.atlas is None or unit < 0 or not layer:
            return None
        stored = self.atlas.connections(self.row(layer), unit)
        for conn in (stored.inputs, stored.outputs) if stored is not None else ():
            if conn is not None:
                row = self.row(conn.source)
                key = self.key(row["name"], self._widget.grid_kind, False)
                units = [int(u) for u in conn.units]
                self.atlas.fill_units(
                    self._cache, key, row, units, self.thumbnail_kind, self.config
                )
        self._widget.publish(atlas_info=self.atlas.info())
        return stored
