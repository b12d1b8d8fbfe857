"""The task functions: the one code path for the math, whichever executor runs a task.

:class:`TaskRunner` holds a model (loaded once) and the build's settings; ``runner.compute(task)``
returns the task's output files as bytes (PNG images, JSON, NPZ) plus a little metadata, or
``None`` when it was stopped. It writes nothing: the driver commits the outputs to the store, so a
task's outputs appear whole or not at all, and workers need no access to the atlas folder.
"""

from __future__ import annotations

import io
import itertools
import json
import os
import socket
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image
from torch import nn

from lucid_widgets.atlas.plan import VIEWS, LayerPlan, Settings, Task, slug
from lucid_widgets.dataset.examples import dataset_examples
from lucid_widgets.dataset.sources import DatasetSource, open_dataset
from lucid_widgets.optvis.hooks import model_device
from lucid_widgets.optvis.objectives import diversity
from lucid_widgets.optvis.preprocess import resolve
from lucid_widgets.optvis.recipes import make_recipe
from lucid_widgets.optvis.render import Optimization, StopSignal, should_stop, to_numpy
from lucid_widgets.optvis.units import iter_units, unit_batch_objective

__all__ = ["TaskOutput", "TaskRunner", "encode_png", "image_path", "merge_parts", "task_parts"]

CPU_MICRO_BATCH = 4  # units per optimization on a CPU (``iter_units``'s CPU default)
ARRAYS = ("values", "indices", "positions")
WHICH = ("top", "bottom")


def image_path(layer: str, view: str, unit: int) -> str:
    """Store-relative path of one unit's image."""
    return f"layers/{slug(layer)}/{view}/{unit:05d}.png"


def encode_png(image: np.ndarray) -> bytes:
    """``(H, W, 3)`` float in [0, 1] or uint8 -> PNG bytes (lossless)."""
    if image.dtype != np.uint8:
        image = (np.clip(image, 0, 1) * 255 + 0.5).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(image[..., :3]).save(buffer, format="PNG", optimize=False, compress_level=6)
    return buffer.getvalue()


def encode_npz(arrays: Mapping[str, np.ndarray]) -> bytes:
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)
    return buffer.getvalue()


@dataclass
class TaskOutput:
    """A finished task: its files (store-relative path -> bytes) and metadata."""

    task: Task
    files: dict[str, bytes]
    meta: dict


def micro_batch(device: str | torch.device | None, settings: Settings) -> int:
    """Units one optimization holds: 4 on a CPU (``iter_units``'s default), else the batch."""
    cpu = device is None or torch.device(device).type == "cpu"
    return CPU_MICRO_BATCH if cpu else settings.batch_size


def task_parts(task: Task, micro: int) -> list[tuple[int, ...] | None]:
    """The pieces ``task`` can be computed in, one ``TaskRunner.compute`` call each.

    A render task splits into its micro-batches of ``micro`` units (one unit each for
    ``"diversity"``), which compute exactly as in the whole task: same batches, same seeds.
    Other tasks are one piece, ``None``: the whole task.
    """
    if task.kind != "render":
        return [None]
    step = 1 if VIEWS[task.view] is None else micro
    return [task.units[start : start + step] for start in range(0, len(task.units), step)]


def merge_parts(task: Task, outputs: Sequence[TaskOutput]) -> TaskOutput:
    """The output of ``task`` from the outputs of its parts, in the order of ``runner.parts``.

    ``meta`` is the first part's with the task's ``units``, the summed ``seconds`` and, when
    more than one process worked on it, every ``pids``.
    """
    if not outputs:
        raise ValueError(f"Task {task.id} has no part outputs to merge.")
    files: dict[str, bytes] = {}
    for output in outputs:
        files.update(output.files)
    meta = dict(outputs[0].meta)
    if len(outputs) > 1:
        meta["seconds"] = round(sum(output.meta["seconds"] for output in outputs), 3)
        meta["units"] = list(task.units)
        pids = sorted({output.meta["pid"] for output in outputs})
        if len(pids) > 1:
            meta["pids"] = pids
    return TaskOutput(task, files, meta)


def dataset_range(source: DatasetSource, start: int, stop: int) -> object:
    """Images ``start..stop-1`` of a dataset, as something :func:`open_dataset` reads."""
    if source.kind == "folder":
        return source.names[start:stop]
    if source.kind == "tensor":
        return source.data[start:stop]
    if source.kind == "map":
        return [source.data[index] for index in range(start, stop)]
    return list(itertools.islice(iter(source.data), start, stop))


class TaskRunner:
    """Runs tasks for one model: the local executor and every Ray actor use this class."""

    def __init__(
        self,
        model: nn.Module,
        plans: Sequence[LayerPlan],
        settings: Settings,
        dataset: object = None,
        device: str | torch.device | None = None,
    ) -> None:
        self.model = model if device is None else model.to(device)
        self.plans = {plan.name: plan for plan in plans}
        self.settings = settings
        self.source = None if dataset is None else open_dataset(dataset)
        self.micro_batch = micro_batch(model_device(self.model), settings)

    def parts(self, task: Task) -> list[tuple[int, ...] | None]:
        """``task_parts(task, self.micro_batch)``: the pieces :meth:`compute` takes."""
        return task_parts(task, self.micro_batch)

    def compute(
        self, task: Task, stop: StopSignal = None, part: Sequence[int] | None = None
    ) -> TaskOutput | None:
        """The outputs of ``task``, or of one of its :meth:`parts`; ``None`` when stopped.

        The outputs of all the parts, put together by :func:`merge_parts`, are the whole
        task's outputs.
        """
        started = time.perf_counter()
        if part is None:
            run = {"render": self._render, "links": self._links, "shard": self._shard}[task.kind]
            result = run(task, stop)
        else:
            result = self._render(task, stop, self._check_part(task, tuple(part)))
        if result is None:
            return None
        files, meta = result
        meta.update(
            seconds=round(time.perf_counter() - started, 3),
            host=socket.gethostname(),
            pid=os.getpid(),
        )
        return TaskOutput(task, files, meta)

    # ------------------------------------------------------------------ renders

    def _check_part(self, task: Task, part: tuple[int, ...]) -> tuple[int, ...]:
        """``part``, checked to be one of the task's :meth:`parts` (``ValueError`` if not)."""
        parts = self.parts(task)
        if part not in parts:
            raise ValueError(
                f"Units {list(part)} are not a part of task {task.id}; its parts are "
                f"{[list(p) for p in parts if p is not None]}."
            )
        return part

    def _render(self, task: Task, stop: StopSignal, part: tuple[int, ...] | None = None):
        """All of the task's units, or those of one of its parts (a batch of its own)."""
        settings = self.settings
        units = task.units if part is None else part
        batch = settings.batch_size if part is None else len(part)
        offset = task.units.index(units[0])  # seeded as in the whole task's batch
        seed = settings.seed + task.window * settings.batch_size + offset
        if VIEWS[task.view] is None:
            images = self._diversity(task.layer, units, stop)
        else:
            stream = iter_units(
                self.model,
                self.plans[task.layer].path,
                units,
                size=settings.size,
                steps=settings.steps,
                batch_size=batch,
                kind=VIEWS[task.view],
                seed=seed,
                stop=stop,
                micro_batch=self.micro_batch,
                recipe=settings.recipe,
            )
            images = next(stream, (None, None))[1]  # (U, H, W, 3): one batch
        if images is None or should_stop(stop):
            return None
        files = {
            image_path(task.layer, task.view, unit): encode_png(image)
            for unit, image in zip(units, images, strict=True)
        }
        return files, {"units": list(units)}

    def _diversity(self, layer: str, units, stop: StopSignal) -> list[np.ndarray] | None:
        """Per unit, ``diversity_images`` images optimized together, side by side."""
        settings, path = self.settings, self.plans[layer].path
        count = settings.diversity_images
        strips = []
        for unit in units:
            objective = unit_batch_objective(path, [unit] * count) - settings.diversity_weight * (
                diversity(path)
            )
            channels = resolve(self.model).channels
            options = make_recipe(settings.recipe, settings.size, count, channels).options()
            with Optimization(self.model, objective, seed=settings.seed + unit, **options) as run:
                for _ in range(settings.steps):
                    if should_stop(stop):
                        return None
                    run.step()
                images = to_numpy(run.image())  # (count, H, W, 3)
            strips.append(np.concatenate(list(images), axis=1))  # (H, count * W, 3)
        return strips

    # ------------------------------------------------------------------ connections

    def _links(self, task: Task, stop: StopSignal):
        from lucid_widgets.atlas.links import unit_connections

        table = unit_connections(self.model, self.plans, task.layer, task.units, self.settings)
        data = json.dumps(table, sort_keys=True).encode()
        path = f"layers/{slug(task.layer)}/links/{task.window:05d}.json"
        return {path: data}, {"available": table["available"]}

    # ------------------------------------------------------------------ dataset shards

    def _shard(self, task: Task, stop: StopSignal):
        if self.source is None:
            raise ValueError(f"Task {task.id} needs the dataset; the build was given none.")
        subset = dataset_range(self.source, task.start, task.stop)
        result = dataset_examples(
            self.model,
            subset,
            layers=list(task.layers),
            k=self.settings.k,
            cache_dir=False,
            progress=False,
            stop=stop,
        )
        if not result.complete:
            return None
        arrays: dict[str, np.ndarray] = {}
        for position, examples in enumerate(result.layers.values()):
            for which, name in itertools.product(WHICH, ARRAYS):
                value = getattr(examples, f"{name}_{which}")
                arrays[f"{position}.{name}_{which}"] = (
                    value + task.start if name == "indices" else value
                )
            if examples.box_map is not None:
                arrays[f"{position}.box_map"] = examples.box_map
        order = sorted(result.thumbnails)
        arrays["thumb_index"] = np.asarray(order, dtype=np.int64) + task.start
        if order:
            arrays["thumbs"] = np.stack([result.thumbnails[index] for index in order])
        names = [str(self.source.name(task.start + index)) for index in order]
        meta = {
            "input_size": list(result.input_size),
            "sources": names,
            "skipped": [[str(name), str(why)] for name, why in result.skipped],
        }
        path = f"shards/{task.id}.npz"
        return {path: encode_npz(arrays)}, meta
