"""Dataset-examples results and their on-disk format (see docs/EXAMPLES_CACHE.md).

An :class:`ExamplesResult` holds, per layer, the top-k and bottom-k images of every unit with
their activation values, image indices and spatial positions, the receptive-field box of every
position, and small thumbnails of the images it refers to, so it needs neither the model nor the
dataset once computed. It is saved as a directory with ``meta.json`` and ``arrays.npz`` (no
pickle), under a key that hashes the model's weights, the layers, the dataset and the settings
(:mod:`lucid_widgets.dataset.keys`, re-exported here).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import tempfile
import time
import warnings
from dataclasses import dataclass, field, replace
from pathlib import Path
from zipfile import BadZipFile

import numpy as np
from PIL import Image

from lucid_widgets.dataset.keys import (
    cache_key,
    dataset_fingerprint,
    model_digest,
    preprocess_fields,
)
from lucid_widgets.zoo.receptive_field import crop as crop_box

__all__ = [
    "FIELDS",
    "FORMAT",
    "CorruptEntryError",
    "FORMAT_VERSION",
    "WHICH",
    "array_names",
    "ExamplesResult",
    "LayerExamples",
    "cache_key",
    "dataset_fingerprint",
    "default_cache_dir",
    "lookup",
    "model_digest",
    "preprocess_fields",
    "save_quietly",
]

FORMAT = "lucid_widgets.dataset_examples"
FORMAT_VERSION = 2  # 2: sha256 checksums of arrays.npz and of meta.json itself
WHICH = ("top", "bottom")  # the two directions kept per unit
FIELDS = ("values", "indices", "positions")  # the arrays kept per direction


class CorruptEntryError(ValueError):
    """A saved result whose files do not match their checksums (or cannot be parsed)."""


def array_names() -> list[str]:
    """``values_top``, ``indices_top``, ... : the array fields of :class:`LayerExamples`."""
    return [f"{kind}_{which}" for which in WHICH for kind in FIELDS]


def default_cache_dir() -> Path:
    """``~/.cache/lucid_widgets/examples`` (``$XDG_CACHE_HOME`` is honoured)."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "lucid_widgets" / "examples"


@dataclass
class LayerExamples:
    """Top-k and bottom-k dataset examples of every unit of one layer.

    Arrays: ``values_* (U, k)`` float32 activations (spatial max for top, spatial min for
    bottom), ``indices_* (U, k)`` int64 dataset indices, ``positions_* (U, k, 2)`` int64 ``(y,
    x)`` of that max / min (``(0, 0)`` for layers without spatial axes). Rank 0 is the strongest.
    ``box_map (H', W', 4)`` int32 receptive-field boxes ``(top, left, bottom, right)`` in input
    pixels, or ``None`` for a non-spatial layer (the box is the whole image).
    """

    layer: str
    path: str
    values_top: np.ndarray
    indices_top: np.ndarray
    positions_top: np.ndarray
    values_bottom: np.ndarray
    indices_bottom: np.ndarray
    positions_bottom: np.ndarray
    box_map: np.ndarray | None
    input_size: tuple[int, int]
    thumbnails: dict[int, np.ndarray] = field(repr=False, default_factory=dict)

    @property
    def units(self) -> int:
        """Number of units (channels) in the layer."""
        return self.values_top.shape[0]

    def _arrays(self, which: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        if which not in WHICH:
            raise ValueError(f"which must be 'top' or 'bottom', got {which!r}.")
        return tuple(getattr(self, f"{name}_{which}") for name in FIELDS)

    def _check(self, unit: int, rank: int) -> None:
        if not 0 <= unit < self.units:
            raise IndexError(f"Unit {unit} out of range: {self.layer!r} has {self.units} units.")
        if not 0 <= rank < self.values_top.shape[1]:
            raise IndexError(f"Rank {rank} out of range: {self.values_top.shape[1]} kept per unit.")

    def index(self, unit: int, rank: int = 0, which: str = "top") -> int:
        """Dataset index of the ``rank``-th example of ``unit``."""
        self._check(unit, rank)
        return int(self._arrays(which)[1][unit, rank])

    def value(self, unit: int, rank: int = 0, which: str = "top") -> float:
        """Activation of the ``rank``-th example of ``unit``."""
        self._check(unit, rank)
        return float(self._arrays(which)[0][unit, rank])

    def box(self, unit: int, rank: int = 0, which: str = "top") -> tuple[int, int, int, int]:
        """Receptive-field box ``(top, left, bottom, right)`` of the example, input pixels."""
        self._check(unit, rank)
        if self.box_map is None:
            return (0, 0, *self.input_size)
        y, x = self._arrays(which)[2][unit, rank]
        return tuple(int(v) for v in self.box_map[y, x])

    def boxes(self, which: str = "top") -> np.ndarray:
        """``(U, k, 4)`` boxes of every example."""
        positions = self._arrays(which)[2]
        if self.box_map is None:
            full = np.array([0, 0, *self.input_size], dtype=np.int32)
            return np.broadcast_to(full, (*positions.shape[:2], 4)).copy()
        return self.box_map[positions[..., 0], positions[..., 1]]

    def image(self, unit: int, rank: int = 0, which: str = "top") -> np.ndarray:
        """The example's thumbnail, ``(h, w, 3)`` uint8 (the resized, centre-cropped input)."""
        return self.thumbnails[self.index(unit, rank, which)]

    def crop(self, unit: int, rank: int = 0, which: str = "top") -> np.ndarray:
        """The part of the thumbnail the unit sees at its max (min) position, uint8."""
        return crop_box(self.image(unit, rank, which), self.box(unit, rank, which), self.input_size)


@dataclass
class ExamplesResult:
    """Dataset examples of several layers; ``result[layer]`` is a :class:`LayerExamples`.

    ``complete`` is False after an interruption (``next_index`` is where a resume starts).
    ``skipped`` lists ``(file name or index, reason)`` of items that could not be read.
    ``sources`` maps the dataset index of every kept image to its file path (folders) or index.
    """

    layers: dict[str, LayerExamples]
    k: int
    input_size: tuple[int, int]
    thumbnails: dict[int, np.ndarray]
    sources: dict[int, str | int]
    skipped: list[tuple[str | int, str]]
    num_images: int  # images run through the model
    next_index: int  # dataset items consumed, skipped ones included
    complete: bool
    key: str | None = None
    path: Path | None = None
    info: dict = field(default_factory=dict)

    def __getitem__(self, layer: str) -> LayerExamples:
        if layer not in self.layers:
            raise KeyError(f"No examples for layer {layer!r}; computed: {', '.join(self.layers)}.")
        return self.layers[layer]

    def __iter__(self):
        return iter(self.layers)

    def __len__(self) -> int:
        return len(self.layers)

    def image(self, layer: str, unit: int, rank: int = 0, which: str = "top") -> np.ndarray:
        """Thumbnail ``(h, w, 3)`` uint8 of an example; see :meth:`LayerExamples.image`."""
        return self[layer].image(unit, rank, which)

    def crop(self, layer: str, unit: int, rank: int = 0, which: str = "top") -> np.ndarray:
        """Receptive-field crop of an example; see :meth:`LayerExamples.crop`."""
        return self[layer].crop(unit, rank, which)

    def source(self, index: int) -> str | int:
        """The file path (or dataset index) of a kept image."""
        return self.sources[index]

    def __repr__(self) -> str:
        state = "complete" if self.complete else f"incomplete, resume at {self.next_index}"
        layers = ", ".join(f"{name} ({ex.units} units)" for name, ex in self.layers.items())
        return (
            f"ExamplesResult({self.num_images} images, k={self.k}, {state}, "
            f"{len(self.skipped)} skipped; layers: {layers})"
        )

    # ------------------------------------------------------------------------ disk format

    def save(self, directory: str | os.PathLike) -> Path:
        """Write ``meta.json`` and ``arrays.npz`` into ``directory`` (replaced atomically)."""
        directory = Path(directory)
        directory.parent.mkdir(parents=True, exist_ok=True)
        order = sorted(self.thumbnails)
        arrays = {**_layer_arrays(self.layers), **_thumbnail_arrays(self.thumbnails, order)}
        meta = {
            "format": FORMAT,
            "version": FORMAT_VERSION,
            "key": self.key,
            "complete": self.complete,
            "k": self.k,
            "input_size": list(self.input_size),
            "num_images": self.num_images,
            "next_index": self.next_index,
            "layers": [
                {"name": name, "path": examples.path, "units": examples.units}
                for name, examples in self.layers.items()
            ],
            "sources": [self.sources.get(index, index) for index in order],
            "skipped": [[name, reason] for name, reason in self.skipped],
            "saved": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "info": self.info,
        }
        _write_atomically(directory, arrays, meta)
        return directory

    @classmethod
    def load(cls, directory: str | os.PathLike) -> ExamplesResult:
        """Read a result written by :meth:`save`.

        Raises
        ------
        CorruptEntryError
            When ``meta.json`` or ``arrays.npz`` does not match its checksum or cannot be read
            as the format says (flipped bytes, a truncated file, an edited field).
        ValueError
            When the directory holds another format or version.
        """
        directory = Path(directory)
        meta, blob = _verified_files(directory)
        try:  # checked bytes that still do not parse: a writer bug, reported the same way
            with np.load(io.BytesIO(blob), allow_pickle=False) as npz:
                arrays = dict(npz)
            return cls._from_files(directory, meta, arrays)
        except (BadZipFile, OSError, ValueError, KeyError, TypeError, IndexError) as error:
            raise CorruptEntryError(
                f"Cannot read the dataset-examples entry {directory}: "
                f"{type(error).__name__}: {error}"
            ) from error

    @classmethod
    def _from_files(cls, directory: Path, meta: dict, arrays: dict) -> ExamplesResult:
        order = arrays["thumbnails.index"].tolist()
        thumbnails = _read_thumbnails(arrays, order)
        input_size = tuple(meta["input_size"])
        layers = {}
        for position, layer in enumerate(meta["layers"]):
            prefix = f"layer{position}"
            layers[layer["name"]] = LayerExamples(
                layer=layer["name"],
                path=layer["path"],
                box_map=arrays.get(f"{prefix}.box_map"),
                input_size=input_size,
                thumbnails=thumbnails,
                **{name: arrays[f"{prefix}.{name}"] for name in array_names()},
            )
        return cls(
            layers=layers,
            k=meta["k"],
            input_size=input_size,
            thumbnails=thumbnails,
            sources=dict(zip(order, meta["sources"], strict=True)),
            skipped=[tuple(item) for item in meta["skipped"]],
            num_images=meta["num_images"],
            next_index=meta["next_index"],
            complete=meta["complete"],
            key=meta.get("key"),
            path=directory,
            info=meta.get("info", {}),
        )


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _meta_digest(meta: dict) -> str:
    """sha256 of the meta's canonical JSON, its own ``checksums.meta`` left out."""
    checksums = {name: v for name, v in meta.get("checksums", {}).items() if name != "meta"}
    body = {**meta, "checksums": checksums}
    return _sha256(json.dumps(body, sort_keys=True, default=str).encode())


def _verified_files(directory: Path) -> tuple[dict, bytes]:
    """``meta.json`` (parsed) and the bytes of ``arrays.npz``, both checked against the meta."""
    text = (directory / "meta.json").read_text()
    try:
        meta = json.loads(text)
    except json.JSONDecodeError as error:
        raise CorruptEntryError(f"{directory / 'meta.json'} is not valid JSON: {error}") from error
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        found = meta.get("format") if isinstance(meta, dict) else type(meta).__name__
        raise ValueError(f"{directory} is not a {FORMAT} directory (format={found!r}).")
    if meta.get("version") != FORMAT_VERSION:
        raise ValueError(
            f"{directory} is not a {FORMAT} v{FORMAT_VERSION} directory "
            f"(version={meta.get('version')!r})."
        )
    checksums = meta.get("checksums")
    if not isinstance(checksums, dict) or checksums.get("meta") != _meta_digest(meta):
        raise CorruptEntryError(f"{directory / 'meta.json'} does not match its checksum.")
    blob = (directory / "arrays.npz").read_bytes()
    if _sha256(blob) != checksums.get("arrays.npz"):
        raise CorruptEntryError(
            f"{directory / 'arrays.npz'} does not match its checksum "
            f"({len(blob)} bytes: flipped or truncated)."
        )
    return meta, blob


def _layer_arrays(layers: dict[str, LayerExamples]) -> dict[str, np.ndarray]:
    """``layer{i}.values_top`` ... and ``layer{i}.box_map`` of every layer, in order."""
    arrays = {}
    for position, examples in enumerate(layers.values()):
        prefix = f"layer{position}"
        for name in array_names():
            arrays[f"{prefix}.{name}"] = getattr(examples, name)
        if examples.box_map is not None:
            arrays[f"{prefix}.box_map"] = examples.box_map
    return arrays


def _thumbnail_arrays(thumbnails: dict[int, np.ndarray], order: list[int]) -> dict:
    """PNG-encoded thumbnails in ``order``: indices, byte offsets and one concatenated blob."""
    encoded = [_png(thumbnails[index]) for index in order]
    return {
        "thumbnails.index": np.asarray(order, dtype=np.int64),
        "thumbnails.offsets": np.cumsum([0] + [len(b) for b in encoded], dtype=np.int64),
        "thumbnails.png": np.frombuffer(b"".join(encoded), dtype=np.uint8),
    }


def _read_thumbnails(arrays: dict[str, np.ndarray], order: list[int]) -> dict[int, np.ndarray]:
    """Inverse of :func:`_thumbnail_arrays`: dataset index -> ``(h, w, 3)`` uint8."""
    offsets, blob = arrays["thumbnails.offsets"], arrays["thumbnails.png"].tobytes()
    return {index: _unpng(blob[offsets[i] : offsets[i + 1]]) for i, index in enumerate(order)}


def _write_atomically(directory: Path, arrays: dict[str, np.ndarray], meta: dict) -> None:
    """Write into a staging directory next to ``directory``, then swap it in."""
    staging = Path(tempfile.mkdtemp(prefix=".tmp-", dir=directory.parent))
    try:
        np.savez(staging / "arrays.npz", **arrays)
        blob = (staging / "arrays.npz").read_bytes()
        meta = json.loads(json.dumps(meta, default=str))  # as it will read back
        meta["checksums"] = {"arrays.npz": _sha256(blob)}
        meta["checksums"]["meta"] = _meta_digest(meta)
        (staging / "meta.json").write_text(json.dumps(meta, indent=1))
        if directory.exists():
            shutil.rmtree(directory)
        os.replace(staging, directory)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _png(image: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG", compress_level=3)
    return buffer.getvalue()


def _unpng(data: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as image:
        return np.asarray(image.convert("RGB"))


def lookup(root: Path | None, key: str | None, names: dict, resume: bool) -> ExamplesResult | None:
    """A cached result for ``key`` (complete, or partial when resuming), renamed to ``names``."""
    if root is None or key is None or not (root / key / "meta.json").is_file():
        return None
    try:
        cached = ExamplesResult.load(root / key)
    except (OSError, ValueError) as error:  # CorruptEntryError included
        warnings.warn(
            f"Ignoring the unreadable cache entry {root / key} and computing it again (it will "
            f"be overwritten): {error}",
            stacklevel=3,
        )
        return None
    if not cached.complete and not resume:
        return None
    by_path = {examples.path: examples for examples in cached.layers.values()}
    cached.layers = {name: replace(by_path[path], layer=name) for name, path in names.items()}
    return cached


def save_quietly(result: ExamplesResult, root: Path | None) -> None:
    """Save ``result`` under ``root / result.key``; a write error only warns."""
    if root is None or result.key is None:
        return
    try:
        result.path = result.save(root / result.key)
    except OSError as error:
        warnings.warn(
            f"Could not write the dataset-examples cache to {root}: {error}", stacklevel=4
        )
