"""The command line renders without a notebook and fails with clear messages."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from lucid_widgets.cli import _parse_units, main

TINY = "tiny_models:tiny_net"


@pytest.fixture(autouse=True)
def _importable_tests(monkeypatch):
    monkeypatch.syspath_prepend(str(__import__("pathlib").Path(__file__).parent))


def test_render_writes_a_png(tmp_path, capsys):
    out = tmp_path / "unit.png"
    code = main(["render", TINY, "conv2:3", "-o", str(out), "--size", "24", "--steps", "4"])
    assert code == 0 and "wrote" in capsys.readouterr().out
    image = np.asarray(Image.open(out))
    assert image.shape == (24, 24, 3) and image.std() > 0


def test_render_accepts_an_expression_and_a_batch(tmp_path):
    out = tmp_path / "expr.png"
    args = ["render", TINY, "conv2:3 - 0.5 * conv2:4", "-o", str(out), "--size", "16"]
    assert main([*args, "--steps", "2", "--batch", "2", "--pixel", "--no-transforms"]) == 0
    assert Image.open(out).size == (16 * 2 + 2, 16)  # two images side by side


def test_units_writes_a_grid(tmp_path):
    out = tmp_path / "grid.png"
    args = ["units", TINY, "late", "--units", "0-2,5", "-o", str(out), "--size", "16"]
    assert main([*args, "--steps", "2", "--batch-size", "2"]) == 0
    assert Image.open(out).size == (2 * 16 + 2, 2 * 16 + 2)  # 4 units in a 2 x 2 grid


def test_layers_lists_the_catalog(capsys):
    assert main(["layers", TINY]) == 0
    out = capsys.readouterr().out
    assert "conv2" in out and "relu1" in out


def test_bad_layer_is_a_clear_error(tmp_path, capsys):
    code = main(["render", TINY, "conv9:1", "-o", str(tmp_path / "x.png"), "--steps", "1"])
    assert code == 2
    assert "conv2" in capsys.readouterr().err  # the closest name is suggested


def test_parse_units():
    assert _parse_units("0-3,8") == [0, 1, 2, 3, 8]
    assert _parse_units("5") == [5]


def test_python_dash_m_runs():
    result = subprocess.run(
        [sys.executable, "-m", "lucid_widgets", "--help"], capture_output=True, text=True
    )
    assert result.returncode == 0 and "render" in result.stdout
