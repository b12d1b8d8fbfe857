"""``build``: plan an atlas's tasks, skip the finished ones, run the rest, commit each whole.

The local executor runs the tasks here, one by one, through the engine (``iter_units``,
``dataset_examples``); ``executor="ray"`` hands the same tasks to Ray actors
(:mod:`lucid_widgets.atlas.distributed`). Either way the driver commits every finished task to
the store (files, then the completion record), so an interrupted build (Ctrl-C, ``stop``, a dead
kernel or worker) resumes exactly where it stopped.
"""

from __future__ import annotations

import io
import os
import warnings
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import numpy as np
from torch import nn
from tqdm.auto import tqdm

from lucid_widgets.atlas import links
from lucid_widgets.atlas.files import atomic_write_json, build_lock
from lucid_widgets.atlas.merge import merge_shards
from lucid_widgets.atlas.plan import (
    DEFAULT_BATCH,
    DEFAULT_SHARD,
    Settings,
    Task,
    check_views,
    plan_layers,
    plan_tasks,
    slug,
)
from lucid_widgets.atlas.store import (
    FORMAT,
    FORMAT_VERSION,
    MANIFEST,
    Atlas,
    AtlasSettingsError,
    AtlasWeightsError,
)
from lucid_widgets.atlas.tasks import TaskOutput, TaskRunner
from lucid_widgets.dataset.keys import dataset_fingerprint, model_digest
from lucid_widgets.dataset.sources import open_dataset
from lucid_widgets.optvis.recipes import RECIPES
from lucid_widgets.optvis.render import StopSignal, should_stop

__all__ = ["build", "open_atlas"]

Callback = Callable[[TaskOutput], object] | None


def _load(model: nn.Module | str) -> tuple[nn.Module, str | None]:
    if isinstance(model, str):
        from lucid_widgets.zoo import load

        return load(model), model
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be an nn.Module or a zoo name, got {type(model).__name__}.")
    return model, None


def _model_name(model: nn.Module, zoo_name: str | None) -> str:
    return zoo_name or getattr(model, "lucid_name", None) or type(model).__name__


def check_weights(manifest: Mapping, digest: str, folder: Path) -> None:
    """``AtlasWeightsError`` unless ``digest`` is the manifest's weights hash."""
    if manifest["weights_sha256"] != digest:
        raise AtlasWeightsError(
            f"The atlas {str(folder)!r} was built for {manifest['model']!r} with weights "
            f"{manifest['weights_sha256'][:12]}..., but this model's weights hash to "
            f"{digest[:12]}...: open it with the same model and weights, or build a new atlas "
            "in another folder."
        )


def _manifest(folder, model, name, digest, plans, views, settings, tasks) -> dict:
    """The manifest to write: the stored one extended with new layers, units, views, tasks."""
    path = folder / MANIFEST
    entries = {
        p.name: {
            "name": p.name,
            "path": p.path,
            "count": p.count,
            "units": list(p.units),
            "kind": p.kind,
            "shape": list(p.shape),
        }
        for p in plans
    }
    if path.exists():
        stored = Atlas.load(folder).manifest
        check_weights(stored, digest, folder)
        differences = settings.differences(stored["settings"])
        if differences:
            raise AtlasSettingsError(
                f"The atlas {str(folder)!r} holds other settings: {'; '.join(differences)}. "
                "Build with the stored settings to extend or resume it, pass variant='name' "
                "to add these settings as a new variant, or use another folder."
            )
        for old in stored["layers"]:
            entry = entries.setdefault(old["name"], old)
            entry["units"] = sorted(set(entry["units"]) | set(old["units"]))
        views = tuple(dict.fromkeys([*stored["views"], *views]))
        known = {task["id"]: task for task in stored["tasks"]}
        tasks = [*known.values(), *(t.to_dict() for t in tasks if t.to_dict()["id"] not in known)]
    else:
        tasks = [task.to_dict() for task in tasks]
    from lucid_widgets.zoo.catalog import layers as catalog_layers

    catalog = [info.__dict__ | {"shape": list(info.shape)} for info in catalog_layers(model)]
    return {
        "format": FORMAT,
        "version": FORMAT_VERSION,
        "model": name,
        "model_class": type(model).__name__,
        "weights_sha256": digest,
        "settings": settings.to_dict(),
        "views": list(views),
        "catalog": catalog,
        "layers": sorted(entries.values(), key=lambda e: _order(catalog, e["path"])),
        "tasks": tasks,
    }


def _order(catalog: list[dict], path: str) -> int:
    return next((i for i, info in enumerate(catalog) if info["name"] == path), len(catalog))


def _stale(atlas: Atlas) -> set[str]:
    """Tasks to do again: files missing or corrupt, or connections that were unavailable."""
    redo = {problem.task for problem in atlas.check()}
    if links.connections_function() is not None:
        redo |= {
            i
            for i, r in atlas.records.items()
            if r["task"]["kind"] == "links" and not r["meta"].get("available", True)
        }
    return redo


def _read_shard(atlas: Atlas, task_id: str) -> tuple[dict, dict]:
    record = atlas.records[task_id]
    (path,) = record["files"]
    with np.load(io.BytesIO(atlas.read(path))) as data:
        arrays = {name: data[name] for name in data.files}
    return arrays, record["meta"]


def _run_local(runner: TaskRunner, tasks, atlas: Atlas, bar, stop, callback) -> None:
    for task in tasks:
        if should_stop(stop):
            return
        output = runner.compute(task, stop)
        if output is None:
            return
        atlas.commit(output)
        bar.update(1)
        if callback is not None:
            callback(output)


def build(
    model: nn.Module | str,
    folder: str | os.PathLike,
    layers: Sequence[str] | str | None = None,
    units: Sequence[int] | Mapping[str, Sequence[int]] | None = None,
    views: Sequence[str] = ("channel", "negative"),
    dataset: object = None,
    k: int = 9,
    connections: bool = True,
    size: int = 128,
    steps: int = 256,
    batch_size: int | None = None,
    seed: int = 0,
    executor: str | None = None,
    address: str | None = None,
    *,
    variant: str | None = None,
    progress: bool = True,
    stop: StopSignal = None,
    callback: Callback = None,
    workers: int | None = None,
    shard_size: int = DEFAULT_SHARD,
    recipe: str = "maco",
) -> Atlas:
    """Precompute an atlas of ``model`` into ``folder``, or resume one where it stopped.

    Parameters
    ----------
    model
        An ``nn.Module`` (left exactly as found) or a zoo name (``"efficientnet_lite0"``).
    folder
        The atlas folder: created, or extended / resumed when it exists.
    layers
        Layer names or aliases; default the catalog's browsable layers.
    units
        Unit indices for every layer, or ``{layer: units}``; default all units.
    views
        Any of ``"channel"``, ``"negative"``, ``"neuron"``, ``"diversity"``.
    dataset, k
        A dataset (folder, tensor, torchvision dataset) and how many examples per unit and
        direction; one pass over it for all layers, in shards of 1024 images.
    connections
        Store each unit's top input / output units (:mod:`lucid_widgets.blocks`).
    size, steps, batch_size, seed
        As :func:`~lucid_widgets.optvis.units.render_units` (``batch_size`` default 16).
    executor, address
        ``None`` / ``"local"``: in this process. ``"ray"``: Ray actors; ``address=None``
        starts a local Ray cluster, ``"auto"`` or ``"ray://host:10001"`` joins one.
    variant
        Build other settings next to the stored ones, in ``folder/variants/<variant>``.
    progress, stop, callback
        A tqdm bar; an Event or callable that ends the build between tasks (resume by calling
        ``build`` again); a function called with each finished task's output.
    workers
        Ray executor: number of actors (default: one per CPU, or per GPU of the cluster).
    shard_size
        Images per dataset task (a setting: the shards are part of the store).
    recipe
        How the pictures are rendered (:mod:`lucid_widgets.optvis.recipes`): ``"maco"`` (the
        default) or ``"lucid"`` (the classic Lucid defaults; atlases stored before recipes
        existed are ``"lucid"``). A setting: it must match the stored one to resume.

    Returns
    -------
    Atlas
        The store; ``atlas.missing()`` lists the tasks not done when stopped early.

    Raises
    ------
    AtlasWeightsError, AtlasSettingsError, AtlasLockedError
        Other weights or settings in ``folder``, or another build running on it.
    """
    if executor not in (None, "local", "ray"):
        raise ValueError(f"executor must be None, 'local' or 'ray', got {executor!r}.")
    model, zoo_name = _load(model)
    folder = Path(folder).expanduser()
    if variant is not None:
        folder = folder / "variants" / slug(variant)
    views = check_views(views)
    if recipe not in RECIPES:
        raise ValueError(f"recipe must be one of {RECIPES}, got {recipe!r}.")
    source = None if dataset is None else open_dataset(dataset)
    fingerprint = None
    if source is not None:
        fingerprint = dataset_fingerprint(source)
        if fingerprint is None or source.length is None:
            raise ValueError(
                "The atlas needs a dataset it can read twice with a length: "
                "a folder, a tensor or a torchvision-style dataset."
            )
    settings = Settings(
        size=int(size),
        steps=int(steps),
        batch_size=int(batch_size or DEFAULT_BATCH),
        seed=int(seed),
        k=int(k),
        dataset=fingerprint,
        shard_size=int(shard_size),
        recipe=recipe,
    )
    plans = plan_layers(model, layers, units)
    tasks = plan_tasks(plans, views, settings, connections, source and source.length)
    with build_lock(folder):
        digest = model_digest(model)
        name = _model_name(model, zoo_name)
        manifest = _manifest(folder, model, name, digest, plans, views, settings, tasks)
        atomic_write_json(folder / MANIFEST, manifest)
        atlas = Atlas.load(folder)
        atlas.forget(_stale(atlas))
        todo = [t for t in tasks if not atlas.done(t.id) and t.kind != "examples"]
        bar = tqdm(
            total=len(tasks),
            initial=len(tasks) - len(todo),
            desc="atlas tasks",
            unit="task",
            disable=not progress,
        )
        try:
            if executor == "ray":
                from lucid_widgets.atlas.distributed import run_ray

                run_ray(
                    model,
                    zoo_name,
                    plans,
                    settings,
                    dataset,
                    todo,
                    atlas,
                    address=address,
                    bar=bar,
                    stop=stop,
                    callback=callback,
                    workers=workers,
                    digest=digest,
                )
            else:
                _run_local(
                    TaskRunner(model, plans, settings, dataset), todo, atlas, bar, stop, callback
                )
            _merge_examples(atlas, tasks, plans, settings, bar)
        except KeyboardInterrupt:
            warnings.warn(
                f"Atlas build interrupted: {len(atlas.missing())} tasks left; call "
                "build again with the same arguments to resume.",
                stacklevel=2,
            )
        finally:
            bar.close()
            atlas.write_indexes()
    return atlas


def _merge_examples(atlas: Atlas, tasks: list[Task], plans, settings: Settings, bar) -> None:
    """The ``examples`` task, once every shard is done."""
    for task in tasks:
        if task.kind != "examples" or atlas.done(task.id):
            continue
        shard_ids = [t.id for t in tasks if t.kind == "shard" and t.layers == task.layers]
        if not all(atlas.done(i) for i in shard_ids):
            return
        shards = [_read_shard(atlas, i) for i in shard_ids]
        atlas.commit(merge_shards(task, shards, plans, settings.k))
        bar.update(1)


def open_atlas(
    folder: str | os.PathLike, model: nn.Module | None = None, variant: str | None = None
) -> Atlas:
    """Open an atlas folder for reading (and writing back).

    ``model``, when given, must have the weights the atlas was built with
    (``AtlasWeightsError`` otherwise).
    """
    folder = Path(folder).expanduser()
    if variant is not None:
        folder = folder / "variants" / slug(variant)
    atlas = Atlas.load(folder)
    if model is not None:
        check_weights(atlas.manifest, model_digest(model), folder)
    return atlas
