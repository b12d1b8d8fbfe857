"""``lucid-widgets atlas build|site|info`` through the console script's ``main``."""

from __future__ import annotations

from lucid_widgets import atlas as lw_atlas
from lucid_widgets.atlas.tasks import image_path
from lucid_widgets.cli import main


def test_build_info_and_site_from_the_command_line(tmp_path, capsys):
    folder, site = tmp_path / "store", tmp_path / "site"
    argv = [
        "atlas",
        "build",
        "tiny_models:tiny_net",
        str(folder),
        "--layers",
        "late",
        "--units",
        "0-2,5",
        "--steps",
        "2",
        "--size",
        "24",
        "--views",
        "channel",
        "--no-connections",
    ]
    assert main(argv) == 0
    store = lw_atlas.open(folder)
    assert store.layers == ["late"] and store.units("late") == [0, 1, 2, 5] and store.complete
    (folder / image_path("late", "channel", 5)).write_bytes(b"broken")
    assert main(["atlas", "info", str(folder)]) == 0
    report = capsys.readouterr().out
    assert "late" in report and "4/16" in report and "steps=2" in report
    assert f"checksum: {image_path('late', 'channel', 5)}" in report
    assert "KB per unit" in report
    assert main(["atlas", "site", str(folder), str(site)]) == 0
    assert (site / "index.html").exists() and (
        site / "img" / "late" / "channel" / "0.webp"
    ).exists()
    assert not (site / "img" / "late" / "channel" / "5.webp").exists()  # never published broken
    assert "KB per unit" in capsys.readouterr().out


def test_a_bad_folder_is_a_clear_error(tmp_path, capsys):
    assert main(["atlas", "info", str(tmp_path)]) == 2
    assert "is not an atlas" in capsys.readouterr().err
