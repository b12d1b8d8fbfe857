"""Preview frames leave in their own thread: the optimization only hands over a tensor.

The worker (or ``render_vis``'s callback) calls :meth:`FramePublisher.post` after a step: a
reference swap, no copy, no encoding. The publisher thread waits for the throttle, takes the
latest posted image (older ones are dropped: latest wins), copies it off the device, encodes a
small JPEG (WebP with alpha) and sets the widget's traits in one message. A final frame (run done
or paused) skips the throttle and always arrives last.
"""

from __future__ import annotations

import math
import threading
import traceback
from collections.abc import Callable
from typing import Any

from lucid_widgets.optvis.arrays import tile, to_uint8
from lucid_widgets.widget.frames import LossCurve, Throttle, encode, sniff_mime

__all__ = ["FramePublisher"]


class FramePublisher:
    """Throttled, latest-wins frame sending for one widget.

    Parameters
    ----------
    publish
        ``publish(**traits)``: sets the widget's traits in one message (thread-safe).
    throttle
        Decides when a frame may go out (its clock may be fake in tests).
    frame_format, quality
        Encoding of the frames (``"jpeg"``, ``"webp"`` or ``"png"``).
    """

    def __init__(
        self,
        publish: Callable[..., None],
        throttle: Throttle,
        frame_format: str = "jpeg",
        quality: int = 85,
    ) -> None:
        self._publish = publish
        self.throttle = throttle
        self.frame_format = frame_format
        self.quality = quality
        self.sent = 0
        self._condition = threading.Condition()
        self._pending: tuple[Any, LossCurve | None, dict, bool] | None = None
        self._busy = False
        self._closed = False
        self.thread = threading.Thread(target=self._loop, name="lucid-widget-frames", daemon=True)

    def start(self) -> None:
        """Start the frame thread."""
        self.thread.start()

    def post(
        self, image: Any, curve: LossCurve | None = None, final: bool = False, **traits: Any
    ) -> None:
        """Offer a ``(B, C, H, W)`` image in [0, 1] plus traits to send with it.

        Replaces any frame still waiting. ``final`` frames skip the throttle. Once the thread
        has ended (:meth:`close`), final frames are sent at once from the caller's thread.
        """
        if self._closed and not self.thread.is_alive():
            if final:
                self._send(image, curve, dict(traits), final)
            return
        with self._condition:
            if self._pending is not None and self._pending[3] and not final:
                return  # never let a running frame overtake a final one
            self._pending = (image, curve, traits, final)
            self._condition.notify_all()

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until no frame is waiting or being sent; False on timeout."""
        with self._condition:
            return self._condition.wait_for(
                lambda: (self._pending is None and not self._busy) or not self.thread.is_alive(),
                timeout,
            )

    def close(self, timeout: float | None = 5.0) -> None:
        """Send what is waiting (final frames only), then end the thread."""
        with self._condition:
            self._closed = True
            if self._pending is not None and not self._pending[3]:
                self._pending = None
            self._condition.notify_all()
        if self.thread.ident is not None and threading.current_thread() is not self.thread:
            self.thread.join(timeout)

    def _next_item(self) -> tuple[Any, LossCurve | None, dict, bool] | None:
        with self._condition:
            while True:
                if self._pending is None:
                    if self._closed:
                        return None
                    self._condition.wait()
                    continue
                delay = 0.0 if self._pending[3] else self.throttle.delay()
                if delay <= 0:
                    item, self._pending = self._pending, None
                    self._busy = True
                    return item
                self._condition.wait(min(delay, 0.1))  # a newer (maybe final) frame may come

    def _loop(self) -> None:
        while True:
            item = self._next_item()
            if item is None:
                return
            size = 0
            try:
                size = self._send(*item)
            except Exception:  # noqa: BLE001 (a frame is not worth the thread)
                traceback.print_exc()
            finally:
                with self._condition:
                    self.throttle.sent(size)
                    self._busy = False
                    self._condition.notify_all()

    def _send(self, image: Any, curve: LossCurve | None, traits: dict, final: bool) -> int:
        pixels = to_uint8(image)  # (B, H, W, C), converted on the image's device
        data = encode(tile(pixels, fill=128), self.frame_format, self.quality)
        batch, height, width = pixels.shape[:3]
        meta = {
            "batch": batch, "width": width, "height": height,
            "columns": math.ceil(math.sqrt(batch)), "mime": sniff_mime(data),
            "step": traits.get("step", 0),
        }  # fmt: skip
        if curve is not None:
            traits["losses"] = curve.points()
        self._publish(frame=data, frame_meta=meta, **traits)
        self.sent += 1
        return len(data)
