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


@pytest.fixture
def no_rendering(monkeypatch):
    """Any optimization step fails the test: errors must come before the first one."""
    from lucid_widgets.optvis import render, units

    def forbidden(*args, **kwargs):
        raise AssertionError("rendering started before the arguments were checked")

    monkeypatch.setattr(units, "render_units", forbidden)
    monkeypatch.setattr(render, "render_vis", forbidden)


def one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err
    return err.splitlines()[-1]


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--units", "0-100000"], "for layer 'late', which has 16 units (valid: 0..15)"),
        (["--units", "2,19"], "Unit(s) 19 out of range"),
        (["--units=-3"], "invalid units '-3'"),
        (["--units", "5-2"], "invalid range '5-2'"),
        (["--units", "a"], "invalid units 'a'"),
        (["--size", "100000"], "100000 is out of range: must be >= 1 and <= 4096"),
        (["--size", "0"], "0 is out of range"),
        (["--steps", "0"], "0 is out of range: must be >= 1"),
        (["--lr", "nan"], "nan is out of range: must be > 0"),
        (["--seed", str(2**70)], "out of range"),
        (["--batch-size", "x"], "'x' is not a int"),
    ],
)
def test_bad_numbers_are_one_line_errors_before_any_step(
    tmp_path, capsys, no_rendering, arguments, message
):
    out = tmp_path / "grid.png"
    assert main(["units", TINY, "late", "-o", str(out), *arguments]) == 2
    assert message in one_line_error(capsys)
    assert not out.exists()


@pytest.mark.parametrize(
    ("output", "message"),
    [
        ("result", "must be a .png file name, e.g. {tmp}/result.png"),
        ("somedir/", "is a directory"),
        ("existing", "is a directory"),
        ("notes.txt/x.png", "cannot create it under"),
    ],
)
def test_bad_output_paths_fail_before_any_step(tmp_path, capsys, no_rendering, output, message):
    (tmp_path / "existing").mkdir()
    (tmp_path / "notes.txt").write_text("a file, not a folder")
    for command in (["units", TINY, "late"], ["render", TINY, "conv2:3"]):
        assert main([*command, "-o", f"{tmp_path}/{output}"]) == 2
        assert message.format(tmp=tmp_path) in one_line_error(capsys)


def test_a_missing_output_folder_is_created(tmp_path):
    out = tmp_path / "new" / "folder" / "unit.png"
    assert main(["render", TINY, "conv2:1", "-o", str(out), "--size", "16", "--steps", "1"]) == 0
    assert out.is_file()


def test_python_dash_m_runs():
    result = subprocess.run(
        [sys.executable, "-m", "lucid_widgets", "--help"], capture_output=True, text=True
    )
    assert result.returncode == 0 and "render" in result.stdout


def test_recipes_on_the_command_line(tmp_path, capsys, monkeypatch):
    from lucid_widgets.optvis import render

    seen = []
    real = render.Optimization.__init__

    def spy(self, *args, **kwargs):
        real(self, *args, **kwargs)
        seen.append((type(self.optimizer).__name__, type(self._image_f).__name__))

    monkeypatch.setattr(render.Optimization, "__init__", spy)
    out = str(tmp_path / "x.png")
    base = ["render", TINY, "conv2:3", "-o", out, "--size", "16", "--steps", "1"]
    assert main(base) == 0 and seen[-1] == ("NAdam", "MacoImage")  # the default
    assert Image.open(out).size == (16, 16)  # the 2x canvas, saved at --size
    assert main([*base, "--recipe", "lucid"]) == 0 and seen[-1][0] == "Adam"
    assert main([*base, "--pixel"]) == 0 and seen[-1][0] == "Adam"  # Lucid's image: Lucid's
    assert main([*base, "--recipe", "maco", "--alpha"]) == 2
    assert "--alpha shape Lucid's image" in capsys.readouterr().err
