"""A faster image gradient through a network's first, strided convolution.

Every render step sends the loss's gradient back through the network's first convolution into
the image. That convolution has few input channels (3 for RGB) and a stride (2 in GoogLeNet,
ResNet and EfficientNet, 4 in AlexNet), and on a CPU its input gradient (a transposed convolution
with 3 output channels) runs about five times slower than its forward pass: 15% of a GoogLeNet
step at inception4a.

The same gradient is an ordinary stride-1 convolution with ``C_in * stride**2`` output channels,
one per input channel and stride phase, followed by a pixel shuffle that interleaves the phases.
For an image that is 12 output channels instead of 3, and oneDNN runs it about three times
faster. :class:`ImageConvFunction` computes the forward pass as usual and its backward pass this
way; :func:`install` puts it on the qualifying convolutions of a (shadow) network. Weights must
be frozen: no weight gradient is computed.

Per spatial dimension, with stride ``s``, kernel ``K``, padding before ``p``: the gradient at
input position ``m = s * i + a`` sums ``w[u] * g[i + k]`` over ``u = a + p - s * k`` in
``[0, K)``, so phase ``a`` is a correlation of ``g`` with taps ``k`` in ``[k_min, k_max]``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["ImageConvFunction", "conv2d_padded", "image_gradient", "install", "qualifies"]

MAX_IN_CHANNELS = 4  # the trick pays where the transposed convolution has few outputs


def conv2d_padded(
    image: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    stride: tuple[int, int],
    pads: tuple[int, int, int, int],
    groups: int = 1,
) -> torch.Tensor:
    """``conv2d(F.pad(image, pads), ...)`` without the padded copy of ``image``.

    ``pads`` is ``(left, right, top, bottom)``. Where a dimension pads one more after than
    before (TensorFlow's "SAME" padding), the kernel gets a leading zero tap there and the
    convolution pads symmetrically: the same sums, with no padded copy of the activations
    (or of their gradient). Other asymmetries fall back to ``F.pad``.
    """
    left, right, top, bottom = pads
    if right - left not in (0, 1) or bottom - top not in (0, 1):
        return F.conv2d(F.pad(image, pads), weight, bias, stride, 0, 1, groups)
    if right > left or bottom > top:
        weight = F.pad(weight, (right - left, 0, bottom - top, 0))  # leading zero taps
    return F.conv2d(image, weight, bias, stride, (bottom, right), 1, groups)


def _taps(stride: int, kernel: int, before: int) -> tuple[int, int]:
    """``(k_min, k_max)``: the offsets into the output gradient that some phase reads."""
    k_min = -((kernel - 1 - before) // stride)  # ceil((before - kernel + 1) / stride)
    k_max = (stride - 1 + before) // stride
    return k_min, k_max


def _selection(stride: int, kernel: int, before: int, device, dtype) -> torch.Tensor:
    """``(stride, taps, kernel)`` one-hot: phase ``a``'s tap ``t`` reads weight index ``u``."""
    k_min, k_max = _taps(stride, kernel, before)
    phase = torch.arange(stride, device=device).view(-1, 1, 1)
    tap = torch.arange(k_max - k_min + 1, device=device).view(1, -1, 1)
    index = torch.arange(kernel, device=device).view(1, 1, -1)
    return (index == phase + before - stride * (k_min + tap)).to(dtype)


def image_gradient(
    grad: torch.Tensor,
    weight: torch.Tensor,
    stride: tuple[int, int],
    before: tuple[int, int],
    input_size: tuple[int, int],
) -> torch.Tensor:
    """Gradient of ``conv2d(pad(x), weight, stride=stride)`` w.r.t. ``x``, as a stride-1 conv.

    Parameters
    ----------
    grad
        ``(B, O, H_out, W_out)``, the gradient of the convolution's output.
    weight
        ``(O, C, K_h, K_w)``; groups 1, dilation 1.
    stride, before
        Stride and the zero padding before the input (top, left) per dimension.
    input_size
        ``(H, W)`` of ``x``.

    Returns
    -------
    torch.Tensor
        ``(B, C, H, W)``.
    """
    out_channels, in_channels, kernel_h, kernel_w = weight.shape
    (stride_h, stride_w), (top, left), (height, width) = stride, before, input_size
    rows = _selection(stride_h, kernel_h, top, weight.device, weight.dtype)  # (s_h, T_h, K_h)
    cols = _selection(stride_w, kernel_w, left, weight.device, weight.dtype)  # (s_w, T_w, K_w)
    kernel = torch.einsum("aiu,bjv,ocuv->caboij", rows, cols, weight)  # (C, s_h, s_w, O, T_h, T_w)
    kernel = kernel.reshape(in_channels * stride_h * stride_w, out_channels, *kernel.shape[-2:])
    phases_h, phases_w = math.ceil(height / stride_h), math.ceil(width / stride_w)
    # symmetric zero padding for the convolution (no padded copy of the gradient), then the
    # window of outputs that phase index 0 .. phases-1 needs
    windows = []
    for phases, size, stride_, kernel_, before_ in (
        (phases_h, grad.shape[-2], stride_h, kernel_h, top),
        (phases_w, grad.shape[-1], stride_w, kernel_w, left),
    ):
        k_min, k_max = _taps(stride_, kernel_, before_)
        padding = max(0, -k_min, phases + k_max - size)
        windows.append((padding, slice(padding + k_min, padding + k_min + phases)))
    (pad_h, rows_window), (pad_w, cols_window) = windows
    phased = F.conv2d(grad, kernel, padding=(pad_h, pad_w))[:, :, rows_window, cols_window]
    # phased: (B, C * s_h * s_w, phases_h, phases_w)
    batch = grad.shape[0]
    phased = phased.view(batch, in_channels, stride_h, stride_w, phases_h, phases_w)
    full = phased.permute(0, 1, 4, 2, 5, 3).reshape(
        batch, in_channels, phases_h * stride_h, phases_w * stride_w
    )
    return full[:, :, :height, :width]


class ImageConvFunction(torch.autograd.Function):
    """``conv2d`` whose input gradient is computed by :func:`image_gradient` (no weight grad)."""

    @staticmethod
    def forward(ctx, image, weight, bias, stride, pads):  # pads: (left, right, top, bottom)
        ctx.save_for_backward(weight)
        ctx.stride, ctx.before, ctx.size = stride, (pads[2], pads[0]), tuple(image.shape[-2:])
        return conv2d_padded(image, weight, bias, stride, pads)

    @staticmethod
    def backward(ctx, grad):
        (weight,) = ctx.saved_tensors
        image_grad = image_gradient(grad, weight, ctx.stride, ctx.before, ctx.size)
        return image_grad, None, None, None, None


def qualifies(module: nn.Module) -> bool:
    """A convolution whose input gradient :func:`image_gradient` computes faster.

    Plain ``nn.Conv2d`` (numeric zero padding) and ``Conv2d`` subclasses with a
    ``same_padding(x) -> (left, right, top, bottom)`` method; groups 1, dilation 1, a stride of
    at least 2 and at most ``MAX_IN_CHANNELS`` input channels.
    """
    if not isinstance(module, nn.Conv2d):
        return False
    plain = type(module) is nn.Conv2d and not isinstance(module.padding, str)
    return (
        (plain or callable(getattr(module, "same_padding", None)))
        and module.padding_mode == "zeros"
        and module.groups == 1
        and tuple(module.dilation) == (1, 1)
        and max(module.stride) >= 2
        and module.in_channels <= MAX_IN_CHANNELS
    )


def _forward(module: nn.Conv2d):
    original = type(module).forward

    def forward(image: torch.Tensor) -> torch.Tensor:
        if not image.requires_grad or module.weight.requires_grad or image.dim() != 4:
            return original(module, image)
        if callable(getattr(module, "same_padding", None)):
            pads = tuple(module.same_padding(image))
        else:
            top, left = module.padding
            pads = (left, left, top, top)
        return ImageConvFunction.apply(image, module.weight, module.bias, module.stride, pads)

    return forward


def install(network: nn.Module) -> list[str]:
    """Give every qualifying convolution of ``network`` the fast image gradient, in place.

    Meant for a shadow copy (see :mod:`lucid_widgets.optvis.fast.folding`), never a user's model.
    Returns the module paths changed.
    """
    changed = []
    for path, module in network.named_modules():
        if qualifies(module):
            module.forward = _forward(module)
            changed.append(path)
    return changed
