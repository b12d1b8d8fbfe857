"""Public entry points that join the engine and the widget: ``render_vis(..., live=True)``.

The engine (:mod:`lucid_widgets.optvis`) never imports the widget. Its ``render_vis`` takes a
per-step ``callback``; this module, above both, turns ``live=True`` into the widget's callback.
"""

from __future__ import annotations

import inspect
from typing import Any

import numpy as np
from torch import nn

from lucid_widgets.optvis import render as engine_render
from lucid_widgets.optvis.render import check_thresholds

__all__ = ["render_vis"]


def render_vis(
    model: nn.Module,
    objective: Any,
    *args: Any,
    live: bool = False,
    **kwargs: Any,
) -> list[np.ndarray]:
    """Render a feature visualization; ``live=True`` also shows a live preview in the notebook.

    Takes every argument of :func:`lucid_widgets.optvis.render.render_vis` (see there) plus:

    Parameters
    ----------
    live
        Show a :class:`~lucid_widgets.LivePreview` fed by this render's own steps; its Stop
        button ends the render early (the images so far are returned).

    Returns
    -------
    list of numpy arrays
        ``(B, H, W, C)`` float32 in ``[0, 1]``, one per threshold reached.

    Examples
    --------
    >>> images = render_vis(model, "layer3:7", thresholds=(64,), live=True)   # doctest: +SKIP
    """
    if not live:
        return engine_render.render_vis(model, objective, *args, **kwargs)
    bound = inspect.signature(engine_render.render_vis).bind(model, objective, *args, **kwargs)
    bound.apply_defaults()
    steps = check_thresholds(bound.arguments["thresholds"])[-1]
    from lucid_widgets.widget.live import live_render

    live_callback = live_render(model, objective, bound.arguments["callback"], steps=steps)
    bound.arguments["callback"] = live_callback
    try:
        return engine_render.render_vis(*bound.args, **bound.kwargs)
    finally:
        live_callback.close("done" if live_callback.steps_seen >= steps else "paused")
