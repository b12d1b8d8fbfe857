"""The engine: objectives, parameterizations, transforms and the render loop (Lucid's ``optvis``).

Imports torch, numpy and tqdm, and nothing from the rest of the package.

>>> from lucid_widgets.optvis import objectives, param, render_vis   # doctest: +SKIP
>>> images = render_vis(model, objectives.channel("layer3", 7), thresholds=(64,))  # doctest: +SKIP
"""

from lucid_widgets.optvis import objectives, param, transforms
from lucid_widgets.optvis.hooks import LayerNotFoundError, LayerNotReachedError
from lucid_widgets.optvis.objective_base import Objective
from lucid_widgets.optvis.preprocess import IMAGENET, Preprocess
from lucid_widgets.optvis.render import Optimization, Step, optimize, render_vis
from lucid_widgets.optvis.units import iter_units, render_units

__all__ = [
    "IMAGENET",
    "LayerNotFoundError",
    "LayerNotReachedError",
    "Objective",
    "Optimization",
    "Preprocess",
    "Step",
    "iter_units",
    "objectives",
    "optimize",
    "param",
    "render_units",
    "render_vis",
    "transforms",
]
