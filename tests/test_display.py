"""Pictures of rendered images: grids, PNG files, inline output, alpha and channel handling."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from PIL import Image

import lucid_widgets as lw
from lucid_widgets.display import png_bytes, to_uint8


def test_grid_tiles_images_with_padding():
    images = np.zeros((5, 4, 6, 3), dtype=np.float32)
    images[1] = 1.0
    canvas = lw.grid(images, columns=3, padding=2)
    assert canvas.shape == (2 * 4 + 2, 3 * 6 + 2 * 2, 3) and canvas.dtype == np.uint8
    assert (canvas[:4, 8:14] == 255).all()  # the second image, white
    assert (canvas[:4, :6] == 0).all()  # the first, black


def test_render_vis_output_and_tensors_are_accepted():
    as_list = [np.full((2, 8, 8, 3), 0.5, dtype=np.float32), np.zeros((1, 8, 8, 3))]
    assert to_uint8(as_list).shape == (3, 8, 8, 3)
    assert to_uint8(torch.ones(2, 3, 8, 8)).shape == (2, 8, 8, 3)
    assert to_uint8(np.ones((8, 8))).shape == (1, 8, 8, 3)  # one gray image


def test_alpha_is_composited_and_gray_repeated():
    rgba = np.zeros((1, 16, 16, 4), dtype=np.float32)  # fully transparent black
    out = to_uint8(rgba)
    assert out.shape == (1, 16, 16, 3) and out.min() > 150  # the light checkerboard shows
    gray = to_uint8(np.full((1, 4, 4, 1), 0.5, dtype=np.float32))
    assert gray.shape == (1, 4, 4, 3) and (gray == 128).all()


def test_save_writes_a_png(tmp_path):
    path = lw.save(np.random.default_rng(0).random((4, 8, 8, 3)), tmp_path / "sub" / "grid.png")
    assert Image.open(path).size == (2 * 8 + 2, 2 * 8 + 2)


def test_small_images_are_enlarged_for_notebooks():
    picture = Image.open(io.BytesIO(png_bytes(np.zeros((1, 32, 32, 3)), min_side=128)))
    assert picture.size == (128, 128)
    assert Image.open(io.BytesIO(png_bytes(np.zeros((1, 32, 32, 3))))).size == (32, 32)


def test_show_outside_a_notebook_saves_a_file(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    lw.show(np.zeros((1, 8, 8, 3)))
    assert (tmp_path / "lucid_widgets_show.png").exists()
    assert "saved" in capsys.readouterr().out


def test_bad_shapes_are_explained():
    with pytest.raises(ValueError, match=r"\(B, H, W, C\)"):
        to_uint8(np.zeros((1, 2, 3, 4, 5)))
    with pytest.raises(ValueError, match="empty"):
        to_uint8([])


def test_show_draws_a_maco_transparency_as_alpha(tmp_path, monkeypatch):
    _, image_f = lw.param.maco(32, batch=1, output_size=16)
    image_f.gradient[..., :16] = 1.0  # left half "mattered"
    rgba = image_f.rgba()  # (1, 16, 16, 4)
    assert rgba[0, :, :8, 3].min() == 1.0 and rgba[0, :, 8:, 3].max() == 0.0
    monkeypatch.chdir(tmp_path)
    path = lw.show(rgba)
    shown = np.asarray(Image.open(path))  # (16, 16, 3): alpha composited
    opaque = np.round(rgba[0, :, :8, :3] * 255)
    assert np.abs(shown[:, :8].astype(float) - opaque).max() <= 1  # the image where it mattered
    board = np.round(lw.optvis.arrays.checkerboard(16, 16)[:, 8:, 0] * 255)  # (16, 8)
    assert np.abs(shown[:, 8:, 0].astype(float) - board).max() <= 1  # checkerboard elsewhere
