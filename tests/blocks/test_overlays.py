"""Overlays: signed heat maps and group colours over the photo, and the batched group objective."""

from __future__ import annotations

import numpy as np
import torch
from block_nets import TextureNet, two_textures

from lucid_widgets.blocks import (
    as_seen,
    group_colors,
    groups_overlay,
    heatmap_overlay,
    neuron_groups,
)
from lucid_widgets.optvis.objective_base import Activations


def test_heatmap_overlay_colours_the_sign():
    photo = np.full((32, 32, 3), 128, np.uint8)
    values = np.zeros((4, 4))
    values[:, :2], values[:, 2:] = 1.0, -1.0
    picture = heatmap_overlay(photo, values)
    assert picture.shape == (32, 32, 3) and picture.dtype == np.uint8
    left, right = picture[:, :8].reshape(-1, 3).mean(0), picture[:, -8:].reshape(-1, 3).mean(0)
    assert left[0] > left[2] and right[2] > right[0]  # orange on the left, blue on the right


def test_groups_overlay_and_as_seen():
    model, image = TextureNet(), two_textures()
    groups = neuron_groups(model, image, "pool", n_groups=2)
    photo = as_seen(model, image)
    assert photo.shape == (32, 32, 3) and photo.dtype == np.uint8
    picture = groups_overlay(photo, groups.spatial)
    colours = (group_colors(2) * 255).round()
    left_group = int(groups.spatial[:, :, 1:3].sum((1, 2)).argmax())
    centre_left = picture[8:24, 4:12].reshape(-1, 3).mean(0)
    assert (
        np.abs(centre_left - colours[left_group]).sum()
        < np.abs(centre_left - colours[1 - left_group]).sum()
    )


def test_batch_objective_gives_each_element_its_group():
    groups = neuron_groups(TextureNet(), two_textures(), "pool", n_groups=2)
    maps = torch.rand(2, 4, 8, 8)
    value = float(groups.batch_objective()(Activations({"pool": maps})))
    expected = sum(
        float((maps[i].permute(1, 2, 0) @ torch.as_tensor(groups.directions[i])).mean())
        for i in range(2)
    )
    assert abs(value - expected) < 1e-4


def test_one_group_alone_and_a_shared_heatmap_scale():
    model, image = TextureNet(), two_textures()
    groups = neuron_groups(model, image, "pool", n_groups=2)
    photo = as_seen(model, image)
    right_group = int(groups.spatial[:, :, 5:7].sum((1, 2)).argmax())
    alone = groups_overlay(photo, groups.spatial, only=right_group)
    change = np.abs(alone.astype(float) - photo).sum(-1)  # (H, W)
    assert change[8:24, :6].mean() < 0.2 * change[8:24, -6:].mean()  # the left half barely
    faint = heatmap_overlay(np.zeros((8, 8, 3), np.uint8), np.full((2, 2), 0.5), scale=1.0)
    full = heatmap_overlay(np.zeros((8, 8, 3), np.uint8), np.full((2, 2), 0.5))
    assert faint[..., 0].max() < full[..., 0].max()
