"""What the widget sends over its comm (recorded, no browser) and how it handles what arrives."""

from __future__ import annotations

import json
import pathlib
import shutil
import subprocess
import sys
import threading

import numpy as np
import pytest

from lucid_widgets.widget import LivePreview, Microscope
from lucid_widgets.widget.frames import encode

TIMEOUT = 60
JPEG = b"\xff\xd8\xff"


def frame_updates(comm):
    return [
        (state, buffers, paths) for state, buffers, paths in comm.updates() if ["frame"] in paths
    ]


def test_open_message_carries_state_and_binary_paths(
    recording_comm, fake_engine, tiny_net, close_widgets
):
    widget = Microscope(tiny_net)
    close_widgets.append(widget)
    comm = recording_comm[-1]
    msg_type, data, buffers = comm.messages[0]
    assert msg_type == "comm_open"
    state = data["state"]
    assert state["mode"] == "microscope"
    assert [row["name"] for row in state["layers"]][:2] == ["conv1", "relu1"]
    assert {"name", "alias", "type", "shape", "units", "browsable", "group", "order"} <= set(
        state["layers"][0]
    )
    assert ["frame"] in data["buffer_paths"] and ["grid_blob"] in data["buffer_paths"]
    assert "frame" not in state  # binary values travel as buffers, never inside the JSON
    json.dumps(state)  # the rest is plain JSON


def test_frames_are_binary_jpeg_in_one_message(
    recording_comm, fake_engine, tiny_net, close_widgets
):
    widget = LivePreview(tiny_net, "late:1", settings={"steps": 5, "size": 16})
    close_widgets.append(widget)
    assert widget.wait(TIMEOUT)
    updates = frame_updates(recording_comm[-1])
    assert updates
    for state, buffers, paths in updates:
        assert "frame" not in state
        frame = buffers[paths.index(["frame"])]
        assert frame.startswith(JPEG)
        # the frame and its counters arrive together (hold_sync); the loss curve too when changed
        assert {"step", "frame_meta"} <= set(state)
        assert state["frame_meta"]["mime"] == "image/jpeg"
    losses = [state["losses"] for state, _, _ in updates if "losses" in state]
    assert losses and losses[-1] == [-1.0, -2.0, -3.0, -4.0, -5.0]
    last_state = updates[-1][0]
    assert last_state["step"] == 5 and last_state["status"] == "done"
    for state, _, _ in recording_comm[-1].updates():
        assert not any(isinstance(v, str) and len(v) > 2000 for v in state.values())


def test_frames_are_throttled_when_steps_are_fast(
    recording_comm, fake_engine, tiny_net, close_widgets
):
    fake_engine.seconds_per_step = 0.005  # 200 steps per simulated second
    widget = LivePreview(
        tiny_net, "late:1", autostart=False, settings={"steps": 400, "size": 8},
        clock=fake_engine.clock,
    )  # fmt: skip
    close_widgets.append(widget)
    publisher = widget._worker.publisher

    def let_the_publisher_catch_up(run):  # encoding is instant next to a step, as on a GPU
        with publisher._condition:
            assert publisher._condition.wait_for(
                lambda: (
                    not publisher._busy
                    and (publisher._pending is None or publisher.throttle.delay() > 0)
                ),
                TIMEOUT,
            )

    fake_engine.hooks.append(let_the_publisher_catch_up)
    widget.start()
    assert widget.wait(TIMEOUT)
    assert fake_engine.runs[-1].step_count == 400
    frames = len(frame_updates(recording_comm[-1]))
    # 2 simulated seconds at <= 20 frames/s, plus the first and the final frame
    assert 20 <= frames <= 42
    assert len(recording_comm[-1].updates()) <= frames + 10  # nothing else chatters per step


def test_memoryview_from_the_front_end_becomes_bytes(
    recording_comm, fake_engine, tiny_net, close_widgets
):
    widget = Microscope(tiny_net)
    close_widgets.append(widget)
    data = encode(np.zeros((4, 4, 3)), "png")
    comm = recording_comm[-1]
    comm.receive({"frame": None, "grid_blob": None}, [memoryview(data), memoryview(data)],
                 [["frame"], ["grid_blob"]])  # fmt: skip
    assert widget.frame == data and isinstance(widget.frame, bytes)
    assert widget.grid_blob == data


def test_editor_update_with_bad_expression_reports_error(
    recording_comm, fake_engine, tiny_net, close_widgets
):
    widget = LivePreview(tiny_net, "late:1", settings={"steps": 3})
    close_widgets.append(widget)
    assert widget.wait(TIMEOUT)
    comm = recording_comm[-1]
    sent = len(comm.updates())
    comm.receive({"objective": "late:1 - 0.5 * lat:2"})
    assert widget.objective == "late:1 - 0.5 * lat:2"
    assert widget.objective_error["suggestions"] == ["late"]
    new = comm.updates()[sent:]
    assert any("objective_error" in state for state, _, _ in new)
    assert not any("objective" in state for state, _, _ in new)  # no echo of what JS sent
    assert fake_engine.runs[-1].objective_sets == 0


def test_buttons_arrive_as_custom_messages(recording_comm, fake_engine, tiny_net, close_widgets):
    gate = threading.Event()
    fake_engine.hooks.append(lambda run: gate.wait(TIMEOUT))
    widget = LivePreview(tiny_net, "late:1", settings={"steps": 1000})
    close_widgets.append(widget)
    comm = recording_comm[-1]
    comm.receive_custom({"type": "stop"})
    gate.set()
    assert widget.wait(TIMEOUT)
    assert widget.status == "paused" and widget.running is False
    comm.receive_custom({"type": "restart"})
    assert widget.running is True
    comm.receive_custom({"type": "stop"})
    assert widget.wait(TIMEOUT)
    assert len(fake_engine.runs) == 2
    comm.receive_custom({"type": "dance"})
    assert "unknown action" in widget.message


def test_layer_click_and_unit_click_from_the_front_end(
    recording_comm, fake_engine, tiny_net, close_widgets
):
    widget = Microscope(
        tiny_net, page_size=4, grid_settings={"size": 8, "steps": 2, "batch_size": 2}
    )
    close_widgets.append(widget)
    comm = recording_comm[-1]
    comm.receive({"layer": "relu2"})
    assert widget.wait(TIMEOUT)
    grid = [
        (state, buffers, paths)
        for state, buffers, paths in comm.updates()
        if ["grid_blob"] in paths
    ]
    state, buffers, paths = grid[-1]
    index = state["grid_index"]
    blob = buffers[paths.index(["grid_blob"])]
    assert [entry["unit"] for entry in index] == [0, 1, 2, 3]
    for entry in index:
        assert blob[entry["offset"] : entry["offset"] + entry["length"]].startswith(JPEG)
    comm.receive_custom({"type": "open_unit", "unit": 2, "layer": "relu2"})
    assert widget.objective == "late:2" and widget.unit == 2
    assert widget.wait(TIMEOUT)
    assert fake_engine.runs[-1].objective.name == "channel('late', 2)"


def test_readonly_widget_ignores_actions(recording_comm, fake_engine, tiny_net, close_widgets):
    widget = LivePreview(tiny_net, "late:1", autostart=False)
    close_widgets.append(widget)
    widget.readonly = True
    recording_comm[-1].receive_custom({"type": "start"})
    assert widget.wait(TIMEOUT)
    assert fake_engine.runs == []


def test_importing_the_package_does_not_need_the_bundle(tmp_path):
    import lucid_widgets

    source = pathlib.Path(lucid_widgets.__file__).parent
    copy = tmp_path / "lucid_widgets"
    shutil.copytree(source, copy, ignore=shutil.ignore_patterns("static", "__pycache__"))
    code = (
        "import lucid_widgets\n"
        "try:\n    import lucid_widgets.widget\nexcept ImportError as e:\n    print('ERR', e)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=300,
        env={"PYTHONPATH": str(tmp_path), "PATH": ""},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "ERR" in result.stdout and "npm ci && npm run build" in result.stdout


@pytest.mark.parametrize("widget_class", [LivePreview, Microscope])
def test_widget_rejects_non_modules(widget_class):
    with pytest.raises(TypeError, match="torch.nn.Module"):
        widget_class("not a model")
