"""Seeded initialisation without global state.

A seeded render sets its own ``torch.Generator`` for the length of its ``param_f()`` call
(:func:`seeded`, a context variable: each thread sees its own), and the built-in
parameterizations draw their initial values through :func:`randn`. Torch's global random state
is never read or changed by a seeded render, so two renders in two threads, or a user drawing
random numbers meanwhile, do not disturb one another. A ``param_f`` of your own is seeded the
same way when it draws through :func:`randn`.
"""

from __future__ import annotations

import contextvars
from collections.abc import Iterator
from contextlib import contextmanager

import torch

__all__ = ["rand", "randn", "seeded"]

_GENERATOR: contextvars.ContextVar[torch.Generator | None] = contextvars.ContextVar(
    "lucid_widgets_param_generator", default=None
)


@contextmanager
def seeded(generator: torch.Generator | None) -> Iterator[None]:
    """Make :func:`randn` draw from ``generator`` (a CPU generator) in this thread for a while."""
    token = _GENERATOR.set(generator)
    try:
        yield
    finally:
        _GENERATOR.reset(token)


def _draw(sampler, shape: tuple[int, ...]) -> torch.Tensor:
    generator = _GENERATOR.get()
    if generator is None:
        return sampler(*shape)
    values = sampler(*shape, generator=generator, device="cpu")
    return values.to(torch.get_default_device())


def rand(*shape: int) -> torch.Tensor:
    """Uniform ``[0, 1)`` values of ``shape`` on the default device, drawn as :func:`randn`."""
    return _draw(torch.rand, shape)


def randn(*shape: int, sd: float = 1.0) -> torch.Tensor:
    """``N(0, sd)`` values of ``shape`` on the default device.

    Drawn on CPU from the generator set by :func:`seeded` (so a seed gives the same values on
    every device) and moved; without one, from torch's global generator, as ``torch.randn``.
    """
    return _draw(torch.randn, shape) * sd
