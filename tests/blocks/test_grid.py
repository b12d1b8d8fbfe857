"""semantic_dictionary and activation_grid: shapes, argmax, skipped positions, streaming."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from block_nets import TextureNet, two_textures

from lucid_widgets.blocks import activation_grid, iter_activation_grid, semantic_dictionary
from lucid_widgets.optvis.preprocess import resolve

FAST = {"transforms": [], "cell": 16, "steps": 2}


def _left_textured() -> torch.Tensor:
    image = two_textures()
    image[:, :, 16:] = 0.0  # a black right half: no activation there
    return image


def test_semantic_dictionary_top_unit_is_the_argmax(tiny_net):
    image = torch.rand(3, 24, 24, generator=torch.Generator().manual_seed(0))
    dico = semantic_dictionary(tiny_net, image, "early", k=3, size=24)
    assert dico.units.shape == dico.values.shape == (24, 24, 3) and dico.shape == (24, 24)
    with torch.no_grad():
        normalized = resolve(tiny_net)(image[None])  # the model's ImageNet normalization
        acts = tiny_net.relu1(tiny_net.conv1(normalized))[0]  # (8, 24, 24)
    np.testing.assert_array_equal(dico.units[..., 0], acts.argmax(0).numpy())
    np.testing.assert_allclose(dico.values[..., 0], acts.amax(0).numpy(), rtol=1e-5)
    assert (np.diff(dico.values, axis=-1) <= 0).all()
    with pytest.raises(ValueError, match="1..8"):
        semantic_dictionary(tiny_net, image, "early", k=9, size=24)


def test_activation_grid_shape_and_skipped_positions():
    grid = activation_grid(TextureNet(), _left_textured(), "pool", **FAST)
    assert grid.shape == (8, 8, 16, 16, 3)
    assert (grid[:, 5:] == 0).all()  # skipped: no activation on the flat half
    assert (grid[:, 1:3].reshape(16, -1).std(1) > 0).all()  # rendered cells
    assert grid.min() >= 0 and grid.max() <= 1


def test_the_grid_streams_in_batches_and_stops():
    cells = list(iter_activation_grid(TextureNet(), _left_textured(), "pool", batch_size=8, **FAST))
    rendered = sum(len(batch.positions) for batch in cells)
    skipped = cells[0].skipped
    assert len(cells) == -(-rendered // 8) and rendered + len(skipped) == 64
    assert {tuple(p) for p in skipped} >= {(y, x) for y in range(8) for x in range(5, 8)}
    assert cells[0].images.shape == (8, 16, 16, 3)
    stopped = list(iter_activation_grid(TextureNet(), two_textures(), "pool", stop=lambda: True))
    assert stopped == []


def test_each_cell_renders_its_own_position():
    model = TextureNet()
    grid = activation_grid(model, two_textures(), "pool", cell=16, steps=12, transforms=[])
    # a cell of the left (horizontal-stripe) half excites channels 0, 1 more than 2, 3
    with torch.no_grad():
        left = model.pool(model.relu(model.conv(torch.tensor(grid[3, 1]).permute(2, 0, 1)[None])))
        right = model.pool(model.relu(model.conv(torch.tensor(grid[3, 6]).permute(2, 0, 1)[None])))
    assert left[0, :2].sum() > left[0, 2:].sum()
    assert right[0, 2:].sum() > right[0, :2].sum()
