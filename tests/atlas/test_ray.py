"""The Ray executor on a real local Ray cluster (2 CPUs), no mocks: same atlas, survives a kill.

Ray is imported only by the session fixture, and these tests run last (tests/atlas/conftest.py):
importing Ray changes how torch's worker threads of ``iter_units(workers=2)`` compute in this
process, which other tests compare against one worker.
"""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

import numpy as np
import pytest

from lucid_widgets import atlas as lw_atlas
from lucid_widgets.atlas import distributed

ROOT = Path(__file__).resolve().parents[2]


def _start(ray, paths: str) -> None:
    ray.init(
        num_cpus=2,
        num_gpus=0,
        include_dashboard=False,
        object_store_memory=256 * 2**20,
        runtime_env={"env_vars": {"PYTHONPATH": paths}},
        log_to_driver=False,
    )


@pytest.fixture(scope="session")
def ray_cluster():
    """A real local Ray cluster; started again (3 tries) when a loaded machine makes its raylet
    miss the dashboard agent's fixed 15 s start-up window (ray-project/ray#65983)."""
    ray = pytest.importorskip("ray")
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    os.environ.setdefault("RAY_raylet_start_wait_time_s", "45")
    paths = os.pathsep.join(dict.fromkeys([str(ROOT), str(ROOT / "tests"), *sys.path]))
    for attempt in range(3):
        try:
            _start(ray, paths)
            break
        except Exception as error:  # Ray raises a bare Exception on a start-up timeout
            ray.shutdown()
            if attempt == 2:
                pytest.skip(f"Ray did not start on this machine: {error}")
    yield ray
    ray.shutdown()


def _same(first, second) -> None:
    for layer in first.layers:
        for unit in first.units(layer):
            for view in first.views:
                np.testing.assert_array_equal(
                    first.image(layer, unit, view), second.image(layer, unit, view)
                )
            assert first.examples(layer, unit) == second.examples(layer, unit)


def test_a_ray_build_equals_the_local_build(ray_cluster, tiny_net, tmp_path, fast, images):
    options = dict(
        units=range(4),
        views=("channel",),
        dataset=images,
        k=2,
        shard_size=5,
        connections=False,
        **fast,
    )
    local = lw_atlas.build(tiny_net, tmp_path / "local", **options)
    distributed = lw_atlas.build(tiny_net, tmp_path / "ray", executor="ray", **options)
    assert distributed.complete and distributed.missing() == []
    pids = {
        record["meta"]["pid"] for record in distributed.records.values() if "pid" in record["meta"]
    }
    assert os.getpid() not in pids  # the work ran in the actors
    _same(local, distributed)


def test_a_killed_actor_does_not_lose_or_repeat_a_unit(ray_cluster, tiny_net, tmp_path, fast):
    killed: list[int] = []
    finished: list[str] = []

    def kill_first_worker(output):
        finished.append(output.task.id)
        if not killed:
            killed.append(output.meta["pid"])
            os.kill(output.meta["pid"], signal.SIGKILL)

    options = dict(units=range(8), views=("channel",), connections=False, **fast)
    store = lw_atlas.build(
        tiny_net, tmp_path, executor="ray", callback=kill_first_worker, **options
    )
    assert killed and store.complete and store.check() == []
    assert sorted(finished) == sorted(set(finished)) == sorted(store.records)  # each task once
    claimed = [p for record in store.records.values() for p in record["files"]]
    assert len(claimed) == len(set(claimed)) == 2 * 8  # every unit of both layers, once
    pids = {record["meta"]["pid"] for record in store.records.values()}
    assert killed[0] in pids and len(pids) >= 2  # work continued in another (restarted) process


def _pids(store) -> set[int]:
    meta = [record["meta"] for record in store.records.values()]
    return {pid for m in meta if "pid" in m for pid in m.get("pids", [m["pid"]])}


def test_a_second_build_reuses_the_pool(ray_cluster, tiny_net, tmp_path, fast):
    options = dict(units=range(8), views=("channel", "negative"), connections=False, **fast)
    first = lw_atlas.build(tiny_net, tmp_path / "first", executor="ray", **options)
    pool = distributed.worker_pids()
    assert len(pool) == 2 and _pids(first) <= set(pool)
    threads = ray_cluster.get([a.threads.remote() for a in distributed._POOL.actors])
    assert threads == [1, 1]  # one torch thread per reserved CPU
    second = lw_atlas.build(tiny_net, tmp_path / "second", executor="ray", **options)
    assert distributed.worker_pids() == pool  # the same actors: no new start, no model load
    assert _pids(second) == set(pool)  # both actors worked
    local = lw_atlas.build(tiny_net, tmp_path / "local", **options)
    _same(local, second)
    _same(local, first)


def test_another_model_gets_a_new_pool_and_release_ends_it(ray_cluster, tiny_net, tmp_path, fast):
    options = dict(units=range(4), views=("channel",), connections=False, **fast)
    lw_atlas.build(tiny_net, tmp_path / "a", executor="ray", **options)
    before = distributed.worker_pids()
    other = type(tiny_net)()  # other weights: another weights hash
    lw_atlas.build(other, tmp_path / "b", executor="ray", **options)
    after = distributed.worker_pids()
    assert after and not set(after) & set(before)
    actors = list(distributed._POOL.actors)
    assert lw_atlas.shutdown_workers() == 2
    assert distributed.worker_pids() == [] and lw_atlas.shutdown_workers() == 0
    with pytest.raises(ray_cluster.exceptions.RayActorError):
        ray_cluster.get(actors[0].pid.remote(), timeout=60)


def test_an_error_mid_build_releases_the_pool(ray_cluster, tiny_net, tmp_path, fast):
    def fail(output):
        raise RuntimeError("the callback broke")

    options = dict(units=range(8), views=("channel",), connections=False, **fast)
    lw_atlas.build(tiny_net, tmp_path / "warm", executor="ray", **options)
    actors = list(distributed._POOL.actors)
    with pytest.raises(RuntimeError, match="the callback broke"):
        lw_atlas.build(tiny_net, tmp_path / "broken", executor="ray", callback=fail, **options)
    assert distributed._POOL is None
    with pytest.raises(ray_cluster.exceptions.RayActorError):
        ray_cluster.get(actors[0].pid.remote(), timeout=60)
    store = lw_atlas.build(tiny_net, tmp_path / "broken", executor="ray", **options)
    assert store.complete and store.check() == []  # a fresh pool finishes the build
