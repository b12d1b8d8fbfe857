"""What an atlas build has to do: its settings, its layers and its tasks.

A build is a list of independent tasks, each with a stable id, so that resuming is "skip every
task whose completion record exists" and any executor (this process, a Ray actor) runs any task:

- ``render.<layer>.<view>.<window>``: one view of the units of one window of ``batch_size``
  units of a layer (units ``[window * batch_size, (window + 1) * batch_size)``, seeded
  ``seed + window * batch_size`` exactly as :func:`~lucid_widgets.optvis.units.render_units`
  seeds that batch);
- ``links.<layer>.<window>``: the connections of the same units;
- ``shard.<layers hash>.<start>-<stop>``: the dataset examples of a range of images over all
  layers; ``examples.<layers hash>`` merges the shards on the driver.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field

from torch import nn

from lucid_widgets.dataset.sample import default_layers
from lucid_widgets.optvis.hooks import resolve_layer

__all__ = ["VIEWS", "LayerPlan", "Settings", "Task", "plan_layers", "plan_tasks", "slug"]

# view name -> unit objective kind of ``iter_units`` (``None``: the diversity recipe)
VIEWS = {
    "channel": "channel",
    "negative": "negative_channel",
    "neuron": "neuron",
    "diversity": None,
}
DEFAULT_BATCH = 16
DEFAULT_SHARD = 1024
DIVERSITY_IMAGES = 4
DIVERSITY_WEIGHT = 1e2
CONNECTIONS_K = 10


def slug(name: str) -> str:
    """A layer name as a file-name component (``features.3`` stays, ``a/b`` -> ``a_b``)."""
    return re.sub(r"[^A-Za-z0-9_.-]", "_", name)


@dataclass(frozen=True)
class Settings:
    """Everything that changes an atlas's pictures: a folder holds one set (or variants)."""

    size: int = 128
    steps: int = 256
    batch_size: int = DEFAULT_BATCH
    seed: int = 0
    k: int = 9
    dataset: str | None = None  # fingerprint of the dataset, None without examples
    shard_size: int = DEFAULT_SHARD
    diversity_images: int = DIVERSITY_IMAGES
    diversity_weight: float = DIVERSITY_WEIGHT
    connections_k: int = CONNECTIONS_K
    recipe: str = "maco"  # optvis.recipes: "maco" or "lucid"

    def to_dict(self) -> dict:
        return asdict(self)

    def differences(self, other: Mapping) -> list[str]:
        """``"steps: 256 (stored) != 128 (asked)"`` for every setting that differs (a store
        without a ``recipe`` was built with Lucid's, the only one then)."""
        mine = self.to_dict()
        other = {"recipe": "lucid", **other}
        return [
            f"{name}: {other.get(name)!r} (stored) != {value!r} (asked)"
            for name, value in mine.items()
            if other.get(name) != value
        ]


@dataclass(frozen=True)
class LayerPlan:
    """One layer of the atlas: its name, module path, unit count and the units to build."""

    name: str
    path: str
    count: int
    units: tuple[int, ...]
    kind: str = "conv"
    shape: tuple[int, ...] = ()


@dataclass(frozen=True)
class Task:
    """One unit of work with a stable id (see the module docstring)."""

    id: str
    kind: str  # "render", "links", "shard", "examples"
    layer: str | None = None
    view: str | None = None
    units: tuple[int, ...] = ()
    window: int = 0
    start: int = 0
    stop: int = 0
    layers: tuple[str, ...] = field(default=())

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping) -> Task:
        data = dict(data)
        for name in ("units", "layers"):
            data[name] = tuple(data.get(name, ()))
        return cls(**data)


def _catalog_by_path(model: nn.Module) -> dict:
    from lucid_widgets.zoo.catalog import layers as catalog_layers

    return {info.name: info for info in catalog_layers(model)}


def _pick_units(units, name: str, count: int) -> tuple[int, ...]:
    chosen = units.get(name) if isinstance(units, Mapping) else units
    if chosen is None:
        return tuple(range(count))
    picked = tuple(sorted({int(u) for u in chosen}))
    bad = [u for u in picked if not 0 <= u < count]
    if bad:
        raise IndexError(
            f"Unit(s) {bad} out of range for layer {name!r}, which has {count} units "
            f"(valid: 0..{count - 1})."
        )
    return picked


def plan_layers(
    model: nn.Module,
    layers: Sequence[str] | str | None,
    units: Sequence[int] | Mapping[str, Sequence[int]] | None,
    catalog: dict | None = None,
) -> list[LayerPlan]:
    """The layers to build, in forward order, with their units (default: all of each)."""
    names = (
        default_layers(model)
        if layers is None
        else [layers]
        if isinstance(layers, str)
        else list(layers)
    )
    if not names:
        raise ValueError("layers is empty; give layer names or None for the browsable layers.")
    catalog = _catalog_by_path(model) if catalog is None else catalog
    order = {path: position for position, path in enumerate(catalog)}
    plans, seen = [], set()
    for name in names:
        path = resolve_layer(model, name)
        info = catalog.get(path)
        if path == "input" or info is None or not info.units:
            raise ValueError(
                f"Layer {name!r} has no units to visualize (output {info and info.shape})."
            )
        if path in seen:
            continue
        seen.add(path)
        plan = LayerPlan(
            name,
            path,
            info.units,
            _pick_units(units, name, info.units),
            info.kind,
            tuple(info.shape),
        )
        plans.append(plan)
    return sorted(plans, key=lambda plan: order.get(plan.path, len(order)))


def layers_key(plans: Sequence[LayerPlan]) -> str:
    """Short hash of the layer paths a dataset pass covers."""
    text = json.dumps([plan.path for plan in plans])
    return hashlib.sha256(text.encode()).hexdigest()[:10]


def plan_tasks(
    plans: Sequence[LayerPlan],
    views: Sequence[str],
    settings: Settings,
    connections: bool,
    dataset_length: int | None,
) -> list[Task]:
    """Every task of the build, dataset shards first (the merge last)."""
    tasks: list[Task] = []
    key = layers_key(plans)
    if dataset_length:
        step = settings.shard_size
        for start in range(0, dataset_length, step):
            stop = min(dataset_length, start + step)
            tasks.append(
                Task(
                    f"shard.{key}.{start}-{stop}",
                    "shard",
                    start=start,
                    stop=stop,
                    layers=tuple(p.path for p in plans),
                )
            )
    batch = settings.batch_size
    for plan in plans:
        windows: dict[int, list[int]] = {}
        for unit in plan.units:
            windows.setdefault(unit // batch, []).append(unit)
        for window, members in windows.items():
            base = f"{slug(plan.name)}.{window:05d}"
            for view in views:
                tasks.append(
                    Task(
                        f"render.{slug(plan.name)}.{view}.{window:05d}",
                        "render",
                        plan.name,
                        view,
                        tuple(members),
                        window,
                    )
                )
            if connections:
                tasks.append(
                    Task(f"links.{base}", "links", plan.name, None, tuple(members), window)
                )
    if dataset_length:
        tasks.append(Task(f"examples.{key}", "examples", layers=tuple(p.path for p in plans)))
    return tasks


def check_views(views: Sequence[str]) -> tuple[str, ...]:
    """Validated view names, in the given order."""
    views = (views,) if isinstance(views, str) else tuple(views)
    bad = [view for view in views if view not in VIEWS]
    if bad or not views:
        raise ValueError(f"Unknown view(s) {bad or views!r}; valid: {', '.join(VIEWS)}.")
    return views
