"""The store's guarantees: checksums, weights and settings checks, the build lock."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import numpy as np
import pytest
import torch

from lucid_widgets import atlas as lw_atlas
from lucid_widgets.atlas.files import LOCK_NAME, build_lock
from lucid_widgets.atlas.tasks import image_path


@pytest.fixture
def built(tiny_net, tmp_path, fast):
    options = dict(layers=["early"], units=range(4), views=("channel",), connections=False, **fast)
    return lw_atlas.build(tiny_net, tmp_path, **options), options


def test_corrupt_and_missing_files_are_detected_and_rendered_again(tiny_net, tmp_path, built):
    store, options = built
    good = store.image("early", 1)
    (tmp_path / image_path("early", "channel", 1)).write_bytes(b"not a png")
    (tmp_path / image_path("early", "channel", 2)).unlink()
    reopened = lw_atlas.open(tmp_path)
    problems = {(p.path, p.reason) for p in reopened.check()}
    assert problems == {
        (image_path("early", "channel", 1), "checksum"),
        (image_path("early", "channel", 2), "missing"),
    }
    assert not reopened.complete
    with pytest.raises(lw_atlas.AtlasCorruptError, match="checksum"):
        reopened.image("early", 1)
    with pytest.raises(lw_atlas.AtlasCorruptError, match="missing"):
        reopened.image("early", 2)
    repaired = lw_atlas.build(tiny_net, tmp_path, **options)
    assert repaired.check() == [] and repaired.complete
    np.testing.assert_array_equal(repaired.image("early", 1), good)


def test_other_weights_are_an_error_that_says_so(tiny_net, tmp_path, built):
    _, options = built
    with torch.no_grad():
        tiny_net.conv1.weight.add_(0.01)
    with pytest.raises(lw_atlas.AtlasWeightsError, match="weights hash to"):
        lw_atlas.build(tiny_net, tmp_path, **options)
    with pytest.raises(lw_atlas.AtlasWeightsError, match="same model and weights"):
        lw_atlas.open(tmp_path, model=tiny_net)


def test_other_settings_are_an_error_unless_a_variant(tiny_net, tmp_path, built):
    store, options = built
    with pytest.raises(lw_atlas.AtlasSettingsError, match=r"steps: 2 \(stored\) != 3 \(asked\)"):
        lw_atlas.build(tiny_net, tmp_path, **{**options, "steps": 3})
    variant = lw_atlas.build(tiny_net, tmp_path, variant="steps3", **{**options, "steps": 3})
    assert variant.settings["steps"] == 3 and variant.folder == tmp_path / "variants" / "steps3"
    assert lw_atlas.open(tmp_path, variant="steps3").complete
    assert lw_atlas.open(tmp_path).settings["steps"] == 2
    extended = lw_atlas.build(tiny_net, tmp_path, **{**options, "units": range(6)})
    assert extended.units("early") == list(range(6)) and extended.complete


def test_a_second_build_gets_a_clear_error_and_stale_locks_are_taken_over(tmp_path, tiny_net, fast):
    parent = {"host": socket.gethostname(), "pid": os.getppid(), "since": 0}
    (tmp_path / LOCK_NAME).write_text(json.dumps(parent))
    with pytest.raises(lw_atlas.AtlasLockedError, match=f"process {os.getppid()} on host"):
        lw_atlas.build(tiny_net, tmp_path, layers=["early"], units=[0], **fast)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (tmp_path / LOCK_NAME).write_text(json.dumps({**parent, "pid": dead.pid}))
    with build_lock(tmp_path) as me:
        assert json.loads((tmp_path / LOCK_NAME).read_text())["pid"] == me["pid"] == os.getpid()
        with pytest.raises(lw_atlas.AtlasLockedError), build_lock(tmp_path):
            pass
    assert not (tmp_path / LOCK_NAME).exists()


def test_manifest_records_model_weights_catalog_and_settings(built, tmp_path):
    store, _ = built
    manifest = json.loads((tmp_path / "atlas.json").read_text())
    assert manifest["format"] == "lucid_widgets.atlas" and manifest["version"] == 1
    assert manifest["model"] == "TinyNet" and len(manifest["weights_sha256"]) == 64
    assert {"size": 24, "steps": 2, "batch_size": 4, "seed": 0}.items() <= manifest[
        "settings"
    ].items()
    assert any(entry["name"] == "relu1" for entry in manifest["catalog"])
    index = json.loads((tmp_path / "layers" / "early" / "index.json").read_text())
    assert len(index["files"]) == 4 and all(len(f["sha256"]) == 64 for f in index["files"].values())
    leftovers = [p for p in tmp_path.rglob("*.tmp")]
    assert leftovers == []
