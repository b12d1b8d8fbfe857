"""The Ray executor: the build's tasks on actors that load the model once.

Each actor holds a :class:`~lucid_widgets.atlas.tasks.TaskRunner` (the same task functions as
the local executor) built from a zoo name, or from the user's module shipped once through the
object store. The driver keeps one task in flight per actor, commits each result to the store as
it arrives (``ray.wait``), and feeds the progress bar. An actor that dies is restarted by Ray
and its task submitted again (``max_retries`` times), so every task is committed exactly once.
"""

from __future__ import annotations

import os
import sys
from collections import deque
from collections.abc import Sequence
from pathlib import Path

from torch import nn

from lucid_widgets.atlas.plan import LayerPlan, Settings, Task
from lucid_widgets.atlas.store import Atlas
from lucid_widgets.atlas.tasks import TaskRunner
from lucid_widgets.optvis.render import StopSignal, should_stop

__all__ = ["AtlasWorker", "run_ray", "start_ray"]

MAX_RETRIES = 3
_PACKAGE_ROOT = str(Path(__file__).resolve().parents[2])


def _ray():
    try:
        import ray
    except ImportError:
        raise ImportError('executor="ray" needs Ray: pip install "lucid-widgets[ray]"') from None
    return ray


def start_ray(address: str | None):
    """Join ``address`` (``"auto"``, ``"ray://..."``), or start a local cluster for ``None``.

    A Ray already initialized in this process is used as it is. A local cluster's workers get
    this process's ``sys.path``, so they import the same ``lucid_widgets`` and model code.
    """
    ray = _ray()
    if ray.is_initialized():
        return ray
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    if address is None:
        paths = os.pathsep.join(dict.fromkeys([_PACKAGE_ROOT, *filter(None, sys.path)]))
        ray.init(include_dashboard=False, runtime_env={"env_vars": {"PYTHONPATH": paths}},
                 log_to_driver=False)  # fmt: skip
    else:
        ray.init(address=address, include_dashboard=False, log_to_driver=False)
    return ray


class AtlasWorker:
    """The body of a Ray actor (``ray.remote(AtlasWorker)``): a model and its task runner."""

    def __init__(self, model, zoo_name, plans, settings, dataset, device) -> None:
        if zoo_name is not None:
            from lucid_widgets.zoo import load

            model = load(zoo_name)
        self.runner = TaskRunner(model, plans, settings, dataset, device=device)

    def pid(self) -> int:
        return os.getpid()

    def compute(self, task: Task):
        return self.runner.compute(task)


def _actors(ray, model, zoo_name, plans, settings, dataset, workers: int | None, limit: int):
    resources = ray.cluster_resources()
    gpus = int(resources.get("GPU", 0))
    count = workers or gpus or max(1, int(resources.get("CPU", 1)))
    count = min(count, limit)
    options = {"num_gpus": 1, "num_cpus": 1} if gpus else {"num_cpus": 1}
    remote = ray.remote(max_restarts=MAX_RETRIES, max_task_retries=0, **options)(AtlasWorker)
    model_ref = None if zoo_name is not None else ray.put(model)
    data_ref = None if dataset is None else ray.put(dataset)
    device = "cuda" if gpus else None
    actors = [
        remote.remote(model_ref, zoo_name, plans, settings, data_ref, device) for _ in range(count)
    ]
    return actors, [model_ref, data_ref]  # kept alive while the actors may restart


def run_ray(
    model: nn.Module,
    zoo_name: str | None,
    plans: Sequence[LayerPlan],
    settings: Settings,
    dataset: object,
    tasks: Sequence[Task],
    atlas: Atlas,
    address: str | None = None,
    bar=None,
    stop: StopSignal = None,
    callback=None,
    workers: int | None = None,
) -> None:
    """Run ``tasks`` on Ray actors and commit each result to ``atlas`` as it arrives."""
    if not tasks:
        return
    ray = start_ray(address)
    actors, _refs = _actors(ray, model, zoo_name, plans, settings, dataset, workers, len(tasks))
    queue, running, attempts = deque(tasks), {}, {}
    idle = deque(actors)
    try:
        while queue or running:
            while queue and idle and not should_stop(stop):
                actor, task = idle.popleft(), queue.popleft()
                running[actor.compute.remote(task)] = (actor, task)
            if not running:
                return
            done, _ = ray.wait(list(running), num_returns=1)
            actor, task = running.pop(done[0])
            try:
                output = ray.get(done[0])
            except (ray.exceptions.RayActorError, ray.exceptions.WorkerCrashedError):
                attempts[task.id] = attempts.get(task.id, 0) + 1
                if attempts[task.id] > MAX_RETRIES:
                    raise
                queue.appendleft(task)  # the actor restarts; the task runs again
                idle.append(actor)
                continue
            idle.append(actor)
            atlas.commit(output)
            if bar is not None:
                bar.update(1)
            if callback is not None:
                callback(output)
    finally:
        for pending in running:
            ray.cancel(pending, force=True)
        for actor in actors:
            ray.kill(actor)
