"""Receptive fields: which box of the input image a unit at position ``(y, x)`` can see.

Two methods. *Analytic*: when the layer is reached through a plain (nested) ``nn.Sequential`` of
convolutions, pools and element-wise modules, each axis is tracked exactly as ``(jump, start,
size)``: position ``i`` sees input pixels ``[i * jump + start, i * jump + start + size)``.
*Measured* (any model): the gradient of the layer's output summed over channels at a few
positions (the two corners, the centre and its diagonal neighbour) is taken with respect to
two inputs (uniform noise and its negative); the non-zero support gives each position's box, and a
line fit per axis extends the measurement to every position. During the measurement, max pools
act as average pools of the same geometry and activation modules pass gradients straight
through, so that no pixel is missed because of a window's argmax or a dead ReLU.

Boxes are ``(top, left, bottom, right)`` with exclusive ``bottom`` / ``right``, clipped to the
image: ``image[top:bottom, left:right]`` is the crop.
"""

from __future__ import annotations

import warnings
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from lucid_widgets.optvis.hooks import capture, frozen, internal_hook, model_device, resolve_layer
from lucid_widgets.optvis.preprocess import Preprocess, resolve

__all__ = [
    "AxisGeometry",
    "analytic_geometry",
    "blank_input",
    "crop",
    "model_dtype",
    "receptive_field_boxes",
]

_ACTIVATIONS = (
    nn.ReLU,
    nn.ReLU6,
    nn.LeakyReLU,
    nn.PReLU,
    nn.ELU,
    nn.GELU,
    nn.SiLU,
    nn.Sigmoid,
    nn.Tanh,
    nn.Hardswish,
    nn.Hardsigmoid,
    nn.Hardtanh,
    nn.Mish,
    nn.Softplus,
)
_ELEMENTWISE = (
    *_ACTIVATIONS,
    nn.BatchNorm2d,
    nn.Identity,
    nn.Dropout,
    nn.Dropout2d,
    nn.LocalResponseNorm,  # mixes channels, not positions
)

_MEMO: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


@dataclass(frozen=True)
class AxisGeometry:
    """Position ``i`` on one axis sees input ``[i * jump + start, i * jump + start + size)``."""

    jump: int = 1
    start: int = 0
    size: int = 1

    def then(self, kernel: int, stride: int, padding: int, dilation: int = 1) -> AxisGeometry:
        """The geometry after one more sliding-window layer."""
        extent = dilation * (kernel - 1) + 1
        return AxisGeometry(
            jump=self.jump * stride,
            start=self.start - padding * self.jump,
            size=self.size + (extent - 1) * self.jump,
        )

    def edges(self, count: int, limit: int) -> tuple[np.ndarray, np.ndarray]:
        """Clipped ``(low, high)`` edges of positions ``0 .. count - 1``, axis length ``limit``."""
        low = np.arange(count) * self.jump + self.start
        return np.clip(low, 0, limit), np.clip(low + self.size, 0, limit)


def _pair(value: int | tuple[int, ...]) -> tuple[int, int]:
    return (value, value) if isinstance(value, int) else (int(value[0]), int(value[-1]))


def _window(module: nn.Module) -> tuple[tuple[int, int], ...] | None:
    """``(kernel, stride, padding, dilation)`` pairs of a conv / pool, ``None`` if unknown."""
    if isinstance(module, nn.Conv2d):
        if type(module).forward is not nn.Conv2d.forward:  # e.g. TF "SAME" padding subclasses
            return None
        kernel, dilation = _pair(module.kernel_size), _pair(module.dilation)
        if module.padding == "valid":
            padding = (0, 0)
        elif module.padding == "same":
            padding = tuple(d * (k - 1) // 2 for k, d in zip(kernel, dilation, strict=True))
        else:
            padding = _pair(module.padding)
        return kernel, _pair(module.stride), padding, dilation
    if isinstance(module, (nn.MaxPool2d, nn.AvgPool2d)):
        dilation = _pair(getattr(module, "dilation", 1))
        stride = _pair(module.stride if module.stride is not None else module.kernel_size)
        return _pair(module.kernel_size), stride, _pair(module.padding), dilation
    return None


def _leaves_in_order(module: nn.Module, prefix: str = "") -> list[tuple[str, nn.Module]] | None:
    """The ``(path, module)`` sequence of a nested ``nn.Sequential``; ``None`` if not one."""
    if not isinstance(module, nn.Sequential):
        return [(prefix, module)]
    sequence = [(prefix, module)] if prefix else []
    for name, child in module.named_children():
        path = f"{prefix}.{name}" if prefix else name
        inner = _leaves_in_order(child, path)
        if inner is None:
            return None
        sequence.extend(inner)
    return sequence


def analytic_geometry(model: nn.Module, layer: str) -> tuple[AxisGeometry, AxisGeometry] | None:
    """Exact ``(y, x)`` geometry of ``layer`` when the model is a plain conv chain, else ``None``.

    The model (and every container on the way to ``layer``) must be an ``nn.Sequential`` whose
    modules before ``layer`` are ``Conv2d``, ``MaxPool2d``, ``AvgPool2d`` or element-wise.
    """
    path = resolve_layer(model, layer)
    sequence = _leaves_in_order(model)
    if sequence is None or path not in {name for name, _ in sequence}:
        return None
    end = _last_descendant(path, sequence)
    geometry_y, geometry_x = AxisGeometry(), AxisGeometry()
    for name, module in sequence:
        if not isinstance(module, nn.Sequential):
            window = _window(module)
            if window is not None:
                kernel, stride, padding, dilation = window
                geometry_y = geometry_y.then(kernel[0], stride[0], padding[0], dilation[0])
                geometry_x = geometry_x.then(kernel[1], stride[1], padding[1], dilation[1])
            elif not isinstance(module, _ELEMENTWISE):
                return None
        if name == end:
            return geometry_y, geometry_x
    return None


def _last_descendant(name: str, sequence: list[tuple[str, nn.Module]]) -> str:
    """The module whose output a container ``name`` returns: its last descendant (or itself)."""
    descendants = [other for other, _ in sequence if other.startswith(name + ".")]
    return descendants[-1] if descendants else name


def model_dtype(model: nn.Module) -> torch.dtype:
    """The dtype of the model's first floating-point parameter (float32 if none)."""
    for tensor in model.parameters():
        if tensor.is_floating_point():
            return tensor.dtype
    return torch.float32


def blank_input(model: nn.Module, pre: Preprocess) -> torch.Tensor:
    """A black ``(1, C, H, W)`` probe image at ``pre``'s input size, on the model's device and
    in its dtype (not yet preprocessed)."""
    shape = (1, pre.channels, *pre.input_size)
    return torch.zeros(shape, device=model_device(model), dtype=model_dtype(model))


# ---------------------------------------------------------------------------- measured


@internal_hook
def _avg_for_max(module: nn.Module, inputs: tuple, output: torch.Tensor) -> torch.Tensor | None:
    """Forward hook: replace a max pool's output by an average pool of the same geometry."""
    if module.dilation not in (1, (1, 1)):
        return None
    averaged = F.avg_pool2d(
        inputs[0], module.kernel_size, module.stride, module.padding, module.ceil_mode
    )
    return averaged if averaged.shape == output.shape else None


@internal_hook
def _straight_through(
    module: nn.Module, inputs: tuple, output: torch.Tensor
) -> torch.Tensor | None:
    """Forward hook: keep an activation's value but pass the gradient unchanged (no dead units)."""
    if not isinstance(output, torch.Tensor) or inputs[0].shape != output.shape:
        return None
    return inputs[0] + (output - inputs[0]).detach()


@contextmanager
def _structural_gradients(model: nn.Module) -> Iterator[None]:
    """Let gradients reach every pixel a unit depends on: max pools average, activations pass
    gradients straight through (in-place activations are made out-of-place meanwhile)."""
    handles, inplace = [], []
    for module in model.modules():
        if isinstance(module, nn.MaxPool2d):
            handles.append(module.register_forward_hook(_avg_for_max))
        elif isinstance(module, _ACTIVATIONS):
            if getattr(module, "inplace", False):
                inplace.append(module)
                module.inplace = False
            handles.append(module.register_forward_hook(_straight_through))
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()
        for module in inplace:
            module.inplace = True


def _measure(
    model: nn.Module, path: str, pre: Preprocess, positions: list[tuple[int, int]]
) -> list[tuple[int, int, int, int] | None]:
    """Gradient-support boxes of ``positions`` of ``path`` (``None`` where none flows)."""
    device, (height, width) = model_device(model), pre.input_size
    generator = torch.Generator().manual_seed(0)
    noise = torch.rand(1, pre.channels, height, width, generator=generator)
    bases = torch.cat([noise, 1 - noise])  # (2, C, H, W)
    inputs = bases.repeat_interleave(len(positions), 0).to(device, model_dtype(model))
    inputs.requires_grad_(True)
    structural = _structural_gradients(model)
    with structural, frozen(model), torch.enable_grad(), capture(model, [path]) as run:
        output = run(pre(inputs))[path]  # (2 * P, C', H', W')
        rows = torch.arange(len(inputs), device=output.device)
        # the bases are outermost: row b is base b // P at position b % P
        ys = torch.tensor([y for y, _ in positions] * len(bases), device=output.device)
        xs = torch.tensor([x for _, x in positions] * len(bases), device=output.device)
        picked = output.float()[rows, :, ys, xs]  # (2 * P, C')
        (gradient,) = torch.autograd.grad(picked.sum(), inputs)
    support = gradient.detach().abs().sum(1).view(len(bases), len(positions), height, width)
    support = support.amax(0) > 0  # (P, H, W)
    boxes = []
    for mask in support.cpu().numpy():  # (H, W) bool
        rows_any, cols_any = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
        if rows_any.size == 0:
            boxes.append(None)
        else:
            boxes.append((rows_any[0], cols_any[0], rows_any[-1] + 1, cols_any[-1] + 1))
    return boxes


def _jump(edges: list[tuple[int, int]]) -> int | None:
    """Pixels per position from unclipped ``(position, edge)`` samples (neighbours preferred)."""
    pairs = [(a, b) for a in edges for b in edges if b[0] > a[0]]
    if not pairs:
        return None
    (p0, e0), (p1, e1) = min(pairs, key=lambda pair: pair[1][0] - pair[0][0])
    return max(1, round((e1 - e0) / (p1 - p0)))


def _fit_axis(samples: list[tuple[int, int, int]], count: int, limit: int) -> np.ndarray:
    """Edges ``(count, 2)`` of one axis from measured ``(position, low, high)`` samples.

    Edges at 0 or ``limit`` are clipped and carry no information. When every measured low edge
    is clipped, the last position (always measured) has low 0, so every position does; likewise
    for high edges and the first position.
    """
    lows = sorted({(p, low) for p, low, _ in samples if 0 < low < limit})
    highs = sorted({(p, high) for p, _, high in samples if 0 < high < limit})
    jump = _jump(lows) or _jump(highs) or max(1, round(limit / count))
    steps = np.arange(count) * jump
    edges = np.empty((count, 2), dtype=np.int64)
    edges[:, 0] = np.clip(steps + lows[0][1] - lows[0][0] * jump, 0, limit) if lows else 0
    edges[:, 1] = np.clip(steps + highs[0][1] - highs[0][0] * jump, 0, limit) if highs else limit
    return edges


def _measured_boxes(
    model: nn.Module, path: str, pre: Preprocess, shape: tuple[int, int]
) -> np.ndarray:
    out_h, out_w = shape
    height, width = pre.input_size
    ys = [0, out_h // 2, min(out_h // 2 + 1, out_h - 1), out_h - 1]
    xs = [0, out_w // 2, min(out_w // 2 + 1, out_w - 1), out_w - 1]
    positions = list(dict.fromkeys(zip(ys, xs, strict=True)))
    measured = _measure(model, path, pre, positions)
    full = (0, 0, height, width)
    boxes = [box if box is not None else full for box in measured]
    pairs = list(zip(positions, boxes, strict=True))
    rows = _fit_axis([(p[0], b[0], b[2]) for p, b in pairs], out_h, height)
    cols = _fit_axis([(p[1], b[1], b[3]) for p, b in pairs], out_w, width)
    result = _box_map(rows, cols)
    mismatched = [p for p, b in pairs if tuple(result[p]) != tuple(b)]
    if mismatched:
        warnings.warn(
            f"Receptive fields of {path!r} are not translation-invariant at {mismatched}; "
            "the boxes are a best fit.",
            stacklevel=3,
        )
        for position, box in pairs:
            result[position] = box
    return result


def _box_map(rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """``(H', W', 4)`` boxes from per-row ``(top, bottom)`` and per-column ``(left, right)``."""
    out_h, out_w = len(rows), len(cols)
    boxes = np.empty((out_h, out_w, 4), dtype=np.int32)
    boxes[..., 0] = rows[:, None, 0]
    boxes[..., 1] = cols[None, :, 0]
    boxes[..., 2] = rows[:, None, 1]
    boxes[..., 3] = cols[None, :, 1]
    return boxes


def _output_shape(model: nn.Module, path: str, pre: Preprocess) -> torch.Size:
    with frozen(model), torch.no_grad(), capture(model, [path]) as run:
        return run(pre(blank_input(model, pre)))[path].shape


def receptive_field_boxes(
    model: nn.Module,
    layer: str,
    preprocess: Preprocess | None = None,
    method: str = "auto",
    output_shape: tuple[int, ...] | None = None,
) -> np.ndarray | None:
    """Input boxes of every spatial position of ``layer``.

    Parameters
    ----------
    model, layer
        The network and a layer name (dotted path or alias).
    preprocess
        Gives the input size and channels; defaults to
        :func:`lucid_widgets.optvis.preprocess.resolve`.
    method
        ``"auto"`` (analytic for plain conv chains, else measured), ``"analytic"`` or
        ``"measured"``.
    output_shape
        The layer's output shape ``(B, C, H', W')`` if already known (saves one forward pass).

    Returns
    -------
    np.ndarray or None
        ``(H', W', 4)`` int32 boxes ``(top, left, bottom, right)``, bottom / right exclusive,
        clipped to the input; ``None`` for a layer without spatial axes (``(B, C)`` output).
    """
    if method not in ("auto", "analytic", "measured"):
        raise ValueError(f"method must be 'auto', 'analytic' or 'measured', got {method!r}.")
    pre = resolve(model, preprocess)
    path = resolve_layer(model, layer)
    shape = tuple(output_shape) if output_shape is not None else None
    key = (path, pre.input_size, pre.channels, method)
    memo = _MEMO.setdefault(model, {})
    if key in memo:
        return memo[key]
    shape = shape or tuple(_output_shape(model, path, pre))
    if len(shape) != 4:
        memo[key] = None
        return None
    height, width = pre.input_size
    geometry = analytic_geometry(model, layer) if method != "measured" else None
    if method == "analytic" and geometry is None:
        raise ValueError(
            f"No analytic receptive field for {layer!r}: the model is not a plain nn.Sequential "
            "of Conv2d / pooling / element-wise modules up to it. Use method='measured'."
        )
    if geometry is not None:
        rows = np.stack(geometry[0].edges(shape[2], height), 1)
        cols = np.stack(geometry[1].edges(shape[3], width), 1)
        boxes = _box_map(rows, cols)
    else:
        boxes = _measured_boxes(model, path, pre, (shape[2], shape[3]))
    memo[key] = boxes
    return boxes


def crop(
    image: np.ndarray, box: tuple[int, int, int, int], input_size: tuple[int, int]
) -> np.ndarray:
    """Cut ``box`` (in ``input_size`` pixel coordinates) out of ``image`` ``(h, w, C)``.

    The image may be a thumbnail of the network input: the box is scaled to its size, keeping
    at least one pixel.
    """
    height, width = image.shape[:2]
    scale_y, scale_x = height / input_size[0], width / input_size[1]
    top, left, bottom, right = box
    top_px, left_px = int(np.floor(top * scale_y)), int(np.floor(left * scale_x))
    bottom_px = max(top_px + 1, int(np.ceil(bottom * scale_y)))
    right_px = max(left_px + 1, int(np.ceil(right * scale_x)))
    return image[top_px:bottom_px, left_px:right_px]
