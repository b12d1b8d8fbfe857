"""Branches of a concatenation that the objective never reads get no backward pass."""

from __future__ import annotations

import torch
from tiny_models import Branches

from lucid_widgets.optvis.fast.sparse_backward import skip_zero_branches


def _gradient(block: Branches, x: torch.Tensor, channel: int, skip: bool):
    """The input gradient of one output channel, and which branches ran a backward pass."""
    reached = []

    def watch(module, inputs, output):  # counts backward passes through the right conv
        output.grad_fn.register_prehook(lambda grads: reached.append(grads[0] is not None))
        # autograd still visits the node, but with no gradient it computes nothing

    handle = block.right.register_forward_hook(watch)
    x = x.clone().requires_grad_(True)
    out = block(x)  # (B, 8, H, W): channels 0..3 from the left branch, 4..7 from the right
    hooked = skip and skip_zero_branches(out)
    (grad,) = torch.autograd.grad(out[:, channel].mean(), x)
    handle.remove()
    return grad, reached, hooked


def test_zero_branches_are_skipped_with_the_same_gradient():
    torch.manual_seed(0)
    block = Branches().requires_grad_(False)
    x = torch.rand(1, 3, 8, 8)
    expected, reached_all, _ = _gradient(block, x, channel=1, skip=False)
    actual, reached_skip, hooked = _gradient(block, x, channel=1, skip=True)
    assert hooked
    assert reached_all == [True] and reached_skip == [False]  # the right conv got no gradient
    torch.testing.assert_close(actual, expected, rtol=0, atol=0)
    both, reached, _ = _gradient(block, x, channel=6, skip=True)  # a right-branch channel
    assert reached == [True] and both.abs().sum() > 0


def test_tensors_without_a_concatenation_are_left_alone():
    x = torch.rand(2, 3, requires_grad=True)
    assert not skip_zero_branches(x * 2 + 1)
    assert not skip_zero_branches(x.detach())
