"""The Microscope's unit detail, a part it owns: the open unit's view and how its run is set up.

:class:`UnitDetail` checks ``unit_view`` values (an image view needs a sample image), builds the
open unit's :class:`~lucid_widgets.widget.views.UnitView` (the editor text, the ready objective,
the run's overrides), adds the view's overrides to the preview request while the objective is
still the view's, and makes ``unit_view`` follow the grid's channel / neuron / negative toggles. The
Microscope declares ``unit_view`` and calls this part from its validators and run hooks.
"""

from __future__ import annotations

from typing import Any

import traitlets

from lucid_widgets.widget import engine
from lucid_widgets.widget.jobs import PreviewRequest
from lucid_widgets.widget.views import (
    IMAGE_VIEWS,
    UNIT_VIEWS,
    UnitView,
    build_view,
    run_config,
    view_for_grid,
)

__all__ = ["UnitDetail"]


class UnitDetail:
    """The open unit's view of one Microscope.

    Parameters
    ----------
    sample
        The Microscope's :class:`~lucid_widgets.widget.sample.SamplePanel` (its ``source``
        image is where the deepdream, caricature and accentuation views start).
    """

    def __init__(self, sample: Any) -> None:
        self._sample = sample
        self.view: UnitView | None = None  # the open unit's view (None before a unit opened)
        self.syncing = False  # unit_view is following the grid: no re-opening

    def check(self, view: str) -> str:
        """A valid ``unit_view`` value, or a ``TraitError`` saying what is valid."""
        if view not in UNIT_VIEWS:
            raise traitlets.TraitError(f"unit_view must be one of {UNIT_VIEWS}, got {view!r}")
        if view in IMAGE_VIEWS and self._sample.source is None:
            raise traitlets.TraitError(
                f"the {view} view needs a sample image: set w.sample = image (a path, PIL "
                "image, array or tensor) or upload one in the Sample panel first"
            )
        return view

    def open(self, view: str, row: dict, unit: int, grid_kind: str, size: int) -> Any:
        """Build the view of ``unit`` of ``row``'s layer; return its objective (or text)."""
        self.view = build_view(view, row, unit, grid_kind, self._sample.source, (size, size))
        return self.view.objective or self.view.text

    def prepare(self, request: PreviewRequest, objective_text: str) -> PreviewRequest:
        """Add the view's overrides to ``request`` while the objective is still the view's (an
        edited objective runs as written, with the plain settings)."""
        view = self.view
        if view is not None and objective_text == view.text:
            request.overrides.update(view.overrides)
            request.prepare = view.prepare
        return request

    def run_config(self, config: engine.PreviewConfig) -> engine.PreviewConfig:
        """The settings the open view's run uses (the diversity view forces a batch)."""
        return run_config(config, self.view.name if self.view is not None else "channel")

    def follow_grid(self, widget: Any) -> None:
        """Set ``widget.unit_view`` to the view matching the grid's channel / neuron / negative
        toggles, without re-opening the unit (``syncing`` is set meanwhile)."""
        self.syncing = True
        try:
            widget.unit_view = view_for_grid(
                widget.unit_view, widget.grid_kind, widget.grid_negative
            )
        finally:
            self.syncing = False
