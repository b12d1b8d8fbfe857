"""The transform base class and the argument checks and random draws shared by the transforms."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch

__all__ = ["Generator", "Transform", "TransformFn"]

Generator = torch.Generator | None
TransformFn = Callable[[torch.Tensor, Generator], torch.Tensor]


def choice(options: Sequence[float], generator: Generator) -> float:
    """One of ``options``, drawn on CPU from ``generator``."""
    index = int(torch.randint(len(options), (), generator=generator, device="cpu"))
    return float(options[index])


def options_of(values: Sequence[float], name: str) -> tuple[float, ...]:
    """``values`` as a non-empty tuple of floats; a clear ``ValueError`` naming ``name`` else."""
    try:
        options = tuple(float(value) for value in values)
    except (TypeError, ValueError):
        options = ()
    if not options:
        raise ValueError(f"{name} needs a non-empty sequence of numbers, got {values!r}")
    return options


def pixel_count(value: Any, what: str, minimum: int = 0) -> int:
    """``value`` if it is an integer >= ``minimum`` (bools refused), else a ``ValueError``."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{what} must be an integer >= {minimum} (pixels), got {value!r}")
    return value


class Transform:
    """Base class of the built-in transforms: `transform(image, generator) -> image`."""

    label = "transform"  # how the factory call that made it reads (its repr)

    def __repr__(self) -> str:
        return self.label

    def __call__(self, image: torch.Tensor, generator: Generator = None) -> torch.Tensor:
        raise NotImplementedError
