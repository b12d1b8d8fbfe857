"""Connections between units of two layers: Microscope's and Circuits' "weights".

Where only linear operations lie between a source layer and a unit (convolutions, eval batch
norm, average pooling, concatenation, addition; ReLUs too when ``relu_identity=True``), the
*expanded weight* from source unit ``i`` to the unit is a ``(kh, kw)`` kernel: the gradient of the
unit at the centre of its map with respect to the source map, which for a linear path is the
same whatever the source activations are. The path is tested for that: the gradient is taken at
two random source maps and the two must agree, else the path is not linear there.

Elsewhere (depthwise-separable blocks with their ReLUs, residual ReLUs, attention) the strength is
the attribution (activation x gradient) of each source unit to the unit's spatial mean, averaged
over a set of images, and ``method`` says so.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.autograd import forward_ad

from lucid_widgets.blocks.common import (
    browsable_order,
    internal_pass,
    layer_outputs,
    load_images,
    replaced_forward,
    spatial_map,
)
from lucid_widgets.optvis.activations import check_unit, unit_count
from lucid_widgets.optvis.hooks import model_device, resolve_layer
from lucid_widgets.optvis.preprocess import Preprocess, resolve
from lucid_widgets.zoo.receptive_field import model_dtype

__all__ = ["Connections", "connections", "layer_connections"]

DIRECTIONS = ("in", "out")
DEFAULT_IMAGES = 4  # smooth random images averaged over when no images are given ...
DEFAULT_IMAGE_SIDE = 128  # ... at this size (at most the model's input size)
PASS_SIDES = (64, 128)  # expanded weights: these input sides first, then the model's own


@dataclass
class Connections:
    """The strongest connections of one unit, strongest first.

    Attributes
    ----------
    layer, unit
        The unit the connections are of.
    source
        The other layer: where the inputs come from (``direction="in"``) or the later layer the
        unit feeds (``direction="out"``).
    direction
        ``"in"`` or ``"out"``.
    units
        ``(k,)`` units of ``source``, ordered by ``|strength|``, largest first.
    strength
        ``(k,)`` signed strengths: the sum of the expanded-weight kernel (the response of the
        later unit to a uniform unit activation of the earlier one), or the mean attribution.
    kernels
        ``(k, kh, kw)`` expanded weights over the earlier layer's positions, where the path is
        linear; else ``None``.
    method
        ``"expanded_weights"`` or ``"attribution"``.
    images
        How many images the attribution was averaged over (0 for expanded weights).
    """

    layer: str
    unit: int
    source: str
    direction: str
    units: np.ndarray
    strength: np.ndarray
    kernels: np.ndarray | None
    method: str
    images: int = 0

    def __repr__(self) -> str:
        pairs = ", ".join(f"{u}: {s:+.3g}" for u, s in zip(self.units, self.strength, strict=True))
        arrow = "<-" if self.direction == "in" else "->"
        return (
            f"Connections({self.layer}:{self.unit} {arrow} {self.source} [{pairs}], {self.method})"
        )


# ------------------------------------------------------------------------------ layers and order


def _neighbour(model: nn.Module, path: str, direction: str) -> str:
    """The browsable layer just before (``"in"``) or after (``"out"``) ``path``."""
    order = browsable_order(model)
    names = [name for name, _ in order]
    if path not in names:
        raise ValueError(f"Layer {path!r} produced no output in the catalog's forward pass.")
    index = names.index(path)
    before, after = order[:index], order[index + 1 :]
    candidates = (
        [n for n, b in reversed(before) if b] if direction == "in" else [n for n, b in after if b]
    )
    if not candidates:
        where = "before" if direction == "in" else "after"
        raise ValueError(f"No browsable layer {where} {path!r}; pass source=<layer name>.")
    return _display_name(model, candidates[0])


def _display_name(model: nn.Module, path: str) -> str:
    for alias, target in (getattr(model, "lucid_aliases", None) or {}).items():
        if target == path:
            return alias
    return path


def _check_order(model: nn.Module, early: str, late: str, layer: str, direction: str) -> None:
    names = [name for name, _ in browsable_order(model)]
    paths = [resolve_layer(model, name) for name in (early, late)]
    if paths[0] == paths[1]:
        raise ValueError(f"source and layer are the same layer ({layer!r}); pick another one.")
    if all(p in names for p in paths) and names.index(paths[0]) > names.index(paths[1]):
        if direction == "in":
            raise ValueError(
                f"source {early!r} comes after {late!r} in the forward pass; the inputs of a "
                "unit come from an earlier layer (or use direction='out' for the layers it feeds)."
            )
        raise ValueError(
            f"source {late!r} comes before {early!r} in the forward pass; with direction='out' "
            "source is a later layer that the unit feeds (or use direction='in')."
        )


# ---------------------------------------------------------------------------- the two methods


def _probe_input(pre: Preprocess, model: nn.Module, batch: int, size) -> torch.Tensor:
    height, width = size or pre.input_size
    device, dtype = model_device(model), model_dtype(model)
    return pre(torch.full((batch, pre.channels, height, width), 0.5, device=device, dtype=dtype))


def _default_images(pre: Preprocess, model: nn.Module, size, count: int) -> torch.Tensor:
    """``count`` smooth random images ``(N, C, H, W)`` in ``[0, 1]`` (seeded)."""
    height, width = size or pre.input_size
    generator = torch.Generator().manual_seed(0)
    coarse = torch.rand(count, pre.channels, 8, 8, generator=generator)
    images = torch.nn.functional.interpolate(coarse, size=(height, width), mode="bicubic")
    return images.clamp(0, 1).to(device=model_device(model), dtype=model_dtype(model))


def _centre(maps: torch.Tensor) -> tuple[int, int]:
    return maps.shape[-2] // 2, maps.shape[-1] // 2


def _bbox(gradient: torch.Tensor) -> tuple[slice, slice]:
    """Rows and columns where a ``(C, H, W)`` gradient is non-zero (the kernel's extent)."""
    energy = gradient.abs().sum(0)  # (H, W)
    mask = energy > energy.max() * 1e-6
    if not bool(mask.any()):
        row, col = _centre(gradient)
        return slice(row, row + 1), slice(col, col + 1)
    rows, cols = mask.any(1).nonzero().flatten(), mask.any(0).nonzero().flatten()
    return slice(int(rows[0]), int(rows[-1]) + 1), slice(int(cols[0]), int(cols[-1]) + 1)


class _Linearized:
    """The path from ``early`` to ``late`` at two random ``early`` maps.

    :meth:`kernels` is the gradient of ``late``'s unit at the centre of its map with respect to
    the ``early`` map, ``(2, C, H, W)`` (one per random map). The passes run at a small input
    first and at larger ones only where the kernel reaches the border of the map (where it may
    be cut off); each size's graph is built once and kept for further units.
    """

    def __init__(self, ctx: dict):
        self.ctx = ctx
        self.graphs: dict[tuple[int, int], tuple[torch.Tensor, torch.Tensor]] = {}

    def _graph(self, size: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
        if size not in self.graphs:
            ctx, generator, leaf = self.ctx, torch.Generator().manual_seed(0), {}

            def replace(output: torch.Tensor) -> torch.Tensor:
                noise = torch.randn(output.shape, generator=generator).to(output)
                leaf["a"] = noise.requires_grad_(True)
                return leaf["a"]

            network_input = _probe_input(ctx["pre"], ctx["model"], 2, size)
            early, late = ctx["early"], ctx["late"]
            with torch.enable_grad():
                outputs = replaced_forward(
                    ctx["model"], network_input, early, replace, [late], ctx["relu_identity"]
                )
            self.graphs[size] = (leaf["a"], spatial_map(outputs[late], late).maps)
        return self.graphs[size]

    def gradient(self, unit: int) -> torch.Tensor:
        """``(2, C, H, W)``: the unit's gradients, at the smallest size that holds its kernel."""
        sizes = self.ctx["sizes"]
        for index, size in enumerate(sizes):
            leaf, late = self._graph(size)  # late: (2, C', H', W')
            row, col = _centre(late)
            target = late[:, unit, row, col].sum()
            (grad,) = torch.autograd.grad(target, leaf, retain_graph=True, allow_unused=True)
            if grad is None:
                raise ValueError(f"The unit does not depend on layer {self.ctx['early']!r}.")
            grad = spatial_map(grad, self.ctx["early"]).maps  # (2, C, H, W)
            if index == len(sizes) - 1 or not _touches_border(grad[0]):
                return grad
        raise AssertionError("unreachable")


def _touches_border(gradient: torch.Tensor) -> bool:
    rows, cols = _bbox(gradient)
    height, width = gradient.shape[-2:]
    return rows.start == 0 or cols.start == 0 or rows.stop == height or cols.stop == width


def _is_linear(gradients: torch.Tensor) -> bool:
    first, second = gradients[0], gradients[1]
    scale = float(first.abs().max()) + 1e-12
    return float((first - second).abs().max()) <= 1e-4 * scale


def _attribution_matrix_row(model, early, late, batch, pre, unit) -> torch.Tensor:
    """Mean attribution of every ``early`` unit to ``late``'s unit (its spatial mean), ``(C,)``."""
    leaf = {}

    def replace(output: torch.Tensor) -> torch.Tensor:
        leaf["a"] = output.detach().requires_grad_(True)
        return leaf["a"]

    with torch.enable_grad():
        outputs = replaced_forward(model, pre(batch), early, replace, [late])
        late_maps = spatial_map(outputs[late], late).maps  # (N, C', H', W')
        target = late_maps[:, unit].mean((1, 2)).mean()
        (grad,) = torch.autograd.grad(target, leaf["a"], allow_unused=True)
    if grad is None:
        raise ValueError(f"Layer {late!r} does not depend on layer {early!r}.")
    product = spatial_map(leaf["a"].detach() * grad, early).maps  # (N, C, H, W)
    return product.sum((2, 3)).sum(0)  # mean over images: the target was averaged


def _attribution_column(model, early, late, batch, pre, unit) -> torch.Tensor:
    """Mean attribution of ``early``'s unit to every ``late`` unit's spatial mean, ``(C',)``
    (one forward-mode pass: the tangent is the unit's own activation map)."""

    def replace(output: torch.Tensor) -> torch.Tensor:
        tangent = torch.zeros_like(output)
        index = (..., unit) if output.dim() == 3 else (slice(None), unit)
        tangent[index] = output.detach()[index]
        return forward_ad.make_dual(output.detach(), tangent)

    with torch.no_grad(), forward_ad.dual_level():
        outputs = replaced_forward(model, pre(batch), early, replace, [late])
        tangent = forward_ad.unpack_dual(outputs[late]).tangent
    if tangent is None:
        raise ValueError(f"Layer {late!r} does not depend on layer {early!r}.")
    return spatial_map(tangent, late).maps.mean((2, 3)).mean(0)  # (C',)


# --------------------------------------------------------------------------------- public API


def _top(strength: torch.Tensor, k: int) -> torch.Tensor:
    return strength.abs().argsort(descending=True, stable=True)[:k]


def _check_k(k: int, count: int, source: str) -> int:
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ValueError(f"k must be a positive integer, got {k!r}.")
    return min(k, count)


def _in_connections(ctx: dict, unit: int, linear: _Linearized | None) -> Connections:
    """The inputs of ``late``'s ``unit``: expanded weights if linear, else attribution."""
    if linear is not None:
        gradients = linear.gradient(unit)
        if _is_linear(gradients):
            kernel_maps = gradients[0]  # (C, H, W)
            rows, cols = _bbox(kernel_maps)
            kernels = kernel_maps[:, rows, cols]  # (C, kh, kw)
            strength = kernels.sum((1, 2))
            top = _top(strength, ctx["k"])
            return _result(ctx, unit, top, strength, kernels[top], "expanded_weights")
    row = _attribution_matrix_row(
        ctx["model"], ctx["early"], ctx["late"], ctx["batch"](), ctx["pre"], unit
    )
    return _result(ctx, unit, _top(row, ctx["k"]), row, None, "attribution")


def _uniform_response(ctx: dict, unit: int) -> torch.Tensor:
    """The centre of every ``late`` unit when ``early``'s unit is uniformly 1 more, at two random
    ``early`` maps: ``(2, C')`` (equal rows on a linear path; each row is the kernel sums)."""
    generator = torch.Generator().manual_seed(0)

    def replace(output: torch.Tensor) -> torch.Tensor:
        primal = torch.randn(output.shape, generator=generator).to(output)
        tangent = torch.zeros_like(output)
        tangent[(..., unit) if output.dim() == 3 else (slice(None), unit)] = 1.0
        return forward_ad.make_dual(primal, tangent)

    early, late = ctx["early"], ctx["late"]
    size = ctx["sizes"][min(1, len(ctx["sizes"]) - 1)]  # ranks; the strengths are exact sums
    network_input = _probe_input(ctx["pre"], ctx["model"], 2, size)
    with torch.no_grad(), forward_ad.dual_level():
        outputs = replaced_forward(
            ctx["model"], network_input, early, replace, [late], ctx["relu_identity"]
        )
        tangent = forward_ad.unpack_dual(outputs[late]).tangent
    if tangent is None:
        raise ValueError(f"Layer {late!r} does not depend on layer {early!r}.")
    maps = spatial_map(tangent, late).maps  # (2, C', H', W')
    row, col = _centre(maps)
    return maps[:, :, row, col]


def _out_kernels(ctx: dict, unit: int, top: torch.Tensor) -> torch.Tensor | None:
    """``(k, kh, kw)`` expanded weights from ``early``'s unit to the ``top`` late units, or
    ``None`` when one of them is not linear in the source after all."""
    linear = _Linearized(ctx)
    maps = []
    for target in top.tolist():
        gradients = linear.gradient(target)
        if not _is_linear(gradients):
            return None
        maps.append(gradients[0, unit])  # (H, W)
    stack = [kernel[_bbox(kernel[None])] for kernel in maps]  # each at its own size
    height = max(kernel.shape[0] for kernel in stack)
    width = max(kernel.shape[1] for kernel in stack)
    return torch.stack([_pad_to(kernel, height, width) for kernel in stack])  # (k, kh, kw)


def _pad_to(kernel: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Zero-pad a ``(h, w)`` kernel evenly to ``(height, width)``."""
    top, left = (height - kernel.shape[0]) // 2, (width - kernel.shape[1]) // 2
    bottom, right = height - kernel.shape[0] - top, width - kernel.shape[1] - left
    return torch.nn.functional.pad(kernel, (left, right, top, bottom))


def _out_connections(ctx: dict, unit: int) -> Connections:
    """The ``late`` units that ``early``'s ``unit`` feeds."""
    response = _uniform_response(ctx, unit)  # (2, C')
    if _is_linear(response):
        strength = response[0]
        top = _top(strength, ctx["k"])
        kernels = _out_kernels(ctx, unit, top)
        if kernels is not None:
            strength = strength.clone()
            strength[top] = kernels.sum((1, 2))  # exact, from the uncut kernels
            return _result(ctx, unit, top, strength, kernels, "expanded_weights")
    model, early, late, pre = ctx["model"], ctx["early"], ctx["late"], ctx["pre"]
    column = _attribution_column(model, early, late, ctx["batch"](), pre, unit)
    return _result(ctx, unit, _top(column, ctx["k"]), column, None, "attribution")


def _result(ctx, unit, top, strength, kernels, method) -> Connections:
    attribution = method == "attribution"
    return Connections(
        layer=ctx["layer"],
        unit=unit,
        source=ctx["source"],
        direction=ctx["direction"],
        units=top.cpu().numpy().astype(np.int64),
        strength=strength[top].detach().float().cpu().numpy(),
        kernels=None if kernels is None else kernels.detach().float().cpu().numpy(),
        method=method,
        images=ctx["image_count"] if attribution else 0,
    )


def _pass_sizes(pre: Preprocess, size) -> list[tuple[int, int]]:
    """Input sizes for the linear passes: small ones first, then ``size`` / the input size."""
    if size is not None:
        return [(size, size) if isinstance(size, int) else tuple(size)]
    full = tuple(pre.input_size)
    small = [tuple(min(side, limit) for limit in full) for side in PASS_SIDES]
    return list(dict.fromkeys([*small, full]))


def _probe_shapes(ctx: dict, layers: list[str]) -> dict[str, torch.Tensor]:
    """The layers' outputs on a grey probe, at the smallest pass size the model takes (sizes
    it cannot take are dropped from ``ctx["sizes"]``)."""
    while True:
        probe = _probe_input(ctx["pre"], ctx["model"], 1, ctx["sizes"][0])
        try:
            with torch.no_grad():
                return layer_outputs(ctx["model"], probe, layers)
        except ValueError:
            if len(ctx["sizes"]) == 1:
                raise
            ctx["sizes"].pop(0)


def _context(model, layer, source, k, direction, relu_identity, images, size, preprocess):
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}.")
    if direction not in DIRECTIONS:
        raise ValueError(f"direction must be 'in' or 'out', got {direction!r}.")
    path = resolve_layer(model, layer)
    if path in ("input", "logits"):
        raise ValueError(f"connections need a layer of the model, not {layer!r}.")
    source = _neighbour(model, path, direction) if source is None else source
    resolve_layer(model, source)
    early, late = (source, layer) if direction == "in" else (layer, source)
    _check_order(model, early, late, layer, direction)
    pre = resolve(model, preprocess)
    ctx = {
        "model": model,
        "layer": layer,
        "source": source,
        "direction": direction,
        "early": early,
        "late": late,
        "pre": pre,
        "sizes": _pass_sizes(pre, size),
        "relu_identity": relu_identity,
        "image_count": DEFAULT_IMAGES,
    }
    cache: dict = {}

    def batch() -> torch.Tensor:  # the images, read once and only when attribution needs them
        if "batch" not in cache:
            if images is None:
                side = tuple(min(DEFAULT_IMAGE_SIDE, full) for full in ctx["sizes"][-1])
                cache["batch"] = _default_images(pre, model, side, DEFAULT_IMAGES)
            else:
                cache["batch"] = load_images(model, images, size, preprocess)[0]
            ctx["image_count"] = cache["batch"].shape[0]
        return cache["batch"]

    ctx["batch"] = batch
    shapes = _probe_shapes(ctx, [layer, source])
    ctx["counts"] = {name: unit_count(tensor) for name, tensor in shapes.items()}
    for name, tensor in shapes.items():
        spatial_map(tensor, name)  # positions are needed on both sides
    ctx["shapes"] = shapes
    ctx["k"] = _check_k(k, ctx["counts"][source], source)
    return ctx


def _run(model: nn.Module, layer: str, units, options: dict) -> list[Connections]:
    unknown = sorted(set(options) - set(_OPTIONS))
    if unknown:
        raise TypeError(f"Unknown option(s) {unknown}; valid: {', '.join(_OPTIONS)}.")
    options = {**_OPTIONS, **options}
    with internal_pass(model):
        ctx = _context(model, layer, **options)
        count = ctx["counts"][layer]
        units = list(range(count)) if units is None else [int(unit) for unit in units]
        for unit in units:
            check_unit(layer, ctx["shapes"][layer], unit)
        if options["direction"] == "out":
            return [_out_connections(ctx, unit) for unit in units]
        linear = _Linearized(ctx)
        return [_in_connections(ctx, unit, linear) for unit in units]


def connections(
    model: nn.Module,
    layer: str,
    unit: int,
    source: str | None = None,
    k: int = 10,
    direction: str = "in",
    relu_identity: bool = False,
    images: object = None,
    size: int | tuple[int, int] | None = None,
    preprocess: Preprocess | None = None,
) -> Connections:
    """The units of ``source`` most strongly connected to ``unit`` of ``layer``.

    Parameters
    ----------
    model
        Any ``nn.Module``; left exactly as found (mode, gradient flags, hooks).
    layer, unit
        The unit, by layer name (dotted path or alias) and channel index.
    source
        The other layer. Default: the browsable layer just before ``layer`` (``"in"``) or just
        after it (``"out"``), from the zoo catalog.
    k
        How many connections to return (at most the source's unit count).
    direction
        ``"in"``: the source units that feed the unit (``source`` comes earlier); ``"out"``:
        the units of a later ``source`` that the unit feeds.
    relu_identity
        Treat ReLU-like modules (``ReLU``, ``ReLU6``, ``LeakyReLU``, ``Hardtanh`` ...) between
        the two layers as the identity, as Circuits does, so that the expanded weights exist
        across them (an approximation: ``method`` still says ``"expanded_weights"``).
    images
        Images the attribution fallback averages over (one image, a list, or a ``(N, C, H, W)``
        tensor: the dataset or the sample image). Default: 4 smooth random images of 128 px, a
        weak stand-in; pass real images where the path is not linear.
    size
        Input ``(height, width)`` for the passes; default the model's input size.

    Returns
    -------
    Connections
        ``units``, ``strength`` ``(k,)``, ``kernels`` ``(k, kh, kw)`` or ``None``, ``method``.

    Raises
    ------
    ValueError
        For a ``source`` on the wrong side of ``layer``, a layer without positions
        (``(B, C)``), a bad ``k`` or ``direction``. ``IndexError`` for a unit out of range.

    Examples
    --------
    >>> conn = connections(model, "block10", unit=5, source="block9", k=10)  # doctest: +SKIP
    >>> conn.units, conn.strength, conn.method                                # doctest: +SKIP
    """
    options = {"source": source, "k": k, "direction": direction, "images": images}
    options.update(relu_identity=relu_identity, size=size, preprocess=preprocess)
    return _run(model, layer, [unit], options)[0]


_OPTIONS = dict(
    zip(list(inspect.signature(connections).parameters)[3:], connections.__defaults__, strict=True)
)


def layer_connections(
    model: nn.Module, layer: str, units: Sequence[int] | None = None, **options: Any
) -> list[Connections]:
    """:func:`connections` of several units of one layer (default: all), sharing the set-up.

    ``options`` are the keyword arguments of :func:`connections` (``source``, ``k``,
    ``direction``, ``relu_identity``, ``images``, ``size``, ``preprocess``). With
    ``direction="in"`` the path is linearized (or the images run) once and each further unit
    costs one backward pass.
    """
    return _run(model, layer, units, options)
