"""The image gradient of a strided first convolution, computed as a stride-1 convolution."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from lucid_widgets.optvis.fast import image_conv
from lucid_widgets.zoo.efficientnet_lite0 import SameConv2d

CASES = [  # in, out, kernel (h, w), stride (h, w), padding before (top, left), input (h, w)
    (3, 16, (7, 7), (2, 2), (3, 3), (40, 40)),  # GoogLeNet / ResNet stem
    (3, 8, (3, 3), (2, 2), (0, 0), (33, 33)),  # odd size, no padding
    (1, 5, (11, 11), (4, 4), (2, 2), (47, 47)),  # AlexNet-like stride 4
    (3, 4, (3, 5), (2, 3), (1, 2), (31, 37)),  # unequal strides and kernels
    (2, 4, (1, 1), (2, 2), (0, 0), (10, 11)),  # kernel smaller than the stride
    (3, 6, (4, 4), (4, 4), (0, 0), (16, 16)),  # a ViT-style patch embedding: kernel = stride
]


@pytest.mark.parametrize(("in_ch", "out_ch", "kernel", "stride", "before", "size"), CASES)
@pytest.mark.parametrize("extra_after", [0, 1])
def test_image_gradient_equals_autograd(in_ch, out_ch, kernel, stride, before, size, extra_after):
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(2, in_ch, *size, dtype=torch.float64, generator=generator, requires_grad=True)
    weight = torch.randn(out_ch, in_ch, *kernel, dtype=torch.float64, generator=generator)
    pads = (before[1], before[1] + extra_after, before[0], before[0] + extra_after)
    out = F.conv2d(F.pad(x, pads), weight, stride=stride)
    grad = torch.randn(out.shape, dtype=torch.float64, generator=generator)
    (expected,) = torch.autograd.grad(out, x, grad)
    actual = image_conv.image_gradient(grad, weight, stride, before, size)
    torch.testing.assert_close(actual, expected, rtol=1e-10, atol=1e-10)


def test_installed_conv_forward_and_gradient_match_nn_conv():
    torch.manual_seed(0)
    reference = nn.Conv2d(3, 8, 7, stride=2, padding=3).requires_grad_(False)
    changed = nn.Sequential(nn.Conv2d(3, 8, 7, stride=2, padding=3), nn.Conv2d(8, 8, 3, stride=2))
    changed[0].load_state_dict(reference.state_dict())
    changed.requires_grad_(False)
    assert image_conv.install(changed) == ["0"]  # 8 input channels: the second is left alone
    x = torch.rand(1, 3, 30, 30, requires_grad=True)
    out_ref, out_new = reference(x), changed[0](x)
    torch.testing.assert_close(out_new, out_ref)
    grad = torch.randn_like(out_ref)
    (expected,) = torch.autograd.grad(out_ref, x, grad)
    (actual,) = torch.autograd.grad(out_new, x, grad)
    torch.testing.assert_close(actual, expected, rtol=1e-4, atol=1e-5)


def test_same_padding_convs_qualify_and_trainable_weights_fall_back():
    torch.manual_seed(0)
    conv = SameConv2d(3, 4, 3, stride=2, bias=False)
    assert image_conv.qualifies(conv)
    assert not image_conv.qualifies(nn.Conv2d(3, 4, 3, stride=1))
    assert not image_conv.qualifies(nn.Conv2d(3, 6, 3, stride=2, groups=3))
    reference = SameConv2d(3, 4, 3, stride=2, bias=False)
    reference.load_state_dict(conv.state_dict())
    image_conv.install(conv)
    x = torch.rand(1, 3, 16, 16)  # TF "same" pads 0 before, 1 after
    out = conv(x)  # weights require grad: the ordinary path, weight gradient included
    out.sum().backward()
    assert conv.weight.grad is not None
    conv.requires_grad_(False)
    reference.requires_grad_(False)
    x.requires_grad_(True)
    (expected,) = torch.autograd.grad(reference(x).square().sum(), x)
    (actual,) = torch.autograd.grad(conv(x).square().sum(), x)
    torch.testing.assert_close(actual, expected, rtol=1e-4, atol=1e-5)
