"""A task computed in parts (as the Ray executor sends it) equals the whole task, byte for byte."""

from __future__ import annotations

import pytest

from lucid_widgets.atlas.plan import Settings, plan_layers, plan_tasks
from lucid_widgets.atlas.tasks import TaskRunner, merge_parts


def _runner_and_tasks(model, views, batch_size=8):
    settings = Settings(size=24, steps=2, batch_size=batch_size, seed=3)
    plans = plan_layers(model, ["early"], {"early": [0, 1, 2, 3, 5, 6, 7]})
    tasks = plan_tasks(plans, views, settings, connections=False, dataset_length=None)
    return TaskRunner(model, plans, settings), tasks


@pytest.mark.parametrize("view", ["channel", "diversity"])
def test_parts_merged_equal_the_whole_task(tiny_net, view):
    runner, (task,) = _runner_and_tasks(tiny_net, (view,))
    parts = runner.parts(task)
    expected = [(0, 1, 2, 3), (5, 6, 7)] if view == "channel" else [(u,) for u in task.units]
    assert parts == expected  # micro-batches of 4 on a CPU; one unit per diversity strip
    whole = runner.compute(task)
    merged = merge_parts(task, [runner.compute(task, part=part) for part in parts])
    assert merged.files == whole.files  # the same PNG bytes: same seeds, same batches
    assert merged.meta["units"] == whole.meta["units"] == list(task.units)


def test_a_piece_that_is_not_a_part_is_refused(tiny_net):
    runner, (task,) = _runner_and_tasks(tiny_net, ("channel",))
    with pytest.raises(ValueError, match=r"not a part of task render\.early\.channel\.00000"):
        runner.compute(task, part=(1, 2, 3, 5))
    with pytest.raises(ValueError, match="no part outputs"):
        merge_parts(task, [])
