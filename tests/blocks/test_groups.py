"""neuron_groups: two textures give two groups, errors fall with n_groups, seeded, errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from block_nets import TextureNet, two_textures

from lucid_widgets.blocks import attribution, neuron_groups
from lucid_widgets.optvis.objective_base import Activations


def test_two_textures_give_two_groups_that_separate_the_halves():
    groups = neuron_groups(TextureNet(), two_textures(), "pool", n_groups=2)
    assert groups.spatial.shape == (2, 8, 8) and groups.directions.shape == (2, 4)
    assert (groups.spatial >= 0).all() and (groups.directions >= 0).all()
    left, right = groups.spatial[:, :, 1:3].mean((1, 2)), groups.spatial[:, :, 5:7].mean((1, 2))
    sides = [int(b > a) for a, b in zip(left, right, strict=True)]
    assert sorted(sides) == [0, 1]  # one group per half
    for a, b in zip(left, right, strict=True):
        assert max(a, b) > 10 * min(a, b) + 1e-6
    # the left (horizontal) group weighs channels 0, 1; the right one channels 2, 3
    horizontal = groups.directions[sides.index(0)]
    assert horizontal[:2].sum() > 10 * horizontal[2:].sum()


def test_reconstruction_error_falls_as_n_groups_grows(tiny_net):
    image = torch.rand(3, 32, 32, generator=torch.Generator().manual_seed(0))
    errors = [neuron_groups(tiny_net, image, "early", n, size=32).relative_error for n in (1, 3, 6)]
    assert errors[0] > errors[1] > errors[2] >= 0


def test_same_seed_same_groups_and_several_images(tiny_net):
    images = [torch.rand(3, 32, 32, generator=torch.Generator().manual_seed(s)) for s in (1, 2)]
    first = neuron_groups(tiny_net, images, "early", n_groups=3, seed=4, size=32)
    again = neuron_groups(tiny_net, images, "early", n_groups=3, seed=4, size=32)
    np.testing.assert_array_equal(first.spatial, again.spatial)
    np.testing.assert_array_equal(first.directions, again.directions)
    assert first.spatial.shape == (2, 3, 32, 32) and first.directions.shape == (3, 8)
    stacked = np.stack([image.permute(1, 2, 0).numpy() for image in images])  # (N, H, W, C)
    as_array = neuron_groups(tiny_net, stacked, "early", n_groups=3, seed=4, size=32)
    np.testing.assert_allclose(as_array.directions, first.directions, rtol=1e-4, atol=1e-6)


def test_group_objective_is_a_direction_along_the_component():
    groups = neuron_groups(TextureNet(), two_textures(), "pool", n_groups=2)
    objective = groups.objective(1)
    assert objective.layers == frozenset({"pool"})
    maps = torch.rand(2, 4, 8, 8)
    expected = (maps.permute(0, 2, 3, 1) @ torch.as_tensor(groups.directions[1])).mean()
    assert float(objective(Activations({"pool": maps}))) == pytest.approx(float(expected))
    with pytest.raises(IndexError, match="valid: 0..1"):
        groups.objective(2)


def test_group_attribution_adds_up_to_the_reconstructed_attribution():
    model, image = TextureNet(), two_textures()
    groups = neuron_groups(model, image, "pool", n_groups=4)
    attr = attribution(model, image, "pool", target=0)
    per_group = attr.groups(groups)
    assert per_group.shape == (4,)
    assert per_group.sum() == pytest.approx(attr.total, rel=max(0.05, 3 * groups.relative_error))
    with pytest.raises(ValueError, match="not of this attribution"):
        attr.groups(neuron_groups(model, two_textures(16), "pool", n_groups=2, size=16))


def test_bad_input_gets_clear_errors(tiny_net):
    model, image = TextureNet(), two_textures()
    with pytest.raises(ValueError, match="more than the 4 units"):
        neuron_groups(model, image, "pool", n_groups=5)
    with pytest.raises(ValueError, match="positive integer"):
        neuron_groups(model, image, "pool", n_groups=0)
    with pytest.raises(ValueError, match="nothing to"):
        neuron_groups(model, torch.zeros(3, 32, 32), "pool", n_groups=2)
    with pytest.raises(ValueError, match="no spatial"):
        neuron_groups(tiny_net, torch.rand(3, 32, 32), "fc", n_groups=2, size=32)
