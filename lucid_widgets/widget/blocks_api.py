"""The Microscope's building blocks, a part it owns (composed, not mixed in).

- The unit detail's connections: ``w.connections`` (:class:`~.connections.UnitConnections`),
  synced as ``unit_connections`` / ``unit_connections_blob`` (stored ones on an atlas, else
  computed live; ``source`` says which).
- The Sample panel's views of the open layer: ``w.sample_view`` (``"units"``, ``"groups"``,
  ``"dictionary"``, ``"grid"``, ``"attribution"``), ``w.sample_target`` (the class the groups
  and the attribution are attributed to; -1: the top prediction), ``w.sample_block`` (the engine
  result behind the view), ``w.open_group(i)``; synced as ``sample_blocks`` /
  ``sample_blocks_blob``.

The Microscope declares these traits (the front end syncs them on the widget) and keeps the
public names above; :class:`BuildingBlocks` holds the two panels, checks the traits' values,
answers the front end's messages and tells the panels when to compute.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import traitlets

from lucid_widgets.widget.blocks_panel import SAMPLE_VIEWS, BlocksPanel
from lucid_widgets.widget.connections import ConnectionsPanel, UnitConnections
from lucid_widgets.widget.unit_grid import UnitGrid

__all__ = ["BuildingBlocks"]


class BuildingBlocks:
    """The connections panel and the Sample panel's building-blocks views of one Microscope.

    Parameters
    ----------
    widget
        The Microscope (publishes the traits, runs the passes in its worker).
    model
        The Microscope's model.
    sample
        Its :class:`~lucid_widgets.widget.sample.SamplePanel` (the sample image feeds both).
    grid
        Its :class:`~lucid_widgets.widget.unit_grid.UnitGrid` (an atlas's stored connections).
    """

    def __init__(self, widget: Any, model: Any, sample: Any, grid: UnitGrid) -> None:
        self._widget = widget
        self._grid = grid
        self.connections = ConnectionsPanel(widget, model, sample)
        self.views = BlocksPanel(widget, model, sample)

    def actions(self) -> dict[str, Callable[[dict, list], None]]:
        """Front-end messages of the building-blocks views."""
        widget = self._widget
        return {
            "sample_view": lambda content, buffers: setattr(
                widget, "sample_view", str(content.get("view"))
            ),
            "sample_target": lambda content, buffers: setattr(
                widget, "sample_target", int(content["index"])
            ),
            "open_group": lambda content, buffers: widget.open_group(int(content["group"])),
        }

    def check(self, name: str, value: Any) -> Any:
        """The value of ``sample_view`` or ``sample_target``, or a ``TraitError``."""
        if name == "sample_view" and value not in SAMPLE_VIEWS:
            raise traitlets.TraitError(f"sample_view must be one of {SAMPLE_VIEWS}, got {value!r}")
        if name == "sample_target" and value < -1:
            raise traitlets.TraitError(
                f"sample_target must be -1 (the top prediction) or a class index, got {value}"
            )
        return value

    # ---- when to compute (kernel thread) ----------------------------------------------------
    def open_unit(self) -> None:
        """The open unit changed: its connections, the atlas's when it stores them."""
        widget = self._widget
        self.connections.request(self._grid.stored_connections(widget.layer, widget.unit))

    def on_status(self, status: str) -> None:
        """The preview's status changed: thumbnails that waited for its end render now."""
        if status == "done":  # not "paused": Stop stops the thumbnails too
            self.connections.resume()

    def resume_stopped(self) -> None:
        """Compute again what Stop ended (``w.start()``)."""
        if self._widget.unit_connections.get("state") == "stopped":
            self.open_unit()
        if self._widget.sample_blocks.get("state") == "stopped":
            self.views.request()

    def new_sample(self) -> None:
        """A new sample image: every view computed again."""
        self.views.reset()
        self.views.request()

    # ---- results ----------------------------------------------------------------------------
    @property
    def unit_connections(self) -> UnitConnections | None:
        """The open unit's connections (None while computed or without an open unit)."""
        return self.connections.result

    def group_objective(self, index: int) -> Any:
        """Neuron group ``index``'s direction objective (``w.sample_view = "groups"``)."""
        groups = self.views.result
        if self._widget.sample_view != "groups" or groups is None:
            raise ValueError(
                "no neuron groups yet: set w.sample_view = 'groups' (with a sample image and a "
                "layer) and wait until they are computed"
            )
        return groups.objective(index)  # IndexError names the valid groups
