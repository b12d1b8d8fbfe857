"""Find, check and load pretrained weights without ever hanging offline.

Resolution order for a zoo model's weights:

1. ``weights="path/to/file"`` given: that file (it must exist, load with
   ``torch.load(weights_only=True)`` and match the architecture key for key, shape for shape;
   its sha256 is checked when the file carries the canonical name and a known hash).
2. The torch hub cache, ``torch.hub.get_dir()/checkpoints/<file name>``.
3. A download from the known URL, tried only after a fast connectivity probe (a socket connect
   to the host in a daemon thread, waited on for under a second). ``LUCID_WIDGETS_OFFLINE=1``
   skips the probe and forces offline mode.
4. Otherwise :class:`WeightsUnavailableError`, whose message says how to get the file.
"""

from __future__ import annotations

import hashlib
import os
import socket
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

import torch
from torch import nn

__all__ = [
    "OFFLINE_ENV",
    "WeightsMismatchError",
    "WeightsSource",
    "WeightsUnavailableError",
    "hub_checkpoint_path",
    "is_offline",
    "load_state_dict_file",
    "load_weights",
    "ResolvedWeights",
    "resolve_weights",
    "resolve_weights_file",
    "verify_state_dict",
]

OFFLINE_ENV = "LUCID_WIDGETS_OFFLINE"
PROBE_TIMEOUT_S = 0.8  # the whole probe (DNS included) is abandoned after this long
_PROBE_CACHE_S = 60.0  # a probe result is reused for this long
_probe_results: dict[str, tuple[float, bool]] = {}

StateDict = dict[str, torch.Tensor]


class WeightsUnavailableError(RuntimeError):
    """Pretrained weights are neither given, cached, nor downloadable (no network)."""

    def __init__(self, message: str, url: str | None = None, path: Path | None = None) -> None:
        super().__init__(message)
        self.url = url
        self.path = path


class WeightsMismatchError(ValueError):
    """A weights file does not fit the architecture (missing, unexpected or misshaped keys)."""


@dataclass(frozen=True)
class WeightsSource:
    """Where a model's pretrained weights live.

    Parameters
    ----------
    url
        Download URL of the state dict.
    filename
        File name in the torch hub cache; the URL's last path component by default.
    sha256
        Known sha256 of the file (full hex digest or a prefix), or ``None``.
    """

    url: str
    filename: str = ""
    sha256: str | None = None

    def __post_init__(self) -> None:
        if not self.filename:
            object.__setattr__(self, "filename", Path(urlparse(self.url).path).name)

    @classmethod
    def from_torch_hub_url(cls, url: str) -> WeightsSource:
        """A source whose hash prefix is in the file name (``name-<sha256 prefix>.pth``)."""
        filename = Path(urlparse(url).path).name
        match = torch.hub.HASH_REGEX.search(filename)
        return cls(url=url, filename=filename, sha256=match.group(1) if match else None)

    @property
    def cache_path(self) -> Path:
        """Where the file is (or would be) in the torch hub cache."""
        return hub_checkpoint_path(self.filename)


def hub_checkpoint_path(filename: str) -> Path:
    """``torch.hub.get_dir()/checkpoints/<filename>``: where torch caches downloaded weights."""
    return Path(torch.hub.get_dir()) / "checkpoints" / filename


def _env_offline() -> bool:
    return os.environ.get(OFFLINE_ENV, "").strip().lower() in {"1", "true", "yes", "on"}


def _probe(host: str, port: int, timeout: float) -> bool:
    """Try a TCP connect in a daemon thread; give up after ``timeout`` seconds (DNS included)."""
    result: list[bool] = []

    def connect() -> None:
        try:
            with socket.create_connection((host, port), timeout=timeout):
                result.append(True)
        except OSError:
            result.append(False)

    thread = threading.Thread(target=connect, name=f"lucid-widgets-probe-{host}", daemon=True)
    thread.start()
    thread.join(timeout)
    return bool(result and result[0])


def is_offline(url: str, timeout: float = PROBE_TIMEOUT_S) -> bool:
    """Whether ``url``'s host is unreachable, decided in at most ``timeout`` seconds.

    ``LUCID_WIDGETS_OFFLINE=1`` (or ``true``/``yes``/``on``) answers ``True`` without probing.
    Results are cached per host for a minute.
    """
    if _env_offline():
        return True
    parsed = urlparse(url)
    host = parsed.hostname or ""
    if not host:
        return True
    port = parsed.port or (80 if parsed.scheme == "http" else 443)
    now = time.monotonic()
    cached = _probe_results.get(host)
    if cached is not None and now - cached[0] < _PROBE_CACHE_S:
        return not cached[1]
    online = _probe(host, port, timeout)
    _probe_results[host] = (now, online)
    return not online


def _unavailable_message(model_name: str, source: WeightsSource, reason: str) -> str:
    path = source.cache_path
    return (
        f"Pretrained weights for {model_name!r} are not available: {reason}.\n"
        "Get them in one of these ways:\n"
        f"  1. download {source.url}\n"
        f"     and save it as {path} (found automatically from then on);\n"
        f'  2. pass a local copy: lw.zoo.load("{model_name}", '
        f'weights="path/to/{source.filename}");\n'
        f'  3. use random weights: lw.zoo.load("{model_name}", pretrained=False);\n'
        "  4. use the embedded model, whose weights ship with the package: "
        'lw.zoo.load("efficientnet_lite0").'
    )


def resolve_weights_file(source: WeightsSource, model_name: str) -> Path:
    """Local path of ``source``'s file: the hub cache, else a download when online.

    Raises
    ------
    WeightsUnavailableError
        Offline (``LUCID_WIDGETS_OFFLINE=1`` or the host unreachable) and not cached, or the
        download failed. Raised without waiting on the network for more than about a second.
    """
    path = source.cache_path
    if path.is_file():
        return path
    if _env_offline():
        reason = f"not in the torch hub cache and {OFFLINE_ENV}=1 forbids downloading"
        raise WeightsUnavailableError(
            _unavailable_message(model_name, source, reason), source.url, path
        )
    if is_offline(source.url):
        host = urlparse(source.url).hostname
        reason = f"not in the torch hub cache and {host} cannot be reached (offline?)"
        raise WeightsUnavailableError(
            _unavailable_message(model_name, source, reason), source.url, path
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    try:
        # Looked up at call time so tests can replace it.
        torch.hub.download_url_to_file(source.url, str(partial), hash_prefix=source.sha256)
        partial.replace(path)
    except Exception as error:  # network errors, hash mismatch, disk full ...
        partial.unlink(missing_ok=True)
        reason = f"downloading failed ({type(error).__name__}: {error})"
        raise WeightsUnavailableError(
            _unavailable_message(model_name, source, reason), source.url, path
        ) from error
    return path


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def load_state_dict_file(path: str | Path, sha256: str | None = None) -> StateDict:
    """Load a state dict saved with ``torch.save``, safely (``weights_only=True``), on CPU.

    A checkpoint dict holding the weights under ``"state_dict"`` or ``"model_state_dict"`` is
    unwrapped, and a ``"module."`` prefix on every key (``DataParallel``) is removed.

    Raises
    ------
    FileNotFoundError
        ``path`` is not a file.
    WeightsMismatchError
        The sha256 differs from ``sha256`` (full digest or prefix), the file cannot be loaded
        with ``weights_only=True``, or it holds no name -> tensor mapping.
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"weights file not found: {path}")
    if sha256:
        actual = _sha256(path)
        if not actual.startswith(sha256.lower()):
            raise WeightsMismatchError(
                f"{path} has sha256 {actual[: max(len(sha256), 8)]}..., expected {sha256}...: "
                "the file is corrupt or a different version; download it again."
            )
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:
        raise WeightsMismatchError(
            f"cannot load {path} as a state dict with torch.load(weights_only=True): "
            f"{type(error).__name__}: {error}"
        ) from error
    for key in ("state_dict", "model_state_dict"):
        if isinstance(state, Mapping) and isinstance(state.get(key), Mapping):
            state = state[key]
    if not isinstance(state, Mapping) or not all(
        isinstance(value, torch.Tensor) for value in state.values()
    ):
        raise WeightsMismatchError(
            f"{path} holds a {type(state).__name__}, expected a state dict (name -> tensor) as "
            "written by torch.save(model.state_dict(), path)."
        )
    state = dict(state)
    if state and all(key.startswith("module.") for key in state):
        state = {key[len("module.") :]: value for key, value in state.items()}
    return state


def _describe(items: list[str], limit: int = 5) -> str:
    shown = ", ".join(items[:limit])
    return shown + (f", ... ({len(items) - limit} more)" if len(items) > limit else "")


def verify_state_dict(
    model: nn.Module, state_dict: Mapping[str, torch.Tensor], source: str = "weights"
) -> None:
    """Check that ``state_dict`` has exactly ``model``'s keys, with the same shapes.

    Raises
    ------
    WeightsMismatchError
        Naming the first missing, unexpected and misshaped keys.
    """
    expected = model.state_dict()
    missing = [key for key in expected if key not in state_dict]
    unexpected = [key for key in state_dict if key not in expected]
    misshaped = [
        f"{key} (file {tuple(state_dict[key].shape)}, model {tuple(value.shape)})"
        for key, value in expected.items()
        if key in state_dict and tuple(state_dict[key].shape) != tuple(value.shape)
    ]
    problems = []
    if missing:
        problems.append(f"{len(missing)} missing keys: {_describe(missing)}")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected keys: {_describe(unexpected)}")
    if misshaped:
        problems.append(f"{len(misshaped)} shape mismatches: {_describe(misshaped)}")
    if problems:
        raise WeightsMismatchError(
            f"{source} do not match {type(model).__name__} ({len(state_dict)} keys in the file, "
            f"{len(expected)} expected): " + "; ".join(problems) + ". Is it the right model?"
        )


@dataclass(frozen=True)
class ResolvedWeights:
    """A local weights file, and the sha256 (prefix) it must have, if it is to be checked."""

    path: Path
    sha256: str | None = None


def resolve_weights(
    model_name: str, source: WeightsSource | None, weights: str | Path | None = None
) -> ResolvedWeights:
    """Find the file to load, before the architecture is built (so failures come at once).

    Parameters
    ----------
    model_name
        Zoo name, for messages.
    source
        Known URL / file name / hash of the pretrained weights (``None``: only ``weights=``).
    weights
        A local state-dict file that overrides ``source``. Its sha256 is checked when it has
        ``source``'s canonical file name and ``source`` knows the hash.

    Raises
    ------
    FileNotFoundError
        ``weights`` is not a file.
    WeightsUnavailableError
        No ``weights``, not cached and no network (see :func:`resolve_weights_file`).
    """
    if weights is not None:
        path = Path(weights).expanduser()
        if not path.is_file():
            raise FileNotFoundError(f"weights file for {model_name!r} not found: {path}")
        known_file = source is not None and path.name == source.filename
        return ResolvedWeights(path, source.sha256 if known_file and source is not None else None)
    if source is None:
        raise WeightsUnavailableError(
            f'{model_name!r} has no known pretrained weights: pass weights="path/to/file" '
            "or pretrained=False."
        )
    # The hub cache is trusted, as torch.hub does; downloads are hash-checked while downloading.
    return ResolvedWeights(resolve_weights_file(source, model_name))


def load_weights(
    model: nn.Module,
    resolved: ResolvedWeights,
    remap_keys: Callable[[StateDict], StateDict] | None = None,
) -> Path:
    """Load, check and copy the weights in ``resolved`` into ``model`` (strict); return the path.

    ``remap_keys`` is applied to the loaded state dict before checking (e.g. legacy key names).

    Raises
    ------
    WeightsMismatchError
        The file cannot be loaded safely, has the wrong hash, or does not fit ``model``.
    """
    state = load_state_dict_file(resolved.path, sha256=resolved.sha256)
    if remap_keys is not None:
        state = remap_keys(state)
    verify_state_dict(model, state, source=f"the weights in {resolved.path}")
    model.load_state_dict(state, strict=True)
    return resolved.path
