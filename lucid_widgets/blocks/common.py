"""What the building blocks share: images in, one internal forward pass, spatial layouts.

Every pass the blocks make through a user's model goes through :func:`internal_pass` (the
model's shadow copy, by the rule renders follow: no flag of the user's model is touched) and
:func:`layer_outputs` / :func:`replaced_forward`, so that a change of how internal passes run
is made here, once.
"""

from __future__ import annotations

import contextlib
import math
import weakref
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from lucid_widgets.dataset.images import ImageLoadError, as_float, load_image
from lucid_widgets.optvis.hooks import (
    capture,
    internal_hook,
    model_device,
    resolve_layer,
)
from lucid_widgets.optvis.preprocess import Preprocess, resolve
from lucid_widgets.optvis.shadow import pass_network
from lucid_widgets.zoo.receptive_field import model_dtype

__all__ = [
    "SpatialMap",
    "browsable_order",
    "internal_pass",
    "layer_outputs",
    "load_images",
    "replaced_forward",
    "spatial_map",
]

SPATIAL_SHAPES = (
    "(B, C, H, W) convolutional maps or (B, N, C) token sequences; (B, C) layers such as a "
    "classifier have no positions"
)


def _input_size(size: int | tuple[int, int] | None, pre: Preprocess) -> tuple[int, int]:
    if size is None:
        return tuple(pre.input_size)
    if isinstance(size, int):
        size = (size, size)
    if len(size) != 2 or not all(isinstance(s, int) and s > 0 for s in size):
        raise ValueError(f"size must be a positive int or (height, width), got {size!r}.")
    return tuple(size)


def _image_items(images: object) -> list[object]:
    """One image or several: a list / tuple of images, a ``(N, C, H, W)`` tensor or an
    ``(N, H, W, C)`` array."""
    if isinstance(images, (torch.Tensor, np.ndarray)) and images.ndim == 4:
        return list(images)
    if isinstance(images, (list, tuple)) and images and not isinstance(images[0], (int, float)):
        return list(images)
    return [images]


def load_images(
    model: nn.Module,
    images: object,
    size: int | tuple[int, int] | None = None,
    preprocess: Preprocess | None = None,
) -> tuple[torch.Tensor, Preprocess]:
    """Images as the package accepts them -> ``(N, C, H, W)`` float in ``[0, 1]``, and the
    model's preprocessing (not applied yet).

    ``images`` is one image (path, PIL image, ``(H, W[, C])`` array, ``(C, H, W)`` tensor) or
    several (a list of those, a ``(N, C, H, W)`` tensor or an ``(N, H, W, C)`` array). Each is
    resized (shorter side) and centre-cropped to ``size`` (default: the model's input size).
    """
    pre = resolve(model, preprocess)
    height, width = _input_size(size, pre)
    items = _image_items(images)
    if not items:
        raise ValueError("No images given; pass an image or a list of images.")
    tensors = []
    for index, item in enumerate(items):
        try:
            tensors.append(as_float(load_image(item, (height, width), pre.channels)))
        except ImageLoadError as error:
            shape = tuple(getattr(item, "shape", ())) or getattr(item, "size", "")
            where = f"image {index}" if len(items) > 1 else "the image"
            raise ValueError(
                f"The model takes {pre.channels}-channel images, but {where} "
                f"({type(item).__name__} {shape}) could not be read as one: "
                f"{str(error).rstrip('.')}. Give a "
                "path, a PIL image, an (H, W[, C]) array or a (C, H, W) tensor with 1, 3 or 4 "
                f"channels (converted to {pre.channels})."
            ) from error
    batch = torch.stack(tensors)  # (N, C, H, W)
    return batch.to(device=model_device(model), dtype=model_dtype(model)), pre


@contextlib.contextmanager
def internal_pass(model: nn.Module, network_input: torch.Tensor) -> Iterator[nn.Module]:
    """The module a block runs, checked on a preprocessed ``(B, C, H, W)`` input: the model's
    shadow copy, or the model itself in eval mode when it has hooks of the user's (see
    :func:`~lucid_widgets.optvis.shadow.pass_network`). No ``requires_grad`` flag is touched:
    gradients are taken with respect to activations only (``torch.autograd.grad``)."""
    with pass_network(model, network_input) as network:
        yield network


def _forward_error(model: nn.Module, network_input: torch.Tensor, error: Exception) -> ValueError:
    return ValueError(
        f"{type(model).__name__} could not take an input of shape {tuple(network_input.shape)} "
        f"({type(error).__name__}: {error}). Check the image's channel count and that it is "
        "large enough for the layer (pass size=(height, width) for a larger input)."
    )


def layer_outputs(
    model: nn.Module, network_input: torch.Tensor, layers: Sequence[str]
) -> dict[str, torch.Tensor]:
    """``{layer: output}`` of a preprocessed ``(B, C, H, W)`` input, in the graph of the caller
    (wrap in ``torch.no_grad()`` when no gradient is needed). Call inside :func:`internal_pass`."""
    with capture(model, layers) as run:
        try:
            return run(network_input)
        except (RuntimeError, ValueError, IndexError) as error:
            if type(error).__name__.startswith("Layer"):
                raise
            raise _forward_error(model, network_input, error) from error


RELU_TYPES = (nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.Hardtanh, nn.PReLU, nn.ELU, nn.CELU)


def _identity_hooks(model: nn.Module) -> list:
    """Hooks that make every ReLU-like module of ``model`` return its input unchanged."""
    handles, saved = [], {}
    for module in model.modules():
        if not isinstance(module, RELU_TYPES):
            continue

        def pre(module, inputs, _saved=saved):  # an in-place ReLU must not change the input
            _saved[id(module)] = inputs[0]
            return (inputs[0].clone(), *inputs[1:])

        def post(module, inputs, output, _saved=saved):
            return _saved.pop(id(module))

        handles.append(module.register_forward_pre_hook(internal_hook(pre)))
        handles.append(module.register_forward_hook(internal_hook(post)))
    return handles


def replaced_forward(
    model: nn.Module,
    network_input: torch.Tensor,
    source: str,
    replacement: Callable[[torch.Tensor], torch.Tensor],
    layers: Sequence[str],
    relu_identity: bool = False,
) -> dict[str, torch.Tensor]:
    """Run the model with ``source``'s output replaced by ``replacement(output)`` and return
    ``{layer: output}`` of ``layers`` (later layers). ``relu_identity`` runs ReLU-like modules
    as the identity. Call inside :func:`internal_pass`."""
    path = resolve_layer(model, source)
    module = dict(model.named_modules())[path]

    def swap(module, inputs, output):
        if not isinstance(output, torch.Tensor):
            raise ValueError(f"Layer {source!r} returns {type(output).__name__}, not a tensor.")
        return replacement(output)

    handles = [module.register_forward_hook(internal_hook(swap))]
    if relu_identity:
        handles += _identity_hooks(model)
    try:
        return layer_outputs(model, network_input, layers)
    finally:
        for handle in handles:
            handle.remove()


@dataclass
class SpatialMap:
    """A layer's output as positions: ``maps (B, C, H, W)`` and the class token ``(B, C)``.

    ``tokens`` is true for ``(B, N, C)`` layers: ``N = h * w`` tokens become an ``(h, w)`` grid
    (a leading class token, when ``N = h * w + 1``, goes to ``cls``); other ``N`` become a
    ``(1, N)`` row.
    """

    maps: torch.Tensor
    cls: torch.Tensor | None
    tokens: bool

    @property
    def shape(self) -> tuple[int, int]:
        """``(H, W)`` of the positions."""
        return tuple(self.maps.shape[-2:])


def _grid_side(count: int) -> int | None:
    side = math.isqrt(count)
    return side if side * side == count and side > 0 else None


def spatial_map(tensor: torch.Tensor, layer: str) -> SpatialMap:
    """A ``(B, C, H, W)`` or ``(B, N, C)`` output as a :class:`SpatialMap` (differentiable).

    Raises
    ------
    ValueError
        For outputs without positions (``(B, C)``) or of another rank; the message says which
        shapes work.
    """
    if tensor.dim() == 4:
        return SpatialMap(tensor, None, False)
    if tensor.dim() == 3:
        batch, count, channels = tensor.shape
        cls = None
        side = _grid_side(count)
        if side is None and _grid_side(count - 1):
            cls, tensor, side = tensor[:, 0], tensor[:, 1:], _grid_side(count - 1)
            count -= 1
        height, width = (side, side) if side else (1, count)
        maps = tensor.transpose(1, 2).reshape(batch, channels, height, width)
        return SpatialMap(maps, cls, True)
    raise ValueError(
        f"Layer {layer!r} has output shape {tuple(tensor.shape)}, which has no spatial "
        f"positions; this method reads {SPATIAL_SHAPES}. Pick an earlier layer."
    )


_ORDER_CACHE: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def browsable_order(model: nn.Module) -> list[tuple[str, bool]]:
    """``[(dotted path, browsable), ...]`` in forward order, from the zoo catalog (cached per
    model; the dry forward runs at a small input size when the model takes one)."""
    from lucid_widgets.zoo import catalog

    signature = tuple(name for name, _ in model.named_modules())
    cached = _ORDER_CACHE.get(model)
    if cached is not None and cached[0] == signature:
        return cached[1]
    pre = resolve(model)
    small = tuple(min(side, 96) for side in pre.input_size)
    try:
        infos = catalog.layers(model, input_size=small)
    except RuntimeError:
        infos = catalog.layers(model)
    order = [(info.name, info.browsable) for info in infos]
    _ORDER_CACHE[model] = (signature, order)
    return order
