"""Named render recipes: a parameterization with the transforms, optimizer and ReLU redirection
that go with it.

- ``"lucid"``: Lucid's defaults. ``param.image(size)`` (Fourier, decorrelated colours), the
  standard transforms (pad, jitter, scale, rotate), Adam at 0.05, redirected ReLU gradients
  for the first 16 steps.
- ``"maco"``: MACO (Fel et al. 2023) as the transfer benchmark runs it
  (``benchmarks/bench_fidelity.py``): ``param.maco(2 * size, input_size=size,
  output_size=size, output_crop=0.5)``, ``maco_transforms(size, crop=(0.4, 0.6))``, NAdam at
  1.0, no redirected ReLU. The canvas is twice the requested side; each step the network sees
  one crop of 40-60 % of the canvas side resized to ``size``; the image shown or returned is the
  canvas's central half, ``size`` px at the scale the network saw it (the whole canvas resized
  down halves every feature: other networks recognize it 3-4x less often, see
  ``benchmarks/README.md``).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass

import torch

from lucid_widgets.optvis.param import image, maco, maco_transforms
from lucid_widgets.optvis.transforms.base import Transform

__all__ = [
    "DEFAULT_RECIPE",
    "RECIPES",
    "Recipe",
    "choose",
    "lucid_recipe",
    "maco_recipe",
    "make_recipe",
    "render_options",
]

RECIPES = ("maco", "lucid")
DEFAULT_RECIPE = "maco"  # what a render without a param_f uses (recipe=None)
LUCID_LR = 0.05
MACO_LR = 1.0
MACO_CANVAS = 2  # canvas side / requested side
MACO_CROP = (0.4, 0.6)
MACO_VIEW = sum(MACO_CROP) / 2  # the centred part shown: the mean crop, at 1:1 scale


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

    def options(self) -> dict:
        """The keyword arguments of :class:`~lucid_widgets.optvis.render.Optimization`."""
        return {
            "param_f": self.param_f,
            "transforms": self.transforms,
            "optimizer": self.optimizer,
            "redirected_relu_steps": self.redirected_relu_steps,
        }


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
            f"MACO renders RGB images, but the model takes {channels}-channel input; use "
            "recipe='lucid' (in the widget: param 'fft' or 'pixel') for it."
        )
    canvas = MACO_CANVAS * int(size)
    param_f = functools.partial(
        maco, canvas, batch=batch, input_size=size, output_size=size, output_crop=MACO_VIEW
    )
    optimizer = functools.partial(torch.optim.NAdam, lr=float(lr))
    return Recipe("maco", param_f, maco_transforms(size, crop=MACO_CROP), optimizer, 0)


def choose(recipe: str | None, param_f: Callable | None = None) -> str:
    """The recipe a render uses: ``recipe`` when named, else ``"maco"`` without a ``param_f``
    and ``"lucid"`` with one (a user's own image keeps Lucid's defaults for the rest).

    Raises
    ------
    ValueError
        For an unknown name, or ``"maco"`` with a ``param_f`` (MACO's crops and optimizer are
        made for its own canvas: pass ``transforms=maco_transforms(...)`` yourself).
    """
    if recipe is None:
        return DEFAULT_RECIPE if param_f is None else "lucid"
    if recipe not in RECIPES:
        raise ValueError(f"recipe must be one of {RECIPES} (or None), got {recipe!r}.")
    if recipe == "maco" and param_f is not None:
        raise ValueError(
            "recipe='maco' makes its own image; with a param_f of your own leave recipe unset "
            "and pass MACO's parts yourself (transforms=param.maco_transforms(input_size), "
            "optimizer=lambda p: torch.optim.NAdam(p, lr=1.0), redirected_relu_steps=0)."
        )
    return recipe


def make_recipe(name: str, size: int, batch: int = 1, channels: int = 3) -> Recipe:
    """The recipe ``name`` (``"maco"`` or ``"lucid"``) for ``batch`` images of ``size`` px."""
    if name == "maco":
        return maco_recipe(size, batch, channels=channels)
    if name == "lucid":
        return lucid_recipe(size, batch, channels=channels)
    raise ValueError(f"recipe must be one of {RECIPES}, got {name!r}.")


def render_options(
    recipe: str | None,
    size: int,
    channels: int = 3,
    *,
    param_f: Callable | None = None,
    transforms: object = None,
    optimizer: Callable | None = None,
    redirected_relu_steps: int | None = None,
) -> dict:
    """A render's ``param_f``, ``transforms``, ``optimizer`` and ``redirected_relu_steps``:
    what was given, the chosen recipe's (see :func:`choose`) for whatever is ``None``."""
    base = make_recipe(choose(recipe, param_f), size, 1, channels).options()
    given = {
        "param_f": param_f, "transforms": transforms, "optimizer": optimizer,
        "redirected_relu_steps": redirected_relu_steps,
    }  # fmt: skip
    return {key: base[key] if value is None else value for key, value in given.items()}
