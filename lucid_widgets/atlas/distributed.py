"""The Ray executor: the build's tasks on a pool of actors that keep the model loaded.

Each actor holds the model (loaded once from a zoo name, or the user's module shipped once
through the object store) and runs the build's pieces through a
:class:`~lucid_widgets.atlas.tasks.TaskRunner`, the same task functions as the local executor.
The pool outlives a build: a later build in this process with the same model (weights hash),
device and actor count reuses it, so actor start, model load and the first-run costs are paid
once, as the local executor pays them once for its already loaded model. Each build sends its
plans, settings and dataset once through the object store; an actor reads them at its first
piece of that build. :func:`shutdown_workers` (or ``ray.shutdown``, or the end of the process)
releases the pool; a build that fails or is interrupted releases it too.

A render task goes out as its micro-batches (:func:`~lucid_widgets.atlas.tasks.task_parts`):
pieces of a few seconds keep every actor busy to the end, deeper layers (slower) first. The
driver keeps one piece in flight per actor, merges a task's pieces when the last arrives, commits
it to the store and feeds the progress bar. An actor that dies is restarted by Ray and its piece
submitted again (``MAX_RETRIES`` times), so every task is committed exactly once.
"""

from __future__ import annotations

import os
import sys
import threading
import time
import uuid
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from lucid_widgets.atlas.plan import LayerPlan, Settings, Task
from lucid_widgets.atlas.store import Atlas
from lucid_widgets.atlas.tasks import TaskOutput, TaskRunner, merge_parts, micro_batch, task_parts
from lucid_widgets.optvis.render import StopSignal, should_stop

__all__ = ["AtlasWorker", "run_ray", "shutdown_workers", "start_ray", "worker_pids"]

MAX_RETRIES = 3
_PACKAGE_ROOT = str(Path(__file__).resolve().parents[2])
_KIND_ORDER = {"shard": 0, "links": 1, "render": 2}  # big pieces first: a short tail


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
    """The body of a Ray actor (``ray.remote(AtlasWorker)``): a model and its task runner.

    The model is ``load(zoo_name)``, or else ``model``: the user's module, shipped once through
    the object store (the driver's pool keeps its reference for restarts). ``threads`` is
    torch's thread count in the actor (one per CPU it reserves); ``None`` keeps torch's default
    (GPU actors).
    """

    def __init__(self, model, zoo_name: str | None, device: str | None, threads: int | None):
        if threads is not None:
            torch.set_num_threads(threads)
        if zoo_name is not None:
            from lucid_widgets.zoo import load

            model = load(zoo_name)
        self.model = model if device is None else model.to(device)
        self.build: str | None = None  # the build whose runner is loaded
        self.runner: TaskRunner | None = None

    def pid(self) -> int:
        return os.getpid()

    def threads(self) -> int:
        return torch.get_num_threads()

    def compute(self, build: str, config: list, task: Task, part: tuple[int, ...] | None):
        """One piece of ``task``; ``config`` is ``[ref]`` of the build's ``(plans, settings,
        dataset)``, read at the actor's first piece of ``build`` (and after a restart)."""
        if build != self.build:
            import ray

            plans, settings, dataset = ray.get(config[0])
            self.runner, self.build = TaskRunner(self.model, plans, settings, dataset), build
        return self.runner.compute(task, part=part)


@dataclass
class _Pool:
    key: tuple  # (weights hash, zoo name, device, actor count)
    session: str  # the Ray session the actors live in
    device: str | None
    actors: list
    model_ref: object  # the shipped model, kept alive while the actors may restart


_POOL: _Pool | None = None  # this process's pool of actors
_POOL_LOCK = threading.RLock()  # one Ray build at a time uses the pool


def _session(ray) -> str:
    context = ray.get_runtime_context()
    try:
        node = context.get_node_id()
    except Exception:  # noqa: BLE001 (a Ray client connection has no node of its own)
        node = ""
    return f"{context.get_job_id()}:{node}"


def _pool(ray, model: nn.Module, zoo_name: str | None, digest: str, workers: int | None):
    """This process's pool when it fits the build, else a new one (the old one released)."""
    global _POOL
    resources = ray.cluster_resources()
    gpus = int(resources.get("GPU", 0))
    count = int(workers or gpus or max(1, int(resources.get("CPU", 1))))
    device = "cuda" if gpus else None
    key, session = (digest, zoo_name, device, count), _session(ray)
    if _POOL is not None and _POOL.key == key and _POOL.session == session:
        return _POOL
    shutdown_workers()
    options = {"num_gpus": 1, "num_cpus": 1} if gpus else {"num_cpus": 1}
    remote = ray.remote(max_restarts=-1, max_task_retries=0, **options)(AtlasWorker)
    model_ref = None if zoo_name is not None else ray.put(model)
    threads = None if gpus else 1
    actors = [remote.remote(model_ref, zoo_name, device, threads) for _ in range(count)]
    _POOL = _Pool(key, session, device, actors, model_ref)
    return _POOL


def shutdown_workers() -> int:
    """Release this process's pool of Ray actors (``lw.atlas.shutdown_workers()``).

    The actors keep the model in memory and hold their CPUs (or GPUs) of the cluster between
    builds; this ends them (after the Ray build running in another thread, if any). Returns
    how many were ended (0 when there was no pool, or when Ray was shut down already, which
    ended them).
    """
    global _POOL
    with _POOL_LOCK:  # after the build running in another thread, if any
        pool, _POOL = _POOL, None
    if pool is None:
        return 0
    try:
        ray = _ray()
        if not ray.is_initialized() or _session(ray) != pool.session:
            return 0
    except ImportError:
        return 0
    for actor in pool.actors:
        ray.kill(actor, no_restart=True)
    _await_exit(ray, pool.actors)
    return len(pool.actors)


def _await_exit(ray, actors: list, timeout: float = 30.0) -> None:
    """Return once every killed actor answers calls with its death: ``ray.kill`` only asks
    the cluster, and a call sent at once could still run on the dying actor."""
    deadline = time.monotonic() + timeout
    waiting = list(actors)
    while waiting and time.monotonic() < deadline:
        alive = []
        for actor in waiting:
            try:
                ray.get(actor.pid.options(max_task_retries=0).remote(), timeout=timeout)
                alive.append(actor)
            except (ray.exceptions.RayActorError, ray.exceptions.GetTimeoutError):
                pass
        if alive:
            time.sleep(0.05)
        waiting = alive


def worker_pids() -> list[int]:
    """The process ids of the pool's actors (empty without a pool): to see it is reused."""
    if _POOL is None:
        return []
    ray = _ray()
    return ray.get([_probe(actor) for actor in _POOL.actors])


def _probe(actor):
    """``actor.pid()``, answered once the actor is up (after a restart too)."""
    return actor.pid.options(max_task_retries=-1).remote()


@dataclass(frozen=True)
class _Piece:
    task: Task
    index: int  # which of the task's parts
    part: tuple[int, ...] | None


def _pieces(tasks: Sequence[Task], plans: Sequence[LayerPlan], micro: int) -> deque[_Piece]:
    """Every task's parts: dataset shards, connections, then renders of deeper layers first."""
    depth = {plan.name: position for position, plan in enumerate(plans)}  # forward order
    ordered = sorted(tasks, key=lambda t: (_KIND_ORDER.get(t.kind, 3), -depth.get(t.layer, 0)))
    return deque(
        _Piece(task, index, part)
        for task in ordered
        for index, part in enumerate(task_parts(task, micro))
    )


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
    digest: str | None = None,
) -> None:
    """Run ``tasks`` on the pool of Ray actors and commit each to ``atlas`` as it completes.

    ``digest`` is the model's weights hash (``model_digest``, computed when not given): with the
    zoo name, device and ``workers`` it decides whether the pool of an earlier build fits.
    """
    if not tasks:
        return
    ray = start_ray(address)
    if digest is None:
        from lucid_widgets.dataset.keys import model_digest

        digest = model_digest(model)
    with _POOL_LOCK:  # a second Ray build of this process (another thread) waits its turn
        pool = _pool(ray, model, zoo_name, digest, workers)
        _run_on_pool(ray, pool, plans, settings, dataset, tasks, atlas, bar, stop, callback)


def _run_on_pool(ray, pool: _Pool, plans, settings, dataset, tasks, atlas, bar, stop, callback):
    config = [ray.put((plans, settings, dataset))]  # in a list: actors fetch it once per build
    pieces = _pieces(tasks, plans, micro_batch(pool.device, settings))
    finish, finished = _committer(atlas, pieces, bar, callback), False
    try:
        scheduler = _Scheduler(ray, pool.actors, uuid.uuid4().hex, config, pieces)
        scheduler.run(stop, finish)
        finished = not scheduler.dropped  # a pool that lost an actor is not kept
    finally:
        if not finished:  # an error or an interrupt: no half-used pool stays behind
            shutdown_workers()


def _committer(atlas: Atlas, pieces: Sequence[_Piece], bar, callback):
    """A function taking each finished piece; it commits a task when its last piece arrives."""
    counts: dict[str, int] = {}
    for piece in pieces:
        counts[piece.task.id] = counts.get(piece.task.id, 0) + 1
    outputs: dict[str, dict[int, TaskOutput]] = {}

    def finish(piece: _Piece, output: TaskOutput) -> None:
        done = outputs.setdefault(piece.task.id, {})
        done[piece.index] = output
        if len(done) < counts[piece.task.id]:
            return
        merged = merge_parts(piece.task, [done[index] for index in sorted(done)])
        del outputs[piece.task.id]
        atlas.commit(merged)
        if bar is not None:
            bar.update(1)
        if callback is not None:
            callback(merged)

    return finish


class _Scheduler:
    """One piece in flight per actor until the queue is empty (or ``stop``: drain and end).

    A piece whose actor died goes back to the front of the queue (``MAX_RETRIES`` times at
    most); the actor takes pieces again once a probe (:func:`_probe`) says Ray restarted it. An
    actor whose probes fail ``MAX_RETRIES`` times (dead for good) is dropped (``dropped``).
    """

    def __init__(self, ray, actors: list, build: str, config: list, queue: deque) -> None:
        self.ray, self.build, self.config, self.queue = ray, build, config, queue
        self.idle = deque(actors)
        self.running: dict = {}  # ref -> (actor, piece, or None for a probe)
        self.attempts: dict[tuple[str, int], int] = {}
        self.failures: dict[int, int] = {}  # id(actor) -> failures since it last worked
        self.errors = tuple(
            getattr(ray.exceptions, name)
            for name in ("RayActorError", "WorkerCrashedError", "ActorUnavailableError")
            if hasattr(ray.exceptions, name)
        )

    @property
    def dropped(self) -> int:
        return sum(failures > MAX_RETRIES for failures in self.failures.values())

    def run(self, stop: StopSignal, finish) -> None:
        while True:
            while self.queue and self.idle and not should_stop(stop):
                actor, piece = self.idle.popleft(), self.queue.popleft()
                ref = actor.compute.remote(self.build, self.config, piece.task, piece.part)
                self.running[ref] = (actor, piece)
            if not any(piece is not None for _, piece in self.running.values()):
                if not self.queue or should_stop(stop):
                    return
                if not self.running:
                    raise RuntimeError("Every Ray actor of the atlas build died; none is left.")
            (ref,), _ = self.ray.wait(list(self.running), num_returns=1)
            actor, piece = self.running.pop(ref)
            try:
                output = self.ray.get(ref)
            except self.errors as error:
                self._failed(actor, piece, error)
                continue
            self.failures.pop(id(actor), None)
            self.idle.append(actor)
            if piece is not None:
                finish(piece, output)

    def _failed(self, actor, piece: _Piece | None, error: Exception) -> None:
        if piece is not None:
            key = (piece.task.id, piece.index)
            self.attempts[key] = self.attempts.get(key, 0) + 1
            if self.attempts[key] > MAX_RETRIES:
                raise error
            self.queue.appendleft(piece)  # another actor, or this one restarted, runs it
        failures = self.failures[id(actor)] = self.failures.get(id(actor), 0) + 1
        if failures > MAX_RETRIES:
            return  # dropped
        self.running[_probe(actor)] = (actor, None)  # back to work once restarted
