"""The in-pass reduction gives exactly the brute-force rankings, also where shortcuts could slip."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from dataset_support import SIZE, brute_force, make_images
from torch import nn

from lucid_widgets.dataset.examples import dataset_examples
from lucid_widgets.dataset.reduce import _extreme, _rows
from lucid_widgets.dataset.topk import Ranking
from lucid_widgets.optvis.preprocess import Preprocess

LAYOUTS = pytest.mark.parametrize("layout", ["nchw", "channels_last"])


def in_layout(model: nn.Module, layout: str) -> nn.Module:
    """The model whose convolutions output ``layout`` maps (both row reductions get used)."""
    return model.to(memory_format=torch.channels_last) if layout == "channels_last" else model


def assert_matches_brute_force(model, images, layers, k, result):
    for layer in layers:
        expected = brute_force(model, images, layer, k)
        for which in ("top", "bottom"):
            values, indices, positions = expected[which]
            examples = result[layer]
            np.testing.assert_allclose(getattr(examples, f"values_{which}"), values, rtol=1e-6)
            np.testing.assert_array_equal(getattr(examples, f"indices_{which}"), indices)
            np.testing.assert_array_equal(getattr(examples, f"positions_{which}"), positions)


@LAYOUTS
def test_layers_followed_by_in_place_ops_are_read_before_them(layout):
    """The conv's output is changed in place by the ReLU after it and by ``+=`` below."""

    class Residual(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 3, 3, padding=1)
            self.relu = nn.ReLU(inplace=True)
            self.head = nn.Conv2d(3, 4, 3, stride=2)

        def forward(self, x):
            y = self.conv(x)
            y += x  # in place on the hooked output
            return self.head(self.relu(y))

    torch.manual_seed(3)
    model = in_layout(Residual().eval(), layout)
    model.lucid_preprocess = Preprocess(input_size=(SIZE, SIZE))
    images, layers = make_images(33, seed=4), ["conv", "head"]
    result = dataset_examples(
        model, images, layers, k=5, batch_size=8, cache_dir=False, progress=False
    )
    assert_matches_brute_force(model, images, layers, 5, result)


@LAYOUTS
def test_ties_and_constant_maps_go_to_the_earlier_image(layout):
    """Repeated images (equal values in and across batches) and a unit that is constant."""
    torch.manual_seed(5)
    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 3, 1)).eval()
    with torch.no_grad():
        model[0].weight[1] = 0  # unit 1 of layer "0": its bias everywhere, every image
    model = in_layout(model, layout)
    model.lucid_preprocess = Preprocess(input_size=(SIZE, SIZE))
    images = make_images(6, seed=6).repeat(4, 1, 1, 1)  # 24 images, each value 4 times
    for batch_size in (1, 5, 24):
        result = dataset_examples(
            model, images, ["0", "2"], k=7, batch_size=batch_size, cache_dir=False, progress=False
        )
        assert_matches_brute_force(model, images, ["0", "2"], 7, result)
    assert result["0"].indices_top[1].tolist() == list(range(7))  # the constant unit
    assert result["0"].positions_top[1].tolist() == [[0, 0]] * 7  # its first position


@LAYOUTS
def test_extreme_is_the_first_in_row_major_order(layout):
    """Maps with their max / min repeated over rows and columns, and a NaN: as flat argmax."""
    acts = torch.randn(3, 5, 6, 7)
    acts[0, 0] = 1.0  # constant map
    acts[1, 2, [1, 4], :] = 9.0  # the max in two whole rows
    acts[1, 3, 2, [0, 5]] = -9.0  # the min twice in one row
    acts[2, 4, 3, 1] = float("nan")
    if layout == "channels_last":
        acts = acts.contiguous(memory_format=torch.channels_last)
    flat = acts.flatten(2)
    for find, reduce, arg in (("max", torch.amax, torch.argmax), ("min", torch.amin, torch.argmin)):
        values, located = _extreme(acts, find)
        torch.testing.assert_close(values, reduce(flat, 2), equal_nan=True)
        assert torch.equal(located.images, torch.arange(3).repeat_interleave(5))  # all, in order
        assert torch.equal(located.units, torch.arange(5).repeat(3))
        assert torch.equal(located.where, arg(flat, 2).view(-1))


def test_nan_activations_rank_last():
    """A NaN map ranks below every number in both directions, as the merge orders it."""
    model = nn.Sequential(nn.Conv2d(3, 2, 1)).eval()
    model.lucid_preprocess = Preprocess(input_size=(4, 4))
    images = torch.full((5, 3, 4, 4), 0.5)
    images[2] = float("nan")
    result = dataset_examples(
        model, images, "0", k=5, batch_size=2, cache_dir=False, progress=False
    )
    assert result["0"].indices_top[:, -1].tolist() == [2, 2]
    assert result["0"].indices_bottom[:, -1].tolist() == [2, 2]


@pytest.mark.parametrize("layout", ["nchw", "channels_last", "transposed"])
def test_row_extremes_in_chunks_are_the_whole_reductions(layout):
    """Reduced a few rows at a time (a chunk smaller than one row, and uneven ones) or whole."""
    acts = torch.randn(3, 5, 6, 7)
    acts[1, 2, 4, 3] = float("nan")
    if layout == "channels_last":
        acts = acts.contiguous(memory_format=torch.channels_last)
    elif layout == "transposed":
        acts = acts.transpose(2, 3).contiguous().transpose(2, 3)  # neither layout
    for chunk_bytes in (1, 100, 4 * 7 * 5 * 4, 2**30):
        high, low = _rows(acts, chunk_bytes)
        torch.testing.assert_close(high, torch.amax(acts, 3), equal_nan=True)
        torch.testing.assert_close(low, torch.amin(acts, 3), equal_nan=True)


@pytest.mark.parametrize("descending", [True, False])
def test_merging_only_the_touched_units_is_the_full_merge(descending):
    """Once k are kept, units with no candidate strictly better than the k-th (ties included)
    keep their ranking; the touched ones are sorted as a full merge would."""
    k, units, batch = 3, 6, 5
    generator = torch.Generator().manual_seed(0)
    kept = Ranking(
        torch.tensor([[3.0, 2.0, 1.0]] * units),
        torch.arange(units * k).view(units, k),
        torch.arange(units * k).view(units, k) + 100,
    )
    if not descending:
        kept = Ranking(-kept.values, kept.indices, kept.positions)
    sign = 1.0 if descending else -1.0
    values = sign * (
        torch.randint(0, 3, (units, batch), generator=generator).float() - 1
    )  # <= k-th
    values[1, 2] = sign * 1.0  # ties with the k-th: must not enter
    values[3, 4], values[4, 0], values[4, 3] = sign * 2.0, sign * 5.0, sign * 5.0  # enter
    indices = torch.arange(50, 50 + batch).expand(units, -1)
    positions = torch.randint(0, 9, (units, batch), generator=generator)
    floor = kept.floor(k, descending)
    touched = ((values > floor[:, None]) if descending else (values < floor[:, None])).any(1)
    assert touched.tolist() == [False, False, False, True, True, False]
    fast = kept.merge(values, indices, positions, k, descending, touched)
    full = kept.merge(values, indices, positions, k, descending)
    for a, b in zip(
        (fast.values, fast.indices, fast.positions),
        (full.values, full.indices, full.positions),
        strict=True,
    ):
        assert torch.equal(a, b)
    assert fast.indices[4].tolist() == [50, 53, 12] and fast.indices[1].tolist() == [3, 4, 5]
