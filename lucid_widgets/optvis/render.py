"""Feature visualization: ``render_vis`` (images at step thresholds) and ``optimize`` (a step
iterator), both over a steppable :class:`~lucid_widgets.optvis.optimization.Optimization`
(re-exported here with :class:`Step`).

The user's model is left alone: a run works on a shadow copy, or, for a model with hooks of its
own, on the model itself in eval mode for the length of the run (see
:mod:`lucid_widgets.optvis.optimization`).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Sequence

import numpy as np
from torch import nn

from lucid_widgets.optvis.arguments import check_seed, check_steps, check_thresholds
from lucid_widgets.optvis.arrays import to_numpy
from lucid_widgets.optvis.hooks import RESERVED_LAYERS
from lucid_widgets.optvis.objective_base import Objective
from lucid_widgets.optvis.optimization import (
    Optimization,
    OptimizerFn,
    ParamFn,
    Step,
    StopSignal,
    build_transform,
)
from lucid_widgets.optvis.preprocess import Preprocess

__all__ = [
    "RESERVED_LAYERS",
    "Optimization",
    "StopSignal",
    "Step",
    "build_transform",
    "check_seed",
    "check_steps",
    "check_thresholds",
    "optimize",
    "render_vis",
    "should_stop",
    "to_numpy",
]


def should_stop(stop: StopSignal) -> bool:
    if stop is None:
        return False
    if isinstance(stop, threading.Event):
        return stop.is_set()
    return bool(stop())


def optimize(
    model: nn.Module,
    objective: Objective | str | Callable,
    steps: int = 512,
    stop: StopSignal = None,
    **kwargs,
) -> Iterator[Step]:
    """Yield a :class:`Step` per optimizer step; the model is restored when the loop ends.

    Takes the arguments of :class:`Optimization` plus ``steps`` and ``stop`` (an Event or a
    callable checked before each step). Breaking out of the loop (or closing the generator)
    restores the model too.

    Examples
    --------
    >>> for step in optimize(model, "layer3:7", steps=64, seed=0):   # doctest: +SKIP
    ...     print(step.step, step.loss)
    """
    check_steps(steps)
    with Optimization(model, objective, **kwargs) as run:
        for _ in range(steps):
            if should_stop(stop):
                return
            yield run.step()


def render_vis(
    model: nn.Module,
    objective: Objective | str | Callable,
    param_f: ParamFn | None = None,
    optimizer: OptimizerFn | None = None,
    transforms: Sequence[Callable] | Callable | None = None,
    thresholds: Sequence[int] = (512,),
    seed: int | None = None,
    progress: bool = True,
    preprocess: Preprocess | bool | None = None,
    callback: Callable[[Step], object] | None = None,
    redirected_relu_steps: int | None = None,
    stop: StopSignal = None,
    fold_batchnorm: bool = True,
    recipe: str | None = None,
) -> list[np.ndarray]:
    """Render a feature visualization; return one ``(B, H, W, C)`` array per threshold.

    Parameters
    ----------
    model, objective, param_f, optimizer, transforms, seed, preprocess, redirected_relu_steps
    fold_batchnorm, recipe
        As :class:`Optimization`: without a ``param_f``, MACO's recipe at 128 px (the central
        128 px of its 256 px canvas are returned); ``recipe="lucid"`` for the classic defaults.
    thresholds
        Step counts at which to record the image (Lucid's default ``(512,)``).
    progress
        Show a tqdm progress bar with the loss.
    callback
        Called with every :class:`Step`.
    stop
        An Event or a callable; when set, the render ends early and returns what it has.

    Returns
    -------
    list of numpy arrays
        ``(B, H, W, C)`` float32 in ``[0, 1]``, one per threshold reached. Ctrl-C (or ``stop``)
        ends the render early with the thresholds reached so far plus the current image.

    Examples
    --------
    >>> images = render_vis(model, "layer3:7", thresholds=(64,), seed=0)   # doctest: +SKIP
    """
    thresholds = check_thresholds(thresholds)
    options = dict(
        param_f=param_f, optimizer=optimizer, transforms=transforms, seed=seed,
        preprocess=preprocess, redirected_relu_steps=redirected_relu_steps,
        fold_batchnorm=fold_batchnorm, recipe=recipe,
    )  # fmt: skip
    images: list[np.ndarray] = []
    with Optimization(model, objective, **options) as run:
        bar = _progress_bar(thresholds[-1], run.objective.name, progress)
        try:
            while run.step_count < thresholds[-1] and not should_stop(stop):
                step = run.step()
                bar.update(1)
                if bar.total and (step.step % 8 == 0 or step.step == thresholds[-1]):
                    bar.set_postfix(loss=f"{step.loss:.4g}", refresh=False)
                if callback is not None:
                    callback(step)
                if step.step in thresholds:
                    images.append(to_numpy(run.image()))
        except KeyboardInterrupt:
            print(f"Interrupted at step {run.step_count}; returning the images so far.")
        finally:
            bar.close()
        if run.step_count not in thresholds:  # stopped early (or before the first step)
            images.append(to_numpy(run.image()))
    return images


class _NoBar:
    total = 0

    def update(self, count: int) -> None:
        pass

    def set_postfix(self, **kwargs) -> None:
        pass

    def close(self) -> None:
        pass


def _progress_bar(total: int, description: str, enabled: bool):
    if not enabled:
        return _NoBar()
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=description[:60], leave=False)
