"""lucid_widgets: OpenAI Microscope and Lucid for PyTorch, live in the notebook.

>>> import lucid_widgets as lw                                   # doctest: +SKIP
>>> model = lw.zoo.load("efficientnet_lite0")                     # doctest: +SKIP
>>> images = lw.render_vis(model, "block5:12", thresholds=(256,))  # doctest: +SKIP
>>> lw.Microscope(model)                                          # doctest: +SKIP
"""

from __future__ import annotations

import importlib
from typing import Any

from lucid_widgets.api import render_vis
from lucid_widgets.dataset import dataset_examples
from lucid_widgets.display import grid, save, show
from lucid_widgets.optvis import (
    IMAGENET,
    LayerNotFoundError,
    LayerNotReachedError,
    Objective,
    Optimization,
    Preprocess,
    Step,
    iter_units,
    objectives,
    optimize,
    param,
    render_units,
    transforms,
)

__version__ = "0.1.0"

__all__ = [
    "IMAGENET",
    "LayerNotFoundError",
    "LayerNotReachedError",
    "LivePreview",
    "Microscope",
    "Objective",
    "Optimization",
    "Preprocess",
    "Step",
    "atlas",
    "blocks",
    "dataset_examples",
    "grid",
    "iter_units",
    "objectives",
    "optimize",
    "param",
    "render_units",
    "render_vis",
    "sample_view",
    "save",
    "show",
    "transforms",
    "zoo",
]

# Heavier parts load on first use: the widget (anywidget, ipywidgets), the zoo, sample views.
_LAZY = {
    "atlas": ("lucid_widgets.atlas", None),
    "Microscope": ("lucid_widgets.widget", "Microscope"),
    "LivePreview": ("lucid_widgets.widget", "LivePreview"),
    "zoo": ("lucid_widgets.zoo", None),
    "blocks": ("lucid_widgets.blocks", None),
    "sample_view": ("lucid_widgets.dataset", "sample_view"),
}


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module 'lucid_widgets' has no attribute {name!r}")
    module_name, attribute = _LAZY[name]
    module = importlib.import_module(module_name)
    value = module if attribute is None else getattr(module, attribute)
    globals()[name] = value
    return value
