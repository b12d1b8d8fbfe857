"""What every widget of the package shares: the live run, its worker, frames, messages, cleanup.

:class:`WidgetBase` owns one :class:`~lucid_widgets.widget.worker.Worker` (a thread that makes
every torch call, so a cell returns at once and Stop or an objective edit lands within one
optimizer step) and its frame publisher; it dispatches the front end's messages, serializes trait
writes from several threads, and closes everything on :meth:`~WidgetBase.close`. The threads start
only once a constructor has succeeded (:meth:`WidgetBase._constructing`). State lives in synced
traits (binary images included), so a saved notebook or :meth:`~WidgetBase.save_html` still shows
what was rendered. :class:`~lucid_widgets.widget.LivePreview` and
:class:`~lucid_widgets.widget.Microscope` derive from it; the Microscope's other panels are
objects it owns.
"""

from __future__ import annotations

import atexit
import contextlib
import pathlib
import threading
import weakref
from collections.abc import Callable, Iterator
from typing import Any

import anywidget
import numpy as np
import traitlets
from torch import nn

from lucid_widgets.expression.compiler import ExpressionError, referenced_layers
from lucid_widgets.optvis.arrays import to_numpy
from lucid_widgets.widget import engine
from lucid_widgets.widget.frames import LossCurve
from lucid_widgets.widget.jobs import PreviewRequest, ThumbnailCache
from lucid_widgets.widget.traits import SettingsError, binary_trait
from lucid_widgets.widget.worker import Worker

__all__ = ["STATIC", "WidgetBase"]

STATIC = pathlib.Path(__file__).parent.parent / "static"
if not (STATIC / "widget.js").is_file() or not (STATIC / "widget.css").is_file():
    raise ImportError(
        f"lucid_widgets.widget needs its JavaScript bundle in {STATIC}, which is missing. "
        "Build it from the repository root with `npm ci && npm run build` (Node.js 18+), "
        "or install lucid-widgets from a wheel, which ships it."
    )

_LIVE: weakref.WeakSet = weakref.WeakSet()  # open widgets, their threads closed at exit

# Front-end messages a widget answers inline (in its ``message`` trait) instead of raising.
_MESSAGE_ERRORS = (ValueError, TypeError, RuntimeError, KeyError, traitlets.TraitError)


class WidgetBase(anywidget.AnyWidget):
    """A live feature-visualization run in a notebook widget (the shared part of the widgets).

    Not used directly: see :class:`~lucid_widgets.widget.LivePreview` and
    :class:`~lucid_widgets.widget.Microscope`.
    """

    # Strings, not pathlib.Path: with a Path anywidget keeps a class-level file watcher that
    # holds every instance (closed widgets and their models were never freed).
    _esm = (STATIC / "widget.js").read_text(encoding="utf-8")
    _css = (STATIC / "widget.css").read_text(encoding="utf-8")

    mode = traitlets.Unicode("live").tag(sync=True)
    readonly = traitlets.Bool(False).tag(sync=True)
    external = traitlets.Bool(False).tag(sync=True)
    model_name = traitlets.Unicode("").tag(sync=True)
    layers = traitlets.List(traitlets.Dict()).tag(sync=True)
    objective = traitlets.Unicode("").tag(sync=True)
    objective_applied = traitlets.Unicode("").tag(sync=True)
    objective_error = traitlets.Dict().tag(sync=True)
    settings = traitlets.Dict().tag(sync=True)
    running = traitlets.Bool(False).tag(sync=True)
    status = traitlets.Unicode("idle").tag(sync=True)
    message = traitlets.Unicode("").tag(sync=True)
    step = traitlets.Int(0).tag(sync=True)
    total_steps = traitlets.Int(0).tag(sync=True)
    losses = traitlets.List().tag(sync=True)  # floats; unvalidated (sent with every frame)
    frame = binary_trait()
    frame_meta = traitlets.Dict().tag(sync=True)

    def __init__(
        self,
        model: nn.Module,
        *,
        catalog: Callable[[nn.Module], tuple[list[dict], str]],
        settings: dict | None = None,
        overrides: dict | None = None,
        fps: float = 20.0,
        clock: Callable[[], float] | None = None,
        cache: ThumbnailCache | None = None,
        **kwargs: Any,
    ) -> None:
        self._cache = ThumbnailCache() if cache is None else cache  # the worker renders into it
        # first: close() (also ipywidgets' __del__ after a failed constructor) needs the worker
        self._worker = Worker(model, self, self._cache, clock=clock, fps=fps)  # not started yet
        self._trait_lock = threading.RLock()
        self._model = model
        self._config = engine.PreviewConfig()  # the settings trait's validator merges into it
        self._overrides = {k: v for k, v in (overrides or {}).items() if v is not None}
        self._compiled: tuple[str, Any] | None = None
        self._has_run = False
        self._front_end_update = False  # the editor shows errors; Python callers get raised
        self._opening = False  # a unit is being opened: its restart follows
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
        layers, catalog_note = catalog(model)
        self._layer_units: dict[str, int | None] = {}
        for row in layers:
            for name in (row["name"], row.get("alias")):
                if name:
                    self._layer_units[name] = row.get("units")
        self._actions: dict[str, Callable[[dict, list], None]] = {
            "start": lambda content, buffers: self.start(),
            "resume": lambda content, buffers: self.start(),
            "restart": lambda content, buffers: self.restart(),
            "stop": lambda content, buffers: self.stop(),
        }
        kwargs.setdefault("model_name", getattr(model, "lucid_name", "") or type(model).__name__)
        kwargs.setdefault("message", catalog_note)
        # the comm opens here, with this initial state
        super().__init__(layers=layers, settings=settings or {}, **kwargs)
        self.on_msg(self._on_front_end_message)

    @contextlib.contextmanager
    def _constructing(self) -> Iterator[None]:
        """Wrap the rest of a constructor: on success start the threads, on error close the
        widget (no comm, no thread left behind) and re-raise."""
        try:
            yield
        except BaseException:
            self.close()
            raise
        self._worker.start()
        _LIVE.add(self)

    # ---- thread safety: one writer at a time ------------------------------------------------
    @property
    def trait_lock(self) -> threading.RLock:
        """Held while traits change; hold it to read several traits consistently."""
        return self._trait_lock

    def notify_change(self, change: Any) -> None:  # noqa: D102
        with self._trait_lock:
            super().notify_change(change)

    def set_state(self, sync_data: dict) -> None:
        """Apply an update from the front end; a value the widget rejects (an unknown layer, a
        unit out of range) is answered in ``message`` and every trait keeps its value."""
        with self._trait_lock:
            self._front_end_update = True
            try:
                super().set_state(sync_data)
            except traitlets.TraitError as error:  # traitlets rolled the changes back
                self.message = str(error)
                self.send_state([name for name in sync_data if name in self.keys])
            finally:
                self._front_end_update = False

    def publish(self, **traits: Any) -> None:
        """Set several traits in one message (thread-safe; the worker and panels call it)."""
        with self._trait_lock, self.hold_sync():
            for name, value in traits.items():
                setattr(self, name, value)

    # ---- the worker ------------------------------------------------------------------------
    def run_in_worker(self, function: Callable[..., Any], *args: Any) -> None:
        """Call ``function(*args)`` in the worker thread, between two steps (passes that use the
        model: dataset examples, sample views)."""
        self._worker.submit("call", function, *args)

    @property
    def stop_event(self) -> threading.Event:
        """Set by :meth:`stop` and :meth:`close`: a long call in the worker checks it and ends."""
        return self._worker.interrupt

    # ---- frames (the worker's, or a render_vis run's) ---------------------------------------
    def post_frame(
        self, image: Any, curve: LossCurve | None = None, final: bool = False, **traits: Any
    ) -> None:
        """Show ``image`` ``(B, C, H, W)`` in [0, 1] as the current result (encoded and sent by
        the frame thread, throttled, latest wins; ``final`` frames always arrive)."""
        self._worker.latest = image
        self._worker.publisher.post(image, curve, final, **traits)

    def show_result(self, image: Any) -> None:
        """Show ``image`` ``(B, C, H, W)`` in [0, 1] as a finished result that no run made (a
        stored picture): a live run ends first, and Start / Restart then optimize anew."""
        self._has_run = False
        self._worker.stop()  # any live run ends first; its last frame comes before this one
        self.run_in_worker(self._post_result, image)

    def _post_result(self, image: Any) -> None:  # worker thread
        self.post_frame(image, final=True, status="done", running=False, step=0,
                        total_steps=0, losses=[], message="")  # fmt: skip

    def flush_frames(self, timeout: float | None = None) -> bool:
        """Wait until every posted frame is sent; False on timeout."""
        return self._worker.publisher.flush(timeout)

    def release_threads(self, timeout: float | None = 10.0) -> None:
        """End the worker and frame threads; the widget stays displayed with its last state."""
        self._worker.close(timeout)
        _LIVE.discard(self)

    @property
    def images(self) -> np.ndarray | None:
        """The current result, ``(B, H, W, C)`` float32 in [0, 1] (None before the first frame)."""
        latest = self._worker.latest
        return None if latest is None else to_numpy(latest)

    # ---- objective --------------------------------------------------------------------------
    def _set_objective(self, objective: Any) -> None:
        if isinstance(objective, str):
            self.objective = objective
            return
        text = str(getattr(objective, "name", "objective"))
        self._compiled = (text, objective)  # a ready Objective: no parsing needed
        self.objective = text

    def _compile(self, text: str) -> Any:
        if self._compiled is not None and self._compiled[0] == text:
            return self._compiled[1]
        objective = engine.compile_text(text, self._model, self._layer_units)
        self._compiled = (text, objective)
        return objective

    @traitlets.observe("objective")
    def _on_objective(self, change: dict) -> None:
        try:
            objective = self._compile(change["new"])
        except ExpressionError as error:
            self.objective_error = error.to_dict()
            if not self._front_end_update:
                raise  # from Python: a clear error (the run is untouched either way)
            return
        self.objective_error = {}
        if self._has_run and not self._opening:  # opening: restart follows
            self._worker.submit("objective", objective, change["new"], self._diversity_layer())

    def _diversity_layer(self) -> str | None:
        names = referenced_layers(self.objective)
        return names[0] if names else None

    # ---- settings ---------------------------------------------------------------------------
    @traitlets.validate("settings")
    def _valid_settings(self, proposal: dict) -> dict:
        return self._merged(proposal["value"], self._config, "settings").to_dict()

    def _merged(self, values: Any, current: Any, what: str) -> Any:
        """``values`` merged into the ``current`` config (a partial dict changes only what it
        names); a bad value raises from Python and is answered inline from the editor (the trait
        then keeps its value)."""
        try:
            if not isinstance(values, dict):
                raise TypeError(f"{what} must be a dict, got {type(values).__name__}")
            return current.merged(values)
        except (ValueError, TypeError) as error:
            if not self._front_end_update:
                raise SettingsError(f"{what}: {error}") from None
            self.message = f"{what}: {error}"
            return current

    @traitlets.observe("settings")
    def _on_settings(self, change: dict) -> None:
        old, self._config = self._config, engine.PreviewConfig.from_dict(change["new"])
        config = self._config
        if not self._has_run or config == old:
            return
        if config.restart_key() != old.restart_key():
            if self.running:
                self.restart()
            else:
                self._has_run = False  # the next start() builds a new run
            return
        self._worker.submit("live_settings", self._run_config(config), self._diversity_layer())

    # ---- control ----------------------------------------------------------------------------
    def start(self) -> None:
        """Resume a paused run, or start a new one from the current objective and settings."""
        if self._has_run and self.status in ("paused", "done", "running"):
            self.running = True
            self._worker.submit("resume")
            return
        self.restart()

    def restart(self) -> None:
        """Start a new run (new parameters, step 0) with the current objective and settings."""
        if self.external:
            raise RuntimeError("this preview shows a render_vis(live=True) run; it cannot restart")
        try:
            objective = self._compile(self.objective)
        except ExpressionError as error:
            self.objective_error = error.to_dict()
            raise
        request = self._preview_request(objective)
        self._has_run = True
        with self.hold_sync():
            self.running, self.status, self.step = True, "running", 0
        self._worker.submit("preview", request)

    def _preview_request(self, objective: Any) -> PreviewRequest:
        """What :meth:`restart` asks the worker to run (the Microscope adds per-view settings)."""
        return PreviewRequest(
            objective, self.objective, self._run_config(self._config), dict(self._overrides),
            self._diversity_layer(),
        )  # fmt: skip

    def _run_config(self, config: engine.PreviewConfig) -> engine.PreviewConfig:
        """The settings a run uses (the Microscope's diversity view forces a batch of 4)."""
        return config

    def stop(self) -> None:
        """Halt everything this widget computes after the current step."""
        self.running = False
        self._worker.stop()

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the worker is idle (run finished or stopped); False on timeout."""
        return self._worker.wait(timeout)

    def close(self) -> None:
        """Stop the threads (restoring the model) and close the widget."""
        self.release_threads()
        super().close()

    # ---- messages from the front end --------------------------------------------------------
    def _on_front_end_message(self, widget: Any, content: Any, buffers: Any) -> None:
        if not isinstance(content, dict) or self.readonly:
            return
        action = content.get("type")
        handler = self._actions.get(action) if isinstance(action, str) else None
        if handler is None:
            self.message = f"unknown action {action!r}; known: {', '.join(sorted(self._actions))}"
            return
        try:
            handler(content, list(buffers or []))
        except ExpressionError:
            pass  # already shown in objective_error
        except _MESSAGE_ERRORS as error:
            self.message = _error_text(error)

    def save_html(self, path: str | pathlib.Path, title: str | None = None) -> pathlib.Path:
        """Write a self-contained offline HTML page showing this widget's current state."""
        from lucid_widgets.widget.export import save_html

        return save_html(self, path, title=title)


def _error_text(error: Exception) -> str:
    if isinstance(error, KeyError):
        return f"message without {error}" if error.args else "incomplete message"
    if isinstance(error, traitlets.TraitError):
        return str(error)
    return f"{type(error).__name__}: {error}"


@atexit.register
def _close_all() -> None:
    for widget in list(_LIVE):
        widget.release_threads(timeout=2.0)
