"""The one home of image-array conversions: tensors -> numpy, floats -> uint8, tiling."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lucid_widgets.optvis.arrays import checkerboard, tile, to_numpy, to_uint8


def test_to_numpy_is_bhwc_float_clipped():
    image = torch.zeros(2, 3, 4, 5)
    image[1, 0] = 2.0  # out of range: clipped
    array = to_numpy(image)
    assert array.shape == (2, 4, 5, 3) and array.dtype == np.float32
    assert array[1, 0, 0].tolist() == [1.0, 0.0, 0.0]


def test_tensors_become_channels_last_uint8_rounded_half_up():
    image = torch.zeros(2, 3, 4, 5)
    image[1, 0] = 1.0
    image[0, 1] = 0.5  # 127.5 -> 128
    image[0, 2] = -3.0  # clipped to 0
    pixels = to_uint8(image)
    assert pixels.shape == (2, 4, 5, 3) and pixels.dtype == np.uint8
    assert pixels[1, 0, 0].tolist() == [255, 0, 0]
    assert pixels[0, 0, 0].tolist() == [0, 128, 0]
    assert to_uint8(image[0]).shape == (4, 5, 3)  # one (C, H, W) image


def test_numpy_keeps_its_shape_and_uint8_passes_through():
    floats = np.full((3, 4, 2), 0.25, dtype=np.float32)
    assert to_uint8(floats).shape == (3, 4, 2) and (to_uint8(floats) == 64).all()
    raw = np.arange(24, dtype=np.uint8).reshape(2, 4, 3)
    assert to_uint8(raw) is raw


def test_rgb_repeats_grey_composites_alpha_and_drops_extra_channels():
    grey = to_uint8(torch.full((1, 1, 4, 4), 0.5), rgb=True)
    assert grey.shape == (1, 4, 4, 3) and (grey == 128).all()
    transparent = np.zeros((1, 16, 16, 4), dtype=np.float32)
    shown = to_uint8(transparent, rgb=True)
    expected = (checkerboard(16, 16) * 255 + 0.5).astype(np.uint8)
    assert shown.shape == (1, 16, 16, 3) and (shown == expected).all()
    opaque = np.ones((1, 2, 2, 4), dtype=np.float32)
    opaque[..., 1] = 0.0
    assert to_uint8(opaque, rgb=True)[0, 0, 0].tolist() == [255, 0, 255]
    five = np.zeros((2, 2, 5), dtype=np.float32)
    five[..., 4] = 1.0
    assert to_uint8(five, rgb=True).shape == (2, 2, 3) and to_uint8(five, rgb=True).max() == 0
    with pytest.raises(ValueError, match="channel axis"):
        to_uint8(np.zeros((4, 4)), rgb=True)


def test_tile_layouts_and_gaps():
    images = np.zeros((4, 5, 6, 3), dtype=np.uint8)
    images[3] = 255
    canvas = tile(images, gap=2)
    assert canvas.shape == (2 * 5 + 2, 2 * 6 + 2, 3)
    assert canvas[-1, -1].tolist() == [255, 255, 255]  # last tile bottom-right
    assert canvas[5, 0].tolist() == [128, 128, 128]  # grey gap
    assert tile(images, gap=2, fill=255)[5, 0].tolist() == [255, 255, 255]
    assert (tile(images[:1]) == images[0]).all()
    assert tile(images[:3]).shape == (12, 14, 3)  # 2 columns, 2 rows
    assert tile(images, columns=4, gap=0).shape == (5, 24, 3)
    assert tile(images, columns=9, gap=0).shape == (5, 24, 3)  # never more columns than images
    rgba = tile(np.ones((2, 2, 2, 4), dtype=np.float32))
    assert rgba[0, 2].tolist() == [0, 0, 0, 0]  # gaps are transparent with alpha
    with pytest.raises(ValueError, match=r"\(B, H, W, C\)"):
        tile(images[0])
    with pytest.raises(ValueError, match="empty"):
        tile(images[:0])
