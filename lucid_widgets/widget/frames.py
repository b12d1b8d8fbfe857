"""Frames for the widget: images -> small encoded bytes, a throttle, packed thumbnail pages.

Everything here is plain numpy/Pillow (float -> uint8 and tiling come from
:mod:`lucid_widgets.optvis.arrays`).
"""

from __future__ import annotations

import io
import math
import threading
import time
from collections.abc import Callable, Iterable, Sequence

import numpy as np

from lucid_widgets.optvis.arrays import to_uint8

__all__ = [
    "LossCurve",
    "Throttle",
    "encode",
    "pack_thumbnails",
    "sniff_mime",
    "unpack_thumbnails",
]

_MAGIC = ((b"\x89PNG\r\n\x1a\n", "image/png"), (b"\xff\xd8\xff", "image/jpeg"))


def _as_pil(array: np.ndarray):
    from PIL import Image

    array = to_uint8(array)
    if array.ndim == 2:
        array = array[..., None]
    channels = array.shape[-1]
    if channels == 1:
        return Image.fromarray(array[..., 0], "L")
    if channels == 2:  # grey + alpha
        return Image.fromarray(array, "LA").convert("RGBA")
    if channels == 4:
        return Image.fromarray(array, "RGBA")
    if channels != 3:  # N-channel models: show the first three
        array = np.ascontiguousarray(array[..., :3]) if channels > 3 else array
    return Image.fromarray(array, "RGB")


def encode(image: np.ndarray, fmt: str = "jpeg", quality: int = 85) -> bytes:
    """Encode one ``(H, W, C)`` image (uint8, or floats in [0, 1]) as JPEG, WebP or PNG.

    JPEG cannot hold transparency: images with alpha are sent as WebP (or PNG) instead.
    """
    fmt = fmt.lower()
    if fmt not in ("jpeg", "webp", "png"):
        raise ValueError(f"image format must be 'jpeg', 'webp' or 'png', got {fmt!r}")
    picture = _as_pil(image)
    if fmt == "jpeg" and picture.mode in ("RGBA", "LA"):
        fmt = "webp"
    buffer = io.BytesIO()
    if fmt == "png":
        picture.save(buffer, "PNG", compress_level=1)
    elif fmt == "webp":
        picture.save(buffer, "WEBP", quality=quality, method=0)
    else:
        picture.save(buffer, "JPEG", quality=quality)
    return buffer.getvalue()


def sniff_mime(data: bytes) -> str:
    """The MIME type of encoded image bytes (PNG, JPEG or WebP), from their magic number."""
    head = bytes(data[:12])
    for magic, mime in _MAGIC:
        if head.startswith(magic):
            return mime
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "image/webp"
    raise ValueError("not a PNG, JPEG or WebP image")


class Throttle:
    """Let at most one frame out per ``interval`` seconds (and per ``bytes_per_second``).

    The caller asks :meth:`ready` before doing any work for a frame (so skipped frames cost
    nothing) and calls :meth:`sent` with the size of what went out. ``clock`` is injectable so
    tests can count frames without timing.
    """

    def __init__(
        self,
        interval: float = 0.05,
        bytes_per_second: float = 4e6,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.interval = float(interval)
        self.bytes_per_second = float(bytes_per_second)
        self.clock = clock
        self._next = -math.inf

    def ready(self) -> bool:
        """Whether a frame may go out now."""
        return self.clock() >= self._next

    def sent(self, size: int = 0) -> None:
        """Record a frame of ``size`` bytes sent now; the next waits at least ``interval``."""
        wait = max(self.interval, size / self.bytes_per_second if self.bytes_per_second else 0)
        self._next = self.clock() + wait

    def delay(self) -> float:
        """Seconds until the next frame may go out (0 when it may go now)."""
        return max(0.0, self._next - self.clock())

    def reset(self) -> None:
        """Let the next frame out at once."""
        self._next = -math.inf


class LossCurve:
    """A loss history of bounded size: buckets of equal width, merged pairwise when full.

    Appending is O(1) (amortized) and :meth:`points` returns at most ``limit`` bucket means, the
    last point being the latest value, so a sparkline costs the same at step 10 and 100,000.
    Thread-safe: the worker appends while the frame publisher reads.
    """

    def __init__(self, limit: int = 256) -> None:
        if limit < 2 or limit % 2:
            raise ValueError(f"limit must be an even number >= 2, got {limit}")
        self.limit = limit
        self.width = 1  # steps per bucket
        self.count = 0
        self.last = math.nan
        self._sums: list[float] = []
        self._counts: list[int] = []
        self._lock = threading.Lock()

    def append(self, value: float) -> None:
        value = float(value)
        with self._lock:
            self.count += 1
            self.last = value
            if self._counts and self._counts[-1] < self.width:
                self._sums[-1] += value
                self._counts[-1] += 1
                return
            if len(self._sums) == self.limit:  # full: halve the resolution
                self._sums = [a + b for a, b in zip(self._sums[::2], self._sums[1::2], strict=True)]
                self._counts = [
                    a + b for a, b in zip(self._counts[::2], self._counts[1::2], strict=True)
                ]
                self.width *= 2
            self._sums.append(value)
            self._counts.append(1)

    def points(self) -> list[float]:
        """Bucket means (at most ``limit``), the last replaced by the latest value."""
        with self._lock:
            points = [total / count for total, count in zip(self._sums, self._counts, strict=True)]
            if points:
                points[-1] = self.last
            return points


def pack_thumbnails(
    thumbnails: Iterable[tuple[int, bytes]],
) -> tuple[bytes, list[dict[str, int | str]]]:
    """Concatenate encoded thumbnails into one blob plus a JSON index.

    Returns ``(blob, index)`` where each index entry is
    ``{"unit": u, "offset": o, "length": n, "mime": m}`` (bytes ``blob[o:o+n]``).
    """
    chunks, index, offset = [], [], 0
    for unit, data in thumbnails:
        data = bytes(data)
        index.append({"unit": int(unit), "offset": offset, "length": len(data),
                      "mime": sniff_mime(data)})  # fmt: skip
        chunks.append(data)
        offset += len(data)
    return b"".join(chunks), index


def unpack_thumbnails(blob: bytes, index: Sequence[dict]) -> dict[int, bytes]:
    """Inverse of :func:`pack_thumbnails`: unit -> encoded bytes."""
    blob = bytes(blob)
    return {
        int(entry["unit"]): blob[entry["offset"] : entry["offset"] + entry["length"]]
        for entry in index
    }
