"""Receptive fields: analytic chains, gradient measurement, crops of dataset examples."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from lucid_widgets.dataset.examples import dataset_examples
from lucid_widgets.optvis.preprocess import Preprocess
from lucid_widgets.zoo.receptive_field import analytic_geometry, crop, receptive_field_boxes

SIZE = 32
PRE = Preprocess(input_size=(SIZE, SIZE))


def conv_stack() -> nn.Sequential:
    """3x3 conv, 3x3 conv (stride 1), 2x2 max pool (stride 2), 3x3 conv, then a linear head."""
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(4, 4, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2, 2),
        nn.Sequential(nn.Conv2d(4, 5, 3, padding=1), nn.ReLU()),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(5, 3),
    )


class Residual(nn.Module):
    """Not a Sequential: the same conv stack called from forward() with a residual branch."""

    def __init__(self):
        super().__init__()
        self.stack = conv_stack()
        self.skip = nn.Conv2d(3, 4, 1)

    def forward(self, x):
        features = self.stack[:4](x) + self.skip(x)
        return self.stack[4:](features)


class SamePadConv(nn.Conv2d):
    """A conv with TensorFlow-style asymmetric "SAME" padding done in forward()."""

    def forward(self, x):
        return super().forward(F.pad(x, (0, 1, 0, 1)))


def test_two_3x3_convs_see_5x5_and_the_pool_doubles_the_step():
    model = conv_stack()
    first = receptive_field_boxes(model, "0", PRE, method="analytic")
    second = receptive_field_boxes(model, "2", PRE, method="analytic")
    pooled = receptive_field_boxes(model, "4", PRE, method="analytic")
    after = receptive_field_boxes(model, "5", PRE, method="analytic")
    assert tuple(first[10, 12]) == (9, 11, 12, 14)  # 3x3 centred on (10, 12)
    assert tuple(second[10, 12]) == (8, 10, 13, 15)  # 5x5
    assert tuple(second[0, 0]) == (0, 0, 3, 3)  # clipped at the corner
    assert tuple(second[SIZE - 1, SIZE - 1]) == (SIZE - 3, SIZE - 3, SIZE, SIZE)
    assert pooled.shape == (SIZE // 2, SIZE // 2, 4)
    assert tuple(pooled[5, 5]) == (8, 8, 14, 14)  # 6x6, step 2
    assert tuple(after[5, 5]) == (6, 6, 16, 16)  # 6 + 2 * 2 = 10
    assert tuple(after[6, 5] - after[5, 5]) == (2, 0, 2, 0)
    assert receptive_field_boxes(model, "8", PRE) is None  # linear: no spatial positions
    geometry_y, _ = analytic_geometry(model, "5")
    assert (geometry_y.jump, geometry_y.start, geometry_y.size) == (2, -4, 10)


def test_measured_matches_analytic():
    model = conv_stack()
    for layer in ("0", "2", "4", "5", "5.0"):
        analytic = receptive_field_boxes(model, layer, PRE, method="analytic")
        measured = receptive_field_boxes(model, layer, PRE, method="measured")
        np.testing.assert_array_equal(measured, analytic, err_msg=layer)


def test_non_sequential_model_is_measured():
    model = Residual()
    assert analytic_geometry(model, "stack.5") is None
    boxes = receptive_field_boxes(model, "stack.5", PRE)  # auto -> measured
    expected = receptive_field_boxes(conv_stack(), "5", PRE, method="analytic")
    np.testing.assert_array_equal(boxes, expected)  # the 1x1 skip adds nothing outside
    with pytest.raises(ValueError, match="method='measured'"):
        receptive_field_boxes(model, "stack.5", PRE, method="analytic")


def test_asymmetric_padding_is_measured_exactly():
    torch.manual_seed(0)
    model = nn.Sequential(SamePadConv(3, 4, 3, stride=2), nn.ReLU(), SamePadConv(4, 4, 3, stride=2))
    assert analytic_geometry(model, "2") is None  # custom forward: not analytic
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the fit must agree with every measured position
        boxes = receptive_field_boxes(model, "2", PRE)
    assert boxes.shape == (8, 8, 4)
    # layer 1 sees [2i, 2i + 3) with one pixel of padding after; layer 2 steps by 4, sees 7.
    assert tuple(boxes[2, 3]) == (8, 12, 15, 19)
    assert tuple(boxes[7, 7]) == (28, 28, 32, 32)


def test_crops_contain_the_max_position_and_have_the_box_size():
    model = conv_stack()
    model.lucid_preprocess = PRE
    images = torch.rand(20, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(3))
    result = dataset_examples(model, images, ["2", "5"], k=3, cache_dir=False, progress=False)
    for layer, size in (("2", 5), ("5", 10)):
        examples = result[layer]
        out_h, out_w = examples.box_map.shape[:2]
        for which in ("top", "bottom"):
            boxes = examples.boxes(which)  # (U, k, 4)
            positions = getattr(examples, f"positions_{which}")
            centre_y = (positions[..., 0] + 0.5) * SIZE / out_h
            centre_x = (positions[..., 1] + 0.5) * SIZE / out_w
            assert ((boxes[..., 0] <= centre_y) & (centre_y < boxes[..., 2])).all()
            assert ((boxes[..., 1] <= centre_x) & (centre_x < boxes[..., 3])).all()
            for unit in range(examples.units):
                for rank in range(3):
                    top, left, bottom, right = examples.box(unit, rank, which)
                    patch = examples.crop(unit, rank, which)
                    assert patch.shape == (bottom - top, right - left, 3)
                    assert bottom - top <= size and right - left <= size
                    image = examples.image(unit, rank, which)
                    np.testing.assert_array_equal(patch, image[top:bottom, left:right])


def test_crop_scales_boxes_to_thumbnails():
    thumbnail = np.arange(8 * 8 * 3, dtype=np.uint8).reshape(8, 8, 3)
    assert crop(thumbnail, (4, 8, 12, 16), (16, 16)).shape == (4, 4, 3)
    assert crop(thumbnail, (5, 5, 6, 6), (16, 16)).shape == (1, 1, 3)  # at least one pixel


class FunctionalReLU(nn.Module):
    """Activations called as functions (no modules to make straight-through)."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(1)
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1)
        self.conv2 = nn.Conv2d(8, 8, 3, padding=1, stride=2)

    def forward(self, x):
        return F.relu(self.conv2(F.relu(self.conv1(x))))


def test_functional_activations_are_measured():
    boxes = receptive_field_boxes(FunctionalReLU(), "conv2", PRE)
    assert boxes.shape == (SIZE // 2, SIZE // 2, 4)
    assert tuple(boxes[5, 6]) == (8, 10, 13, 15)  # 5x5 at (2 * 5 - 2, 2 * 6 - 2)
    assert tuple(boxes[0, 0]) == (0, 0, 3, 3)
