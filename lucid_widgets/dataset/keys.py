"""Cache keys for dataset examples: hashes of the model, the dataset and the settings.

A key (see docs/EXAMPLES_CACHE.md) is the sha256 of the JSON of its parts: the
:func:`model_digest` of the weights and architecture, the :func:`dataset_fingerprint` of the
dataset's content, the layers, ``k``, the :func:`preprocess_fields` and the thumbnail size.
"""

from __future__ import annotations

import hashlib
import json
import os

import numpy as np
import torch
from PIL import Image
from torch import nn

from lucid_widgets.dataset.images import unwrap
from lucid_widgets.dataset.sources import DatasetSource
from lucid_widgets.optvis.preprocess import Preprocess

__all__ = ["cache_key", "dataset_fingerprint", "model_digest", "preprocess_fields"]

_FULL_HASH_BYTES = 256 * 2**20  # models above this hash a strided sample of each tensor
_SAMPLE_ELEMENTS = 65536


def model_digest(model: nn.Module) -> str:
    """sha256 of the model's architecture (``repr``) and every state-dict tensor.

    Models whose state dict holds more than 256 MiB hash, per tensor, its shape, dtype and an
    evenly strided sample of 65536 elements (plus the first and last), instead of every byte.
    """
    state = model.state_dict()
    total = sum(t.numel() * t.element_size() for t in state.values() if isinstance(t, torch.Tensor))
    digest = hashlib.sha256(repr(model).encode())
    for name, tensor in state.items():
        if not isinstance(tensor, torch.Tensor):
            continue
        flat = tensor.detach().reshape(-1)
        if total > _FULL_HASH_BYTES and flat.numel() > _SAMPLE_ELEMENTS:
            stride = flat.numel() // _SAMPLE_ELEMENTS
            flat = torch.cat([flat[::stride], flat[-1:]])
        digest.update(f"{name}{tuple(tensor.shape)}{tensor.dtype}".encode())
        digest.update(memoryview(flat.contiguous().cpu().view(torch.uint8).numpy()))
    return digest.hexdigest()


def _hash_array(digest: hashlib._Hash, array: np.ndarray | torch.Tensor) -> None:
    if isinstance(array, torch.Tensor):
        tensor = array.detach().contiguous().cpu()
        digest.update(f"{tuple(tensor.shape)}{tensor.dtype}".encode())
        digest.update(memoryview(tensor.view(-1).view(torch.uint8).numpy()))
    else:
        array = np.ascontiguousarray(array)
        digest.update(f"{array.shape}{array.dtype}".encode())
        digest.update(memoryview(array.reshape(-1).view(np.uint8)))


def _hash_files(digest: hashlib._Hash, paths: list[str]) -> None:
    for path in paths:
        try:
            stat = os.stat(path)
            digest.update(f"{path}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
        except OSError:
            digest.update(f"{path}\0missing\n".encode())


def _hash_item(digest: hashlib._Hash, item: object) -> None:
    """Feed a raw dataset item's content (not its label) into ``digest``."""
    item = unwrap(item)
    if isinstance(item, Image.Image):
        digest.update(f"{item.mode}{item.size}".encode())
        digest.update(item.tobytes())
    elif isinstance(item, (np.ndarray, torch.Tensor)):
        _hash_array(digest, item)
    elif isinstance(item, (str, os.PathLike)):
        _hash_files(digest, [os.fspath(item)])
    elif isinstance(item, bytes):
        digest.update(item)
    else:
        digest.update(repr(item).encode())


def _hash_dataset(digest: hashlib._Hash, source: DatasetSource) -> None:
    """Feed a torchvision-style or iterable dataset: its file list or array, else every item."""
    data = source.data
    digest.update(type(data).__qualname__.encode())
    for attribute in ("transform", "target_transform"):
        digest.update(repr(getattr(data, attribute, None)).encode())
    files = getattr(data, "samples", None) or getattr(data, "imgs", None)
    array = getattr(data, "data", None)
    if isinstance(files, list) and files and isinstance(files[0], (tuple, list, str)):
        _hash_files(digest, [f[0] if isinstance(f, (tuple, list)) else f for f in files])
    elif isinstance(array, (np.ndarray, torch.Tensor)):
        _hash_array(digest, array)
    else:
        for _, item in source.items():
            _hash_item(digest, item)


def dataset_fingerprint(source: DatasetSource) -> str | None:
    """A hash of a dataset's content; ``None`` for a one-shot iterator.

    Folders hash file paths, sizes and modification times; tensors hash their bytes;
    torchvision datasets with ``samples`` / ``imgs`` (file lists) or ``data`` (an array) hash
    those (and the ``repr`` of their transforms); any other dataset is read once, hashing each
    item's image bytes.
    """
    if source.one_shot:
        return None
    digest = hashlib.sha256(f"{source.kind}:{source.length}\n".encode())
    if source.kind == "folder":
        _hash_files(digest, source.names)
    elif source.kind == "tensor":
        _hash_array(digest, source.data)
    else:
        _hash_dataset(digest, source)
    return digest.hexdigest()


def cache_key(**parts: object) -> str:
    """sha256 (first 32 hex digits) of the JSON of ``parts`` with sorted keys."""
    text = json.dumps(parts, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def preprocess_fields(pre: Preprocess) -> dict:
    """The settings of a :class:`Preprocess` as JSON-ready values (for cache keys)."""
    return {
        "mean": list(pre.mean),
        "std": list(pre.std),
        "value_range": list(pre.value_range),
        "input_size": list(pre.input_size),
        "channels": pre.channels,
    }
