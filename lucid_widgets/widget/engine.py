"""The widget's only door into the engine: settings -> Optimization runs, catalogs, objectives.

Keeping every engine call here lets the worker (and the tests, which swap these functions for
fakes) stay free of torch details. Settings arrive as the JSON dictionaries the front end edits and
are validated into :class:`PreviewConfig` / :class:`GridConfig`.
"""

from __future__ import annotations

import dataclasses
import functools
from dataclasses import asdict, dataclass, fields
from typing import Any

from torch import nn

from lucid_widgets.widget.runs import LiveRun

__all__ = [
    "DEFAULT_LR",
    "GRID_KINDS",
    "PARAMS",
    "GridConfig",
    "LiveRun",
    "PreviewConfig",
    "catalog",
    "compile_text",
    "make_grid_batch",
    "make_preview",
    "resume_preview",
    "set_learning_rate",
    "set_transforms",
    "unit_kind",
    "with_diversity",
]

PARAMS = ("fft", "pixel", "maco")
# the learning rate a param starts with (PreviewConfig.merged switches it along with the param)
DEFAULT_LR = {"fft": 0.05, "pixel": 0.05, "maco": 1.0}
GRID_KINDS = ("channel", "neuron")


def _check(name: str, value: Any, kind: type, low: float, high: float) -> Any:
    if isinstance(value, bool) and kind is not bool:
        raise ValueError(f"setting {name!r} must be a number, got {value!r}")
    if kind is int and isinstance(value, float) and not value.is_integer():
        raise ValueError(f"setting {name!r} must be a whole number, got {value!r}")
    try:
        value = kind(value)
    except (TypeError, ValueError):
        raise ValueError(f"setting {name!r} must be a {kind.__name__}, got {value!r}") from None
    if kind is not bool and not low <= value <= high:
        raise ValueError(f"setting {name!r} must be between {low} and {high}, got {value!r}")
    return value


@dataclass(frozen=True)
class _Config:
    @classmethod
    def from_dict(cls, values: dict | None) -> _Config:
        """Validated config from a (partial) settings dict; unknown keys raise with valid names."""
        values = dict(values or {})
        names = [field.name for field in fields(cls)]
        unknown = sorted(set(values) - set(names))
        if unknown:
            raise ValueError(f"unknown setting(s) {unknown}; valid settings: {', '.join(names)}")
        return cls(**{**asdict(cls()), **values})

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def merged(self, values: dict) -> _Config:
        """This config with ``values`` changed (a partial dict changes only what it names)."""
        return type(self).from_dict({**self.to_dict(), **values})


@dataclass(frozen=True)
class PreviewConfig(_Config):
    """Settings of the live preview run (the unit detail panel).

    ``param`` is ``"maco"`` (the default) or ``"fft"`` / ``"pixel"`` (Lucid's image, Adam at
    0.05, the classic defaults). ``"maco"`` is MACO's recipe (see
    :mod:`lucid_widgets.optvis.recipes`: a canvas twice ``size``, its crops, NAdam; the frames
    show the canvas's central ``size`` px, and with ``alpha`` its transparency map as alpha;
    ``decorrelate`` does not apply). ``lr`` is the learning rate of the run's optimizer.
    """

    steps: int = 512
    size: int = 128
    lr: float = 1.0  # DEFAULT_LR[param]
    seed: int = 0
    param: str = "maco"
    decorrelate: bool = True
    alpha: bool = False
    transforms: bool = True
    batch: int = 1
    diversity: float = 0.0

    def __post_init__(self) -> None:
        for name, kind, low, high in (
            ("steps", int, 1, 1_000_000), ("size", int, 8, 2048), ("lr", float, 1e-6, 10.0),
            ("seed", int, 0, 2**31 - 1), ("batch", int, 1, 64), ("diversity", float, 0, 1e6),
            ("decorrelate", bool, 0, 1), ("alpha", bool, 0, 1), ("transforms", bool, 0, 1),
        ):  # fmt: skip
            object.__setattr__(self, name, _check(name, getattr(self, name), kind, low, high))
        if self.param not in PARAMS:
            raise ValueError(f"setting 'param' must be one of {PARAMS}, got {self.param!r}")

    def merged(self, values: dict) -> PreviewConfig:
        """As :meth:`_Config.merged`; a new ``param`` also brings its own default ``lr``
        (:data:`DEFAULT_LR`) when ``lr`` was at the old param's default and is not changed."""
        values = dict(values)
        param = values.get("param", self.param)
        lr = values.get("lr", self.lr)
        if param != self.param and lr == self.lr == DEFAULT_LR.get(self.param):
            values["lr"] = DEFAULT_LR.get(param, lr)
        return type(self).from_dict({**self.to_dict(), **values})

    def restart_key(self) -> tuple:
        """Settings that need a new run when they change (the others apply live)."""
        return (self.size, self.seed, self.param, self.decorrelate, self.alpha, self.batch)


@dataclass(frozen=True)
class GridConfig(_Config):
    """Settings of the unit grid's thumbnails (part of the thumbnail cache key); ``param`` as
    in :class:`PreviewConfig` (MACO by default, with its own NAdam at 1.0)."""

    size: int = 96
    steps: int = 128
    param: str = "maco"
    decorrelate: bool = True
    transforms: bool = True
    batch_size: int = 16
    seed: int = 0

    def __post_init__(self) -> None:
        for name, kind, low, high in (
            ("size", int, 8, 1024), ("steps", int, 1, 100_000), ("batch_size", int, 1, 256),
            ("seed", int, 0, 2**31 - 1), ("decorrelate", bool, 0, 1), ("transforms", bool, 0, 1),
        ):  # fmt: skip
            object.__setattr__(self, name, _check(name, getattr(self, name), kind, low, high))
        if self.param not in PARAMS:
            raise ValueError(f"setting 'param' must be one of {PARAMS}, got {self.param!r}")

    def cache_key(self) -> tuple:
        """What the pixels depend on (``batch_size`` only changes speed)."""
        return (self.size, self.steps, self.param, self.decorrelate, self.transforms, self.seed)


def unit_kind(kind: str, negative: bool) -> str:
    """Grid toggles -> the engine's unit objective kind (``"negative_neuron"``, ...)."""
    if kind not in GRID_KINDS:
        raise ValueError(f"grid objective must be one of {GRID_KINDS}, got {kind!r}")
    return f"negative_{kind}" if negative else kind


def _channels(model: nn.Module) -> int:
    from lucid_widgets.optvis.preprocess import resolve

    return resolve(model).channels


def _recipe(config: PreviewConfig | GridConfig, batch: int, alpha: bool, channels: int, lr=None):
    """The engine recipe of ``config.param`` (``lr`` None: the recipe's own). MACO is made for
    RGB: a model of other channel counts gets Lucid's Fourier image (and Adam) instead."""
    from lucid_widgets.optvis import recipes

    options = {} if lr is None else {"lr": lr}
    if config.param == "maco" and channels != 3:
        config = dataclasses.replace(config, param="fft")
        if lr == DEFAULT_LR["maco"]:  # MACO's default lr is not one for Adam
            options["lr"] = DEFAULT_LR["fft"]
    if config.param == "maco":
        return recipes.maco_recipe(config.size, batch, channels=channels, **options)
    return recipes.lucid_recipe(
        config.size, batch, fft=config.param == "fft", decorrelate=config.decorrelate,
        alpha=alpha, channels=channels, **options,
    )  # fmt: skip


def _preview_plan(model: nn.Module, config: PreviewConfig, overrides: dict) -> dict:
    """What a preview run uses: the settings' recipe, the overrides winning over it.

    With a ``param_f`` of its own (the user's, or a Microscope view's photo) the run keeps
    Lucid's defaults for whatever it was not given: MACO's crops or NAdam never apply to an
    image that is not MACO's; its Adam takes ``lr`` unless the settings' param is MACO (whose
    ``lr`` is NAdam's).
    """
    from lucid_widgets.optvis.recipes import lucid_recipe

    own_image = overrides.get("param_f") is not None
    if own_image:
        lr = config.lr if config.param != "maco" else DEFAULT_LR["fft"]
        recipe = lucid_recipe(config.size, config.batch, lr=lr)
    else:
        recipe = _recipe(config, config.batch, config.alpha, _channels(model), config.lr)
    return {
        "param_f": overrides.get("param_f") or recipe.param_f,
        "optimizer": overrides.get("optimizer") or recipe.optimizer,
        "standard_transforms": overrides.get("transforms", recipe.transforms),
        "redirected_relu_steps": overrides.get(
            "redirected_relu_steps", recipe.redirected_relu_steps
        ),
        "follows_lr": "optimizer" not in overrides and not (own_image and config.param == "maco"),
    }


def _started(model: nn.Module, objective: Any, plan: dict, transforms: Any, **options) -> LiveRun:
    """A new Optimization from ``plan`` (see :func:`_preview_plan`), its parameters kept."""
    from lucid_widgets.optvis.render import Optimization

    made: list = []

    def remembered_param_f() -> Any:
        made.append(plan["param_f"]())
        return made[-1]

    relu_steps = plan["redirected_relu_steps"]
    run = Optimization(
        model, objective, param_f=remembered_param_f, optimizer=plan["optimizer"],
        transforms=transforms, redirected_relu_steps=relu_steps, **options,
    )  # fmt: skip
    return LiveRun(
        run, made[-1], plan["standard_transforms"], relu_steps,
        alpha=plan.get("alpha", False), follows_lr=plan.get("follows_lr", True),
    )  # fmt: skip


def make_preview(
    model: nn.Module, objective: Any, config: PreviewConfig, overrides: dict | None = None
) -> LiveRun:
    """A new live preview run.

    ``overrides`` may hold ``param_f``, ``optimizer``, ``transforms``, ``preprocess`` and
    ``redirected_relu_steps`` (what ``LivePreview(..., param_f=...)`` was given); they win over
    the settings (see :func:`_preview_plan`). The run keeps its parameters so that
    :func:`resume_preview` can carry on after it was closed.
    """
    overrides = dict(overrides or {})
    plan = {**_preview_plan(model, config, overrides), "alpha": config.alpha}
    transforms = plan["standard_transforms"] if config.transforms else []
    options = {"preprocess": overrides["preprocess"]} if "preprocess" in overrides else {}
    return _started(model, objective, plan, transforms, seed=config.seed, **options)


def resume_preview(
    model: nn.Module, previous: LiveRun, config: PreviewConfig, overrides: dict, steps_done: int
) -> LiveRun:
    """Carry on a closed preview run: same image parameters, optimizer state and recipe, a new
    optimization (the model is frozen again only while it runs)."""
    from lucid_widgets.optvis.render import Optimization

    image_param = previous.image_param
    options = {"preprocess": overrides["preprocess"]} if "preprocess" in overrides else {}
    transforms = previous.standard_transforms if config.transforms else []
    relu_steps = max(0, previous.redirected_relu_steps - steps_done)
    run = Optimization(
        model, previous.objective, param_f=lambda: image_param,
        optimizer=lambda _: previous.optimizer, transforms=transforms, seed=config.seed,
        redirected_relu_steps=relu_steps, **options,
    )  # fmt: skip
    return LiveRun(
        run, image_param, previous.standard_transforms, previous.redirected_relu_steps,
        alpha=previous.alpha, follows_lr=previous.follows_lr,
    )  # fmt: skip


def set_learning_rate(run: Any, lr: float) -> None:
    """Change the learning rate of a running optimization (next step); a run whose optimizer
    does not follow the setting (the user's own) is left alone."""
    if not getattr(run, "follows_lr", True):
        return
    for group in run.optimizer.param_groups:
        group["lr"] = float(lr)


def set_transforms(run: Any, enabled: bool) -> None:
    """The run's standard transforms (MACO's crops for MACO) on or off (next step)."""
    run.transforms = getattr(run, "standard_transforms", None) if enabled else []


def make_grid_batch(
    model: nn.Module, layer: str, units: list[int], kind: str, config: GridConfig
) -> LiveRun:
    """One optimization rendering ``units`` of ``layer`` at once, one unit per batch element;
    its ``image()`` is the thumbnails at ``config.size``."""
    from lucid_widgets.optvis.units import unit_batch_objective

    objective = unit_batch_objective(layer, units, kind)
    recipe = _recipe(config, len(units), False, _channels(model))
    plan = {
        "param_f": recipe.param_f, "optimizer": recipe.optimizer,
        "standard_transforms": recipe.transforms,
        "redirected_relu_steps": recipe.redirected_relu_steps,
    }  # fmt: skip
    transforms = recipe.transforms if config.transforms else []
    return _started(model, objective, plan, transforms, seed=config.seed)


def catalog(model: nn.Module) -> list[dict[str, Any]]:
    """The model's layers, in forward order, as JSON-friendly dicts for the layer browser."""
    from lucid_widgets.zoo import layers

    rows = []
    for info in layers(model):
        row = asdict(info)
        row["shape"] = list(info.shape)
        rows.append(row)
    return rows


def compile_text(text: str, model: nn.Module, layer_units: dict[str, int | None]) -> Any:
    """Parse an editor expression into an Objective, checking layers and units against the model.

    Raises
    ------
    lucid_widgets.expression.compiler.ExpressionError
    """
    from lucid_widgets.expression.compiler import compile_objective
    from lucid_widgets.optvis.hooks import resolve_layer

    return compile_objective(
        text, layers=layer_units, resolve_layer=functools.partial(resolve_layer, model)
    )


def with_diversity(objective: Any, layer: str | None, weight: float, batch: int) -> Any:
    """``objective - weight * diversity(layer)`` when it applies (weight > 0, batch > 1)."""
    if not layer or weight <= 0 or batch < 2:
        return objective
    from lucid_widgets.optvis.objectives import diversity

    return objective - weight * diversity(layer)
