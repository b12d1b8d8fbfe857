"""Microscope's dataset examples, sample image and per-unit views (recording comm, tiny CNN).

Dataset examples and the sample image run the real engine on a tiny network and a tiny tensor
dataset made here; the per-unit view tests swap the preview runs for the fake engine.
"""

from __future__ import annotations

import io
import threading

import numpy as np
import pytest
import torch
import traitlets
from PIL import Image

from lucid_widgets.dataset.examples import dataset_examples
from lucid_widgets.optvis.preprocess import Preprocess
from lucid_widgets.widget import Microscope
from lucid_widgets.widget.export import to_html, widget_state
from lucid_widgets.widget.frames import sniff_mime

TIMEOUT = 120
GRID = {"size": 8, "steps": 1, "batch_size": 4}


@pytest.fixture
def small_net(tiny_net):
    tiny_net.lucid_preprocess = Preprocess(input_size=(24, 24))
    return tiny_net


@pytest.fixture
def images() -> torch.Tensor:
    generator = torch.Generator().manual_seed(1)
    return torch.rand(10, 3, 24, 24, generator=generator)  # (N, C, H, W) in [0, 1]


def _cut(blob: bytes, entry: dict) -> bytes:
    return blob[entry["offset"] : entry["offset"] + entry["length"]]


def _decoded(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)))


def _microscope(net, close_widgets, **kwargs) -> Microscope:
    widget = Microscope(net, page_size=4, grid_settings=GRID, settings={"size": 16}, **kwargs)
    close_widgets.append(widget)
    return widget


class SlowImages:
    """A dataset whose images after the fourth wait for ``release`` (a pass to stop midway);
    ``waiting`` is set once the pass is blocked there."""

    def __init__(self, images: torch.Tensor, count: int):
        self.images, self.count = images, count
        self.release = threading.Event()
        self.waiting = threading.Event()

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, index: int) -> torch.Tensor:
        if index >= 4:
            self.waiting.set()
            assert self.release.wait(TIMEOUT), "the test never released the dataset"
        return self.images[index % len(self.images)]


def test_stop_ends_a_dataset_pass_and_resume_continues_it(
    recording_comm, small_net, images, tmp_path, close_widgets
):
    widget = _microscope(small_net, close_widgets, layer="late")
    widget.stop()
    dataset = SlowImages(images, 40)
    widget.set_dataset(dataset, k=3, cache_dir=tmp_path, batch_size=2, dataset_id="slow")
    assert dataset.waiting.wait(TIMEOUT), "the dataset pass never started"
    assert widget.examples_status["state"] == "running"
    widget.stop()  # the pass waits on the loader: Stop is seen at the next batch
    dataset.release.set()
    assert widget.wait(TIMEOUT)
    status = widget.examples_status
    assert status["state"] == "stopped" and status["done"] < 40, status
    assert widget.examples is None
    widget.start()  # resumes from the checkpoint on disk
    assert widget.wait(TIMEOUT)
    assert widget.examples_status["state"] == "done" and widget.examples.num_images == 40


def test_set_dataset_fills_the_examples_traits(
    recording_comm, small_net, images, tmp_path, close_widgets
):
    widget = _microscope(small_net, close_widgets, layer="late")
    widget.stop()  # the grid is not what this test is about
    widget.set_dataset(images, k=3, cache_dir=tmp_path)
    assert widget.wait(TIMEOUT)
    assert widget.examples_status["state"] == "done"
    assert widget.examples_status["size"] == 10
    expected = dataset_examples(small_net, images, layers=["relu2"], k=3, cache_dir=False,
                                progress=False)["relu2"]  # fmt: skip
    examples = widget.examples["relu2"]
    np.testing.assert_allclose(examples.values_top, expected.values_top, rtol=1e-5)
    np.testing.assert_array_equal(examples.indices_bottom, expected.indices_bottom)
    assert any(tmp_path.iterdir()), "the result went to the disk cache"

    widget.unit = 5
    widget.stop()
    info = widget.unit_examples
    assert (info["layer"], info["unit"]) == ("relu2", 5)
    top = [item for item in info["items"] if item["which"] == "top"]
    bottom = [item for item in info["items"] if item["which"] == "bottom"]
    assert [item["rank"] for item in top] == [0, 1, 2] and len(bottom) == 3
    assert [item["value"] for item in top] == pytest.approx(expected.values_top[5].tolist())
    assert [item["index"] for item in bottom] == expected.indices_bottom[5].tolist()
    blob = widget.unit_examples_blob
    for item in top:
        image = _cut(blob, item["image"])
        assert sniff_mime(image) == item["image"]["mime"] == "image/jpeg"
        assert _decoded(image).shape[:2] == expected.image(5, item["rank"]).shape[:2]
        assert _decoded(_cut(blob, item["crop"])).shape[0] >= 24  # small crops are enlarged
        assert item["box"] == list(expected.box(5, item["rank"]))

    # binary traits travel as buffers, never inside the JSON
    comm = recording_comm[-1]
    sent = [(state, paths) for state, _, paths in comm.updates() if "unit_examples" in state]
    assert sent and ["unit_examples_blob"] in sent[-1][1]
    assert "unit_examples_blob" not in sent[-1][0]


def test_examples_follow_the_layer_and_are_cached_per_layer(small_net, images, close_widgets):
    widget = _microscope(small_net, close_widgets, dataset=images, examples_k=2)
    assert widget.examples is None and widget.examples_status["state"] == "waiting"
    widget.layer = "early"
    assert widget.wait(TIMEOUT)
    early = widget.examples
    assert list(early.layers) == ["relu1"] and early.k == 2
    widget.layer = "late"
    assert widget.wait(TIMEOUT)
    assert list(widget.examples.layers) == ["relu2"]
    widget.layer = "early"
    assert widget.wait(TIMEOUT)
    assert widget.examples is early  # no second pass
    assert widget.grid_examples["layer"] == "relu1"


def test_examples_error_is_shown_not_raised(small_net, close_widgets):
    widget = _microscope(small_net, close_widgets, layer="late")
    widget.stop()
    widget.set_dataset(["/no/such/image.png"], k=2, cache_dir=False)
    assert widget.wait(TIMEOUT)
    assert widget.examples_status["state"] == "done" and widget.examples_status["skipped"] == 1
    widget.set_dataset(42, cache_dir=False)  # not a dataset: the pass fails in the worker
    assert widget.wait(TIMEOUT)
    assert widget.examples_status["state"] == "error" and widget.examples_status["message"]
    assert widget.message.startswith("dataset examples:") and widget.examples is None
    with pytest.raises(ValueError, match="positive integer"):
        widget.set_dataset(torch.rand(2, 3, 8, 8), k=0)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        widget.set_dataset("/no/such/folder")


def test_grid_view_switches_to_top_examples(recording_comm, small_net, images, close_widgets):
    widget = _microscope(small_net, close_widgets, layer="late")
    widget.set_dataset(images, k=2, cache_dir=False)
    assert widget.wait(TIMEOUT)
    comm = recording_comm[-1]
    comm.receive({"grid_view": "example"})
    assert widget.grid_view == "example"
    info = widget.grid_examples
    assert (info["layer"], info["page"]) == ("relu2", 0)
    assert [item["unit"] for item in info["items"]] == [0, 1, 2, 3]
    values = widget.examples["relu2"].values_top[:4, 0]
    assert [item["value"] for item in info["items"]] == pytest.approx(values.tolist())
    for item in info["items"]:
        assert _cut(widget.grid_examples_blob, item).startswith(b"\xff\xd8\xff")
    widget.page = 1  # the next page's top examples are sent
    assert [item["unit"] for item in widget.grid_examples["items"]] == [4, 5, 6, 7]
    with pytest.raises(traitlets.TraitError, match="grid_view must be one of"):
        widget.grid_view = "photos"


def test_sample_upload_as_memoryview_gives_predictions_and_top_units(
    recording_comm, small_net, close_widgets
):
    widget = _microscope(small_net, close_widgets, layer="late")
    widget.stop()
    picture = (np.random.default_rng(0).random((30, 40, 3)) * 255).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(picture).save(buffer, "PNG")
    message = {"method": "custom", "content": {"type": "sample_upload", "name": "cat.png"}}
    recording_comm[-1].handle_msg(
        {"content": {"data": message}, "buffers": [memoryview(buffer.getvalue())]}
    )
    assert widget.wait(TIMEOUT)
    info = widget.sample_info
    assert info["state"] == "done" and info["name"] == "cat.png" and info["layer"] == "relu2"
    assert len(info["predictions"]) == 5
    probabilities = [p["probability"] for p in info["predictions"]]
    assert probabilities == sorted(probabilities, reverse=True) and sum(probabilities) <= 1.0001
    with torch.no_grad():
        small = torch.from_numpy(widget.sample).permute(2, 0, 1)[None].float() / 255
        logits = small_net(Preprocess(input_size=(24, 24))(small))
    assert info["predictions"][0]["index"] == int(logits.argmax())
    units = info["units"]
    assert len(units) == 8
    assert [u["value"] for u in units] == sorted((u["value"] for u in units), reverse=True)
    assert sniff_mime(_cut(widget.sample_blob, units[0]["map"])) == "image/jpeg"
    assert widget.sample_image.startswith(b"\xff\xd8\xff")
    # clicking a top unit opens it
    recording_comm[-1].receive_custom({"type": "open_unit", "unit": units[0]["unit"]})
    assert widget.unit == units[0]["unit"]


def test_sample_bad_upload_and_layer_change(recording_comm, small_net, close_widgets):
    widget = _microscope(small_net, close_widgets)
    message = {"method": "custom", "content": {"type": "sample_upload", "name": "x.txt"}}
    recording_comm[-1].handle_msg({"content": {"data": message}, "buffers": [memoryview(b"hi")]})
    assert "could not read the file" in widget.message
    assert widget.sample_info["state"] == "error" and widget.sample_info["name"] == "x.txt"
    widget.sample = np.full((20, 20, 3), 0.5)
    assert widget.wait(TIMEOUT)
    assert widget.sample_info["predictions"] and widget.sample_info["units"] == []
    widget.layer = "early"
    assert widget.wait(TIMEOUT)
    assert widget.sample_info["layer"] == "relu1" and len(widget.sample_info["units"]) == 8
    with pytest.raises(FileNotFoundError):
        widget.sample = "/no/such/photo.jpg"


def test_unit_views_build_the_right_objective(fake_engine, small_net, close_widgets):
    widget = _microscope(small_net, close_widgets, layer="late")
    widget.unit = 3
    assert widget.wait(TIMEOUT)
    assert fake_engine.runs[-1].objective.name == "channel('late', 3)"
    widget.unit_view = "diversity"
    assert widget.wait(TIMEOUT)
    run = fake_engine.runs[-1]
    assert widget.objective == "late:3 - 100 * diversity(late)"
    assert run.batch == 4 and "diversity('late')" in run.objective.name
    widget.unit_view = "negative"
    assert widget.wait(TIMEOUT)
    assert widget.objective == "-late:3" and fake_engine.runs[-1].batch == 1
    widget.unit_view = "neuron"
    assert widget.wait(TIMEOUT)
    assert fake_engine.runs[-1].objective.name == "neuron('late', 3)"


@pytest.mark.parametrize("view", ["deepdream", "caricature"])
def test_image_views_need_a_sample(recording_comm, fake_engine, small_net, close_widgets, view):
    widget = _microscope(small_net, close_widgets, layer="late")
    widget.unit = 1
    with pytest.raises(traitlets.TraitError, match=f"the {view} view needs a sample image"):
        widget.unit_view = view
    recording_comm[-1].receive_custom({"type": "unit_view", "view": view})
    assert "needs a sample image" in widget.message and widget.unit_view == "channel"


def test_image_views_start_from_the_sample(monkeypatch, fake_engine, small_net, close_widgets):
    made = []

    def make_preview(model, objective, config, overrides=None):
        made.append((objective, dict(overrides or {})))
        return fake_engine.make_preview(model, objective, config, overrides)

    monkeypatch.setattr("lucid_widgets.widget.engine.make_preview", make_preview)
    widget = _microscope(small_net, close_widgets, layer="late", sample=np.full((24, 24, 3), 0.5))
    assert widget.wait(TIMEOUT)
    widget.unit = 0
    widget.unit_view = "deepdream"
    assert widget.wait(TIMEOUT)
    objective, overrides = made[-1]
    assert widget.objective == "deepdream(late)" and objective.name == "deepdream('late')"
    params, image_f = overrides["param_f"]()
    assert tuple(image_f().shape) == (1, 3, 16, 16)  # the sample at the preview size
    assert torch.allclose(image_f(), torch.full_like(image_f(), 0.5), atol=0.02)
    widget.unit_view = "caricature"
    assert widget.wait(TIMEOUT)
    objective, overrides = made[-1]
    assert widget.objective == objective.name == "caricature(late)"
    assert "param_f" in overrides and objective.layers == {"relu2"}


def test_static_export_contains_examples_and_sample(small_net, images, close_widgets):
    widget = _microscope(small_net, close_widgets, layer="late", sample=np.full((24, 24, 3), 0.3))
    widget.set_dataset(images, k=2, cache_dir=False)
    widget.unit = 1
    assert widget.wait(TIMEOUT)  # (Stop would also end the dataset pass)
    widget.stop()
    assert widget.wait(TIMEOUT)
    values, buffers = widget_state(widget)
    assert values["unit_examples"]["unit"] == 1 and len(values["unit_examples"]["items"]) == 4
    assert values["sample_info"]["state"] == "done" and values["sample_info"]["predictions"]
    for name in ("unit_examples_blob", "grid_examples_blob", "sample_image", "sample_blob"):
        assert buffers[name], name
    page = to_html(widget)
    assert '"unit_examples_blob"' in page and '"sample_image"' in page
