"""Model zoo: ``load(name)``, ``available()``, layer catalogs, labels and weights handling.

>>> import lucid_widgets as lw
>>> model = lw.zoo.load("efficientnet_lite0")  # doctest: +SKIP
>>> print(lw.zoo.available())  # doctest: +SKIP
"""

from __future__ import annotations

import importlib
from typing import Any

from lucid_widgets.zoo.registry import (
    ModelNotFoundError,
    ZooEntry,
    ZooListing,
    available,
    load,
    model_names,
)
from lucid_widgets.zoo.weights import OFFLINE_ENV, WeightsMismatchError, WeightsUnavailableError

__all__ = [
    "OFFLINE_ENV",
    "LayerInfo",
    "ModelNotFoundError",
    "WeightsMismatchError",
    "WeightsUnavailableError",
    "ZooEntry",
    "ZooListing",
    "available",
    "find_label",
    "imagenet_labels",
    "layer_table",
    "layers",
    "load",
    "model_names",
]

# Imported on first use so the package imports quickly (and before these modules exist).
_LAZY = {
    "layers": "lucid_widgets.zoo.catalog",
    "layer_table": "lucid_widgets.zoo.catalog",
    "LayerInfo": "lucid_widgets.zoo.catalog",
    "imagenet_labels": "lucid_widgets.zoo.labels",
    "find_label": "lucid_widgets.zoo.labels",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'lucid_widgets.zoo' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
