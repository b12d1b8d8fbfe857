"""The Microscope on an atlas: grid pages, unit views, examples and connections from the store."""

from __future__ import annotations

import copy
import threading

import numpy as np
import pytest
import torch
from tiny_models import TinyNet

from lucid_widgets import atlas as lw_atlas
from lucid_widgets.atlas.tasks import image_path
from lucid_widgets.optvis.arrays import to_uint8
from lucid_widgets.widget import Microscope
from lucid_widgets.widget import engine as widget_engine
from lucid_widgets.widget.frames import unpack_thumbnails

TIMEOUT = 60
STORED = range(4)  # the atlas covers units 0..3 of each layer; relu1 has 8


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """(model, folder): a tiny atlas of two layers with examples and connections, built once."""
    torch.manual_seed(0)
    model = TinyNet()
    images = torch.rand(10, 3, 24, 24, generator=torch.Generator().manual_seed(1))
    folder = tmp_path_factory.mktemp("atlas")
    lw_atlas.build(
        model, folder, layers=["early", "late"], units=STORED, views=("channel", "negative"),
        dataset=images, k=2, size=24, steps=2, batch_size=4, progress=False,
    )  # fmt: skip
    return model, folder


@pytest.fixture
def atlas_copy(built, tmp_path):
    """A fresh copy of the built atlas (tests corrupt and write into it) and the model."""
    import shutil

    model, folder = built
    shutil.copytree(folder, tmp_path / "atlas")
    return copy.deepcopy(model), tmp_path / "atlas"


def stored_bytes(folder, layer: str, units, view: str = "channel") -> dict[int, bytes]:
    atlas = lw_atlas.open(folder)
    return {unit: atlas.read(image_path(layer, view, unit)) for unit in units}


def last_grid(comm) -> dict[int, bytes]:
    for state, buffers, paths in reversed(comm.updates()):
        if ["grid_blob"] in paths:
            return unpack_thumbnails(buffers[paths.index(["grid_blob"])], state["grid_index"])
    raise AssertionError("no grid page was sent")


def test_grid_page_is_the_stored_thumbnails_and_no_rendering_job_runs(
    built, recording_comm, close_widgets, monkeypatch
):
    model, folder = built
    batches = []
    real = widget_engine.make_grid_batch
    monkeypatch.setattr(
        widget_engine, "make_grid_batch", lambda *a, **k: batches.append(a) or real(*a, **k)
    )
    widget = Microscope(model, atlas=folder, layer="relu1", page_size=4)  # the real engine
    close_widgets.append(widget)
    assert widget.wait(TIMEOUT)
    expected = stored_bytes(folder, "early", STORED)
    assert widget.grid_thumbnails() == expected
    assert last_grid(recording_comm[-1]) == expected  # what the browser got: the stored PNGs
    assert batches == []
    assert widget.grid_progress["state"] == "done" and widget.grid_progress["rendered"] == 4
    assert widget.grid_settings["size"] == 24 and widget.grid_settings["steps"] == 2
    assert widget.atlas_info["stored"] == 4 and widget.atlas is not None
    atlas = lw_atlas.open(folder)
    tops = [atlas.examples("early", unit)[0] for unit in STORED]
    grid = widget.grid_examples
    assert [item["unit"] for item in grid["items"]] == list(STORED)
    assert [item["value"] for item in grid["items"]] == pytest.approx([t["value"] for t in tops])
    assert widget.grid_examples_blob and widget.examples_status["state"] == "done"


def test_units_the_store_lacks_are_rendered_live_and_written_back(
    atlas_copy, recording_comm, fake_engine, close_widgets
):
    model, folder = atlas_copy
    widget = Microscope(model, atlas=folder, layer="relu1", page_size=8, write_back=True)
    close_widgets.append(widget)
    assert widget.wait(TIMEOUT)
    assert [units for _, units, _, _ in fake_engine.grid_runs] == [[4, 5, 6, 7]]
    assert sorted(widget.grid_thumbnails()) == list(range(8))
    reopened = lw_atlas.open(folder, model)
    final = fake_engine.grid_runs[0][3].final_image  # (4, 3, 24, 24)
    for i, unit in enumerate(range(4, 8)):
        assert np.array_equal(reopened.image("early", unit), to_uint8(final[i]))
    assert widget.atlas_info["written"] == 4
    second = Microscope(copy.deepcopy(model), atlas=folder, layer="relu1", page_size=8)
    close_widgets.append(second)
    assert second.wait(TIMEOUT)
    assert len(fake_engine.grid_runs) == 1  # the second widget found all eight stored


def test_a_corrupt_thumbnail_is_rendered_again_never_shown(
    atlas_copy, recording_comm, fake_engine, close_widgets
):
    model, folder = atlas_copy
    path = folder / image_path("early", "channel", 2)
    path.write_bytes(path.read_bytes()[:-20] + b"\0" * 20)
    (folder / image_path("early", "channel", 3)).unlink()
    widget = Microscope(model, atlas=folder, layer="relu1", page_size=4)
    close_widgets.append(widget)
    assert widget.wait(TIMEOUT)
    assert [units for _, units, _, _ in fake_engine.grid_runs] == [[2, 3]]
    shown = last_grid(recording_comm[-1])
    assert shown[2] != path.read_bytes() and shown[2].startswith(b"\xff\xd8\xff")  # rendered
    assert shown[0] == stored_bytes(folder, "early", [0])[0]


def test_other_grid_settings_or_negative_neurons_render_live(
    built, recording_comm, fake_engine, close_widgets
):
    model, folder = built
    widget = Microscope(model, atlas=folder, layer="relu1", page_size=4, grid_settings={"steps": 3})
    close_widgets.append(widget)
    assert widget.wait(TIMEOUT)
    assert [units for _, units, _, _ in fake_engine.grid_runs] == [[0, 1, 2, 3]]
    assert widget.grid_settings["steps"] == 3 and widget.atlas_info["stored"] == 0
    widget.grid_settings = {"steps": 2}
    widget.grid_negative = True  # stored: the "negative" view
    assert widget.wait(TIMEOUT)
    assert len(fake_engine.grid_runs) == 1
    assert widget.grid_thumbnails() == stored_bytes(folder, "early", STORED, "negative")
    widget.grid_kind = "neuron"  # negative neurons are not in the atlas
    assert widget.wait(TIMEOUT)
    assert fake_engine.grid_runs[-1][2] == "negative_neuron"


def test_opening_a_unit_shows_its_stored_view_examples_and_connections(
    built, recording_comm, fake_engine, close_widgets
):
    model, folder = built
    widget = Microscope(model, atlas=folder, layer="relu1", page_size=4)
    close_widgets.append(widget)
    widget.unit = 2
    assert widget.wait(TIMEOUT)
    atlas = lw_atlas.open(folder)
    assert fake_engine.runs == []  # no live optimization
    assert np.array_equal(to_uint8(widget.images[0]), atlas.image("early", 2))
    assert widget.status == "done" and not widget.running
    links = widget.unit_connections  # the one connections trait, its source named
    assert (links["layer"], links["unit"], links["source"]) == ("relu1", 2, "atlas")
    assert links["outputs"]["layer"] == "relu2"
    stored_out = atlas.connections("early", 2)["out"]
    assert [item["unit"] for item in links["outputs"]["items"]] == stored_out["units"]
    assert widget.connections.source == "atlas"
    assert widget.connections.outputs.units.tolist() == stored_out["units"]
    examples = widget.unit_examples
    stored = atlas.examples("early", 2)
    assert [item["index"] for item in examples["items"] if item["which"] == "top"] == [
        item["index"] for item in stored
    ]
    assert widget.examples_status["source"] == "atlas" and widget.unit_examples_blob
    widget.unit_view = "negative"
    assert widget.wait(TIMEOUT)
    assert np.array_equal(to_uint8(widget.images[0]), atlas.image("early", 2, "negative"))
    widget.start()  # the user asks: a live run of the open unit
    assert widget.wait(TIMEOUT)
    assert len(fake_engine.runs) == 1 and widget.status != "idle"


def test_other_weights_are_the_stores_error_and_leave_no_thread(built, recording_comm):
    model, folder = built
    other = copy.deepcopy(model)
    with torch.no_grad():
        other.conv1.weight.add_(0.01)
    before = threading.active_count()
    with pytest.raises(lw_atlas.AtlasWeightsError):
        Microscope(other, atlas=folder)
    assert threading.active_count() == before
    with pytest.raises(lw_atlas.AtlasError, match="not an atlas"):
        Microscope(model, atlas=folder / "nowhere")


def test_stored_connections_and_live_ones_share_one_trait_and_navigate_alike(
    built, recording_comm, fake_engine, close_widgets
):
    model, folder = built
    widget = Microscope(model, atlas=folder, layer="relu1", page_size=4)
    close_widgets.append(widget)
    widget.unit = 1
    assert widget.wait(TIMEOUT) and widget.wait(TIMEOUT)
    info, blob = widget.unit_connections, widget.unit_connections_blob
    assert (info["source"], info["state"]) == ("atlas", "done")
    assert "No browsable layer before" in info["inputs"]["error"]  # relu1: the first layer
    items = info["outputs"]["items"]
    stored = stored_bytes(folder, "late", [u for u in STORED if u in {i["unit"] for i in items}])
    assert stored  # some connected units are in the atlas, some are not (relu2 has 16)
    for item in items:  # every thumbnail is there: the atlas's where it holds it, else rendered
        entry = item["thumb"]
        data = blob[entry["offset"] : entry["offset"] + entry["length"]]
        expected = stored.get(item["unit"])
        assert data == expected if expected else data.startswith(b"\xff\xd8\xff")  # JPEG
        assert item["kernel"] is None  # the atlas stores no kernels
    rendered = {unit for _, units, _, _ in fake_engine.grid_runs for unit in units}
    assert rendered == {item["unit"] for item in items} - set(stored)  # only what it lacks
    outside = next(item["unit"] for item in items if item["unit"] not in STORED)
    recording_comm[-1].receive_custom({"type": "open_unit", "unit": outside, "layer": "relu2"})
    assert widget.wait(TIMEOUT) and widget.wait(TIMEOUT)
    assert (widget.layer, widget.unit) == ("relu2", outside), widget.message
    live = widget.unit_connections  # not in the atlas: computed live, same shape
    assert (live["layer"], live["unit"], live["source"]) == ("relu2", outside, "live")
    assert live["inputs"]["layer"] == "relu1" and live["inputs"]["items"]
    assert set(live) == set(info) and set(live["inputs"]) >= {"layer", "method", "items"}
    assert widget.connections.source == "live"
    assert widget.layer_name(widget.connections.inputs.source) == "relu1"


def test_a_lucid_atlas_opens_with_lucids_grid_and_its_stored_pictures(
    tmp_path, recording_comm, close_widgets, monkeypatch
):
    model = TinyNet()
    lw_atlas.build(
        model, tmp_path, layers=["early"], units=STORED, views=("channel",), connections=False,
        size=24, steps=2, batch_size=4, progress=False, recipe="lucid",
    )  # fmt: skip
    batches = []
    monkeypatch.setattr(widget_engine, "make_grid_batch", lambda *a, **k: batches.append(a))
    widget = Microscope(model, atlas=tmp_path, layer="relu1", page_size=4)
    close_widgets.append(widget)
    assert widget.wait(TIMEOUT)
    assert widget.grid_settings["param"] == "fft"  # the atlas's kind of picture, not MACO
    assert widget.grid_thumbnails() == stored_bytes(tmp_path, "early", STORED)
    assert batches == []
