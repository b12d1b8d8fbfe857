"""The Microscope's building-blocks traits and Python API (a mixin of :class:`Microscope`).

- The unit detail's connections: ``w.connections`` (:class:`~.connections.UnitConnections`),
  synced as ``unit_connections`` / ``unit_connections_blob``.
- The Sample panel's views of the open layer: ``w.sample_view`` (``"units"``, ``"groups"``,
  ``"dictionary"``, ``"grid"``, ``"attribution"``), ``w.sample_target`` (the class the groups
  and the attribution are attributed to; -1: the top prediction), ``w.sample_block`` (the engine
  result behind the view), ``w.open_group(i)``; synced as ``sample_blocks`` /
  ``sample_blocks_blob``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import traitlets

from lucid_widgets.widget import engine
from lucid_widgets.widget.blocks_panel import SAMPLE_VIEWS
from lucid_widgets.widget.traits import binary_trait

__all__ = ["BlocksMixin"]


class BlocksMixin(traitlets.HasTraits):
    """Traits and methods of the building-blocks views; see the module docstring.

    The class using it provides ``_connections`` (a ConnectionsPanel), ``_blocks`` (a
    BlocksPanel), ``_row(layer)``, ``_grid_key(layer, kind, negative)``, ``_cache``,
    ``_grid_config``, ``grid_kind``, ``_set_objective`` and ``restart``.
    """

    unit_connections = traitlets.Dict().tag(sync=True)
    unit_connections_blob = binary_trait()
    sample_view = traitlets.Unicode("units").tag(sync=True)
    sample_target = traitlets.Int(-1).tag(sync=True)
    sample_blocks = traitlets.Dict().tag(sync=True)
    sample_blocks_blob = binary_trait()

    def _blocks_actions(self) -> dict:
        """Front-end messages of the building-blocks views."""
        return {
            "sample_view": lambda content, buffers: setattr(
                self, "sample_view", str(content.get("view"))
            ),
            "sample_target": lambda content, buffers: setattr(
                self, "sample_target", int(content["index"])
            ),
            "open_group": lambda content, buffers: self.open_group(int(content["group"])),
        }

    # ---- connections ------------------------------------------------------------------------
    @property
    def connections(self) -> Any:
        """The open unit's :class:`~lucid_widgets.widget.connections.UnitConnections`
        (``.inputs`` / ``.outputs``: :class:`~lucid_widgets.blocks.Connections`), or None while
        they are computed (see ``w.unit_connections["state"]``) or without an open unit."""
        return self._connections.result

    @traitlets.observe("status")
    def _on_status_done(self, change: dict) -> None:
        if change["new"] == "done":  # not "paused": Stop stops the thumbnails too
            self._connections.resume()

    # ---- sample views -----------------------------------------------------------------------
    @traitlets.validate("sample_view")
    def _valid_sample_view(self, proposal: dict) -> str:
        if proposal["value"] not in SAMPLE_VIEWS:
            raise traitlets.TraitError(
                f"sample_view must be one of {SAMPLE_VIEWS}, got {proposal['value']!r}"
            )
        return proposal["value"]

    @traitlets.validate("sample_target")
    def _valid_sample_target(self, proposal: dict) -> int:
        value = proposal["value"]
        if value < -1:
            raise traitlets.TraitError(
                f"sample_target must be -1 (the top prediction) or a class index, got {value}"
            )
        return value

    @traitlets.observe("sample_view", "sample_target")
    def _on_sample_view(self, change: dict) -> None:
        self._blocks.request()

    @property
    def sample_block(self) -> Any:
        """The result behind ``sample_view`` for the open layer: a
        :class:`~lucid_widgets.blocks.NeuronGroups`, a
        :class:`~lucid_widgets.blocks.SemanticDictionary`, the activation grid's cells (list of
        dicts) or an :class:`~lucid_widgets.blocks.Attribution`; None while computing."""
        return self._blocks.result

    def open_group(self, index: int) -> None:
        """Run neuron group ``index``'s direction objective (``w.sample_view = "groups"``) live
        in the preview."""
        groups = self._blocks.result
        if self.sample_view != "groups" or groups is None:
            raise ValueError(
                "no neuron groups yet: set w.sample_view = 'groups' (with a sample image and a "
                "layer) and wait until they are computed"
            )
        objective = groups.objective(index)  # IndexError names the valid groups
        self._set_objective(objective)
        self.restart()

    # ---- what the panels need from the widget ------------------------------------------------
    def layer_name(self, layer: str) -> str:
        """The dotted module path of ``layer`` (a name or an alias)."""
        return self._row(layer)["name"]

    def layer_units(self, layer: str) -> int:
        """Number of units of ``layer``."""
        return int(self._row(layer).get("units") or 0)

    @property
    def grid_config(self) -> engine.GridConfig:
        """The thumbnail settings (``grid_settings``) as a config."""
        return self._grid_config

    @property
    def thumbnail_kind(self) -> str:
        """The objective kind thumbnails are rendered with (the grid's channel / neuron)."""
        return engine.unit_kind(self.grid_kind, False)

    def layer_thumbnails(self, layer: str) -> dict[int, bytes]:
        """Encoded thumbnails of ``layer``'s rendered units (grid settings, positive kind)."""
        key = self._grid_key(self.layer_name(layer), self.grid_kind, False)
        return {unit: data for unit, (data, _) in self._cache.units(key).items()}

    def put_thumbnails(self, layer: str, units: list[int], pixels: np.ndarray) -> None:
        """Store rendered thumbnails ``(n, H, W, 3)`` uint8 of ``units`` in the grid's cache."""
        from lucid_widgets.widget.frames import encode

        key = self._grid_key(self.layer_name(layer), self.grid_kind, False)
        for unit, picture in zip(units, pixels, strict=True):
            self._cache.put(key, int(unit), encode(picture, "jpeg", quality=85), picture)
