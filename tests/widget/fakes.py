"""Fakes for the widget tests: a recording comm, a steppable fake engine, a fake clock.

The fixtures that install them live in ``conftest.py`` beside this file.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

import torch
from comm.base_comm import BaseComm


class RecordingComm(BaseComm):
    """A comm that records every message the widget publishes (type, data, buffers)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.messages: list[tuple[str, dict, list[bytes]]] = []
        self._record_lock = threading.Lock()
        super().__init__(*args, **kwargs)

    def publish_msg(self, msg_type, data=None, metadata=None, buffers=None, **keys):  # noqa: D102
        with self._record_lock:
            self.messages.append((msg_type, data or {}, [bytes(b) for b in buffers or []]))

    def updates(self) -> list[tuple[dict, list[bytes], list]]:
        """(state, buffers, buffer_paths) of every ``update`` message sent so far."""
        with self._record_lock:
            found = []
            for msg_type, data, buffers in self.messages:
                if msg_type == "comm_msg" and data.get("method") == "update":
                    found.append((data["state"], buffers, data.get("buffer_paths", [])))
            return found

    def receive(self, state: dict, buffers: list | None = None, paths: list | None = None) -> None:
        """Simulate an ``update`` from the front end (binary values arrive as memoryview)."""
        data = {"method": "update", "state": state, "buffer_paths": paths or []}
        self.handle_msg({"content": {"data": data}, "buffers": buffers or []})

    def receive_custom(self, content: dict) -> None:
        """Simulate ``model.send(content)`` from the front end."""
        data = {"method": "custom", "content": content}
        self.handle_msg({"content": {"data": data}, "buffers": []})


class FakeClock:
    """Time that moves only when a fake step says so (throttling without timing)."""

    def __init__(self) -> None:
        self.now = 0.0
        self._lock = threading.Lock()

    def __call__(self) -> float:
        with self._lock:
            return self.now

    def advance(self, seconds: float) -> None:
        with self._lock:
            self.now += seconds


@dataclass
class FakeStep:
    step: int
    loss: float
    image: torch.Tensor
    objective: str


class FakeRun:
    """Stands in for ``render.Optimization``: counts steps, records objective swaps."""

    def __init__(self, engine: FakeEngine, objective: Any, size: int, batch: int, lr: float):
        self.engine = engine
        self._objective = objective
        self.objective_sets = 0
        self.size, self.batch = size, batch
        self.step_count = 0
        self.closed = False
        self.resumed_from: FakeRun | None = None
        self.transforms: Any = None
        self.optimizer = type("Optimizer", (), {"param_groups": [{"lr": lr}]})()

    @property
    def objective(self) -> Any:
        return self._objective

    @objective.setter
    def objective(self, value: Any) -> None:
        self.objective_sets += 1
        self._objective = value

    def step(self) -> FakeStep:
        assert not self.closed, "stepped a closed run"
        for hook in list(self.engine.hooks):
            hook(self)
        name = getattr(self._objective, "name", str(self._objective))
        if "explode" in name or "class_logit" in name:
            raise RuntimeError("boom: this objective fails at run time")
        self.step_count += 1
        self.engine.total_steps += 1
        self.engine.clock.advance(self.engine.seconds_per_step)
        image = torch.rand(self.batch, 3, self.size, self.size)
        return FakeStep(self.step_count, -float(self.step_count), image, name)

    def image(self) -> torch.Tensor:
        """A distinct value in every pixel, kept as ``final_image`` (a transposition shows)."""
        count = self.batch * 3 * self.size * self.size
        values = torch.arange(count, dtype=torch.float32) / count
        self.final_image = values.reshape(self.batch, 3, self.size, self.size)
        return self.final_image

    def close(self) -> None:
        self.closed = True


class FakeEngine:
    def __init__(self) -> None:
        self.clock = FakeClock()
        self.seconds_per_step = 0.01
        self.hooks: list = []
        self.runs: list[FakeRun] = []
        self.grid_runs: list[tuple[str, list[int], str, FakeRun]] = []
        self.total_steps = 0

    def make_preview(self, model, objective, config, overrides=None):
        run = FakeRun(self, objective, config.size, config.batch, config.lr)
        self.runs.append(run)
        return run

    def resume_preview(self, model, previous, config, overrides, steps_done):
        run = FakeRun(self, previous.objective, previous.size, previous.batch, config.lr)
        run.optimizer = previous.optimizer
        run.resumed_from = previous
        self.runs.append(run)
        return run

    def make_grid_batch(self, model, layer, units, kind, config):
        run = FakeRun(self, f"{kind}s({layer})", config.size, len(units), 0.05)
        self.grid_runs.append((layer, list(units), kind, run))
        return run
