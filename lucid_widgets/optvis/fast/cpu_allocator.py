"""Keep freed activation memory for reuse on Linux CPUs (glibc ``malloc`` settings).

A render allocates and frees the same large activation tensors at every step. glibc's
``malloc`` serves blocks over its mmap threshold with fresh ``mmap`` calls and gives freed heap
memory back to the kernel, so every step pays page faults to get zeroed pages again. On this
project's 2-core test machine that was up to half of an EfficientNet-Lite0 step.
:func:`tune_cpu_allocator` raises the mmap threshold to glibc's maximum (32 MiB) and the trim
threshold to 1 GiB, once per process: freed blocks stay in the heap and the next step reuses
them. The cost is that memory torch frees stays with the process (its resident size stays near
its peak) instead of going back to the system.

``Optimization`` calls it on the CPU. Set ``LUCID_WIDGETS_TUNE_MALLOC=0`` before the first render
to leave ``malloc`` alone; it does nothing where ``mallopt`` is missing (not glibc, not Linux).
"""

from __future__ import annotations

import ctypes
import os
import sys
import threading

__all__ = ["tune_cpu_allocator"]

_M_TRIM_THRESHOLD = -1  # glibc's mallopt parameter numbers (malloc.h)
_M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 32 << 20  # glibc's largest accepted value on 64-bit
TRIM_THRESHOLD = 1 << 30

_LOCK = threading.Lock()
_STATE: dict[str, bool] = {}


def tune_cpu_allocator() -> bool:
    """Apply the ``malloc`` settings above once per process; return whether they are in force."""
    with _LOCK:
        if "tuned" not in _STATE:
            _STATE["tuned"] = _apply()
        return _STATE["tuned"]


def _apply() -> bool:
    if os.environ.get("LUCID_WIDGETS_TUNE_MALLOC", "1").strip().lower() in ("0", "false", "no"):
        return False
    if not sys.platform.startswith("linux"):
        return False
    try:
        mallopt = ctypes.CDLL("libc.so.6").mallopt
    except (OSError, AttributeError):  # musl or another C library
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    return bool(mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(
        mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD)
    )
