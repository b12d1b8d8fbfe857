"""Each unit's top input and output units, from :func:`lucid_widgets.blocks.connections`.

When the blocks module (issue 11) is not installed in this checkout, the table says so
(``available: False`` with the reason) instead of failing the build; the next build, with
connections available, computes those tasks again.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping, Sequence

import numpy as np
from torch import nn

from lucid_widgets.atlas.plan import LayerPlan, Settings

__all__ = ["connections_function", "unit_connections"]


def connections_function():
    """``lucid_widgets.blocks.connections`` or ``None`` when it does not exist here."""
    try:
        module = importlib.import_module("lucid_widgets.blocks")
    except ImportError:
        return None
    function = getattr(module, "connections", None)
    return function if callable(function) else None


def _plain(value) -> list:
    if hasattr(value, "tolist"):
        return value.tolist()
    return [_plain(item) if isinstance(item, np.ndarray) else item for item in value]


def _entry(result, fallback_layer: str | None) -> dict:
    units = _plain(result.units)
    return {
        "layer": fallback_layer or getattr(result, "source", None),
        "units": units,
        "strength": [round(float(value), 6) for value in _plain(result.strength)],
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

    "in" lists the strongest units of the layer before ``layer`` in the atlas (the blocks
    engine's default source when the atlas has none before), "out" those of the layer after.
    """
    function = connections_function()
    if function is None:
        return {
            "available": False,
            "reason": "lucid_widgets.blocks.connections is not available in this installation",
            "units": {},
        }
    before, after = _neighbour(plans, layer, -1), _neighbour(plans, layer, 1)
    path = plans[layer].path
    table: dict[str, dict] = {}
    for unit in units:
        entry = {}
        for direction, other in (("in", before), ("out", after)):
            if direction == "out" and other is None:
                continue
            source = plans[other].path if other else None
            result = function(
                model,
                path,
                unit=int(unit),
                source=source,
                k=settings.connections_k,
                direction=direction,
            )
            entry[direction] = _entry(result, other)
        table[str(unit)] = entry
    return {"available": True, "reason": "", "units": table}
