"""Named render recipes: a parameterization with the transforms, optimizer and ReLU redirection
that go with it.

- ``"lucid"``: Lucid's defaults. ``param.image(size)`` (Fourier, decorrelated colours), the
  standard transforms (pad, jitter, scale, rotate), Adam at 0.05, redirected ReLU gradients
  for the first 16 steps.
- ``"maco"``: MACO (Fel et al. 2023) as the transfer benchmark runs it
  (``benchmarks/bench_fidelity.py``): ``param.maco(2 * size, input_size=size,
  output_size=size)``, ``maco_transforms(size, crop=(0.4, 0.6))``, NAdam at 1.0, no redirected
  ReLU. The canvas is twice the requested side; each step the network sees one crop of 40-60 % of
  the canvas side resized to ``size``; the image shown or returned is the whole canvas resized
  down (antialiased) to ``size``, the picture the benchmark's judges classify.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass

import torch

from lucid_widgets.optvis.param import image, maco, maco_transforms
from lucid_widgets.optvis.transforms.base import Transform

__all__ = ["RECIPES", "Recipe", "lucid_recipe", "maco_recipe"]

RECIPES = ("maco", "lucid")
LUCID_LR = 0.05
MACO_LR = 1.0
MACO_CANVAS = 2  # canvas side / requested side
MACO_CROP = (0.4, 0.6)


@dataclass(frozen=True)
class Recipe:
    """What a render uses besides the model and the objective.

    Attributes
    ----------
    name
        ``"lucid"`` or ``"maco"``.
    param_f
        Zero-argument callable returning ``(params, image_f)``.
    transforms
        The recipe's transforms; ``None``: the standard ones (``transforms.standard_transforms``).
    optimizer
        ``optimizer(params) -> torch.optim.Optimizer``.
    redirected_relu_steps
        Steps with Lucid's redirected ReLU gradient.
    """

    name: str
    param_f: Callable[[], tuple]
    transforms: list[Transform] | None
    optimizer: Callable[[list[torch.Tensor]], torch.optim.Optimizer]
    redirected_relu_steps: int


def lucid_recipe(
    size: int,
    batch: int = 1,
    *,
    fft: bool = True,
    decorrelate: bool = True,
    alpha: bool = False,
    channels: int = 3,
    lr: float = LUCID_LR,
) -> Recipe:
    """Lucid's defaults for a ``size`` x ``size`` image (see the module docstring)."""
    param_f = functools.partial(
        image, size, batch=batch, fft=fft, decorrelate=decorrelate, alpha=alpha, channels=channels
    )
    optimizer = functools.partial(torch.optim.Adam, lr=float(lr))
    return Recipe("lucid", param_f, None, optimizer, 16)


def maco_recipe(size: int, batch: int = 1, *, channels: int = 3, lr: float = MACO_LR) -> Recipe:
    """MACO's recipe for a ``size`` x ``size`` result (see the module docstring).

    Raises
    ------
    ValueError
        For a model that does not take 3-channel (RGB) images: MACO's spectrum is of RGB photos.
    """
    if channels != 3:
        raise ValueError(
            f"MACO renders RGB images, but the model takes {channels}-channel input; use the "
            "'lucid' recipe (param 'fft' or 'pixel') for it."
        )
    canvas = MACO_CANVAS * int(size)
    param_f = functools.partial(maco, canvas, batch=batch, input_size=size, output_size=size)
    optimizer = functools.partial(torch.optim.NAdam, lr=float(lr))
    return Recipe("maco", param_f, maco_transforms(size, crop=MACO_CROP), optimizer, 0)
