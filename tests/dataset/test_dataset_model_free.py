"""Dataset passes and sample views run a shadow copy: the user's model stays free meanwhile."""

from __future__ import annotations

import numpy as np
import torch
from dataset_support import assert_same
from model_free import GatedNet, run_while_training, state

from lucid_widgets.dataset.examples import dataset_examples
from lucid_widgets.dataset.sample import accentuation_of, caricature_of, sample_view

IMAGES = torch.rand(10, 3, 16, 16, generator=torch.Generator().manual_seed(0))  # (N, C, H, W)
OPTIONS = {"k": 3, "batch_size": 4, "cache_dir": False, "progress": False}


def _examples(model):
    return dataset_examples(model, IMAGES, ["conv1", "conv2"], **OPTIONS)


def test_a_dataset_pass_in_a_thread_leaves_the_model_free_for_training():
    model = GatedNet()
    reference = _examples(GatedNet())
    assert_same(run_while_training(model, lambda: _examples(model)), reference)


def test_a_sample_view_in_a_thread_leaves_the_model_free_for_training():
    model = GatedNet()
    reference = sample_view(GatedNet(), IMAGES[0], layers=["conv2"])
    view = run_while_training(model, lambda: sample_view(model, IMAGES[0], layers=["conv2"]))
    np.testing.assert_allclose(view.layers["conv2"].values, reference.layers["conv2"].values)


def test_flags_and_hooks_are_exactly_as_found_after_each_pass():
    model = GatedNet().train()
    model.conv2.weight.requires_grad_(False)
    model.fc.register_forward_hook(lambda *args: None)  # a user hook: the model itself runs
    before = state(model)
    _examples(model)
    assert state(model) == before
    sample_view(model, IMAGES[0], layers=["conv1"])
    caricature_of(model, IMAGES[0], "conv2")
    accentuation_of(model, IMAGES[0], "conv2", 1)
    assert state(model) == before
    assert all(p.grad is None for p in model.parameters())


def test_a_user_hook_acts_in_the_dataset_pass():
    """The model with hooks of its own is run itself, so a pruning hook shows in the result."""
    model = GatedNet()
    model.conv1.register_forward_hook(lambda module, inputs, out: out * 0)
    result = _examples(model)
    assert np.abs(result["conv1"].values_top).max() == 0
