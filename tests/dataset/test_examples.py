"""Dataset examples: ranking against brute force, bounded memory, cache, folders, resume."""

from __future__ import annotations

import importlib
import json
from pathlib import Path

import numpy as np
import pytest
import skimage.data
import torch
from dataset_support import (
    LAYERS,
    SIZE,
    ForwardCounter,
    assert_same,
    brute_force,
    make_images,
    make_model,
    write_folder,
)
from PIL import Image
from torch import nn

from lucid_widgets.dataset.examples import ExamplesResult, dataset_examples
from lucid_widgets.dataset.sources import load_image
from lucid_widgets.optvis.hooks import LayerNotFoundError, capture

# the module itself: `lucid_widgets.dataset.examples` as an attribute is the function
de = importlib.import_module("lucid_widgets.dataset.examples")


@pytest.mark.parametrize("layout", ["nchw", "channels_last"])
def test_top_and_bottom_match_brute_force(tmp_path, layout):
    model, images, k = make_model(), make_images(), 4
    if layout == "channels_last":  # conv outputs then are channels-last: the other reduction
        model = model.to(memory_format=torch.channels_last)
        with torch.no_grad(), capture(model, ["0"]) as run:
            assert run(model.lucid_preprocess(images[:2]))["0"].is_contiguous(
                memory_format=torch.channels_last
            )
    layers = [*LAYERS, "1"]  # "1": a ReLU, its zeros tie: the first position in row-major order
    result = dataset_examples(
        model, images, layers, k=k, batch_size=7, cache_dir=tmp_path, progress=False
    )
    assert result.complete and result.num_images == 40 and not result.skipped
    for layer in layers:
        expected = brute_force(model, images, layer, k)
        examples = result[layer]
        for which in ("top", "bottom"):
            values, indices, positions = expected[which]
            np.testing.assert_allclose(
                getattr(examples, f"values_{which}"), values, rtol=1e-5, atol=1e-6
            )
            np.testing.assert_array_equal(getattr(examples, f"indices_{which}"), indices)
            np.testing.assert_array_equal(getattr(examples, f"positions_{which}"), positions)
    assert result["0"].values_top.shape == (4, k) and result["3"].positions_top.shape == (6, k, 2)
    assert (result["0"].values_top[:, 0] >= result["0"].values_top[:, -1]).all()
    assert (result["3"].values_bottom[:, 0] <= result["3"].values_bottom[:, -1]).all()


def test_result_does_not_depend_on_batch_size(tmp_path):
    model, images = make_model(), make_images()
    a = dataset_examples(model, images, LAYERS, k=3, batch_size=1, cache_dir=False, progress=False)
    b = dataset_examples(model, images, LAYERS, k=3, batch_size=40, cache_dir=False, progress=False)
    assert_same(a, b)


def test_images_and_thumbnails_are_the_referenced_inputs():
    model, images = make_model(), make_images()
    result = dataset_examples(
        model, images, "3", k=2, cache_dir=False, progress=False, thumbnail_size=SIZE
    )
    examples = result["3"]
    index = examples.index(unit=1, rank=0)
    expected = (images[index].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
    np.testing.assert_array_equal(examples.image(1, 0), expected)
    referenced = set(examples.indices_top.ravel()) | set(examples.indices_bottom.ravel())
    assert set(result.thumbnails) == referenced
    assert result.source(index) == index


def test_memory_stays_bounded(monkeypatch):
    model, k = make_model(), 2
    units = 4 + 6  # layers "0" and "3"
    held = []
    original = de._update

    def recording_update(*args, **kwargs):
        state = original(*args, **kwargs)
        held.append(len(state.thumbnails))
        return state

    monkeypatch.setattr(de, "_update", recording_update)
    generator = torch.Generator().manual_seed(1)
    stream = (torch.rand(3, 8, 8, generator=generator) for _ in range(300))  # one-shot, resized
    result = dataset_examples(
        model, stream, ["0", "3"], k=k, batch_size=16, cache_dir=False, progress=False
    )
    assert result.num_images == 300 and result.key is None  # a generator cannot be cached
    assert max(held) <= 2 * k * units
    assert len(result.thumbnails) <= 2 * k * units
    assert result["3"].indices_top.shape == (6, k)
    assert result["0"].indices_top.max() >= 16  # later batches did make it in


def test_cache_hits_without_forward_and_misses_on_changes(tmp_path):
    model, images = make_model(), make_images(24)
    counter = ForwardCounter(model)
    first = dataset_examples(model, images, LAYERS, k=3, cache_dir=tmp_path, progress=False)
    assert counter.calls > 0 and first.path is not None and (first.path / "meta.json").is_file()
    counter.calls = 0
    second = dataset_examples(model, images, LAYERS, k=3, cache_dir=tmp_path, progress=False)
    assert counter.calls == 0
    assert_same(first, second)
    np.testing.assert_array_equal(second["3"].image(0, 0), first["3"].image(0, 0))
    changed = images.clone()
    changed[5] = 1 - changed[5]
    dataset_examples(model, changed, LAYERS, k=3, cache_dir=tmp_path, progress=False)
    assert counter.calls > 0
    counter.calls = 0
    with torch.no_grad():
        model[3].weight.mul_(-1)
    dataset_examples(model, images, LAYERS, k=3, cache_dir=tmp_path, progress=False)
    assert counter.calls > 0
    counter.calls = 0
    dataset_examples(model, images, LAYERS, k=2, cache_dir=tmp_path, progress=False)
    assert counter.calls > 0
    assert len([p for p in tmp_path.iterdir() if p.is_dir()]) == 4


def test_saved_format_roundtrip(tmp_path):
    model = make_model()
    result = dataset_examples(
        model, make_images(12), LAYERS, k=2, cache_dir=tmp_path, progress=False
    )
    meta = json.loads((result.path / "meta.json").read_text())
    assert meta["format"] == "lucid_widgets.dataset_examples" and meta["version"] == 2
    assert [layer["name"] for layer in meta["layers"]] == LAYERS
    with np.load(result.path / "arrays.npz", allow_pickle=False) as arrays:
        assert arrays["layer1.positions_top"].shape == (6, 2, 2)
        assert arrays["layer0.box_map"].shape == (SIZE, SIZE, 4)
        assert "layer2.box_map" not in arrays  # linear layer: no spatial boxes
    loaded = ExamplesResult.load(result.path)
    assert_same(result, loaded)
    assert loaded.thumbnails.keys() == result.thumbnails.keys()
    for index, thumbnail in result.thumbnails.items():
        np.testing.assert_array_equal(loaded.thumbnails[index], thumbnail)


def test_folder_with_gray_rgba_and_corrupt_files(tmp_path):
    special = write_folder(tmp_path / "data")
    model = make_model()
    result = dataset_examples(
        model, tmp_path / "data", LAYERS, k=3, cache_dir=tmp_path / "cache", progress=False
    )
    assert result.complete
    assert [Path(name) for name, _ in result.skipped] == [special["corrupt"]]
    assert result.num_images == 13 and result.next_index == 14
    assert all(isinstance(source, str) for source in result.sources.values())
    gray = load_image(special["gray"], (SIZE, SIZE), 3)
    assert gray.shape == (3, SIZE, SIZE) and gray.dtype == torch.uint8
    assert torch.equal(gray[0], gray[1]) and torch.equal(gray[1], gray[2])
    assert (load_image(special["rgba"], (SIZE, SIZE), 3) == 255).all()
    assert load_image(special["gray"], (SIZE, SIZE), 1).shape == (1, SIZE, SIZE)
    photo = load_image(special["photo"], (SIZE, 2 * SIZE), 3)  # 512x512 -> centre crop
    assert photo.shape == (3, SIZE, 2 * SIZE)


def test_dataset_kinds_agree(tmp_path):
    """A uint8 (N, H, W, C) tensor, a torchvision-style dataset and a list of PIL images."""
    pixels = np.random.default_rng(2).integers(0, 256, (15, SIZE, SIZE, 3), dtype=np.uint8)

    class PairDataset:
        def __len__(self):
            return len(pixels)

        def __getitem__(self, index):
            return Image.fromarray(pixels[index]), index % 3

    model = make_model()
    options = {"layers": LAYERS, "k": 3, "batch_size": 4, "progress": False}
    from_tensor = dataset_examples(model, torch.from_numpy(pixels), cache_dir=tmp_path, **options)
    from_dataset = dataset_examples(model, PairDataset(), cache_dir=tmp_path, **options)
    pictures = [Image.fromarray(p) for p in pixels]
    from_list = dataset_examples(model, pictures, cache_dir=tmp_path, **options)
    assert_same(from_tensor, from_dataset)
    assert_same(from_tensor, from_list)
    counter = ForwardCounter(model)
    dataset_examples(model, pictures, cache_dir=tmp_path, **options)  # content-hashed: a hit
    assert counter.calls == 0


class InterruptingImages:
    """Re-iterable images whose first iteration raises KeyboardInterrupt after ``after`` items."""

    def __init__(self, images: torch.Tensor, after: int):
        self.images, self.after, self.armed = images, after, True

    def __iter__(self):
        for index, image in enumerate(self.images):
            if self.armed and index == self.after:
                self.armed = False
                raise KeyboardInterrupt
            yield image


def test_interrupt_and_resume_from_dataset_iterator(tmp_path):
    model, images = make_model(), make_images(30)
    reference = dataset_examples(
        model, images, LAYERS, k=3, batch_size=4, cache_dir=False, progress=False
    )
    dataset = InterruptingImages(images, after=13)
    options = {"k": 3, "batch_size": 4, "cache_dir": tmp_path, "progress": False, "dataset_id": "x"}
    with pytest.warns(UserWarning, match="Interrupted"):
        partial = dataset_examples(model, dataset, LAYERS, **options)
    assert not partial.complete and partial.num_images == 12 and partial.next_index == 12
    assert (partial["0"].indices_top < 12).all()
    counter = ForwardCounter(model)
    resumed = dataset_examples(model, dataset, LAYERS, **options)
    assert resumed.complete and resumed.num_images == 30
    assert counter.images == 1 + 30 - 12  # the probe, then only the images left
    assert_same(resumed, reference)


def test_stop_ends_the_pass_and_the_same_call_resumes(tmp_path):
    model, images = make_model(), make_images(30)
    reference = dataset_examples(
        model, images, LAYERS, k=3, batch_size=4, cache_dir=False, progress=False
    )
    checks = []

    def stop() -> bool:  # asked before each batch: let three batches through
        checks.append(1)
        return len(checks) > 3

    options = {"k": 3, "batch_size": 4, "cache_dir": tmp_path, "progress": False}
    partial = dataset_examples(model, images, LAYERS, stop=stop, **options)
    assert not partial.complete and partial.num_images == 12
    counter = ForwardCounter(model)
    resumed = dataset_examples(model, images, LAYERS, **options)
    assert resumed.complete and counter.images == 1 + 30 - 12
    assert_same(resumed, reference)


def test_interrupt_during_forward_and_resume_on_folder(tmp_path):
    write_folder(tmp_path / "data")
    model = make_model()
    reference = dataset_examples(
        model, tmp_path / "data", LAYERS, k=2, batch_size=3, cache_dir=False, progress=False
    )
    calls = []

    def interrupt(module, inputs):
        calls.append(1)
        if len(calls) == 4:  # the probe, two batches, then Ctrl-C
            raise KeyboardInterrupt

    handle = model.register_forward_pre_hook(interrupt)
    options = {"k": 2, "batch_size": 3, "cache_dir": tmp_path / "cache", "progress": False}
    with pytest.warns(UserWarning, match="resume"):
        partial = dataset_examples(model, tmp_path / "data", LAYERS, **options)
    handle.remove()
    assert not partial.complete and partial.num_images == 6
    resumed = dataset_examples(model, tmp_path / "data", LAYERS, **options)
    assert resumed.complete and resumed.skipped == reference.skipped
    assert_same(resumed, reference)
    fresh = dataset_examples(model, tmp_path / "data", LAYERS, resume=False, **options)
    assert_same(fresh, reference)


def test_aliases_and_logits_layers():
    model = make_model()
    model.lucid_aliases = {"conv2": "3"}
    result = dataset_examples(
        model, make_images(10), ["conv2", "logits"], k=2, cache_dir=False, progress=False
    )
    assert result["conv2"].path == "3" and result["logits"].values_top.shape == (5, 2)
    assert result["logits"].box(0, 0) == (0, 0, SIZE, SIZE)


def test_bad_arguments(tmp_path):
    model, images = make_model(), make_images(4)
    with pytest.raises(ValueError, match="k must be"):
        dataset_examples(model, images, "0", k=0, cache_dir=False)
    with pytest.raises(LayerNotFoundError, match="Unknown layer"):
        dataset_examples(model, images, "conv9", cache_dir=False)
    with pytest.raises(ValueError, match="no units"):
        dataset_examples(model, images, "input", cache_dir=False)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        dataset_examples(model, images * 4 - 2, "0", cache_dir=False)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        dataset_examples(model, tmp_path / "missing", "0", cache_dir=False)
    with pytest.raises(ValueError, match="No image files"):
        dataset_examples(model, tmp_path, "0", cache_dir=False)
    with pytest.raises(IndexError, match="out of range"):
        dataset_examples(model, images, "0", k=2, cache_dir=False, progress=False)["0"].image(9)


def test_flipped_numpy_views_are_accepted(tmp_path):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU()).eval()
    photo = skimage.data.astronaut()[::4, ::4]
    views = [photo[:, ::-1], photo[::-1], photo]  # negative strides, as users' flips make
    options = {"layers": ["0"], "k": 2, "progress": False}
    listed = dataset_examples(model, views, cache_dir=tmp_path, **options)
    flipped = np.stack(views)[:, :, ::-1]  # (N, H, W, C) with a negative stride
    stacked = dataset_examples(model, flipped, cache_dir=tmp_path, **options)
    copies = [np.ascontiguousarray(view) for view in views]
    assert_same(listed, dataset_examples(model, copies, cache_dir=False, **options))
    contiguous = torch.from_numpy(np.ascontiguousarray(flipped))
    assert_same(stacked, dataset_examples(model, contiguous, cache_dir=False, **options))
    assert listed.layers["0"].values_top.shape == (4, 2)
