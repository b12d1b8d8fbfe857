"""The :class:`LivePreview` widget: one live feature-visualization run with its objective editor.

Everything shared with the Microscope (the worker thread, frames, messages, settings, cleanup)
lives in :mod:`lucid_widgets.widget.base`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch import nn

from lucid_widgets.widget import engine
from lucid_widgets.widget.base import WidgetBase

__all__ = ["LivePreview"]


class LivePreview(WidgetBase):
    """A live feature-visualization run with its objective editor.

    Parameters
    ----------
    model
        Any ``nn.Module`` (zoo models carry layer aliases and preprocessing).
    objective
        An expression such as ``"layer3:7 - 0.5 * layer3:12"`` or an ``Objective``.
    settings
        Preview settings (see :class:`~lucid_widgets.widget.engine.PreviewConfig`): steps, size,
        lr, seed, param (``"fft"``/``"pixel"``/``"maco"``), decorrelate, alpha, transforms, batch,
        diversity. Assigning ``w.settings = {...}`` later changes only the keys given. With
        ``"maco"`` and ``alpha`` the frames carry MACO's transparency map as alpha.
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
        overrides = dict(
            param_f=param_f, optimizer=optimizer, transforms=transforms, preprocess=preprocess
        )
        super().__init__(
            model, catalog=_catalog, settings=settings, overrides=overrides, fps=fps, clock=clock,
            **kwargs,
        )  # fmt: skip
        with self._constructing():  # a bad objective leaves no widget and no thread behind
            if objective is not None:
                self._set_objective(objective)
        if objective is not None and autostart:
            self.restart()


def _catalog(model: nn.Module) -> tuple[list[dict], str]:
    """The layer catalog and a note; a preview works without one (names are checked by hooks)."""
    try:
        return engine.catalog(model), ""
    except (RuntimeError, TypeError, ValueError) as error:
        return [], f"layer catalog unavailable: {error}"
