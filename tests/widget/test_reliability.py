"""What a hostile but fair user found in the widget (issue 10), each reproduced here.

Leaks (closed widgets freed, no thread left by a failed constructor), settings that merge and
are validated, front-end messages answered inline, upload limits and one image decoder, and a
run-time objective failure against the real engine.
"""

from __future__ import annotations

import gc
import io
import struct
import threading
import time
import weakref
import zlib

import numpy as np
import pytest
import torch
import traitlets
from PIL import Image
from tiny_models import TinyNet

import lucid_widgets as lw
from lucid_widgets.dataset import images as dataset_images
from lucid_widgets.dataset.images import MAX_IMAGE_BYTES, decode_image_bytes, load_image
from lucid_widgets.widget import LivePreview, Microscope
from lucid_widgets.widget.sample import decode_upload

TIMEOUT = 60


def wait_until(predicate, timeout: float = TIMEOUT) -> None:
    """Poll ``predicate`` until it holds; fail the test at the deadline."""
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached before the deadline"
        time.sleep(0.02)


# ---- leaks ----------------------------------------------------------------------------------
@pytest.mark.parametrize("widget_class", [LivePreview, Microscope])
def test_closed_widget_and_its_model_are_freed(widget_class, recording_comm, fake_engine):
    model = TinyNet()  # built here: a fixture would keep it alive
    if widget_class is LivePreview:
        widget = LivePreview(model, "late:1", settings={"steps": 3, "size": 16})
    else:
        widget = Microscope(model, layer="late", page_size=2, grid_settings={"steps": 1})
    assert widget.wait(TIMEOUT)
    widget_ref, model_ref = weakref.ref(widget), weakref.ref(model)
    widget.close()
    del widget, model
    recording_comm.clear()  # the test's own record of the comm holds the widget's messages
    fake_engine.runs.clear()
    fake_engine.grid_runs.clear()
    gc.collect()
    assert widget_ref() is None
    assert model_ref() is None


def test_widget_front_end_is_given_as_strings():
    # a pathlib.Path makes anywidget keep a class-level file watcher holding every instance
    assert isinstance(LivePreview._esm, str) and "export" in LivePreview._esm
    assert isinstance(Microscope._css, str) and Microscope._css


def _failing_constructors(tmp_path):
    images = torch.rand(4, 3, 24, 24)
    return {
        "unknown layer": lambda net: Microscope(net, layer="nope"),
        "missing dataset": lambda net: Microscope(net, layer="late", dataset=tmp_path / "none"),
        "missing sample": lambda net: Microscope(net, sample=tmp_path / "none.png"),
        "examples_k=0": lambda net: Microscope(net, layer="late", dataset=images, examples_k=0),
        "bad grid setting": lambda net: Microscope(net, grid_settings={"size": 8.5}),
        "bad objective": lambda net: LivePreview(net, "late:1 +"),
        "bad setting": lambda net: LivePreview(net, "late:1", settings={"stpes": 3}),
    }


@pytest.mark.parametrize(
    "case",
    ["unknown layer", "missing dataset", "missing sample", "examples_k=0", "bad grid setting",
     "bad objective", "bad setting"],
)  # fmt: skip
def test_failing_constructor_leaves_no_thread(case, fake_engine, tiny_net, tmp_path):
    make = _failing_constructors(tmp_path)[case]
    before = threading.active_count()
    for _ in range(3):
        with pytest.raises((ValueError, FileNotFoundError, traitlets.TraitError)):
            make(tiny_net)
    assert threading.active_count() == before


# ---- settings -------------------------------------------------------------------------------
def test_partial_settings_merge_into_the_current_ones(fake_engine, tiny_net, close_widgets):
    widget = Microscope(tiny_net)
    close_widgets.append(widget)
    widget.settings = {"steps": 7}
    widget.settings = {"size": 32}
    assert widget.settings["steps"] == 7 and widget.settings["size"] == 32
    assert widget.settings == {**lw.widget.engine.PreviewConfig().to_dict(), "steps": 7, "size": 32}
    widget.grid_settings = {"steps": 3}
    widget.grid_settings = {"size": 16}
    assert (widget.grid_settings["steps"], widget.grid_settings["size"]) == (3, 16)
    assert len(widget.grid_settings) == len(lw.widget.engine.GridConfig().to_dict())


@pytest.mark.parametrize("value", [8.9, 31.5, "big", True])
def test_a_non_whole_size_is_an_error_not_truncated(value, fake_engine, tiny_net, close_widgets):
    widget = LivePreview(tiny_net, "late:1", autostart=False, settings={"size": 32})
    close_widgets.append(widget)
    with pytest.raises(ValueError, match="size"):
        widget.settings = {"size": value}
    assert widget.settings["size"] == 32
    assert widget.settings == {**widget.settings, "size": 32}


def test_unit_out_of_range_raises_and_the_trait_keeps_its_value(
    fake_engine, tiny_net, close_widgets
):
    widget = Microscope(tiny_net, layer="late", page_size=4, grid_settings={"steps": 1})
    close_widgets.append(widget)
    widget.unit = 3
    with pytest.raises(traitlets.TraitError, match="out of range"):
        widget.unit = 10**6
    assert widget.unit == 3 and widget.objective == "late:3"


def test_bad_front_end_messages_are_answered_inline(recording_comm, fake_engine, tiny_net):
    widget = Microscope(tiny_net, layer="late", page_size=4, grid_settings={"steps": 1})
    try:
        comm = recording_comm[-1]
        comm.receive_custom({"type": "open_unit"})  # no unit
        assert "unit" in widget.message and widget.unit == -1
        comm.receive_custom({"type": "open_unit", "unit": 2, "layer": "nope"})
        assert "unknown layer 'nope'" in widget.message and widget.unit == -1
        comm.receive({"layer": "nope"})
        assert "unknown layer 'nope'" in widget.message and widget.layer == "relu2"
        widget.message = ""
        comm.receive({"unit": 10**6})
        assert "out of range" in widget.message and widget.unit == -1
        echoed = [state for state, _, _ in comm.updates() if "unit" in state]
        assert echoed and echoed[-1]["unit"] == -1  # the front end is told the kept value
        comm.receive_custom({"type": "teleport"})
        assert "unknown action 'teleport'" in widget.message
    finally:
        widget.close()


# ---- uploads --------------------------------------------------------------------------------
def _png_header_only(width: int, height: int) -> bytes:
    """A PNG that declares ``width x height`` grey pixels but holds one row (a bomb's header)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    rows = zlib.compress(b"\x00" * (width + 1))
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", rows) + chunk(b"IEND", b"")
    )


@pytest.mark.parametrize("side", [12_000, 20_000])
def test_too_many_pixels_are_refused_from_the_header(side, monkeypatch):
    loads = []
    monkeypatch.setattr(Image.Image, "load", lambda self: loads.append(self))
    data = _png_header_only(side, side)
    assert len(data) < 50_000
    with pytest.raises(ValueError, match="pixels"):
        decode_upload(data)
    assert loads == []  # nothing decoded


def test_too_many_bytes_are_refused_before_reading(monkeypatch):
    opened = []
    monkeypatch.setattr(dataset_images.Image, "open", lambda *a, **k: opened.append(a))
    data = memoryview(b"\xff\xd8\xff\xe0" + bytes(MAX_IMAGE_BYTES))  # a JPEG header, then junk
    with pytest.raises(ValueError, match="MiB"):
        decode_upload(data)
    assert opened == []
    with pytest.raises(ValueError, match="empty"):
        decode_upload(b"")


def test_a_failed_upload_is_shown_in_the_sample_panel(recording_comm, fake_engine, tiny_net):
    widget = Microscope(tiny_net)
    try:
        data = _png_header_only(20_000, 20_000)
        message = {"method": "custom", "content": {"type": "sample_upload", "name": "bomb.png"}}
        recording_comm[-1].handle_msg({"content": {"data": message}, "buffers": [data]})
        info = widget.sample_info
        assert info["state"] == "error" and info["name"] == "bomb.png"
        assert "pixels" in info["message"]
    finally:
        widget.close()


def test_16_bit_uploads_are_scaled_like_files(tmp_path):
    values = np.linspace(0, 65535, 32 * 32).reshape(32, 32).astype(np.uint16)
    picture = Image.fromarray(values)  # mode I;16
    buffer = io.BytesIO()
    picture.save(buffer, "PNG")
    path = tmp_path / "deep.png"
    path.write_bytes(buffer.getvalue())
    uploaded = np.asarray(decode_upload(buffer.getvalue()))  # (H, W, 3)
    from_file = load_image(str(path), (32, 32)).permute(1, 2, 0).numpy()
    assert np.array_equal(uploaded, from_file)
    assert (uploaded == 255).mean() < 0.01  # not clipped
    assert abs(int(uploaded[16, 0, 0]) - round(values[16, 0] / 65535 * 255)) <= 1


def test_decoder_limits_are_parameters():
    buffer = io.BytesIO()
    Image.new("RGB", (10, 10), (0, 128, 255)).save(buffer, "PNG")
    with pytest.raises(ValueError, match="pixels"):
        decode_image_bytes(buffer.getvalue(), max_pixels=99)
    assert np.asarray(decode_image_bytes(buffer.getvalue(), max_pixels=100))[0, 0].tolist() == [
        0, 128, 255,
    ]  # fmt: skip


# ---- the real engine ------------------------------------------------------------------------
def test_objective_failing_at_run_time_is_reverted_with_the_real_engine(tiny_net, close_widgets):
    widget = LivePreview(tiny_net, "late:1", settings={"steps": 100_000, "size": 16})
    close_widgets.append(widget)
    wait_until(lambda: widget.step >= 2)
    widget.objective = "class_logit(12)"  # parses; the 10-class network fails on it at run time
    wait_until(lambda: widget.objective_error != {})
    assert "12" in widget.objective_error["message"] and "0..9" in widget.objective_error["message"]
    step = widget.step
    wait_until(lambda: widget.step >= step + 2)  # the run goes on with the previous objective
    assert widget.status == "running" and widget.objective_applied == "late:1"
    widget.stop()
    assert widget.wait(TIMEOUT)
    assert widget._worker.preview.run.objective.name == "channel('late', 1)"


# ---- show outside a notebook ----------------------------------------------------------------
def test_show_never_overwrites_and_says_where(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    first = lw.show(np.zeros((1, 8, 8, 3)))
    content = first.read_bytes()
    second = lw.show(np.ones((1, 8, 8, 3)))
    assert first == tmp_path / "lucid_widgets_show.png"
    assert second == tmp_path / "lucid_widgets_show-1.png"
    assert first.read_bytes() == content  # untouched
    assert np.asarray(Image.open(second)).min() == 255
    out = capsys.readouterr().out
    assert str(first) in out and str(second) in out
