"""Lucid's redirected ReLU gradient, for the first steps of a render.

Where a ReLU blocks the whole gradient of a batch element (every unit inactive), the ordinary
gradient is zero and the optimization stalls at a dead start. The redirected gradient then lets
through the part of the gradient that pushes inactive units *up*, back towards the active range.
Lucid applies it to ``Relu`` and ``Relu6`` ops; here it is applied to ``nn.ReLU`` and
``nn.ReLU6`` modules (functional ``F.relu`` calls cannot be intercepted without patching torch).
"""

from __future__ import annotations

import math
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn

__all__ = ["redirected_relu"]


class _RedirectedReLUFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, tensor: torch.Tensor, upper: float) -> torch.Tensor:
        ctx.save_for_backward(tensor)
        ctx.upper = upper
        if math.isinf(upper):
            return torch.relu(tensor)
        return tensor.clamp(min=0.0, max=upper)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        (tensor,) = ctx.saved_tensors
        upper = ctx.upper
        # the plain ReLU / ReLU6 gradient, one fused pass (an input of exactly 0 or ``upper``
        # counts as blocked, as in torch; Lucid lets it pass: a measure-zero difference)
        if math.isinf(upper):
            relu_grad = torch.ops.aten.threshold_backward(grad, tensor, 0.0)
        else:
            relu_grad = torch.ops.aten.hardtanh_backward(grad, tensor, 0.0, upper)
        # (B,): does any gradient get through for this batch element? (Lucid: a nonzero norm)
        # no flatten: it would copy channels-last gradients; a 1-d tensor counts as one element
        dims = tuple(range(1, relu_grad.dim())) if relu_grad.dim() > 1 else None
        alive = torch.linalg.vector_norm(relu_grad, ord=math.inf, dim=dims) > 0
        if bool(alive.all()):  # the usual case: every element already has a gradient
            return relu_grad, None
        # gradient descent moves x by -grad: for x < 0, grad > 0 pushes it further down
        pushing_out = ((tensor < 0) & (grad > 0)) | ((tensor > upper) & (grad < 0))
        redirected = grad.masked_fill(pushing_out, 0.0)
        alive = alive.view(-1, *([1] * (grad.dim() - 1)))
        return torch.where(alive, relu_grad, redirected), None


_LOCK = threading.Lock()
_INSTALLED: dict[int, int] = {}  # id(module) -> number of active users
_ACTIVE = threading.local()  # per thread: is the redirected gradient on?


def _redirected_forward(module: nn.Module):
    upper = 6.0 if isinstance(module, nn.ReLU6) else float("inf")
    original = type(module).forward

    def forward(tensor: torch.Tensor) -> torch.Tensor:
        if getattr(_ACTIVE, "on", False) and torch.is_grad_enabled():
            return _RedirectedReLUFunction.apply(tensor, upper)
        return original(module, tensor)

    forward.lucid_redirected = True  # so a copy of the module (see folding.py) can drop it
    return forward


@contextmanager
def redirected_relu(model: nn.Module, enabled: bool = True) -> Iterator[int]:
    """Give every ``nn.ReLU`` / ``nn.ReLU6`` of ``model`` the redirected gradient for a while.

    The change applies to forward passes of the calling thread only (another thread rendering
    the same model is unaffected). Yields the number of modules changed; every module is
    restored on exit, also on error.
    """
    if not enabled:
        yield 0
        return
    changed = [m for m in model.modules() if type(m) in (nn.ReLU, nn.ReLU6)]
    with _LOCK:
        for module in changed:
            users = _INSTALLED.get(id(module), 0)
            if users == 0:
                module.forward = _redirected_forward(module)
            _INSTALLED[id(module)] = users + 1
    previous = getattr(_ACTIVE, "on", False)
    _ACTIVE.on = True
    try:
        yield len(changed)
    finally:
        _ACTIVE.on = previous
        with _LOCK:
            for module in changed:
                users = _INSTALLED.pop(id(module)) - 1
                if users:
                    _INSTALLED[id(module)] = users
                else:
                    module.__dict__.pop("forward", None)
