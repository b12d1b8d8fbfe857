"""Units of an activation tensor, the one home of their counting and checks.

Activations are ``(B, C, H, W)`` (conv), ``(B, C)`` (linear) or ``(B, N, C)`` (tokens); a *unit*
is a channel ``C`` in each case.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch

__all__ = ["check_unit", "check_units", "unit_count", "unit_map"]


def unit_count(tensor: torch.Tensor) -> int:
    """Number of units (channels) of an activation tensor."""
    return tensor.shape[-1] if tensor.dim() == 3 else tensor.shape[1]


def check_units(layer: str, count: int, units: Iterable[int]) -> list[int]:
    """``units`` as ints, or an ``IndexError`` naming every unit outside ``0..count-1``."""
    units = [int(unit) for unit in units]
    bad = [unit for unit in units if not 0 <= unit < count]
    if bad:
        shown = ", ".join(map(str, bad[:5])) + (
            f", ... ({len(bad)} in all)" if len(bad) > 5 else ""
        )
        raise IndexError(
            f"Unit(s) {shown} out of range for layer {layer!r}, which has {count} units "
            f"(valid: 0..{count - 1})."
        )
    return units


def check_unit(layer: str, tensor: torch.Tensor, unit: int) -> None:
    """Raise an ``IndexError`` unless ``unit`` is a unit of ``tensor`` (a layer's activations)."""
    count = unit_count(tensor)
    if not 0 <= unit < count:
        raise IndexError(
            f"Unit {unit} is out of range for layer {layer!r}, which has {count} units "
            f"(valid: 0..{count - 1}; output shape {tuple(tensor.shape[1:])})."
        )


def unit_map(tensor: torch.Tensor, unit: int) -> torch.Tensor:
    """One unit's activations per batch element: (B, H, W), (B,) or (B, N)."""
    if tensor.dim() == 3:  # (B, N, C) tokens
        return tensor[:, :, unit]
    return tensor[:, unit]
