"""Checks of the engine's numeric arguments: step counts, thresholds, seeds."""

from __future__ import annotations

import numbers
from collections.abc import Iterable

import numpy as np

__all__ = ["check_seed", "check_steps", "check_thresholds"]


def _is_int(value: object) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, (bool, np.bool_))


def check_steps(steps: int) -> None:
    """Raise unless ``steps`` is a positive integer (``True`` is not a step count)."""
    if not _is_int(steps) or steps < 1:
        raise ValueError(f"steps must be a positive integer, got {steps!r}.")


def check_seed(seed: int | None) -> int | None:
    """``seed`` as an int in ``[0, 2**64)`` (larger and negative ones reduced modulo 2**64)."""
    if seed is None:
        return None
    if not _is_int(seed):
        raise ValueError(f"seed must be an integer or None, got {seed!r}.")
    return int(seed) % 2**64


def check_thresholds(thresholds: Iterable[int]) -> tuple[int, ...]:
    """``thresholds`` as a tuple of positive, increasing integer step counts, or a ValueError."""
    try:
        values = tuple(thresholds)
    except TypeError:
        values = (thresholds,)
    if not all(_is_int(value) for value in values):
        raise ValueError(
            f"thresholds must be positive integer step counts like (64, 256), got {thresholds!r}."
        )
    values = tuple(int(value) for value in values)
    if not values or any(t < 1 for t in values) or list(values) != sorted(set(values)):
        raise ValueError(
            f"thresholds must be positive, increasing step counts like (64, 256), got {values}."
        )
    return values
