"""Many units at once: one optimization renders a whole batch, one unit per batch element.

Lucent renders a layer grid one unit per run. Here ``batch_size`` units share every forward and
backward pass, which is what makes a 2,048-unit grid practical (Microscope rendered its grids the
same way, 32 units per batch).
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch
from torch import nn

from lucid_widgets.optvis.activations import check_units, unit_count
from lucid_widgets.optvis.arrays import to_numpy
from lucid_widgets.optvis.hooks import capture, model_device, model_dtype, resolve_layer
from lucid_widgets.optvis.objective_base import Activations, Objective
from lucid_widgets.optvis.preprocess import resolve
from lucid_widgets.optvis.recipes import choose, make_recipe, render_options
from lucid_widgets.optvis.render import (
    Optimization,
    StopSignal,
    check_seed,
    check_steps,
    should_stop,
)
from lucid_widgets.optvis.shadow import quiet

__all__ = ["UNIT_KINDS", "iter_units", "layer_units", "render_units", "unit_batch_objective"]

UNIT_KINDS = ("channel", "neuron", "negative_channel", "negative_neuron")


def unit_batch_objective(layer: str, units: Sequence[int], kind: str = "channel") -> Objective:
    """Batch element ``i`` maximizes unit ``units[i]`` of ``layer``, all in one gather.

    ``kind`` is ``"channel"`` (mean over positions), ``"neuron"`` (the centre position), or
    ``"negative_channel"`` / ``"negative_neuron"`` (the same, minimized).
    """
    if kind not in UNIT_KINDS:
        raise ValueError(f"Unknown unit objective kind {kind!r}; valid: {', '.join(UNIT_KINDS)}.")
    units = [int(u) for u in units]
    if not units:
        raise ValueError(f"A unit batch objective on {layer!r} needs at least one unit.")
    sign = -1.0 if kind.startswith("negative") else 1.0
    neuron = kind.endswith("neuron")

    def inner(acts: Activations) -> torch.Tensor:
        tensor = acts[layer]
        check_units(layer, unit_count(tensor), units)
        if tensor.shape[0] != len(units):
            raise ValueError(f"{len(units)} units need a batch of {len(units)} images.")
        rows = torch.arange(len(units), device=tensor.device)
        index = torch.tensor(units, device=tensor.device)
        if tensor.dim() == 3:  # (B, N, C) tokens
            picked = tensor[rows, :, index]  # (B, N)
            picked = picked[:, tensor.shape[1] // 2] if neuron else picked.mean(1)
        elif tensor.dim() == 4:  # (B, C, H, W)
            picked = tensor[rows, index]  # (B, H, W)
            height, width = picked.shape[-2:]
            picked = picked[:, height // 2, width // 2] if neuron else picked.mean((1, 2))
        else:  # (B, C)
            picked = tensor[rows, index]
        return sign * picked.sum()

    return Objective(inner, f"{kind}s({layer!r}, {len(units)} units)", {layer})


def layer_units(model: nn.Module, layer: str, size: int | tuple[int, int] = 224) -> int:
    """Number of units of ``layer``, from one forward pass on a blank image.

    The pass runs a shadow copy of the model (see :func:`~lucid_widgets.optvis.hooks.quiet`):
    the user's hooks do not fire and no flag of the model changes.
    """
    channels = resolve(model).channels
    height, width = (size, size) if isinstance(size, int) else size
    blank = torch.zeros(1, channels, height, width, device=model_device(model))
    blank = blank.to(model_dtype(model))  # (1, C, H, W)
    with quiet(model, blank) as network, torch.no_grad(), capture(network, [layer]) as run:
        tensor = run(blank)[layer]
    return unit_count(tensor)


def iter_units(
    model: nn.Module,
    layer: str,
    units: Iterable[int],
    size: int = 128,
    steps: int = 256,
    batch_size: int = 16,
    kind: str = "channel",
    param_f: Callable[[int], tuple] | None = None,
    stop: StopSignal = None,
    micro_batch: int | None = None,
    workers: int | None = None,
    recipe: str | None = None,
    **kwargs,
) -> Iterator[tuple[list[int], np.ndarray]]:
    """Yield ``(units, images)`` as each batch of units finishes rendering.

    ``images`` is ``(len(units), size, size, C)`` in ``[0, 1]``. ``param_f(batch)`` builds the
    parameterization for a batch; the remaining keyword arguments go to
    :class:`~lucid_widgets.optvis.render.Optimization` (seed, transforms, optimizer, preprocess,
    redirected_relu_steps). ``stop`` ends the stream between steps.

    ``recipe`` as in :class:`~lucid_widgets.optvis.render.Optimization`: without a ``param_f``,
    MACO's recipe at ``size`` (a ``2 * size`` canvas per unit, its crops resized to ``size``, NAdam
    1.0; the canvas's central ``size`` px are returned); with one, Lucid's defaults for what is
    not given; ``recipe="lucid"`` for the classic defaults (``param.image(size)``, standard
    transforms, Adam 0.05).

    ``micro_batch`` is how many units one optimization holds (default: ``batch_size`` on a GPU,
    4 on a CPU, where a batch of 16 costs more per image than a batch of 4: its activations
    overflow the caches). Each batch of ``batch_size`` units is still yielded at once.

    ``workers`` is how many optimizations run at once on a CPU, each in its own thread with an
    equal share of torch's threads (default: one per torch thread, so 2 workers of 1 thread on 2
    cores: small per-image operations keep one core busy better than they split across two).
    torch's thread count is put back afterwards. On a GPU the micro-batches run one by one.
    """
    check_steps(steps)
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}.")
    resolve_layer(model, layer)
    units = list(units)
    if not units:
        return
    units = check_units(layer, layer_units(model, layer, size), units)  # all before any step
    make, kwargs = _recipe_parts(model, size, recipe, param_f, kwargs)
    cpu = model_device(model).type == "cpu"
    if micro_batch is None:
        micro_batch = 4 if cpu else batch_size
    micro_batch = max(1, min(int(micro_batch), batch_size))
    seed = check_seed(kwargs.pop("seed", None))
    render = functools.partial(_render_part, model, layer, kind=kind, make=make, steps=steps)
    for start in range(0, len(units), batch_size):
        chunk = units[start : start + batch_size]
        parts = [
            (chunk[offset : offset + micro_batch], None if seed is None else seed + start + offset)
            for offset in range(0, len(chunk), micro_batch)
        ]
        images = _render_parts(render, parts, stop, kwargs, workers if cpu else 1)
        if images is None:
            return
        yield chunk, np.concatenate(images)


def _recipe_parts(model, size, recipe, param_f, options: dict) -> tuple[Callable, dict]:
    """``(make(batch) -> (params, image_f), options)`` with the recipe's parts for what the
    caller did not give (see :func:`~lucid_widgets.optvis.recipes.choose`)."""
    name = choose(recipe, param_f)
    channels = resolve(model, options.get("preprocess")).channels
    given = {key: options.get(key) for key in ("transforms", "optimizer", "redirected_relu_steps")}
    chosen = render_options(name, size, channels, **given)
    options = {**options, **{key: chosen[key] for key in given}}
    if param_f is not None:
        return param_f, options
    return (lambda batch: make_recipe(name, size, batch, channels).param_f()), options


def _render_parts(render: Callable, parts: list, stop, options: dict, workers: int | None):
    """Render ``[(units, seed), ...]``, in worker threads on a CPU; ``None`` when stopped."""
    threads = torch.get_num_threads()
    count = max(1, min(len(parts), threads if workers is None else int(workers)))
    if count == 1:
        results = []
        for units, seed in parts:
            images = render(units, stop=stop, seed=seed, options=options)
            if images is None:
                return None
            results.append(images)
        return results
    halt = threading.Event()  # set when the caller is interrupted: the workers stop too

    def task(units: list[int], seed: int | None) -> np.ndarray | None:
        torch.set_num_threads(max(1, threads // count))  # OpenMP's count is per thread
        halted = lambda: halt.is_set() or should_stop(stop)  # noqa: E731
        return render(units, stop=halted, seed=seed, options=options)

    try:
        with ThreadPoolExecutor(count, thread_name_prefix="lucid-units") as pool:
            futures = [pool.submit(task, units, seed) for units, seed in parts]
            try:
                results = [future.result() for future in futures]
            except BaseException:
                halt.set()
                raise
    finally:
        torch.set_num_threads(threads)  # also resets the process-wide count the workers set
    return None if any(images is None for images in results) else results


def _render_part(model, layer, units, kind, make, steps, stop, seed, options) -> np.ndarray | None:
    """One optimization of ``units`` (one per batch element); ``None`` when stopped."""
    objective = unit_batch_objective(layer, units, kind)
    param_f = functools.partial(make, len(units))
    with Optimization(model, objective, param_f=param_f, seed=seed, **options) as run:
        for _ in range(steps):
            if should_stop(stop):
                return None
            run.step()
        return to_numpy(run.image())


def render_units(
    model: nn.Module,
    layer: str,
    units: Iterable[int] | None = None,
    size: int = 128,
    steps: int = 256,
    batch_size: int = 16,
    kind: str = "channel",
    progress: bool = True,
    **kwargs,
) -> np.ndarray:
    """Render one image per unit of ``layer``, ``batch_size`` units per optimization.

    Parameters
    ----------
    units
        Unit indices; default every unit of the layer.
    size, steps, batch_size, kind
        Image side, optimizer steps per batch, units per batch, and the unit objective
        (``"channel"``, ``"neuron"``, ``"negative_channel"``, ``"negative_neuron"``).

    Returns
    -------
    numpy array
        ``(units, size, size, C)`` float32 in ``[0, 1]``, in the order of ``units``.

    Examples
    --------
    >>> grid = render_units(model, "layer3", units=range(64), size=128, steps=256)  # doctest: +SKIP
    """
    units = list(range(layer_units(model, layer, size))) if units is None else list(units)
    if not units:
        raise ValueError("render_units needs at least one unit.")
    results: list[np.ndarray] = []
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(units), desc=f"{layer} units", leave=False)
    try:
        for chunk, images in iter_units(
            model, layer, units, size=size, steps=steps, batch_size=batch_size, kind=kind, **kwargs
        ):
            results.append(images)
            if bar is not None:
                bar.update(len(chunk))
    finally:
        if bar is not None:
            bar.close()
    if not results:  # stopped before the first batch finished
        channels = resolve(model, kwargs.get("preprocess")).channels
        return np.zeros((0, size, size, channels), np.float32)
    return np.concatenate(results)
