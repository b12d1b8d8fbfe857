"""The widget's worker thread: one per widget, owning every torch call the widget makes.

Message handlers and Python calls never touch torch state: they put commands on a queue. Between
two optimizer steps the worker applies every queued command, then takes one step of the live
preview (which has priority) or of the grid batch in progress. So Stop and objective edits land
within one step, and closing the widget ends the thread.
"""

from __future__ import annotations

import queue
import threading
import traceback
import weakref
from collections.abc import Callable
from typing import Any

from lucid_widgets.optvis.arrays import to_uint8
from lucid_widgets.widget import engine
from lucid_widgets.widget.frames import Throttle, encode, pack_thumbnails
from lucid_widgets.widget.jobs import (
    GridJob,
    GridRequest,
    PreviewJob,
    PreviewRequest,
    ThumbnailCache,
    error_info,
)
from lucid_widgets.widget.publisher import FramePublisher

__all__ = ["Worker"]

Publish = Callable[..., None]


class Worker:
    """Runs the preview and the grid of one widget in a daemon thread.

    Parameters
    ----------
    model
        The network.
    owner
        The widget, held weakly; ``owner.publish(**traits)`` is called from the worker thread to
        update it (in one message).
    cache
        Where grid thumbnails go (shared with the widget, which reads it).
    clock
        Time source for frame throttling (tests inject a fake one).
    """

    def __init__(
        self,
        model: Any,
        owner: Any,
        cache: ThumbnailCache,
        clock: Callable[[], float] | None = None,
        fps: float = 20.0,
        frame_format: str = "jpeg",
    ) -> None:
        self.model = model
        self._owner = weakref.ref(owner)
        self.cache = cache
        self.frame_format = frame_format
        options = {} if clock is None else {"clock": clock}
        self.publisher = FramePublisher(self._publish, Throttle(1.0 / fps, **options), frame_format)
        self.grid_throttle = Throttle(0.25, **options)
        self.commands: queue.SimpleQueue = queue.SimpleQueue()
        self._condition = threading.Condition()
        self._pending = 0
        self._busy = False
        self.preview: PreviewJob | None = None
        self.grid: GridJob | None = None
        self.latest: Any = None  # latest preview image, (B, C, H, W) tensor in [0, 1]
        # set by stop() / close() from any thread: a long call (a dataset pass) checks it and
        # ends early; cleared when the queued "stop" is applied (calls queued later run)
        self.interrupt = threading.Event()
        self.thread = threading.Thread(target=self._loop, name="lucid-widget-worker", daemon=True)

    def start(self) -> None:
        """Start the worker and frame threads (commands submitted before wait in the queue)."""
        self.publisher.start()
        self.thread.start()

    # ---- called from any thread -------------------------------------------------------------
    def submit(self, command: str, *args: Any) -> None:
        """Queue ``command`` for the worker (applied before its next step)."""
        with self._condition:
            self._pending += 1
        self.commands.put((command, args))

    def stop(self) -> None:
        """Halt the preview and the grid after the step in progress, and any running call."""
        self.interrupt.set()
        self.submit("stop")

    def close(self, timeout: float | None = 10.0) -> None:
        """End the thread (closing every run, which restores the model) and wait for it."""
        self.interrupt.set()
        self.submit("close")
        if self.thread.ident is None:  # never started: nothing runs, nothing to restore
            self.publisher.close(timeout)
            return
        if threading.current_thread() is not self.thread:
            self.thread.join(timeout)
            self.publisher.close(timeout)

    def wait(self, timeout: float | None = None) -> bool:
        """Block until every queued command is applied and nothing runs; False on timeout."""
        with self._condition:
            idle = self._condition.wait_for(
                lambda: (self._pending == 0 and not self._busy) or not self.thread.is_alive(),
                timeout,
            )
        return idle and self.publisher.flush(timeout)

    @property
    def alive(self) -> bool:
        return self.thread.is_alive()

    # ---- worker thread ----------------------------------------------------------------------
    def _publish(self, **traits: Any) -> None:
        owner = self._owner()
        if owner is not None:
            owner.publish(**traits)

    def _has_work(self) -> bool:
        return bool((self.preview and self.preview.active) or (self.grid and self.grid.active))

    def _set_busy(self, busy: bool) -> None:
        with self._condition:
            self._busy = busy
            self._condition.notify_all()

    def _loop(self) -> None:
        try:
            while self._owner() is not None:
                try:
                    command = self.commands.get(block=not self._has_work(), timeout=None)
                except queue.Empty:
                    command = None
                if command is not None:
                    keep_going = self._apply(*command)
                    with self._condition:
                        self._pending -= 1
                        self._busy = self._has_work()
                        self._condition.notify_all()
                    if not keep_going:
                        return
                    continue
                if self.preview is not None and self.preview.active:
                    self._preview_step()
                elif self.grid is not None and self.grid.active:
                    self._grid_step()
                self._set_busy(self._has_work())
        finally:
            self._close_runs()
            self._set_busy(False)

    def _apply(self, command: str, args: tuple) -> bool:
        try:
            handler = getattr(self, f"_on_{command}")
            return handler(*args) is not False
        except Exception as error:  # noqa: BLE001 (reported to the user, the worker lives on)
            self._publish(message=f"{type(error).__name__}: {error}")
            traceback.print_exception(error)
            return True

    def _on_close(self) -> bool:
        return False

    def _on_stop(self) -> None:
        self.interrupt.clear()
        if self.preview is not None and self.preview.active:
            self._finish_preview("paused")
        if self.grid is not None and self.grid.active:
            self.grid.active = False
            self._publish_grid_progress("stopped", force=True)

    def _on_call(self, function: Callable[..., Any], *args: Any) -> None:
        """Run ``function(*args)`` here, between two steps (passes that use the model)."""
        function(*args)

    def _on_preview(self, request: PreviewRequest) -> None:
        self._close_preview()
        if request.prepare is not None:
            try:
                request.objective, extra = request.prepare(self.model)
            except Exception as error:  # noqa: BLE001 (shown in the widget)
                message = f"{type(error).__name__}: {error}"
                self._publish(status="error", running=False, message=message)
                return
            request.overrides.update(extra)
            request.prepare = None
        full = engine.with_diversity(
            request.objective, request.diversity_layer, request.config.diversity,
            request.config.batch,
        )  # fmt: skip
        try:
            run = engine.make_preview(self.model, full, request.config, request.overrides)
        except Exception as error:  # noqa: BLE001 (shown in the widget)
            self._publish(status="error", running=False, message=f"{type(error).__name__}: {error}")
            return
        self.preview = PreviewJob(run, request)
        self.publisher.flush()  # the old run's last frame must not land after this
        self.publisher.throttle.reset()
        self._publish(
            status="running", running=True, message="", step=0, total_steps=self.preview.total,
            losses=[], objective_applied=request.text, objective_error={},
        )  # fmt: skip

    def _on_objective(self, objective: Any, text: str, diversity_layer: str | None) -> None:
        preview = self.preview
        if preview is None:
            return
        request = preview.request
        full = engine.with_diversity(
            objective, diversity_layer, request.config.diversity, request.config.batch
        )
        try:
            preview.run.objective = full
        except (KeyError, ValueError, TypeError) as error:
            self._publish(objective_error=error_info(error))
            return
        request.objective, request.diversity_layer = objective, diversity_layer
        preview.objective, preview.text = preview.run.objective, text
        self._publish(objective_applied=text, objective_error={})

    def _on_live_settings(self, config: engine.PreviewConfig, diversity_layer: str | None) -> None:
        preview = self.preview
        if preview is None:
            return
        engine.set_learning_rate(preview.run, config.lr)
        engine.set_transforms(preview.run, config.transforms)
        old_weight = preview.request.config.diversity
        preview.request.config, preview.request.diversity_layer = config, diversity_layer
        if config.diversity != old_weight:
            self._on_objective(preview.request.objective, preview.text, diversity_layer)
        preview.total = max(config.steps, preview.step) if preview.active else config.steps
        self._publish(total_steps=preview.total)

    def _on_resume(self) -> None:
        preview = self.preview
        if preview is None or preview.active:
            return
        if preview.step >= preview.total:  # finished: run as many steps again
            preview.total = preview.step + preview.request.config.steps
        if preview.run.closed:
            steps_done = preview.step
            request = preview.request
            preview.run = engine.resume_preview(
                self.model, preview.run, request.config, request.overrides, steps_done
            )
            preview.offset = steps_done
        preview.active, preview.state = True, "running"
        self.publisher.flush()
        self.publisher.throttle.reset()
        self._publish(status="running", running=True, total_steps=preview.total)

    def _on_grid(self, request: GridRequest) -> None:
        if self.grid is not None and self.grid.batch is not None:
            self.grid.batch.close()
        cached = self.cache.units(request.key)
        missing = [unit for unit in request.units if unit not in cached]
        self.grid = GridJob(request, missing)
        self._publish_grid_page("rendering" if missing else "done")

    def _on_grid_resume(self) -> None:
        if self.grid is not None and (self.grid.pending or self.grid.batch is not None):
            self.grid.active = True
            self._publish_grid_progress("rendering", force=True)

    # ---- stepping ---------------------------------------------------------------------------
    def _preview_step(self) -> None:
        preview = self.preview
        try:
            step = preview.run.step()
        except Exception as error:  # noqa: BLE001
            self._preview_failed(preview, error)
            return
        preview.good_objective, preview.good_text = preview.objective, preview.text
        preview.curve.append(step.loss)
        self.latest = step.image  # (B, C, H, W): a reference, no copy
        if preview.step >= preview.total:
            self._finish_preview("done")
        else:  # the publisher thread encodes it when the throttle allows (latest wins)
            self.publisher.post(
                step.image, preview.curve, step=preview.step, total_steps=preview.total
            )

    def _preview_failed(self, preview: PreviewJob, error: Exception) -> None:
        message = f"{type(error).__name__}: {error}"
        if preview.objective is not preview.good_objective:  # a new objective broke: revert it
            preview.run.objective = preview.good_objective
            preview.objective, preview.text = preview.good_objective, preview.good_text
            self._publish(objective_error=error_info(error), objective_applied=preview.text)
            return
        preview.active, preview.state = False, "error"
        preview.run.close()
        self._publish(status="error", running=False, message=message)
        traceback.print_exception(error)

    def _finish_preview(self, state: str) -> None:
        preview = self.preview
        preview.active, preview.state = False, state
        self.latest = preview.run.image()  # (B, C, H, W) in [0, 1]
        preview.run.close()  # the model is the user's again until Resume
        self.publisher.post(
            self.latest, preview.curve, final=True, step=preview.step,
            total_steps=preview.total, status=state, running=False,
        )  # fmt: skip

    def _grid_step(self) -> None:
        grid = self.grid
        request = grid.request
        try:
            if grid.batch is None:
                grid.batch_units = grid.pending[: request.config.batch_size]
                del grid.pending[: len(grid.batch_units)]
                grid.batch_steps = 0
                grid.batch = engine.make_grid_batch(
                    self.model, request.layer, grid.batch_units, request.kind, request.config
                )
            grid.batch.step()
            grid.batch_steps += 1
            if grid.batch_steps >= request.config.steps:
                self._finish_batch(grid)
            else:
                self._publish_grid_progress("rendering")
        except Exception as error:  # noqa: BLE001
            if grid.batch is not None:
                grid.batch.close()
            grid.batch, grid.active = None, False
            self._publish(message=f"grid: {type(error).__name__}: {error}")
            self._publish_grid_progress("error", force=True)
            traceback.print_exception(error)

    def _finish_batch(self, grid: GridJob) -> None:
        pixels = to_uint8(grid.batch.image())  # (b, H, W, C)
        grid.batch.close()
        grid.batch = None
        for unit, picture in zip(grid.batch_units, pixels, strict=True):
            self.cache.put(grid.request.key, unit, encode(picture, "jpeg", quality=85), picture)
        if grid.request.on_rendered is not None:
            grid.request.on_rendered(list(grid.batch_units), pixels)
        grid.active = bool(grid.pending)
        self._publish_grid_page("rendering" if grid.active else "done")

    def _publish_grid_page(self, state: str) -> None:
        grid = self.grid
        cached = self.cache.units(grid.request.key)
        blob, index = pack_thumbnails(
            (unit, cached[unit][0]) for unit in grid.request.units if unit in cached
        )
        self._publish(grid_blob=blob, grid_index=index, grid_progress=self._progress(state))
        self.grid_throttle.sent()

    def _publish_grid_progress(self, state: str, force: bool = False) -> None:
        if force or self.grid_throttle.ready():
            self._publish(grid_progress=self._progress(state))
            self.grid_throttle.sent()

    def _progress(self, state: str) -> dict[str, Any]:
        grid = self.grid
        request = grid.request
        steps = request.config.steps
        return {
            "layer": request.layer, "page": request.page, "state": state,
            "rendered": sum(1 for unit in request.units if self.cache.get(request.key, unit)),
            "total": len(request.units), "batch": list(grid.batch_units) if grid.batch else [],
            "batch_step": grid.batch_steps if grid.batch else 0, "steps": steps,
        }  # fmt: skip

    def _close_preview(self) -> None:
        if self.preview is not None:
            self.preview.run.close()
            self.preview = None

    def _close_runs(self) -> None:
        try:
            self._close_preview()
            if self.grid is not None and self.grid.batch is not None:
                self.grid.batch.close()
                self.grid.batch = None
        except Exception:  # noqa: BLE001 (interpreter shutdown)
            traceback.print_exc()
