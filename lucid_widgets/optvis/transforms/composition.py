"""Composing transforms: consecutive affine ones (and a constant pad before them) fuse to one warp.

User callables are accepted as `f(image, generator)`, `f(image, *, generator=...)` or `f(image)`;
how to call each is decided once, from its signature.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

from lucid_widgets.optvis.transforms.affine import AffineTransform, warp
from lucid_widgets.optvis.transforms.base import Generator, Transform, TransformFn
from lucid_widgets.optvis.transforms.pixel import Pad

__all__ = ["Compose", "compose"]


class _FusedWarp:
    """An optional constant pad followed by consecutive affine transforms, as one warp."""

    def __init__(self, padding: Pad | None, affines: list[AffineTransform]) -> None:
        self.padding, self.affines = padding, affines

    def __call__(self, image: torch.Tensor, generator: Generator) -> torch.Tensor:
        height, width = image.shape[-2:]
        fill, size = 0.0, None
        if self.padding is not None:  # draws first, as sequential application would
            fill = self.padding.value(generator)
            size = (height + 2 * self.padding.w, width + 2 * self.padding.w)
        matrix = np.eye(3)
        for affine in self.affines:  # applied in order: inverse maps multiply left to right
            matrix = matrix @ affine.matrix(generator)
        return warp(image, matrix, size, fill)


class _Call:
    """A user's callable: `f(image)`, `f(image, generator)` or `f(image, *, generator=...)`."""

    def __init__(self, function: Callable, style: str) -> None:
        self.function, self.style = function, style

    def __call__(self, image: torch.Tensor, generator: Generator) -> torch.Tensor:
        if self.style == "positional":
            return self.function(image, generator)
        if self.style == "keyword":
            return self.function(image, generator=generator)
        return self.function(image)


def _call_style(function: Callable) -> str:
    """How to pass the generator, decided once from the signature."""
    if isinstance(function, Transform):
        return "positional"
    target = function.forward if isinstance(function, torch.nn.Module) else function
    try:
        parameters = list(inspect.signature(target).parameters.values())
    except (TypeError, ValueError):  # builtins without a signature: one argument
        return "image"
    kinds = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    positional = [parameter for parameter in parameters if parameter.kind in kinds]
    if len(positional) >= 2:
        second = positional[1]
        if second.default is inspect.Parameter.empty or second.name in ("generator", "rng"):
            return "positional"
    if any(p.name == "generator" and p.kind == p.KEYWORD_ONLY for p in parameters):
        return "keyword"
    return "image"


class Compose(Transform):
    """Transforms applied in order, consecutive affine ones (and a constant pad before them)
    fused into one warp. Build it with :func:`compose`."""

    def __init__(self, transforms: Sequence[Any]) -> None:
        self.transforms = _flatten(transforms)
        self.stages = _plan(self.transforms)
        self.label = f"compose({self.transforms!r})"

    def __call__(self, image: torch.Tensor, generator: Generator = None) -> torch.Tensor:
        for stage in self.stages:
            image = stage(image, generator)
        return image


def _flatten(transforms: Sequence[Any]) -> list[Any]:
    """The callables of ``transforms``, nested :class:`Compose` inlined; bad items raise."""
    if callable(transforms):
        transforms = [transforms]
    if not isinstance(transforms, (list, tuple)):
        raise TypeError(f"compose expects a list of transforms, got {type(transforms).__name__}")
    flat = []
    for index, transform in enumerate(transforms):
        if isinstance(transform, Compose):
            flat += transform.transforms
        elif callable(transform):
            flat.append(transform)
        else:
            raise TypeError(
                f"compose: transform {index} is a {type(transform).__name__}, not a callable; "
                "use f(image, generator), f(image) or a built-in such as transforms.jitter(8)"
            )
    return flat


def _plan(transforms: list[Any]) -> list[TransformFn]:
    """The stages to run: fused warps for affine runs, every other transform called as is."""
    stages: list[TransformFn] = []
    index = 0
    while index < len(transforms):
        transform = transforms[index]
        constant_pad = isinstance(transform, Pad) and transform.mode == "constant"
        start = index + 1 if constant_pad else index
        end = start
        while end < len(transforms) and isinstance(transforms[end], AffineTransform):
            end += 1
        if end > start:
            padding = transform if constant_pad else None
            stages.append(_FusedWarp(padding, list(transforms[start:end])))
            index = end
        else:
            stages.append(_Call(transform, _call_style(transform)))
            index += 1
    return stages


def compose(transforms: Sequence[Any]) -> Compose:
    """Chain transforms into one `transform(image, generator)`.

    Accepts built-in transforms, nested compositions, `f(image, generator)` callables, and
    one-argument `f(image)` callables such as torchvision transforms (detected once, from the
    signature). Consecutive :func:`jitter` / :func:`random_scale` / :func:`random_rotate`, with a
    constant :func:`pad` right before them, run as a single bilinear warp.
    """
    return Compose(transforms)
