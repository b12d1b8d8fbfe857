"""The widgets against the real engine (tiny CNN, 16 px, a few steps), render_vis(live=True),
and the static HTML export."""

from __future__ import annotations

import base64
import gc
import json
import re
import threading

import numpy as np
import pytest
import torch

import lucid_widgets as lw
from lucid_widgets.widget import LivePreview, Microscope
from lucid_widgets.widget import engine as widget_engine
from lucid_widgets.widget.base import STATIC
from lucid_widgets.widget.live import LiveCallback, live_render

TIMEOUT = 120


def model_state(model: torch.nn.Module) -> tuple[list[bool], list[bool]]:
    return [p.requires_grad for p in model.parameters()], [m.training for m in model.modules()]


def test_live_preview_renders_and_close_restores_the_model(tiny_net):
    before = model_state(tiny_net)
    widget = LivePreview(tiny_net, "late:1 - 0.5 * late:2", settings={"size": 16, "steps": 4})
    assert widget.wait(TIMEOUT)
    assert (widget.status, widget.step) == ("done", 4), widget.message
    images = widget.images
    assert images.shape == (1, 16, 16, 3) and images.dtype == np.float32
    assert images.min() >= 0.0 and images.max() <= 1.0
    assert widget.frame.startswith(b"\xff\xd8\xff")
    assert len(widget.losses) == 4 and all(np.isfinite(widget.losses))
    widget.close()
    assert not widget._worker.alive
    assert model_state(tiny_net) == before


def test_paused_run_gives_the_model_back_and_resumes(tiny_net, close_widgets):
    before = model_state(tiny_net)
    widget = LivePreview(tiny_net, "late:1", settings={"size": 16, "steps": 3})
    close_widgets.append(widget)
    assert widget.wait(TIMEOUT)
    assert model_state(tiny_net) == before  # done, widget alive: the model is usable again
    run = widget._worker.preview.run
    params = [param.detach().clone() for param in run.params]
    widget.start()
    assert widget.wait(TIMEOUT)
    resumed = widget._worker.preview.run
    assert resumed is not run and resumed.params[0] is run.params[0]  # same tensors, carried on
    assert not torch.equal(resumed.params[0], params[0])
    assert widget.step == 6 and widget.status == "done"
    assert model_state(tiny_net) == before


def test_live_edit_with_real_optimization(tiny_net, close_widgets):
    widget = LivePreview(tiny_net, "late:1", settings={"size": 16, "steps": 3, "batch": 2})
    close_widgets.append(widget)
    assert widget.wait(TIMEOUT)
    widget.settings = {**widget.settings, "diversity": 10.0}
    widget.objective = "early:0 + 0.1 * deepdream(late)"
    widget.start()  # continue three more steps with the new objective
    assert widget.wait(TIMEOUT)
    assert widget.step == 6 and widget.objective_error == {}, widget.message
    run = widget._worker.preview.run
    assert run.objective.name == (
        "channel('early', 0) + 0.1 * deepdream('late') - 10.0 * diversity('early')"
    )
    assert widget.images.shape == (2, 16, 16, 3)


def test_microscope_grid_with_real_units(tiny_net, close_widgets):
    widget = Microscope(
        tiny_net, layer="late", page_size=6,
        grid_settings={"size": 16, "steps": 2, "batch_size": 4},
    )  # fmt: skip
    close_widgets.append(widget)
    assert widget.wait(TIMEOUT)
    assert widget.grid_progress["state"] == "done", widget.message
    thumbnails = widget.grid_images()
    assert sorted(thumbnails) == list(range(6))
    assert thumbnails[5].shape == (16, 16, 3)
    assert not np.allclose(thumbnails[0], thumbnails[1])  # different units, different images
    widget.open_unit(4)
    widget.stop()
    assert widget.wait(TIMEOUT)
    assert widget.objective == "late:4"


def test_catalog_rows_are_json(tiny_net):
    rows = widget_engine.catalog(tiny_net)
    assert json.loads(json.dumps(rows)) == rows
    assert {row["alias"] for row in rows} >= {"early", "late"}


def test_render_vis_live_streams_into_a_preview(tiny_net, monkeypatch):
    shown = []
    monkeypatch.setattr("lucid_widgets.widget.live.in_notebook", lambda: True)
    monkeypatch.setattr("IPython.display.display", lambda widget: shown.append(widget))
    images = lw.render_vis(
        tiny_net, "late:1", param_f=lambda: lw.param.image(16), thresholds=(3,),
        progress=False, live=True, seed=0,
    )  # fmt: skip
    assert images[0].shape == (1, 16, 16, 3)
    (widget,) = shown
    assert widget.external and widget.readonly is False
    assert widget.objective == "late:1"
    try:
        assert widget.frame.startswith(b"\xff\xd8\xff")
        assert widget.step >= 1
    finally:
        widget.close()


def test_render_vis_live_leaves_no_thread_and_prints_nothing_outside_a_notebook(tiny_net, capsys):
    before = threading.active_count()
    for _ in range(3):
        images = lw.render_vis(
            tiny_net, "late:1", param_f=lambda: lw.param.image(16), thresholds=(2,),
            progress=False, live=True, seed=0,
        )  # fmt: skip
        assert images[0].shape == (1, 16, 16, 3)
    gc.collect()
    assert threading.active_count() == before
    assert capsys.readouterr().out == ""  # no widget repr outside a notebook


class _Step:
    def __init__(self, step: int) -> None:
        self.step, self.loss, self.objective = step, float(-step), "late:1"
        self.image = torch.full((1, 3, 8, 8), 0.5)


def test_live_callback_finishes_and_stops(tiny_net):
    seen = []
    callback = live_render(tiny_net, "late:1", seen.append, steps=3, display=False)
    widget = callback.widget
    try:
        assert widget.total_steps == 3 and widget.running
        for step in range(1, 4):
            callback(_Step(step))
        assert seen[-1].step == 3
        assert (widget.status, widget.running, widget.step) == ("done", False, 3)
        assert widget.losses == [-1.0, -2.0, -3.0]
        stopper = LiveCallback(widget, None)
        widget.running = False  # the Stop button
        with pytest.raises(KeyboardInterrupt):
            stopper(_Step(1))
        assert widget.status == "paused"
    finally:
        widget.close()


def test_save_html_is_self_contained(tiny_net, tmp_path, close_widgets):
    widget = Microscope(
        tiny_net, layer="late", page_size=4, settings={"size": 16, "steps": 2},
        grid_settings={"size": 16, "steps": 1, "batch_size": 4},
    )  # fmt: skip
    close_widgets.append(widget)
    widget.open_unit(1)
    assert widget.wait(TIMEOUT)
    path = widget.save_html(tmp_path / "snapshot.html")
    page = path.read_text(encoding="utf-8")
    assert "<script src" not in page and "<link" not in page  # nothing fetched
    assert not re.search(r"(src|href)=[\"']https?:", page)
    state = json.loads(re.search(r'id="lw-state">(.*?)</script>', page, re.S).group(1))
    assert state["values"]["mode"] == "microscope" and state["values"]["layer"] == "relu2"
    frame = base64.b64decode(state["buffers"]["frame"])
    assert frame == widget.frame and frame.startswith(b"\xff\xd8\xff")
    assert base64.b64decode(state["buffers"]["grid_blob"]) == widget.grid_blob
    assert state["module"] == (STATIC / "widget.js").read_text(encoding="utf-8")
    assert len(state["values"]["grid_index"]) == 4
