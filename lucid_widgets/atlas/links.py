"""Each unit's top input and output units, from :mod:`lucid_widgets.blocks` (issue 11).

:func:`lucid_widgets.blocks.connections.layer_connections` measures them (expanded weights
where the path between the layers is linear, attribution otherwise), a window of units at a
time, sharing the set-up. When the blocks module is missing from an installation, the table
says so (``available: False`` with the reason) instead of failing the build; the next build
that has it computes those tasks again.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping, Sequence

from torch import nn

from lucid_widgets.atlas.plan import LayerPlan, Settings

__all__ = ["connections_function", "unit_connections"]


def connections_function():
    """``layer_connections(model, layer, units, **options)`` or ``None`` when not installed."""
    try:
        module = importlib.import_module("lucid_widgets.blocks.connections")
    except ImportError:
        return None
    function = getattr(module, "layer_connections", None)
    return function if callable(function) else None


def _entry(result, plans: Mapping[str, LayerPlan]) -> dict:
    """One direction's connections as JSON, the source named as the atlas names it."""
    source = str(getattr(result, "source", "") or "")
    by_path = {plan.path: name for name, plan in plans.items()}
    return {
        "layer": source if source in plans else by_path.get(source, source),
        "units": [int(unit) for unit in list(result.units)],
        "strength": [round(float(value), 6) for value in list(result.strength)],
        "method": str(getattr(result, "method", "")),
    }


def _neighbour(plans: Mapping[str, LayerPlan], layer: str, step: int) -> str | None:
    names = list(plans)
    position = names.index(layer) + step
    return names[position] if 0 <= position < len(names) else None


def unit_connections(
    model: nn.Module,
    plans: Mapping[str, LayerPlan],
    layer: str,
    units: Sequence[int],
    settings: Settings,
) -> dict:
    """``{"available", "reason", "units": {unit: {"in": {...}, "out": {...}}}}``.

    "in": the strongest units of the atlas layer before ``layer`` (for the first layer, the
    blocks engine's default: the browsable layer before it); "out": those of the atlas layer
    after it (none for the last layer).
    """
    function = connections_function()
    if function is None:
        return {
            "available": False,
            "reason": "lucid_widgets.blocks.connections is not available in this installation",
            "units": {},
        }
    path, k = plans[layer].path, settings.connections_k
    table: dict[str, dict] = {str(unit): {} for unit in units}
    for direction, other in (
        ("in", _neighbour(plans, layer, -1)),
        ("out", _neighbour(plans, layer, 1)),
    ):
        if direction == "out" and other is None:
            continue
        source = plans[other].path if other else None
        try:
            results = function(model, path, list(units), source=source, k=k, direction=direction)
        except ValueError as error:  # e.g. no browsable layer before the first one
            for unit in units:
                table[str(unit)][direction] = {
                    "layer": None,
                    "units": [],
                    "strength": [],
                    "method": f"none: {error}",
                }
            continue
        for unit, result in zip(units, results, strict=True):
            table[str(unit)][direction] = _entry(result, plans)
    return {"available": True, "reason": "", "units": table}
