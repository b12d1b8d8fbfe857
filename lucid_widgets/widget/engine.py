"""The widget's only door into the engine: settings -> Optimization runs, catalogs, objectives.

Keeping every engine call here lets the worker (and the tests, which swap these functions for
fakes) stay free of torch details. Settings arrive as the JSON dictionaries the front end edits and
are validated into :class:`PreviewConfig` / :class:`GridConfig`.
"""

from __future__ import annotations

import functools
from dataclasses import asdict, dataclass, fields
from typing import Any

from torch import nn

__all__ = [
    "GridConfig",
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

_PARAMS = ("fft", "pixel")


def _check(name: str, value: Any, kind: type, low: float, high: float) -> Any:
    if isinstance(value, bool) and kind is not bool:
        raise ValueError(f"setting {name!r} must be a number, got {value!r}")
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
    def from_dict(cls, values: dict | None, base: _Config | None = None) -> _Config:
        """Validated config from a (partial) settings dict; unknown keys raise with valid names."""
        values = dict(values or {})
        names = [field.name for field in fields(cls)]
        unknown = sorted(set(values) - set(names))
        if unknown:
            raise ValueError(f"unknown setting(s) {unknown}; valid settings: {', '.join(names)}")
        merged = {**asdict(base or cls()), **values}
        return cls(**merged)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class PreviewConfig(_Config):
    """Settings of the live preview run (the unit detail panel)."""

    steps: int = 512
    size: int = 128
    lr: float = 0.05
    seed: int = 0
    param: str = "fft"
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
        if self.param not in _PARAMS:
            raise ValueError(f"setting 'param' must be one of {_PARAMS}, got {self.param!r}")

    def restart_key(self) -> tuple:
        """Settings that need a new run when they change (the others apply live)."""
        return (self.size, self.seed, self.param, self.decorrelate, self.alpha, self.batch)


@dataclass(frozen=True)
class GridConfig(_Config):
    """Settings of the unit grid's thumbnails (part of the thumbnail cache key)."""

    size: int = 96
    steps: int = 128
    param: str = "fft"
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
        if self.param not in _PARAMS:
            raise ValueError(f"setting 'param' must be one of {_PARAMS}, got {self.param!r}")

    def cache_key(self) -> tuple:
        """What the pixels depend on (``batch_size`` only changes speed)."""
        return (self.size, self.steps, self.param, self.decorrelate, self.transforms, self.seed)


def unit_kind(kind: str, negative: bool) -> str:
    """Grid toggles -> the engine's unit objective kind (``"negative_neuron"``, ...)."""
    if kind not in ("channel", "neuron"):
        raise ValueError(f"grid objective must be 'channel' or 'neuron', got {kind!r}")
    return f"negative_{kind}" if negative else kind


def _channels(model: nn.Module) -> int:
    from lucid_widgets.optvis.preprocess import resolve

    return resolve(model).channels


def _image_param(size: int, batch: int, param: str, decorrelate: bool, alpha: bool, channels: int):
    from lucid_widgets.optvis.param import image

    return functools.partial(
        image, size, batch=batch, fft=param == "fft", decorrelate=decorrelate, alpha=alpha,
        channels=channels,
    )  # fmt: skip


def _run_options(config: PreviewConfig, overrides: dict) -> dict:
    keys = ("preprocess", "redirected_relu_steps")
    options = {key: overrides[key] for key in keys if key in overrides}
    options["transforms"] = overrides.get("transforms", None if config.transforms else [])
    return options


def make_preview(
    model: nn.Module, objective: Any, config: PreviewConfig, overrides: dict | None = None
) -> Any:
    """A new :class:`~lucid_widgets.optvis.render.Optimization` for the live preview.

    ``overrides`` may hold ``param_f``, ``optimizer``, ``transforms``, ``preprocess`` and
    ``redirected_relu_steps`` (what ``LivePreview(..., param_f=...)`` was given); they win over
    the settings. The run remembers its parameters so that :func:`resume_preview` can carry on
    after it was closed.
    """
    import torch

    from lucid_widgets.optvis.render import Optimization

    overrides = dict(overrides or {})
    param_f = overrides.get("param_f") or _image_param(
        config.size, config.batch, config.param, config.decorrelate, config.alpha, _channels(model)
    )
    optimizer = overrides.get("optimizer") or functools.partial(torch.optim.Adam, lr=config.lr)
    made: list = []

    def remembered_param_f() -> Any:
        made.append(param_f())
        return made[-1]

    run = Optimization(
        model, objective, param_f=remembered_param_f, optimizer=optimizer, seed=config.seed,
        **_run_options(config, overrides),
    )  # fmt: skip
    run.lucid_widget_params = made[-1]  # (params, image_f)
    return run


def resume_preview(
    model: nn.Module, previous: Any, config: PreviewConfig, overrides: dict, steps_done: int
) -> Any:
    """Carry on a closed preview run: same image parameters and optimizer state, new
    :class:`~lucid_widgets.optvis.render.Optimization` (the model is frozen again only while it
    runs)."""
    from lucid_widgets.optvis.render import Optimization

    params = previous.lucid_widget_params
    options = _run_options(config, overrides)
    relu_steps = options.get("redirected_relu_steps", 16)
    options["redirected_relu_steps"] = max(0, relu_steps - steps_done)
    run = Optimization(
        model, previous.objective, param_f=lambda: params,
        optimizer=lambda _: previous.optimizer, seed=config.seed, **options,
    )  # fmt: skip
    run.lucid_widget_params = params
    return run


def set_learning_rate(run: Any, lr: float) -> None:
    """Change the learning rate of a running optimization (next step)."""
    for group in run.optimizer.param_groups:
        group["lr"] = float(lr)


def set_transforms(run: Any, enabled: bool) -> None:
    """Standard transforms on or off for a running optimization (next step)."""
    run.transforms = None if enabled else []


def make_grid_batch(
    model: nn.Module, layer: str, units: list[int], kind: str, config: GridConfig
) -> Any:
    """One optimization rendering ``units`` of ``layer`` at once, one unit per batch element."""
    from lucid_widgets.optvis.render import Optimization
    from lucid_widgets.optvis.units import unit_batch_objective

    objective = unit_batch_objective(layer, units, kind)
    param_f = _image_param(
        config.size, len(units), config.param, config.decorrelate, False, _channels(model)
    )
    transforms = None if config.transforms else []
    return Optimization(model, objective, param_f=param_f, transforms=transforms, seed=config.seed)


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
