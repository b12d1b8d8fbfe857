"""The :class:`Microscope` widget: layer browser + unit grid + live unit detail."""

from __future__ import annotations

import difflib
import math
from typing import Any

import numpy as np
import traitlets
from torch import nn

from lucid_widgets import widget_engine as engine
from lucid_widgets.expression import unit_term
from lucid_widgets.widget import LivePreview, _binary
from lucid_widgets.widget_jobs import GridRequest

__all__ = ["Microscope"]


class Microscope(LivePreview):
    """OpenAI Microscope for any PyTorch model, inside a notebook cell.

    Pick a layer to see one feature visualization per unit (rendered in batches, streamed in
    page by page and cached); click a unit for a live optimization whose objective you can edit
    while it runs; shift-click thumbnails to add units to the objective.

    Parameters
    ----------
    model
        Any ``nn.Module``; zoo models (``lw.zoo.load``) have readable layer aliases.
    layer
        Layer to open at once (dotted path or alias); ``None`` shows only the layer list.
    settings
        Live preview settings (see :class:`LivePreview`).
    grid_settings
        Thumbnail settings: size, steps, param, decorrelate, transforms, batch_size, seed.
    page_size
        Units per grid page (rendered on demand).

    Examples
    --------
    >>> w = Microscope(lw.zoo.load("inceptionv1"), layer="mixed4a")   # doctest: +SKIP
    >>> w.unit = 476              # opens the unit and starts its live optimization
    >>> w.objective = "mixed4a:476 - 0.5 * mixed4a:465"
    >>> w.stop(); w.images.shape  # (1, 128, 128, 3)
    """

    mode = traitlets.Unicode("microscope").tag(sync=True)
    layer = traitlets.Unicode("").tag(sync=True)
    unit = traitlets.Int(-1).tag(sync=True)
    grid_kind = traitlets.Unicode("channel").tag(sync=True)
    grid_negative = traitlets.Bool(False).tag(sync=True)
    grid_settings = traitlets.Dict().tag(sync=True)
    page = traitlets.Int(0).tag(sync=True)
    page_size = traitlets.Int(64).tag(sync=True)
    grid_blob = _binary()
    grid_index = traitlets.List(traitlets.Dict()).tag(sync=True)
    grid_progress = traitlets.Dict().tag(sync=True)

    def __init__(
        self,
        model: nn.Module,
        layer: str | None = None,
        *,
        settings: dict | None = None,
        grid_settings: dict | None = None,
        page_size: int = 64,
        **kwargs: Any,
    ) -> None:
        self._grid_config = engine.GridConfig.from_dict(grid_settings)
        self._opening = False
        kwargs.setdefault("grid_settings", self._grid_config.to_dict())
        kwargs.setdefault("page_size", int(page_size))
        super().__init__(model, None, settings=settings, **kwargs)
        self._rows: dict[str, dict] = {}
        for row in self.layers:
            self._rows.setdefault(row["name"], row)
            if row.get("alias"):
                self._rows.setdefault(row["alias"], row)
        if layer:
            self.layer = layer

    def _catalog(self, model: nn.Module) -> list[dict]:
        return engine.catalog(model)  # the layer browser needs it: errors propagate

    # ---- layer and grid ---------------------------------------------------------------------
    def _row(self, layer: str) -> dict:
        row = self._rows.get(layer)
        if row is None:
            close = difflib.get_close_matches(layer, list(self._rows), n=3, cutoff=0.5)
            hint = f"; did you mean {', '.join(close)}?" if close else ""
            raise traitlets.TraitError(f"unknown layer {layer!r}{hint}")
        return row

    @traitlets.validate("layer")
    def _valid_layer(self, proposal: dict) -> str:
        return self._row(proposal["value"])["name"] if proposal["value"] else ""

    @traitlets.validate("page_size")
    def _valid_page_size(self, proposal: dict) -> int:
        if not 1 <= proposal["value"] <= 1024:
            raise traitlets.TraitError(f"page_size must be 1..1024, got {proposal['value']}")
        return proposal["value"]

    @traitlets.validate("grid_kind")
    def _valid_kind(self, proposal: dict) -> str:
        if proposal["value"] not in ("channel", "neuron"):
            raise traitlets.TraitError(
                f"grid_kind must be 'channel' or 'neuron', got {proposal['value']!r}"
            )
        return proposal["value"]

    @traitlets.observe("layer")
    def _on_layer(self, change: dict) -> None:
        if self.page != 0:
            self.page = 0  # its observer requests the grid
        else:
            self._request_grid()

    @traitlets.observe("page", "page_size", "grid_kind", "grid_negative")
    def _on_grid_view(self, change: dict) -> None:
        self._request_grid()

    @traitlets.observe("grid_settings")
    def _on_grid_settings(self, change: dict) -> None:
        try:
            config = engine.GridConfig.from_dict(change["new"])
        except (ValueError, TypeError) as error:
            self.message = f"grid settings: {error}"
            self.grid_settings = self._grid_config.to_dict()
            return
        if config != self._grid_config:
            self._grid_config = config
            self._request_grid()

    def _grid_key(self, layer: str, kind: str, negative: bool) -> tuple:
        return (layer, engine.unit_kind(kind, negative), self._grid_config.cache_key())

    def page_units(self) -> list[int]:
        """Unit indices on the current page of the current layer."""
        if not self.layer:
            return []
        count = self._row(self.layer).get("units") or 0
        start = self.page * self.page_size
        return list(range(start, min(count, start + self.page_size)))

    def _request_grid(self) -> None:
        if not self.layer:
            return
        count = self._row(self.layer).get("units") or 0
        if count == 0:
            self.message = f"layer {self.layer!r} has no units to render"
            return
        pages = math.ceil(count / self.page_size)
        if not 0 <= self.page < pages:
            self.page = min(max(self.page, 0), pages - 1)
            return
        kind = engine.unit_kind(self.grid_kind, self.grid_negative)
        key = self._grid_key(self.layer, self.grid_kind, self.grid_negative)
        request = GridRequest(
            key, self.layer, self.page_units(), kind, self._grid_config, self.page
        )
        self._worker.submit("grid", request)

    def grid_images(
        self, layer: str | None = None, kind: str | None = None, negative: bool | None = None
    ) -> dict[int, np.ndarray]:
        """Rendered thumbnails of ``layer`` (default: the current one), unit -> ``(H, W, C)``.

        Only units already rendered with the current grid settings are included; arrays are
        float32 in [0, 1].
        """
        name = self._row(layer)["name"] if layer else self.layer
        if not name:
            raise ValueError("no layer selected: pass layer= or set w.layer first")
        kind = self.grid_kind if kind is None else kind
        negative = self.grid_negative if negative is None else negative
        cached = self._cache.units(self._grid_key(name, kind, negative))
        return {unit: pixels.astype(np.float32) / 255.0 for unit, (_, pixels) in cached.items()}

    # ---- units ------------------------------------------------------------------------------
    def unit_objective(self, unit: int, layer: str | None = None) -> str:
        """The expression a click on ``unit`` opens, e.g. ``mixed4a:476`` or ``-neuron(l, 3)``."""
        row = self._row(layer or self.layer)
        term = unit_term(row.get("alias") or row["name"], unit, self.grid_kind)
        return f"-{term}" if self.grid_negative else term

    def open_unit(self, unit: int, layer: str | None = None) -> None:
        """Select ``unit`` (of ``layer``, default the current layer) and start optimizing it."""
        row = self._row(layer or self.layer) if (layer or self.layer) else None
        if row is None:
            raise ValueError("no layer selected: set w.layer first or pass layer=")
        count = row.get("units") or 0
        if not 0 <= int(unit) < count:
            raise ValueError(
                f"unit {unit} is out of range for layer {row['name']!r} (0..{count - 1})"
            )
        self._opening = True
        try:
            with self.hold_sync():
                if layer:
                    self.layer = layer
                self.unit = int(unit)
                self.objective = self.unit_objective(int(unit))
        finally:
            self._opening = False
        self.restart()

    @traitlets.observe("unit")
    def _on_unit(self, change: dict) -> None:
        if not self._opening and change["new"] >= 0:
            self.open_unit(change["new"])

    def start(self) -> None:
        """Resume what :meth:`stop` halted: the live run (or a new one) and the grid."""
        self._worker.submit("grid_resume")
        if self.objective.strip():
            super().start()

    def _handle_action(self, action: Any, content: dict) -> None:
        if action == "open_unit":
            self.open_unit(int(content["unit"]), content.get("layer"))
        elif action == "grid_resume":
            self._worker.submit("grid_resume")
        else:
            super()._handle_action(action, content)
