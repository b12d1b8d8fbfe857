"""What the widget's worker runs: requests from the widget, run state, the thumbnail cache."""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from lucid_widgets.widget import engine
from lucid_widgets.widget.frames import LossCurve

__all__ = ["GridJob", "GridRequest", "PreviewJob", "PreviewRequest", "ThumbnailCache", "error_info"]


@dataclass
class PreviewRequest:
    """A new preview run: the objective (without the diversity term), its text, settings and
    fixed engine objects (``param_f``, ``optimizer``, ...)."""

    objective: Any
    text: str
    config: engine.PreviewConfig
    overrides: dict = field(default_factory=dict)
    diversity_layer: str | None = None
    # prepare(model) -> (objective, extra overrides), called in the worker thread before the run
    # is built (objectives that need a forward pass of their own, like a caricature's target)
    prepare: Any = None


@dataclass
class GridRequest:
    """Render (or show from cache) one page of a layer's unit grid."""

    key: tuple
    layer: str
    units: list[int]
    kind: str
    config: engine.GridConfig
    page: int = 0
    # on_rendered(units, pixels (b, H, W, C) uint8), called in the worker after each batch
    # (the Microscope on an atlas writes what it rendered back into the store)
    on_rendered: Any = None


def error_info(error: Exception) -> dict[str, Any]:
    """An ``objective_error`` value for an error found while running (no text position)."""
    return {"message": f"{type(error).__name__}: {error}", "position": -1, "end": -1,
            "expected": "", "suggestions": []}  # fmt: skip


class ThumbnailCache:
    """Rendered thumbnails (LRU): (grid key, unit) -> (encoded bytes, ``(H, W, C)`` uint8)."""

    def __init__(self, limit: int = 8192) -> None:
        self.limit = limit
        self._items: OrderedDict[tuple, tuple[bytes, np.ndarray]] = OrderedDict()
        self._lock = threading.Lock()

    def put(self, key: tuple, unit: int, data: bytes, pixels: np.ndarray) -> None:
        with self._lock:
            self._items[(key, unit)] = (data, pixels)
            self._items.move_to_end((key, unit))
            while len(self._items) > self.limit:
                self._items.popitem(last=False)

    def get(self, key: tuple, unit: int) -> tuple[bytes, np.ndarray] | None:
        with self._lock:
            return self._items.get((key, unit))

    def units(self, key: tuple) -> dict[int, tuple[bytes, np.ndarray]]:
        """Every cached unit of one grid key."""
        with self._lock:
            return {unit: item for (k, unit), item in self._items.items() if k == key}


class PreviewJob:
    """A live preview run and its bookkeeping (worker thread only)."""

    def __init__(self, run: Any, request: PreviewRequest) -> None:
        self.run = run
        self.request = request
        self.text = request.text
        self.objective = run.objective
        self.good_objective = run.objective  # last objective that took a step without error
        self.good_text = request.text
        self.total = request.config.steps
        self.curve = LossCurve()
        self.active = True
        self.state = "running"
        self.offset = 0  # steps taken by the runs closed before this one (pause, resume)

    @property
    def step(self) -> int:
        return self.offset + int(self.run.step_count)


class GridJob:
    """One grid page being rendered, batch by batch (worker thread only)."""

    def __init__(self, request: GridRequest, missing: list[int]) -> None:
        self.request = request
        self.pending = missing
        self.batch: Any = None
        self.batch_units: list[int] = []
        self.batch_steps = 0
        self.active = bool(missing)
