"""``render_vis(..., live=True)``: a preview widget fed by the engine's own render loop."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch import nn

from lucid_widgets.display import in_notebook
from lucid_widgets.widget.frames import LossCurve
from lucid_widgets.widget.preview import LivePreview

__all__ = ["LiveCallback", "live_render"]


class LiveCallback:
    """Per-step callback that streams ``render_vis`` steps into a :class:`LivePreview`.

    Each call only hands the step's image to the widget's frame publisher (a reference swap);
    encoding happens in the publisher thread, throttled, latest frame wins, and the last frame
    always arrives. When the widget's Stop button is pressed (and the kernel gets to handle it)
    the next call raises ``KeyboardInterrupt``, which ``render_vis`` turns into an early return
    with the images so far. Call :meth:`close` when the render ends.
    """

    def __init__(
        self, widget: LivePreview, callback: Callable | None = None, steps: int | None = None
    ) -> None:
        self.widget = widget
        self.callback = callback
        self.steps = steps
        self.curve = LossCurve()
        self.closed = False
        self._last: Any = None

    def __call__(self, step: Any) -> None:
        if self.callback is not None:
            self.callback(step)
        self.curve.append(step.loss)
        self._last = step
        if self.closed:
            return
        if not self.widget.running:
            self.close("paused")
            raise KeyboardInterrupt("stopped from the live preview")
        if self.steps is not None and step.step >= self.steps:
            self.close("done")
            return
        self.widget.post_frame(
            step.image, self.curve, step=int(step.step), objective_applied=str(step.objective)
        )

    @property
    def steps_seen(self) -> int:
        """The last step this callback was called with (0 before the first)."""
        return 0 if self._last is None else int(self._last.step)

    def close(self, state: str = "done") -> None:
        """Send the last frame, marked ``state`` (done / paused), wait until it is out, and end
        the widget's threads (it stays displayed, showing the result)."""
        if self.closed:
            return
        self.closed = True
        if self._last is not None:
            self.widget.post_frame(
                self._last.image, self.curve, final=True, step=int(self._last.step),
                status=state, running=False, objective_applied=str(self._last.objective),
            )  # fmt: skip
        else:
            self.widget.publish(status=state, running=False)
        self.widget.flush_frames(10.0)
        self.widget.release_threads()


def live_render(
    model: nn.Module,
    objective: Any,
    callback: Callable | None = None,
    steps: int | None = None,
    display: bool = True,
) -> LiveCallback:
    """Show a live preview for a ``render_vis`` run and return the per-step callback to use.

    Parameters
    ----------
    model, objective
        What ``render_vis`` renders.
    callback
        The user's own per-step callback, still called first at every step.
    steps
        The last step (``thresholds[-1]``), so the final frame is marked done.
    display
        Display the widget in a notebook (outside one nothing is printed: the render runs as
        ``render_vis`` without ``live``).

    Returns
    -------
    LiveCallback
        Call it with every ``Step``; call ``.close()`` when the render ends.
    """
    widget = LivePreview(model, objective, autostart=False, external=True)
    widget.publish(total_steps=int(steps or 0), running=True, status="running")
    if display and in_notebook():
        from IPython.display import display as show

        show(widget)
    return LiveCallback(widget, callback, steps)
