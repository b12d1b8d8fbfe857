"""The widget's worker thread: stop latency, priorities, edits between steps, shutdown.

A fake engine counts steps so that every assertion is about *how many* steps ran, never about
how long anything took.
"""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch
import traitlets

from lucid_widgets.expression.compiler import ExpressionError
from lucid_widgets.optvis import objectives
from lucid_widgets.widget import LivePreview, Microscope

TIMEOUT = 60


def test_stop_takes_effect_within_one_step(fake_engine, tiny_net, close_widgets):
    reached, release = threading.Event(), threading.Event()

    def pause_at_step_five(run):
        if run.step_count == 5 and not release.is_set():
            reached.set()
            release.wait(TIMEOUT)

    fake_engine.hooks.append(pause_at_step_five)
    widget = LivePreview(tiny_net, "late:1", settings={"steps": 10_000})
    close_widgets.append(widget)
    assert reached.wait(TIMEOUT)
    widget.stop()  # from another thread, as a message handler would
    assert widget.running is False
    release.set()
    assert widget.wait(TIMEOUT)
    run = fake_engine.runs[-1]
    assert run.step_count == 6  # the step in flight finished; no step after it
    assert widget.status == "paused"
    assert widget.step == 6
    assert run.closed  # paused: the model is given back until Resume


def test_resume_continues_the_same_run(fake_engine, tiny_net, close_widgets):
    widget = LivePreview(tiny_net, "late:1", settings={"steps": 7})
    close_widgets.append(widget)
    assert widget.wait(TIMEOUT)
    assert (widget.status, widget.step, widget.total_steps) == ("done", 7, 7)
    first = fake_engine.runs[0]
    assert first.closed  # done: the model is given back
    widget.start()  # after "done": continue for as many steps again
    assert widget.wait(TIMEOUT)
    assert len(fake_engine.runs) == 2
    second = fake_engine.runs[1]
    assert second.resumed_from is first  # same parameters and optimizer, not a restart
    assert second.optimizer is first.optimizer
    assert (second.step_count, widget.step, widget.total_steps) == (7, 14, 14)


def test_restart_makes_a_new_run_and_closes_the_old(fake_engine, tiny_net, close_widgets):
    widget = LivePreview(tiny_net, "late:1", settings={"steps": 3})
    close_widgets.append(widget)
    assert widget.wait(TIMEOUT)
    widget.restart()
    assert widget.wait(TIMEOUT)
    assert len(fake_engine.runs) == 2
    assert fake_engine.runs[0].closed and fake_engine.runs[1].step_count == 3


def test_objective_edit_applies_at_next_step_without_restart(fake_engine, tiny_net, close_widgets):
    seen = []
    edited = threading.Event()

    def record(run):
        seen.append(run.objective.name)
        if run.step_count == 3 and not edited.is_set():
            widget.objective = "late:1 - 0.5 * late:2"  # as if typed in the editor
            edited.set()

    fake_engine.hooks.append(record)
    widget = LivePreview(tiny_net, "late:1", settings={"steps": 6})
    close_widgets.append(widget)
    assert widget.wait(TIMEOUT)
    assert len(fake_engine.runs) == 1  # no restart
    assert seen[3] == "channel('late', 1)"  # step 4 was already running the old objective
    assert seen[4] == "channel('late', 1) - 0.5 * channel('late', 2)"
    assert widget.objective_applied == "late:1 - 0.5 * late:2"
    assert widget.objective_error == {}


def test_bad_expression_sets_error_and_leaves_run_untouched(fake_engine, tiny_net, close_widgets):
    widget = LivePreview(tiny_net, "late:1", settings={"steps": 4})
    close_widgets.append(widget)
    assert widget.wait(TIMEOUT)
    run = fake_engine.runs[-1]
    before = (run.objective, run.objective_sets)
    with pytest.raises(ExpressionError, match="did you mean late"):
        widget.objective = "late:1 - 0.5 * lat:2"
    assert widget.wait(TIMEOUT)
    assert widget.objective == "late:1 - 0.5 * lat:2"  # the editor shows the text and error
    error = widget.objective_error
    assert error["message"] == "unknown layer 'lat'"
    assert error["position"] == len("late:1 - 0.5 * ")
    assert "late" in error["suggestions"]
    assert (run.objective, run.objective_sets) == before
    assert widget.objective_applied == "late:1"
    with pytest.raises(ExpressionError):
        widget.objective = "late:1 +"
    assert widget.objective_error["position"] == len("late:1 +")
    assert "expected" in widget.objective_error["message"]
    widget.objective = "late:2"
    assert widget.objective_error == {}


def test_objective_failing_at_run_time_is_reverted(fake_engine, tiny_net, close_widgets):
    widget = LivePreview(tiny_net, "late:1", settings={"steps": 10_000})
    close_widgets.append(widget)
    reached = threading.Event()
    fake_engine.hooks.append(lambda run: run.step_count >= 2 and reached.set())
    assert reached.wait(TIMEOUT)
    widget.objective = 'class_logit("nope")'  # parses, but the fake run raises on it
    fake_engine.hooks.append(lambda run: run.step_count >= 6 and widget._worker.stop())
    assert widget.wait(TIMEOUT)
    run = fake_engine.runs[-1]
    assert run.step_count >= 6  # the run went on with the previous objective
    assert run.objective.name == "channel('late', 1)"
    assert "boom" in widget.objective_error["message"]
    assert widget.objective_applied == "late:1"


def test_live_settings_and_restarting_settings(fake_engine, tiny_net, close_widgets):
    gate = threading.Event()
    fake_engine.hooks.append(lambda run: gate.wait(TIMEOUT))
    widget = LivePreview(tiny_net, "late:1", settings={"steps": 10_000, "size": 16})
    close_widgets.append(widget)
    widget.settings = {**widget.settings, "lr": 0.5, "transforms": False}
    gate.set()
    fake_engine.hooks.append(lambda run: run.step_count >= 3 and widget._worker.stop())
    assert widget.wait(TIMEOUT)
    run = fake_engine.runs[0]
    assert run.optimizer.param_groups[0]["lr"] == 0.5
    assert run.transforms == []  # transforms off, applied live
    assert len(fake_engine.runs) == 1
    widget.settings = {**widget.settings, "size": 24}  # needs a new run: applies on start
    widget.start()
    widget.stop()
    assert widget.wait(TIMEOUT)
    assert fake_engine.runs[-1].size == 24


def test_constructor_raises_on_a_bad_objective(fake_engine, tiny_net):
    threads = threading.active_count()
    with pytest.raises(ExpressionError, match="unknown layer 'nope'"):
        LivePreview(tiny_net, "nope:1")
    assert fake_engine.runs == []
    assert threading.active_count() == threads  # no worker thread was started


def test_bad_settings_are_rejected_with_a_message(fake_engine, tiny_net, close_widgets):
    widget = LivePreview(tiny_net, "late:1", autostart=False)
    close_widgets.append(widget)
    with pytest.raises(ValueError, match="param.*fft"):
        widget.settings = {**widget.settings, "param": "cppn"}
    assert widget.settings["param"] == "maco"  # the default, kept
    with pytest.raises(ValueError, match="valid settings"):
        LivePreview(tiny_net, "late:1", settings={"stpes": 3})


def test_close_ends_the_worker(fake_engine, tiny_net):
    widget = LivePreview(tiny_net, "late:1", settings={"steps": 1_000_000})
    reached = threading.Event()
    fake_engine.hooks.append(lambda run: run.step_count >= 2 and reached.set())
    assert reached.wait(TIMEOUT)
    thread = widget._worker.thread
    widget.close()
    thread.join(TIMEOUT)
    assert not thread.is_alive()
    assert fake_engine.runs[-1].closed


def test_two_widgets_run_side_by_side_independently(fake_engine, tiny_net, close_widgets):
    first = LivePreview(tiny_net, "late:1", settings={"steps": 1_000_000})
    second = LivePreview(tiny_net, "early:2", settings={"steps": 40})
    close_widgets.extend([first, second])
    assert first._worker.thread is not second._worker.thread
    assert second.wait(TIMEOUT)
    first.stop()
    assert first.wait(TIMEOUT)
    runs = {run.objective.name: run for run in fake_engine.runs}
    assert runs["channel('early', 2)"].step_count == 40
    assert second.status == "done" and first.status == "paused"
    first.objective = "late:3"  # an edit to one widget does not reach the other
    first.wait(TIMEOUT)
    assert runs["channel('early', 2)"].objective_sets == 0
    assert second.objective_applied == "early:2"


def test_grid_renders_page_in_batches_and_caches(fake_engine, tiny_net, close_widgets):
    widget = Microscope(
        tiny_net, layer="late", page_size=8, grid_settings={"size": 8, "steps": 3, "batch_size": 4}
    )
    close_widgets.append(widget)
    assert widget.wait(TIMEOUT)
    assert [units for _, units, _, _ in fake_engine.grid_runs] == [[0, 1, 2, 3], [4, 5, 6, 7]]
    assert all(run.step_count == 3 and run.closed for *_, run in fake_engine.grid_runs)
    assert [entry["unit"] for entry in widget.grid_index] == list(range(8))
    assert widget.grid_progress["state"] == "done"
    widget.page = 1
    assert widget.wait(TIMEOUT)
    assert [entry["unit"] for entry in widget.grid_index] == list(range(8, 16))
    batches = len(fake_engine.grid_runs)
    widget.page = 0  # back to a page already rendered: straight from the cache
    assert widget.wait(TIMEOUT)
    assert len(fake_engine.grid_runs) == batches
    assert [entry["unit"] for entry in widget.grid_index] == list(range(8))
    images = widget.grid_images("late")
    assert sorted(images) == list(range(16))
    assert images[0].shape == (8, 8, 3) and images[0].dtype == np.float32
    widget.grid_negative = True  # another objective kind: another cache entry
    assert widget.wait(TIMEOUT)
    assert fake_engine.grid_runs[-1][2] == "negative_channel"


def test_preview_has_priority_over_the_grid(fake_engine, tiny_net, close_widgets):
    order = []
    grid_started, gate = threading.Event(), threading.Event()

    def record(run):
        order.append("grid" if run.batch > 1 else "preview")
        if run.batch > 1:
            grid_started.set()
        gate.wait(TIMEOUT)

    fake_engine.hooks.append(record)
    widget = Microscope(
        tiny_net, page_size=4, settings={"steps": 5},
        grid_settings={"size": 8, "steps": 2, "batch_size": 4},
    )  # fmt: skip
    close_widgets.append(widget)
    widget.layer = "late"
    assert grid_started.wait(TIMEOUT)  # the grid is inside its first step
    widget.open_unit(3)  # queued: the preview runs before any further grid step
    gate.set()
    assert widget.wait(TIMEOUT)
    # then the grid; the opened unit's connected units' thumbnails render after the preview too
    assert order[:7] == ["grid"] + ["preview"] * 5 + ["grid"]
    assert widget.objective == "late:3" and widget.unit == 3


def test_stop_halts_the_grid_too_and_start_resumes_it(fake_engine, tiny_net, close_widgets):
    widget = Microscope(
        tiny_net, page_size=16, grid_settings={"size": 8, "steps": 50, "batch_size": 4}
    )
    close_widgets.append(widget)
    reached, release = threading.Event(), threading.Event()

    def pause_at_step_three(run):
        if run.step_count == 3 and not release.is_set():
            reached.set()
            release.wait(TIMEOUT)

    fake_engine.hooks.append(pause_at_step_three)
    widget.layer = "late"
    assert reached.wait(TIMEOUT)
    widget.stop()
    release.set()
    assert widget.wait(TIMEOUT)
    assert widget.grid_progress["state"] == "stopped"
    assert fake_engine.total_steps == 4  # the step in flight, then nothing
    widget.start()
    assert widget.wait(TIMEOUT)
    assert widget.grid_progress["state"] == "done"
    assert fake_engine.total_steps == 4 * 50  # the interrupted batch carried on, not restarted


def test_unit_selection_builds_objective_text(fake_engine, tiny_net, close_widgets):
    widget = Microscope(tiny_net, layer="late", page_size=4, grid_settings={"steps": 1})
    close_widgets.append(widget)
    widget.grid_kind = "neuron"
    widget.grid_negative = True
    widget.unit = 2
    assert widget.objective == "-neuron(late, 2)"
    assert widget.running and widget.status == "running"  # set at once, before any step
    assert widget.wait(TIMEOUT)
    assert (widget.status, widget.step) == ("done", widget.settings["steps"])
    assert fake_engine.runs[-1].objective.name == "-neuron('late', 2)"
    with pytest.raises(ValueError, match="out of range"):
        widget.open_unit(99)
    with pytest.raises(traitlets.TraitError, match="unknown layer 'lat'; did you mean late"):
        widget.layer = "lat"
    assert widget.layer == "relu2" and widget.unit == 2


def test_images_are_numpy_bhwc(fake_engine, tiny_net, close_widgets):
    widget = LivePreview(tiny_net, "late:1", settings={"steps": 2, "batch": 3, "size": 8})
    close_widgets.append(widget)
    assert widget.wait(TIMEOUT)
    images = widget.images
    final = fake_engine.runs[-1].final_image  # (B, C, H, W), different in every pixel
    assert images.shape == (3, 8, 8, 3) and images.dtype == np.float32
    assert np.array_equal(images, final.permute(0, 2, 3, 1).numpy())


class NeedsTwoInputs(torch.nn.Module):
    """A model the catalog's dry forward cannot call (it needs a second input)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 4, 3)

    def forward(self, image: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self.conv(image) * mask


def test_preview_works_without_a_catalog_but_microscope_needs_one(fake_engine, close_widgets):
    model = NeedsTwoInputs()
    widget = LivePreview(model, "conv:1", settings={"steps": 2})
    close_widgets.append(widget)
    assert widget.layers == [] and "catalog" in widget.message
    assert widget.wait(TIMEOUT) and widget.status == "done"
    with pytest.raises(ExpressionError):  # names are still checked, through the model
        widget.objective = "conv:1 + convv:2"
    assert widget.objective_error["message"] == "unknown layer 'convv'"
    with pytest.raises(RuntimeError):
        Microscope(model)


def test_objective_object_is_used_as_given(fake_engine, tiny_net, close_widgets):
    objective = objectives.channel("late", 1) - 0.5 * objectives.diversity("late")
    widget = LivePreview(tiny_net, objective, settings={"steps": 2})
    close_widgets.append(widget)
    assert widget.wait(TIMEOUT)
    assert widget.objective == objective.name
    assert fake_engine.runs[-1].objective is objective
