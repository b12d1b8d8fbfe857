"""Skip the backward pass of branches that the objective's gradient never reaches.

An objective on a concatenating layer (an Inception block: ``torch.cat`` of four branches) often
reads channels of one branch only, like ``channel("inception4a", 0)``. Autograd still sends a
zero-filled gradient down every other branch and runs their whole backward pass on zeros.
:func:`skip_zero_branches` hooks the concatenation's backward node so that an all-zero gradient
slice is passed on as "no gradient", and autograd skips that branch. The result is exactly the
same: a zero gradient contributes nothing.
"""

from __future__ import annotations

import torch

__all__ = ["skip_zero_branches"]

_CONCATENATIONS = ("CatBackward0", "StackBackward0")
_PASS_THROUGH = 4  # elementwise nodes to look through for a concatenation (a ReLU after a cat)


def _none_if_zero(grad_inputs: tuple, grad_outputs: tuple) -> tuple:
    return tuple(None if g is not None and not bool(g.any()) else g for g in grad_inputs)


def skip_zero_branches(tensor: torch.Tensor) -> bool:
    """Hook the concatenation that produced ``tensor`` (if any); return whether one was hooked.

    The hook acts on this graph only: the next forward pass builds a new one.
    """
    node = tensor.grad_fn
    for _ in range(_PASS_THROUGH + 1):
        if node is None:
            return False
        if type(node).__name__ in _CONCATENATIONS:
            node.register_hook(_none_if_zero)
            return True
        parents = [parent for parent, _ in node.next_functions if parent is not None]
        if len(parents) != 1:
            return False
        node = parents[0]
    return False
