"""The unit detail's "Connections" panel: the units that feed the open unit and the ones it feeds.

One panel, one trait (``unit_connections``), whatever the source (its ``source`` key):

- ``"live"``: computed in the widget's worker thread by :func:`lucid_widgets.blocks.connections`
  (``"in"``: the previous browsable layer, ``"out"``: the next one), with the sample image as the
  images the attribution fallback averages over when there is one;
- ``"atlas"``: the connections an atlas stores for the unit (``Microscope(model, atlas=...)``;
  ``"in"`` / ``"out"``: the previous / next atlas layer, no kernels), shown at once.

Each connected unit shows its signed strength, its grid thumbnail (from the grid cache, filled
from the atlas where it holds it, else rendered on demand with the grid settings and stored in
that cache) and its expanded-weight kernel where the path is linear. Clicking one in the widget
opens it: navigation along the network. The live preview keeps its priority: the thumbnails that
must be rendered wait until it is done (state ``"waiting"``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from lucid_widgets.widget.blocks_media import kernel_image, render_unit_thumbnails
from lucid_widgets.widget.media import BlobWriter

__all__ = ["CONNECTIONS_K", "ConnectionsPanel", "UnitConnections"]

CONNECTIONS_K = 8
DIRECTIONS = ("in", "out")


@dataclass
class UnitConnections:
    """The open unit's connections: ``inputs`` (earlier layer) and ``outputs`` (later layer),
    each a :class:`~lucid_widgets.blocks.Connections` or ``None`` (no such layer, or an error:
    see ``errors``); ``source`` is ``"live"`` (computed) or ``"atlas"`` (stored)."""

    layer: str
    unit: int
    inputs: Any = None
    outputs: Any = None
    errors: dict | None = None
    source: str = "live"


class ConnectionsPanel:
    """Owned by a :class:`~lucid_widgets.widget.Microscope`; publishes ``unit_connections`` and
    ``unit_connections_blob``."""

    def __init__(self, widget: Any, model: Any, sample: Any) -> None:
        self._widget = widget
        self._model = model
        self._sample = sample  # the SamplePanel: its image feeds the attribution fallback
        self._generation = 0
        self.result: UnitConnections | None = None
        self.k = CONNECTIONS_K
        self._waiting: tuple | None = None  # (result, generation) whose thumbnails wait

    def request(self, stored: UnitConnections | None = None) -> None:
        """Show the open unit's connections: ``stored`` ones (an atlas's) at once, else computed
        in the worker (the previous result is dropped)."""
        layer, unit = self._widget.layer, self._widget.unit
        self._generation += 1
        self.result, self._waiting = None, None
        if not layer or unit < 0:
            self._widget.publish(unit_connections={}, unit_connections_blob=b"")
            return
        if stored is not None and (stored.layer, stored.unit) == (layer, unit):
            self.result = stored
            self._show(stored, self._generation)
            return
        state = {"state": "running", "layer": layer, "unit": unit, "source": "live"}
        self._widget.publish(unit_connections=state, unit_connections_blob=b"")
        self._widget.run_in_worker(self._compute, layer, unit, self._generation)

    def _compute(self, layer: str, unit: int, generation: int) -> None:
        """Worker thread: both directions, then the thumbnails that are missing."""
        from lucid_widgets.blocks import connections

        found, errors = {}, {}
        for direction in DIRECTIONS:
            if generation != self._generation:
                return
            try:
                found[direction] = connections(
                    self._model, layer, unit, k=self.k, direction=direction,
                    images=self._sample.source,
                )  # fmt: skip
            except (ValueError, IndexError, RuntimeError) as error:
                errors[direction] = str(error)
        result = UnitConnections(layer, unit, found.get("in"), found.get("out"), errors)
        self.result = result
        self._show(result, generation, in_worker=True)

    def _show(self, result: UnitConnections, generation: int, in_worker: bool = False) -> None:
        """Publish ``result``; render its missing thumbnails now or once the preview is done."""
        if not self._missing(result):
            self.publish(result, "done")
        elif self._widget.running:  # the preview first
            self._waiting = (result, generation)
            self.publish(result, "waiting")
        elif in_worker:
            self._render(result, generation)
        else:
            self.publish(result, "rendering")
            self._widget.run_in_worker(self._render, result, generation)

    def _missing(self, result: UnitConnections) -> bool:
        for conn in (result.inputs, result.outputs):
            if conn is not None:
                cached = self._widget.layer_thumbnails(self._widget.layer_name(conn.source))
                if any(unit not in cached for _, unit, _ in _shown(conn)):
                    return True
        return False

    def resume(self) -> None:
        """The preview is done: render the thumbnails that waited for it (in the worker)."""
        waiting, self._waiting = self._waiting, None
        if waiting is not None and waiting[1] == self._generation:
            self._widget.run_in_worker(self._render, *waiting)

    def _render(self, result: UnitConnections, generation: int) -> None:
        """Worker thread: the missing thumbnails of both sides, then the final state."""
        self.publish(result, "rendering")
        stop = self._widget.stop_event
        for conn in (result.inputs, result.outputs):
            if conn is None or generation != self._generation or stop.is_set():
                continue
            source = self._widget.layer_name(conn.source)
            units = [unit for _, unit, _ in _shown(conn)]
            if render_unit_thumbnails(self._widget, self._model, source, units, stop):
                self.publish(result, "rendering")
        if generation == self._generation:
            self.publish(result, "stopped" if stop.is_set() else "done")

    def publish(self, result: UnitConnections, state: str) -> None:
        """The connections with the thumbnails and kernels there are, in one message."""
        blob = BlobWriter()
        info: dict[str, Any] = {
            "state": state, "layer": result.layer, "unit": result.unit, "source": result.source,
        }  # fmt: skip
        for key, conn in (("inputs", result.inputs), ("outputs", result.outputs)):
            error = (result.errors or {}).get("in" if key == "inputs" else "out")
            info[key] = self._side(conn, blob) if conn is not None else {"error": error or ""}
        self._widget.publish(unit_connections=info, unit_connections_blob=blob.blob())

    def _side(self, conn: Any, blob: BlobWriter) -> dict[str, Any]:
        source = self._widget.layer_name(conn.source)
        thumbnails = self._widget.layer_thumbnails(source)
        kernels = conn.kernels
        peak = float(abs(kernels).max()) if kernels is not None and kernels.size else None
        items = []
        for rank, unit, strength in _shown(conn):
            item: dict[str, Any] = {"unit": unit, "strength": float(strength), "thumb": None}
            item["kernel"] = (
                None if kernels is None else blob.add(_png(kernel_image(kernels[rank], peak)))
            )
            if unit in thumbnails:
                item["thumb"] = blob.add(thumbnails[unit])
            items.append(item)
        return {"layer": source, "method": conn.method, "images": conn.images, "items": items}


def _shown(conn: Any) -> list[tuple[int, int, float]]:
    """``(rank, unit, strength)`` of the connections that exist: a strength of (almost) zero is
    no connection (a depthwise conv feeds one unit) and is not shown."""
    strength = np.asarray(conn.strength, dtype=np.float64)
    floor = 1e-6 * float(np.abs(strength).max()) if strength.size else 0.0
    return [
        (rank, int(unit), float(value))
        for rank, (unit, value) in enumerate(zip(conn.units, strength, strict=True))
        if abs(value) > floor
    ]


def _png(image: Any) -> bytes:
    from lucid_widgets.widget.frames import encode

    return encode(image, "png")
