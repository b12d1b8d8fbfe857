"""The building blocks in the Microscope: the unit's connections and the Sample panel's views.

The blocks run for real (lucid_widgets.blocks) on tiny networks built here; the live preview and
the grid thumbnails use the fake engine (their pixels are not what these tests are about).
"""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
import traitlets
from block_nets import POSITIVE, TwoConv
from PIL import Image

from lucid_widgets.blocks import (
    attribution,
    connections,
    iter_activation_grid,
    neuron_groups,
    semantic_dictionary,
)
from lucid_widgets.optvis.preprocess import Preprocess
from lucid_widgets.widget import Microscope
from lucid_widgets.widget.connections import CONNECTIONS_K

TIMEOUT = 120
GRID = {"size": 8, "steps": 2, "batch_size": 4}


@pytest.fixture
def small_net(tiny_net):
    tiny_net.lucid_preprocess = Preprocess(input_size=(24, 24))
    return tiny_net


@pytest.fixture
def photo() -> torch.Tensor:
    return torch.rand(3, 24, 24, generator=torch.Generator().manual_seed(3))  # (C, H, W)


def _cut(blob: bytes, entry: dict) -> np.ndarray:
    data = blob[entry["offset"] : entry["offset"] + entry["length"]]
    return np.asarray(Image.open(io.BytesIO(data)))


def _microscope(net, close_widgets, **kwargs) -> Microscope:
    widget = Microscope(net, page_size=4, grid_settings=GRID, settings={"size": 16}, **kwargs)
    close_widgets.append(widget)
    return widget


def _settle(widget: Microscope) -> None:
    """Wait for the preview, then for the thumbnails that waited for it to finish."""
    assert widget.wait(TIMEOUT) and widget.wait(TIMEOUT)


def _view(widget: Microscope, view: str) -> dict:
    widget.sample_view = view
    assert widget.wait(TIMEOUT)
    return widget.sample_blocks


# ---- connections ---------------------------------------------------------------------------------
def test_connections_row_shows_the_hand_set_inputs_with_kernels(
    fake_engine, recording_comm, close_widgets
):
    widget = _microscope(TwoConv(), close_widgets, layer="conv2")
    widget.open_unit(3)
    _settle(widget)
    info, blob = widget.unit_connections, widget.unit_connections_blob
    assert info["state"] == "done" and (info["layer"], info["unit"]) == ("conv2", 3)
    inputs = info["inputs"]
    assert inputs["layer"] == "conv1" and inputs["method"] == "expanded_weights"
    assert len(inputs["items"]) == 2  # the units with no connection at all are not shown
    first, second = inputs["items"]
    assert (first["unit"], second["unit"]) == (1, 0)
    assert first["strength"] == pytest.approx(float(POSITIVE.sum()), rel=1e-4)
    assert second["strength"] < 0
    # the kernel picture is the hand-set kernel: red where it is positive, white where zero
    kernel = _cut(blob, first["kernel"]).astype(int)  # (kh * s, kw * s, 3)
    step = kernel.shape[0] // 3
    centre, corner = kernel[step + step // 2, step + step // 2], kernel[step // 2, step // 2]
    assert centre[0] > 200 and centre[2] < 60  # positive: orange
    assert (corner > 240).all()  # zero: white
    # thumbnails rendered on demand went into the grid's cache of the source layer
    assert {1, 0} <= set(widget.grid_images("conv1"))
    assert first["thumb"] is not None and _cut(blob, first["thumb"]).ndim == 3
    # the Python side: the same Connections the engine gives
    expected = connections(TwoConv(), "conv2", 3, k=CONNECTIONS_K)
    assert widget.connections.inputs.units.tolist() == expected.units.tolist()


def test_clicking_a_connection_opens_that_unit_and_its_connections(
    fake_engine, recording_comm, close_widgets, small_net, photo
):
    widget = _microscope(small_net, close_widgets, layer="late", sample=photo)
    widget.open_unit(2)
    _settle(widget)
    inputs = widget.unit_connections["inputs"]
    target = inputs["items"][0]["unit"]
    recording_comm[-1].receive_custom({"type": "open_unit", "unit": target, "layer": "relu1"})
    _settle(widget)
    assert (widget.layer, widget.unit) == ("relu1", target), widget.message
    info = widget.unit_connections
    assert (info["layer"], info["unit"], info["state"]) == ("relu1", target, "done")
    assert info["outputs"]["layer"] == "relu2"  # the unit it feeds: back where we came from
    assert 2 in [item["unit"] for item in info["outputs"]["items"]]
    assert "No browsable layer before" in info["inputs"]["error"]  # relu1 is the first layer
    assert widget.connections.outputs.direction == "out"


# ---- sample views ------------------------------------------------------------------------------
def test_groups_view_matches_the_engine_and_a_click_runs_the_group(
    fake_engine, recording_comm, close_widgets, small_net, photo
):
    widget = _microscope(small_net, close_widgets, layer="late", sample=photo)
    assert widget.wait(TIMEOUT)
    info = _view(widget, "groups")
    assert info["state"] == "done" and info["view"] == "groups" and info["layer"] == "relu2"
    top = widget.sample_result.predictions[0].index
    assert info["target"] == top
    groups = neuron_groups(small_net, photo, "relu2", n_groups=6)
    expected = attribution(small_net, photo, "relu2", target=top).groups(groups)
    got = [item["attribution"] for item in info["groups"]]
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(widget.sample_block.directions, groups.directions, rtol=1e-5)
    blob = widget.sample_blocks_blob
    for item in info["groups"]:
        assert _cut(blob, item["map"]).ndim == 3 and _cut(blob, item["image"]).shape[:2] == (8, 8)
    assert _cut(blob, info["overlay"]).ndim == 3
    runs = len(fake_engine.runs)
    recording_comm[-1].receive_custom({"type": "open_group", "group": 2})
    assert widget.wait(TIMEOUT)
    assert len(fake_engine.runs) == runs + 1
    assert widget.objective.startswith("direction('relu2'")
    with pytest.raises(IndexError, match="valid: 0..5"):
        widget.open_group(6)


def test_dictionary_and_grid_views(fake_engine, recording_comm, close_widgets, small_net, photo):
    widget = _microscope(small_net, close_widgets, layer="late", sample=photo)
    info = _view(widget, "dictionary")
    dico = semantic_dictionary(small_net, photo, "relu2", k=4)
    assert info["state"] == "done" and (info["height"], info["width"]) == dico.shape
    assert np.array_equal(np.array(info["units"]), dico.units)
    assert set(info["thumbs"]) == {str(u) for u in np.unique(dico.units)}  # rendered on demand
    info = _view(widget, "grid")
    cells = list(iter_activation_grid(small_net, photo, "relu2", cell=8, steps=2))
    rendered = sum(len(batch.positions) for batch in cells)
    assert info["state"] == "done" and len(info["cells"]) == rendered
    assert len(info["cells"]) + len(info["skipped"]) == info["height"] * info["width"]
    assert _cut(widget.sample_blocks_blob, info["cells"][0]["image"]).shape[:2] == (8, 8)


def test_attribution_view_and_picking_a_class(
    fake_engine, recording_comm, close_widgets, small_net, photo
):
    widget = _microscope(small_net, close_widgets, layer="late", sample=photo)
    info = _view(widget, "attribution")
    top = widget.sample_result.predictions[0].index
    channels = attribution(small_net, photo, "relu2", target=top).channels
    assert info["state"] == "done" and info["target"] == top
    supporting = [entry["unit"] for entry in info["supporting"]]
    assert supporting == [int(u) for u in np.argsort(-channels)[:6] if channels[u] > 0]
    assert all(entry["value"] < 0 for entry in info["opposing"])
    assert _cut(widget.sample_blocks_blob, info["heatmap"]).ndim == 3
    other = widget.sample_result.predictions[1].index
    recording_comm[-1].receive_custom({"type": "sample_target", "index": other})
    assert widget.wait(TIMEOUT)
    assert widget.sample_blocks["target"] == other
    expected = attribution(small_net, photo, "relu2", target=other).score
    assert widget.sample_block.score == pytest.approx(expected, rel=1e-5)


def test_bad_views_and_layers_are_answered_clearly(
    fake_engine, recording_comm, close_widgets, small_net, photo
):
    widget = _microscope(small_net, close_widgets, layer="late")
    with pytest.raises(traitlets.TraitError, match="sample_view must be one of"):
        widget.sample_view = "atlas"
    recording_comm[-1].receive_custom({"type": "sample_view", "view": "nope"})
    assert "sample_view must be one of" in widget.message and widget.sample_view == "units"
    assert _view(widget, "groups") == {}  # no sample image yet: nothing computed
    with pytest.raises(ValueError, match="no neuron groups yet"):
        widget.open_group(0)
    widget.sample = photo
    widget.layer = "fc"  # (B, 10): no positions
    assert widget.wait(TIMEOUT)
    info = widget.sample_blocks
    assert info["state"] == "error" and "no spatial positions" in info["message"]
    assert "(B, C, H, W)" in info["message"]


def test_stop_ends_a_view_and_start_resumes_it(
    fake_engine, recording_comm, close_widgets, small_net, photo
):
    widget = _microscope(small_net, close_widgets, layer="late", sample=photo)
    assert widget.wait(TIMEOUT)
    widget.grid_settings = {"steps": 100_000}
    widget.sample_view = "grid"
    widget.stop()
    assert widget.wait(TIMEOUT)
    assert widget.sample_blocks["state"] == "stopped"
    widget.grid_settings = {"steps": 2}
    widget.start()
    assert widget.wait(TIMEOUT)
    assert widget.sample_blocks["state"] == "done" and widget.sample_blocks["cells"]


def test_connected_thumbnails_wait_for_the_preview(
    fake_engine, recording_comm, close_widgets, small_net, photo
):
    order = []
    fake_engine.hooks.append(lambda run: order.append("grid" if run.batch > 1 else "preview"))
    widget = _microscope(small_net, close_widgets, layer="late", sample=photo)
    widget.settings = {"steps": 100_000}
    assert widget.wait(TIMEOUT)
    widget.open_unit(2)
    assert widget.unit_connections["state"] in ("running", "waiting")
    widget.stop()  # paused, not done: the thumbnails keep waiting, nothing renders
    assert widget.wait(TIMEOUT) and widget.wait(TIMEOUT)
    assert widget.unit_connections["state"] == "waiting"
    assert not widget.grid_images("early")
    widget.settings = {"steps": 5}
    order.clear()
    widget.start()  # the preview carries on to its end, then the thumbnails render
    _settle(widget)
    assert order[0] == "preview" and "grid" in order
    assert order.index("grid") > max(i for i, what in enumerate(order) if what == "preview")
    assert widget.unit_connections["state"] == "done"
    items = widget.unit_connections["inputs"]["items"]
    assert all(item["thumb"] for item in items) and set(widget.grid_images("early")) >= {
        item["unit"] for item in items
    }


def test_accentuation_view_starts_from_the_sample_and_raises_the_unit(
    monkeypatch, fake_engine, recording_comm, close_widgets, small_net, photo
):
    made = []

    def make_preview(model, objective, config, overrides=None):
        made.append((objective, dict(overrides or {})))
        return fake_engine.make_preview(model, objective, config, overrides)

    monkeypatch.setattr("lucid_widgets.widget.engine.make_preview", make_preview)
    widget = _microscope(small_net, close_widgets, layer="late")
    widget.unit = 2
    with pytest.raises(traitlets.TraitError, match="the accentuation view needs a sample image"):
        widget.unit_view = "accentuation"
    widget.sample = photo
    assert widget.wait(TIMEOUT)
    recording_comm[-1].receive_custom({"type": "unit_view", "view": "accentuation"})
    assert widget.wait(TIMEOUT)
    objective, overrides = made[-1]
    assert widget.objective == objective.name == "accentuation(late:2)"
    # the real objective and start image: a few steps raise unit 2 of relu2 above the photo's
    from lucid_widgets.optvis.preprocess import resolve
    from lucid_widgets.optvis.render import Optimization

    pre = resolve(small_net)

    def unit_mean(image: torch.Tensor) -> float:  # (1, 3, H, W) in [0, 1]
        with torch.no_grad():
            x = pre(image)
            acts = small_net.relu2(small_net.conv2(small_net.relu1(small_net.conv1(x))))
        return float(acts[:, 2].mean())

    with Optimization(small_net, objective, param_f=overrides["param_f"], seed=0) as run:
        before = unit_mean(run.image())
        for _ in range(20):
            run.step()
        after = unit_mean(run.image())
    assert after > before
