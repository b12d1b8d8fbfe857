"""Shared by the dataset and blocks tests: a pass in a thread leaves the model free to train.

:class:`GatedNet` pauses every forward pass made in the worker thread; at each pause the main
thread trains the same model (``train()``, ``backward()``, an optimizer step), as a user does in
a notebook while a Microscope computes in the background.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable

import torch
from block_nets import NonlinearNet
from torch import nn


class _Gate:
    """Pauses forward passes of one thread (module-level: a shadow copy shares it)."""

    def __init__(self):
        self.thread: int | None = None
        self.paused: queue.Queue = queue.Queue()
        self.resume: queue.Queue = queue.Queue()

    def wait(self) -> None:
        if threading.get_ident() == self.thread:
            self.paused.put(None)
            self.resume.get(timeout=30)


GATE = _Gate()


class GatedNet(NonlinearNet):
    """:class:`NonlinearNet` (16 x 16 inputs, layers conv1, conv2, fc) whose forward pauses in
    the gated thread."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, 3, 16, 16) -> (B, 3)
        GATE.wait()
        return super().forward(x)


def state(model: nn.Module) -> tuple:
    """Every flag and hook of the model's modules that a pass could leave changed."""
    modes = [module.training for module in model.modules()]
    grads = [parameter.requires_grad for parameter in model.parameters()]
    hooks = [
        dict(getattr(module, name))
        for module in model.modules()
        for name in ("_forward_hooks", "_forward_pre_hooks", "_backward_hooks")
    ]
    return modes, grads, hooks


def run_while_training(model: nn.Module, work: Callable[[], object], lr: float = 0.0) -> object:
    """Run ``work()`` in a thread; at each of its forward passes train ``model`` here (an
    optimizer step of ``lr``: 0 keeps the weights, so results can be compared).

    Asserts that every ``backward()`` here works, that the mode set here (train) stays, and that
    the model's gradient flags are as before. Returns what ``work`` returned.
    """
    model.eval()
    flags = [parameter.requires_grad for parameter in model.parameters()]
    optimizer = torch.optim.SGD(model.parameters(), lr=lr)
    done: dict = {}

    def target() -> None:
        GATE.thread = threading.get_ident()
        try:
            done["result"] = work()
        except Exception as error:  # noqa: BLE001 (raised in the main thread below)
            done["error"] = error

    thread = threading.Thread(target=target)
    thread.start()
    pauses = 0
    while thread.is_alive() or not GATE.paused.empty():
        try:
            GATE.paused.get(timeout=0.02)
        except queue.Empty:
            continue
        pauses += 1
        model.train()  # mid-pass: this mode must stay
        optimizer.zero_grad()
        model(torch.rand(2, 3, 16, 16)).sum().backward()  # no "does not require grad"
        optimizer.step()
        GATE.resume.put(None)
    thread.join()
    GATE.thread = None
    if "error" in done:
        raise done["error"]
    assert pauses > 0  # the pass ran the model's forward while the user trained it
    assert all(module.training for module in model.modules())
    assert [parameter.requires_grad for parameter in model.parameters()] == flags
    assert model.conv1.weight.grad is not None
    return done["result"]
