"""Notebook widgets: :class:`Microscope` (layer browser, unit grid, live unit detail) and
:class:`LivePreview` (a live optimization with its objective editor).

Everything that touches torch runs in one worker thread per widget
(:mod:`lucid_widgets.widget.worker`), so a cell returns at once and Stop or an objective edit
lands within one optimizer step. State lives in synced traits (binary images included), so a
saved notebook or :meth:`LivePreview.save_html` still shows what was rendered.
"""

from __future__ import annotations

import atexit
import pathlib
import threading
import weakref
from collections.abc import Callable
from typing import Any

import anywidget
import numpy as np
import traitlets
from torch import nn

from lucid_widgets.expression.compiler import ExpressionError, referenced_layers
from lucid_widgets.widget import engine
from lucid_widgets.widget.jobs import PreviewRequest, ThumbnailCache
from lucid_widgets.widget.traits import binary_trait
from lucid_widgets.widget.worker import Worker

__all__ = ["LivePreview"]

_STATIC = pathlib.Path(__file__).parent.parent / "static"
if not (_STATIC / "widget.js").is_file() or not (_STATIC / "widget.css").is_file():
    raise ImportError(
        f"lucid_widgets.widget needs its JavaScript bundle in {_STATIC}, which is missing. "
        "Build it from the repository root with `npm ci && npm run build` (Node.js 18+), "
        "or install lucid-widgets from a wheel, which ships it."
    )

_LIVE: weakref.WeakSet = weakref.WeakSet()


class LivePreview(anywidget.AnyWidget):
    """A live feature-visualization run with its objective editor.

    Parameters
    ----------
    model
        Any ``nn.Module`` (zoo models carry layer aliases and preprocessing).
    objective
        An expression such as ``"layer3:7 - 0.5 * layer3:12"`` or an ``Objective``.
    settings
        Preview settings (see ``widget_engine.PreviewConfig``): steps, size, lr, seed, param
        (``"fft"``/``"pixel"``), decorrelate, alpha, transforms, batch, diversity.
    autostart
        Start optimizing as soon as the widget is created.
    param_f, optimizer, transforms, preprocess
        Engine objects that replace the ones built from ``settings``.
    fps
        Most preview frames per second sent to the browser (latest frame wins).
    clock
        Time source of the frame throttle (tests pass a fake clock).

    Examples
    --------
    >>> w = LivePreview(model, "layer3:7", settings={"steps": 256})   # doctest: +SKIP
    >>> w.objective = "layer3:7 - 0.5 * layer3:12"   # applies at the next step
    """

    _esm = _STATIC / "widget.js"
    _css = _STATIC / "widget.css"

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
        objective: Any = None,
        *,
        settings: dict | None = None,
        autostart: bool = True,
        param_f: Callable | None = None,
        optimizer: Callable | None = None,
        transforms: Any = None,
        preprocess: Any = None,
        fps: float = 20.0,
        clock: Callable[[], float] | None = None,
        **kwargs: Any,
    ) -> None:
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
        self._trait_lock = threading.RLock()
        self._model = model
        self._config = engine.PreviewConfig.from_dict(settings)
        self._overrides = {key: value for key, value in dict(
            param_f=param_f, optimizer=optimizer, transforms=transforms, preprocess=preprocess,
        ).items() if value is not None}  # fmt: skip
        self._compiled: tuple[str, Any] | None = None
        self._has_run = False
        self._cache = ThumbnailCache()
        kwargs.setdefault("model_name", getattr(model, "lucid_name", "") or type(model).__name__)
        kwargs.setdefault("layers", self._catalog(model))
        kwargs.setdefault("message", getattr(self, "_catalog_error", ""))
        kwargs.setdefault("settings", self._config.to_dict())
        super().__init__(**kwargs)  # the comm opens here, with this initial state
        self._layer_units = {}
        for row in self.layers:
            for name in (row["name"], row.get("alias")):
                if name:
                    self._layer_units[name] = row.get("units")
        self._worker = Worker(model, self, "_publish", self._cache, clock=clock, fps=fps)
        self.on_msg(self._on_front_end_message)
        _LIVE.add(self)
        if objective is not None:
            try:
                self._set_objective(objective)
            except ExpressionError:
                self.close()  # no half-made widget (and no idle worker thread) left behind
                raise
            if autostart:
                self.restart()

    def _catalog(self, model: nn.Module) -> list[dict]:
        """The layer catalog; a preview works without one (names are then checked by hooks)."""
        try:
            return engine.catalog(model)
        except (RuntimeError, TypeError, ValueError) as error:
            self._catalog_error = f"layer catalog unavailable: {error}"
            return []

    # ---- thread safety: one writer at a time ------------------------------------------------
    def notify_change(self, change: Any) -> None:  # noqa: D102
        with self._trait_lock:
            super().notify_change(change)

    def set_state(self, sync_data: dict) -> None:  # noqa: D102
        with self._trait_lock:
            self._front_end_update = True  # the editor shows errors; Python callers get raised
            try:
                super().set_state(sync_data)
            finally:
                self._front_end_update = False

    def _publish(self, **traits: Any) -> None:
        """Set several traits in one message (called from the worker thread)."""
        with self._trait_lock, self.hold_sync():
            for name, value in traits.items():
                setattr(self, name, value)

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
            if not getattr(self, "_front_end_update", False):
                raise  # from Python: a clear error (the run is untouched either way)
            return
        self.objective_error = {}
        if self._has_run and not getattr(self, "_opening", False):  # opening: restart follows
            self._worker.submit("objective", objective, change["new"], self._diversity_layer())

    # ---- settings ---------------------------------------------------------------------------
    @traitlets.observe("settings")
    def _on_settings(self, change: dict) -> None:
        try:
            config = engine.PreviewConfig.from_dict(change["new"])
        except (ValueError, TypeError) as error:
            self.message = f"settings: {error}"
            self.settings = self._config.to_dict()
            return
        old, self._config = self._config, config
        if not self._has_run or config == old:
            return
        if config.restart_key() != old.restart_key():
            if self.running:
                self.restart()
            else:
                self._has_run = False  # the next start() builds a new run
            return
        self._worker.submit("live_settings", self._run_config(config), self._diversity_layer())

    def _diversity_layer(self) -> str | None:
        names = referenced_layers(self.objective)
        return names[0] if names else None

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
        """What :meth:`restart` asks the worker to run (subclasses add per-view settings)."""
        return PreviewRequest(
            objective, self.objective, self._run_config(self._config), dict(self._overrides),
            self._diversity_layer(),
        )  # fmt: skip

    def _run_config(self, config: engine.PreviewConfig) -> engine.PreviewConfig:
        """The settings a run uses (the Microscope's diversity view forces a batch of 4)."""
        return config

    def stop(self) -> None:
        """Halt everything this widget computes (preview and grid) after the current step."""
        self.running = False
        self._worker.stop()

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the worker is idle (run finished or stopped); False on timeout."""
        return self._worker.wait(timeout)

    def close(self) -> None:
        """Stop the worker thread (restoring the model) and close the widget."""
        worker = getattr(self, "_worker", None)
        if worker is not None:
            worker.close()
        _LIVE.discard(self)
        super().close()

    @property
    def images(self) -> np.ndarray | None:
        """The current result, ``(B, H, W, C)`` float32 in [0, 1] (None before the first frame)."""
        latest = self._worker.latest
        if latest is None:
            return None
        from lucid_widgets.optvis.render import to_numpy

        return to_numpy(latest)

    def _on_front_end_message(self, widget: Any, content: Any, buffers: Any) -> None:
        if not isinstance(content, dict) or self.readonly:
            return
        action = content.get("type")
        try:
            if action in ("start", "resume"):
                self.start()
            elif action == "restart":
                self.restart()
            elif action == "stop":
                self.stop()
            else:
                self._handle_action(action, content, list(buffers or []))
        except ExpressionError:
            pass  # already shown in objective_error
        except (ValueError, TypeError, RuntimeError) as error:
            self.message = f"{type(error).__name__}: {error}"

    def _handle_action(self, action: Any, content: dict, buffers: list) -> None:
        self.message = f"unknown action {action!r}"

    def save_html(self, path: str | pathlib.Path, title: str | None = None) -> pathlib.Path:
        """Write a self-contained offline HTML page showing this widget's current state."""
        from lucid_widgets.widget.export import save_html

        return save_html(self, path, title=title)


@atexit.register
def _close_all() -> None:
    for widget in list(_LIVE):
        worker = getattr(widget, "_worker", None)
        if worker is not None:
            worker.close(timeout=2.0)
