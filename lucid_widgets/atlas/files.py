"""Plain-file primitives of the atlas store: atomic writes, checksums, the build lock.

Every file of an atlas is written to a temporary name in its own folder and then renamed over
the final name (``os.replace``), so a reader sees either the old file, the new one, or none,
never half of one. The lock is a JSON file created with ``O_EXCL`` that names its holder's host
and process; a lock whose process is gone (same host) is taken over.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import socket
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

__all__ = [
    "AtlasLockedError",
    "atomic_write",
    "atomic_write_json",
    "build_lock",
    "read_json",
    "sha256_bytes",
    "sha256_file",
]

LOCK_NAME = "atlas.lock"


class AtlasLockedError(RuntimeError):
    """Another build holds the atlas folder."""


def sha256_bytes(data: bytes) -> str:
    """Hex sha256 of ``data``."""
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: Path) -> str | None:
    """Hex sha256 of a file's bytes, or ``None`` when it cannot be read."""
    try:
        return sha256_bytes(Path(path).read_bytes())
    except OSError:
        return None


def atomic_write(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file in the same folder and a rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(handle, "wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise


def atomic_write_json(path: Path, value: Any) -> None:
    """``atomic_write`` of ``value`` as indented, key-sorted JSON."""
    atomic_write(path, (json.dumps(value, indent=1, sort_keys=True) + "\n").encode())


def read_json(path: Path) -> Any:
    """The parsed JSON of ``path`` (``FileNotFoundError`` / ``ValueError`` when bad)."""
    return json.loads(Path(path).read_text(encoding="utf-8"))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by another user
        return True
    return True


def _holder(path: Path) -> dict | None:
    try:
        return read_json(path)
    except (OSError, ValueError):
        return None


def _take(path: Path, me: dict) -> bool:
    """Create the lock file exclusively; False when it exists."""
    try:
        handle = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    except FileExistsError:
        return False
    with os.fdopen(handle, "w") as file:
        json.dump(me, file)
    return True


@contextlib.contextmanager
def build_lock(folder: Path) -> Iterator[dict]:
    """Hold ``folder/atlas.lock`` for the duration of a build.

    Raises
    ------
    AtlasLockedError
        When a live process (or one on another host) holds the lock. A lock left by a dead
        process of this host is taken over.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / LOCK_NAME
    me = {"host": socket.gethostname(), "pid": os.getpid(), "since": time.time()}
    while not _take(path, me):
        holder = _holder(path)
        if holder is None:  # being written right now, or garbage: look again shortly
            time.sleep(0.05)
            holder = _holder(path)
        stale = holder is None or (
            holder.get("host") == me["host"] and not _alive(int(holder.get("pid", -1)))
        )
        if not stale:
            since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(holder.get("since", 0)))
            raise AtlasLockedError(
                f"The atlas {str(folder)!r} is being built by process {holder.get('pid')} on "
                f"host {holder.get('host')!r} (since {since}). Wait for it to finish, or, if "
                f"that build is gone, delete {str(path)!r}."
            )
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)  # a dead process's lock: take it over
    try:
        yield me
    finally:
        if (_holder(path) or {}).get("pid") == me["pid"]:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
