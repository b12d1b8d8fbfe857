"""The unit detail's views: what a click on a unit optimizes, and with which settings.

``channel`` and ``neuron`` maximize the unit; ``negative`` minimizes it; ``diversity`` renders a
batch of four images pushed apart by ``- 100 * diversity(layer)``; ``deepdream`` starts from the
sample image and amplifies what the layer sees in it
(:func:`lucid_widgets.dataset.sample.deepdream_of`); ``caricature`` inverts the layer's
activations of the sample image (:func:`lucid_widgets.dataset.sample.caricature_of`);
``accentuation`` starts from the sample image and raises the unit while keeping the image's
activations near the photo's along the network
(:func:`lucid_widgets.dataset.sample.accentuation_of`). All of them run through the same live
preview.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from lucid_widgets.expression.compiler import unit_term
from lucid_widgets.widget.engine import PreviewConfig

__all__ = [
    "DIVERSITY_BATCH",
    "DIVERSITY_WEIGHT",
    "IMAGE_VIEWS",
    "UNIT_VIEWS",
    "UnitView",
    "build_view",
    "run_config",
    "view_for_grid",
]

UNIT_VIEWS = (
    "channel", "neuron", "negative", "diversity", "deepdream", "caricature", "accentuation",
)  # fmt: skip
IMAGE_VIEWS = ("deepdream", "caricature", "accentuation")  # need a sample image
DIVERSITY_BATCH = 4
DIVERSITY_WEIGHT = 100


@dataclass
class UnitView:
    """A view of one unit: the editor text, and what the run needs besides the settings.

    ``objective`` is a ready objective when the text is not an editor expression (caricature);
    ``overrides`` go to the run (``param_f`` starting from the sample image); ``prepare(model)``
    runs in the worker thread and returns ``(objective, overrides)``.
    """

    name: str
    text: str
    objective: Any = None
    overrides: dict = field(default_factory=dict)
    prepare: Callable[[Any], tuple[Any, dict]] | None = None


def _layer_text(row: dict) -> str:
    return unit_term(row.get("alias") or row["name"], 0).rsplit(":", 1)[0]


def build_view(
    view: str,
    row: dict,
    unit: int,
    grid_kind: str = "channel",
    sample: Any = None,
    size: tuple[int, int] | None = None,
) -> UnitView:
    """The :class:`UnitView` of ``unit`` of the catalog ``row``'s layer.

    Raises
    ------
    ValueError
        For an unknown view, or an image view without a ``sample`` image.
    """
    if view not in UNIT_VIEWS:
        raise ValueError(f"unknown unit view {view!r}; valid views: {', '.join(UNIT_VIEWS)}")
    layer = row.get("alias") or row["name"]
    if view in ("channel", "neuron"):
        return UnitView(view, unit_term(layer, unit, view))
    if view == "negative":
        return UnitView(view, f"-{unit_term(layer, unit, grid_kind)}")
    if view == "diversity":
        term = unit_term(layer, unit, grid_kind)
        return UnitView(view, f"{term} - {DIVERSITY_WEIGHT} * diversity({_layer_text(row)})")
    if sample is None:
        raise ValueError(
            f"the {view} view needs a sample image: set w.sample = image or upload one first"
        )
    if view == "deepdream":
        from lucid_widgets.dataset.sample import deepdream_of

        _, param_f = deepdream_of(sample, row["name"], size=size)
        return UnitView(view, f"deepdream({_layer_text(row)})", overrides={"param_f": param_f})
    if view == "accentuation":
        return _prepared_view(view, f"accentuation({unit_term(layer, unit)})", row, sample, unit)
    return _prepared_view(view, f"caricature({_layer_text(row)})", row, sample)


def _prepared_view(view: str, text: str, row: dict, sample: Any, unit: int = 0) -> UnitView:
    """A view whose objective needs the model (built in the worker before the run)."""
    from lucid_widgets.optvis.objectives import Objective

    def not_ready(acts: Any) -> Any:
        raise RuntimeError(f"the {view} objective is built in the worker before the run")

    def prepare(model: Any) -> tuple[Any, dict]:
        from lucid_widgets.dataset.sample import accentuation_of, caricature_of

        if view == "accentuation":
            objective, param_f = accentuation_of(model, sample, row["name"], unit)
        else:
            objective, param_f = caricature_of(model, sample, row["name"])
        return _renamed(objective, text), {"param_f": param_f}

    placeholder = Objective(not_ready, text, {row["name"]})
    return UnitView(view, text, objective=placeholder, prepare=prepare)


def _renamed(objective: Any, name: str) -> Any:
    """The objective with the editor's text as its name (what the preview reports it runs)."""
    from lucid_widgets.optvis.objectives import Objective

    return Objective(objective.fn, name, objective.layers)


def run_config(config: PreviewConfig, view: str) -> PreviewConfig:
    """The settings a view runs with: the diversity view always optimizes a batch of four."""
    if view == "diversity" and config.batch != DIVERSITY_BATCH:
        return dataclasses.replace(config, batch=DIVERSITY_BATCH)
    return config


def view_for_grid(current: str, grid_kind: str, negative: bool) -> str:
    """The unit view after the grid's channel / neuron / negative toggles changed."""
    if negative:
        return "negative" if current in ("channel", "neuron", "negative") else current
    if current in ("channel", "neuron", "negative"):
        return grid_kind
    return current
