"""The two ways the connections between two layers are measured.

- On a linear path, :class:`LinearizedPath`: gradients of a unit at the centre of its map with
  respect to the source map, at two random source maps (equal when the path is linear; then the
  gradient is the expanded weight). :func:`uniform_response` does the same forward-mode, for all
  the units a source unit feeds at once.
- Elsewhere, attribution (activation x gradient) averaged over images:
  :class:`AttributionRows` (every source unit to one unit: one forward pass, then a backward
  pass per unit) and :func:`attribution_column` (one source unit to every later unit, one
  forward-mode pass).

``ctx`` is the dict :mod:`lucid_widgets.blocks.connections` builds: ``model``, ``early``,
``late``, ``pre``, ``sizes`` (input sizes, smallest first) and ``relu_identity``.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.autograd import forward_ad

from lucid_widgets.blocks.common import replaced_forward, spatial_map
from lucid_widgets.optvis.hooks import model_device
from lucid_widgets.optvis.preprocess import Preprocess
from lucid_widgets.zoo.receptive_field import model_dtype

__all__ = [
    "LinearizedPath",
    "attribution_column",
    "AttributionRows",
    "centre",
    "default_images",
    "is_linear",
    "kernel_extent",
    "out_kernels",
    "pad_kernel",
    "probe_input",
    "touches_border",
    "uniform_response",
]


def probe_input(pre: Preprocess, model: nn.Module, batch: int, size) -> torch.Tensor:
    height, width = size or pre.input_size
    device, dtype = model_device(model), model_dtype(model)
    return pre(torch.full((batch, pre.channels, height, width), 0.5, device=device, dtype=dtype))


def default_images(pre: Preprocess, model: nn.Module, size, count: int) -> torch.Tensor:
    """``count`` smooth random images ``(N, C, H, W)`` in ``[0, 1]`` (seeded)."""
    height, width = size or pre.input_size
    generator = torch.Generator().manual_seed(0)
    coarse = torch.rand(count, pre.channels, 8, 8, generator=generator)
    images = torch.nn.functional.interpolate(coarse, size=(height, width), mode="bicubic")
    return images.clamp(0, 1).to(device=model_device(model), dtype=model_dtype(model))


def centre(maps: torch.Tensor) -> tuple[int, int]:
    return maps.shape[-2] // 2, maps.shape[-1] // 2


def kernel_extent(gradient: torch.Tensor) -> tuple[slice, slice]:
    """Rows and columns where a ``(C, H, W)`` gradient is non-zero (the kernel's extent)."""
    energy = gradient.abs().sum(0)  # (H, W)
    mask = energy > energy.max() * 1e-6
    if not bool(mask.any()):
        row, col = centre(gradient)
        return slice(row, row + 1), slice(col, col + 1)
    rows, cols = mask.any(1).nonzero().flatten(), mask.any(0).nonzero().flatten()
    return slice(int(rows[0]), int(rows[-1]) + 1), slice(int(cols[0]), int(cols[-1]) + 1)


class LinearizedPath:
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

            network_input = probe_input(ctx["pre"], ctx["model"], 2, size)
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
            row, col = centre(late)
            target = late[:, unit, row, col].sum()
            (grad,) = torch.autograd.grad(target, leaf, retain_graph=True, allow_unused=True)
            if grad is None:
                raise ValueError(f"The unit does not depend on layer {self.ctx['early']!r}.")
            grad = spatial_map(grad, self.ctx["early"]).maps  # (2, C, H, W)
            if index == len(sizes) - 1 or not touches_border(grad[0]):
                return grad
        raise AssertionError("unreachable")


def touches_border(gradient: torch.Tensor) -> bool:
    rows, cols = kernel_extent(gradient)
    height, width = gradient.shape[-2:]
    return rows.start == 0 or cols.start == 0 or rows.stop == height or cols.stop == width


def is_linear(gradients: torch.Tensor) -> bool:
    first, second = gradients[0], gradients[1]
    scale = float(first.abs().max()) + 1e-12
    return float((first - second).abs().max()) <= 1e-4 * scale


class AttributionRows:
    """Attribution of every ``early`` unit to one ``late`` unit (its spatial mean), averaged
    over ``batch``: the forward pass runs once, each :meth:`row` is one backward pass."""

    def __init__(self, model, early, late, batch, pre):
        self.early, self.late = early, late
        leaf = {}

        def replace(output: torch.Tensor) -> torch.Tensor:
            leaf["a"] = output.detach().requires_grad_(True)
            return leaf["a"]

        with torch.enable_grad():
            outputs = replaced_forward(model, pre(batch), early, replace, [late])
        self.leaf = leaf["a"]
        self.late_maps = spatial_map(outputs[late], late).maps  # (N, C', H', W')

    def row(self, unit: int) -> torch.Tensor:
        """``(C,)``: each ``early`` unit's mean attribution to ``late``'s ``unit``."""
        target = self.late_maps[:, unit].mean((1, 2)).mean()
        grad = None
        if target.requires_grad:
            (grad,) = torch.autograd.grad(target, self.leaf, retain_graph=True, allow_unused=True)
        if grad is None:
            raise ValueError(f"Layer {self.late!r} does not depend on layer {self.early!r}.")
        product = spatial_map(self.leaf.detach() * grad, self.early).maps  # (N, C, H, W)
        return product.sum((2, 3)).sum(0)  # the mean over images: the target was averaged


def attribution_column(model, early, late, batch, pre, unit) -> torch.Tensor:
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


def uniform_response(ctx: dict, unit: int) -> torch.Tensor:
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
    network_input = probe_input(ctx["pre"], ctx["model"], 2, size)
    with torch.no_grad(), forward_ad.dual_level():
        outputs = replaced_forward(
            ctx["model"], network_input, early, replace, [late], ctx["relu_identity"]
        )
        tangent = forward_ad.unpack_dual(outputs[late]).tangent
    if tangent is None:
        raise ValueError(f"Layer {late!r} does not depend on layer {early!r}.")
    maps = spatial_map(tangent, late).maps  # (2, C', H', W')
    row, col = centre(maps)
    return maps[:, :, row, col]


def out_kernels(ctx: dict, unit: int, top: torch.Tensor) -> torch.Tensor | None:
    """``(k, kh, kw)`` expanded weights from ``early``'s unit to the ``top`` late units, or
    ``None`` when one of them is not linear in the source after all."""
    linear = LinearizedPath(ctx)
    maps = []
    for target in top.tolist():
        gradients = linear.gradient(target)
        if not is_linear(gradients):
            return None
        maps.append(gradients[0, unit])  # (H, W)
    stack = [kernel[kernel_extent(kernel[None])] for kernel in maps]  # each at its own size
    height = max(kernel.shape[0] for kernel in stack)
    width = max(kernel.shape[1] for kernel in stack)
    return torch.stack([pad_kernel(kernel, height, width) for kernel in stack])  # (k, kh, kw)


def pad_kernel(kernel: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Zero-pad a ``(h, w)`` kernel evenly to ``(height, width)``."""
    top, left = (height - kernel.shape[0]) // 2, (width - kernel.shape[1]) // 2
    bottom, right = height - kernel.shape[0] - top, width - kernel.shape[1] - left
    return torch.nn.functional.pad(kernel, (left, right, top, bottom))
