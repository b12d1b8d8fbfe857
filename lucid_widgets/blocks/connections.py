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

from lucid_widgets.blocks.common import (
    browsable_order,
    internal_pass,
    layer_outputs,
    load_images,
    spatial_map,
)
from lucid_widgets.blocks.paths import (
    AttributionRows,
    LinearizedPath,
    attribution_column,
    default_images,
    is_linear,
    kernel_extent,
    out_kernels,
    probe_input,
    uniform_response,
)
from lucid_widgets.optvis.activations import check_unit, unit_count
from lucid_widgets.optvis.hooks import resolve_layer
from lucid_widgets.optvis.preprocess import Preprocess, resolve

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


# --------------------------------------------------------------------------------- public API


def _top(strength: torch.Tensor, k: int) -> torch.Tensor:
    return strength.abs().argsort(descending=True, stable=True)[:k]


def _check_k(k: int, count: int, source: str) -> int:
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ValueError(f"k must be a positive integer, got {k!r}.")
    return min(k, count)


def _in_connections(ctx: dict, unit: int, linear: LinearizedPath | None) -> Connections:
    """The inputs of ``late``'s ``unit``: expanded weights if linear, else attribution."""
    if linear is not None:
        gradients = linear.gradient(unit)
        if is_linear(gradients):
            kernel_maps = gradients[0]  # (C, H, W)
            rows, cols = kernel_extent(kernel_maps)
            kernels = kernel_maps[:, rows, cols]  # (C, kh, kw)
            strength = kernels.sum((1, 2))
            top = _top(strength, ctx["k"])
            return _result(ctx, unit, top, strength, kernels[top], "expanded_weights")
    if "rows" not in ctx:  # the images run once for every unit of a layer_connections call
        ctx["rows"] = AttributionRows(
            ctx["model"], ctx["early"], ctx["late"], ctx["batch"](), ctx["pre"]
        )
    row = ctx["rows"].row(unit)
    return _result(ctx, unit, _top(row, ctx["k"]), row, None, "attribution")


def _out_connections(ctx: dict, unit: int) -> Connections:
    """The ``late`` units that ``early``'s ``unit`` feeds."""
    response = uniform_response(ctx, unit)  # (2, C')
    if is_linear(response):
        strength = response[0]
        top = _top(strength, ctx["k"])
        kernels = out_kernels(ctx, unit, top)
        if kernels is not None:
            strength = strength.clone()
            strength[top] = kernels.sum((1, 2))  # exact, from the uncut kernels
            return _result(ctx, unit, top, strength, kernels, "expanded_weights")
    model, early, late, pre = ctx["model"], ctx["early"], ctx["late"], ctx["pre"]
    column = attribution_column(model, early, late, ctx["batch"](), pre, unit)
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
        probe = probe_input(ctx["pre"], ctx["model"], 1, ctx["sizes"][0])
        try:
            with torch.no_grad():
                return layer_outputs(ctx["model"], probe, layers)
        except ValueError:
            if len(ctx["sizes"]) == 1:
                raise
            ctx["sizes"].pop(0)


def _context(model, layer, source, k, direction, relu_identity, images, size, preprocess):
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
                cache["batch"] = default_images(pre, model, side, DEFAULT_IMAGES)
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
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}.")
    pre = resolve(model, options["preprocess"])
    with internal_pass(model, probe_input(pre, model, 1, None)) as network:
        ctx = _context(network, layer, **options)
        count = ctx["counts"][layer]
        units = list(range(count)) if units is None else [int(unit) for unit in units]
        for unit in units:
            check_unit(layer, ctx["shapes"][layer], unit)
        if options["direction"] == "out":
            return [_out_connections(ctx, unit) for unit in units]
        linear = LinearizedPath(ctx)
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
