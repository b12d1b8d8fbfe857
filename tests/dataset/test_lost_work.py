"""Nothing is lost: failing items are skipped, a failure mid-pass leaves a checkpoint, a corrupt
cache entry is detected, reported and computed again."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
from dataset_support import LAYERS, ForwardCounter, assert_same, make_images, make_model
from PIL import Image

from lucid_widgets.dataset.cache import CorruptEntryError, ExamplesResult
from lucid_widgets.dataset.examples import dataset_examples

OPTIONS = {"k": 3, "batch_size": 4, "progress": False}


def image_folder(root, count: int = 9, corrupt: int = 4):
    """An ImageFolder layout (two classes) with one corrupt file; returns the corrupt path."""
    rng = np.random.default_rng(0)
    for index in range(count):
        folder = root / ("cat" if index % 2 else "dog")
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{index:02d}.png"
        if index == corrupt:
            path.write_bytes(b"\x89PNG\r\n\x1a\n but then nothing")
            bad = path
        else:
            Image.fromarray(rng.integers(0, 256, (20, 20, 3), dtype=np.uint8)).save(path)
    return bad


def test_a_torchvision_image_folder_with_a_corrupt_file(tmp_path):
    torchvision = pytest.importorskip("torchvision")
    bad = image_folder(tmp_path / "data")
    dataset = torchvision.datasets.ImageFolder(tmp_path / "data")
    bad_index = [path for path, _ in dataset.samples].index(str(bad))
    with pytest.warns(UserWarning, match="Skipped 1 unreadable"):
        result = dataset_examples(make_model(), dataset, LAYERS, cache_dir=False, **OPTIONS)
    assert result.complete and result.num_images == 8 and result.next_index == 9
    [(name, reason)] = result.skipped
    assert name == bad_index and "UnidentifiedImageError" in reason
    assert bad_index not in set(result["0"].indices_top.ravel())


class Flaky:
    """A map dataset whose ``__getitem__`` raises for chosen indices."""

    def __init__(self, images, failing: dict[int, Exception]):
        self.images, self.failing = images, failing

    def __len__(self):
        return len(self.images)

    def __getitem__(self, index):
        if index in self.failing:
            raise self.failing[index]
        return self.images[index], 0


def test_any_getitem_error_skips_that_item_only(tmp_path):
    images = make_images(12)
    failing = {3: OSError("disk hiccup"), 7: KeyError("label"), 8: RuntimeError("transform")}
    with pytest.warns(UserWarning, match="Skipped 3"):
        result = dataset_examples(
            make_model(), Flaky(images, failing), LAYERS, cache_dir=False, **OPTIONS
        )
    assert [name for name, _ in result.skipped] == [3, 7, 8]
    assert "OSError: disk hiccup" in result.skipped[0][1]
    kept = [index for index in range(12) if index not in failing]
    expected = dataset_examples(make_model(), images[kept], LAYERS, cache_dir=False, **OPTIONS)
    for layer in LAYERS:  # the same ranking as the readable images alone, renumbered
        renumbered = np.asarray(kept)[expected[layer].indices_top]
        np.testing.assert_array_equal(result[layer].indices_top, renumbered)


def test_an_unexpected_error_mid_pass_keeps_a_checkpoint_and_the_call_resumes(tmp_path):
    model, images = make_model(), make_images(30)
    reference = dataset_examples(model, images, LAYERS, cache_dir=False, **OPTIONS)
    calls = []

    def fail_once(module, inputs):
        calls.append(1)
        if len(calls) == 5:  # the probe, three batches, then the 4th batch fails
            raise RuntimeError("CUDA error: an illegal memory access")

    handle = model.register_forward_pre_hook(fail_once)
    with pytest.raises(RuntimeError, match="illegal memory") as failure:
        dataset_examples(model, images, LAYERS, cache_dir=tmp_path, **OPTIONS)
    handle.remove()
    assert "checkpoint" in "".join(failure.value.__notes__)
    [entry] = [path for path in tmp_path.iterdir() if not path.name.startswith(".")]
    saved = ExamplesResult.load(entry)
    assert not saved.complete and saved.num_images == 12 and saved.next_index == 12
    counter = ForwardCounter(model)
    resumed = dataset_examples(model, images, LAYERS, cache_dir=tmp_path, **OPTIONS)
    assert resumed.complete and counter.images == 1 + 30 - 12  # probe + only what was left
    assert_same(resumed, reference)


def flip_bytes(path):
    data = bytearray(path.read_bytes())
    middle = len(data) // 2
    data[middle : middle + 8] = bytes(255 - b for b in data[middle : middle + 8])
    path.write_bytes(bytes(data))


def truncate(path):
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 3])


def tamper_meta(path):
    meta = json.loads(path.read_text())
    meta["num_images"] = "twelve"  # was an int: a TypeError later without the checksum
    path.write_text(json.dumps(meta))


def break_json(path):
    path.write_text(path.read_text()[:-20])


@pytest.mark.parametrize(
    ("damage", "file"),
    [
        (flip_bytes, "arrays.npz"),
        (truncate, "arrays.npz"),
        (tamper_meta, "meta.json"),
        (break_json, "meta.json"),
    ],
    ids=["flipped-npz", "truncated-npz", "tampered-meta", "broken-json"],
)
def test_a_corrupt_cache_entry_is_detected_warned_and_recomputed(tmp_path, damage, file):
    model, images = make_model(), make_images(12)
    first = dataset_examples(model, images, LAYERS, cache_dir=tmp_path, **OPTIONS)
    damage(first.path / file)
    with pytest.raises(CorruptEntryError, match="checksum|JSON"):
        ExamplesResult.load(first.path)
    counter = ForwardCounter(model)
    with pytest.warns(UserWarning, match="computing it again"):
        second = dataset_examples(model, images, LAYERS, cache_dir=tmp_path, **OPTIONS)
    assert counter.calls > 0 and second.complete
    assert_same(second, first)
    counter.calls = 0
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the entry was rewritten: a clean hit, no warning
        third = dataset_examples(model, images, LAYERS, cache_dir=tmp_path, **OPTIONS)
    assert counter.calls == 0
    assert_same(third, first)


def test_a_checksummed_entry_still_loads_and_a_foreign_version_is_named(tmp_path):
    result = dataset_examples(make_model(), make_images(8), LAYERS, cache_dir=tmp_path, **OPTIONS)
    meta = json.loads((result.path / "meta.json").read_text())
    assert set(meta["checksums"]) == {"arrays.npz", "meta"}
    assert_same(ExamplesResult.load(result.path), result)
    meta["version"] = 1
    (result.path / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="v2 directory"):
        ExamplesResult.load(result.path)
