"""Building blocks run a shadow copy: the user's model stays free to train meanwhile."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from model_free import GatedNet, run_while_training, state

from lucid_widgets.blocks import attribution, connections, neuron_groups, semantic_dictionary

IMAGE = torch.rand(3, 16, 16, generator=torch.Generator().manual_seed(1))  # (C, H, W)

BLOCKS = {  # name -> (block on a model, one array of its result)
    "attribution": lambda m: attribution(m, IMAGE, "conv1", target="dog", steps=4).values,
    "connections": lambda m: connections(m, "conv2", 1, source="conv1", k=3).strength,
    "neuron_groups": lambda m: neuron_groups(m, IMAGE, "conv2", n_groups=2).spatial,
    "semantic_dictionary": lambda m: semantic_dictionary(m, IMAGE, "conv2", k=2).values,
}


@pytest.mark.parametrize("name", sorted(BLOCKS))
def test_a_block_in_a_thread_leaves_the_model_free_for_training(name):
    block, model = BLOCKS[name], GatedNet()
    reference = block(GatedNet())
    result = run_while_training(model, lambda: block(model))
    np.testing.assert_allclose(result, reference, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", sorted(BLOCKS))
def test_flags_and_hooks_are_exactly_as_found_after_a_block(name):
    model = GatedNet().train()
    model.conv2.weight.requires_grad_(False)
    before = state(model)
    BLOCKS[name](model)
    assert state(model) == before
    model.fc.register_forward_hook(lambda *args: None)  # a user hook: the model itself runs
    before = state(model)
    BLOCKS[name](model)
    assert state(model) == before
    assert all(p.grad is None for p in model.parameters())  # no weight gradient taken
