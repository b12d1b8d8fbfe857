"""Per-position views of a layer on an image: the semantic dictionary and the activation grid.

- :func:`semantic_dictionary`: at each position, the units with the largest activations (no
  optimization; draw each with its feature visualization, sized by its value).
- :func:`activation_grid` / :func:`iter_activation_grid`: at each position, a feature
  visualization of the whole activation vector there: batch element ``b`` maximizes Lucid's
  ``direction_neuron`` (dot product times ``max(0.1, cossim) ** cossim_pow``) of position
  ``b``'s vector at the centre of its own rendered map. All positions render as one batch (or
  ``batch_size`` at a time, streamed); positions with a tiny activation norm are skipped.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from lucid_widgets.blocks.common import internal_pass, layer_outputs, load_images, spatial_map
from lucid_widgets.optvis.arrays import to_numpy
from lucid_widgets.optvis.objective_base import Activations, Objective
from lucid_widgets.optvis.param import image as image_param
from lucid_widgets.optvis.preprocess import Preprocess, resolve
from lucid_widgets.optvis.render import Optimization, StopSignal, check_steps, should_stop

__all__ = [
    "GridCells",
    "SemanticDictionary",
    "activation_grid",
    "iter_activation_grid",
    "position_vectors",
    "semantic_dictionary",
]


def position_vectors(
    model: nn.Module,
    image: object,
    layer: str,
    size: int | tuple[int, int] | None = None,
    preprocess: Preprocess | None = None,
) -> torch.Tensor:
    """``(H, W, C)``: the layer's activation vector at every position of ``image``."""
    batch, pre = load_images(model, image, size, preprocess)
    network_input = pre(batch[:1])  # (1, C, H, W)
    with internal_pass(model, network_input) as network, torch.no_grad():
        acts = layer_outputs(network, network_input, [layer])[layer]
    return spatial_map(acts, layer).maps[0].permute(1, 2, 0).float()  # (H, W, C)


@dataclass
class SemanticDictionary:
    """The top units at each position of a layer on one image.

    ``units`` and ``values`` are ``(H, W, k)``: unit indices, largest activation first, and
    those activations.
    """

    layer: str
    units: np.ndarray = field(repr=False)
    values: np.ndarray = field(repr=False)

    @property
    def shape(self) -> tuple[int, int]:
        """``(H, W)`` of the layer's map."""
        return tuple(self.units.shape[:2])


def semantic_dictionary(
    model: nn.Module,
    image: object,
    layer: str,
    k: int = 4,
    size: int | tuple[int, int] | None = None,
    preprocess: Preprocess | None = None,
) -> SemanticDictionary:
    """The ``k`` most active units at each position of ``layer`` on ``image``.

    Returns
    -------
    SemanticDictionary
        ``.units``, ``.values`` ``(H, W, k)``.
    """
    vectors = position_vectors(model, image, layer, size, preprocess)  # (H, W, C)
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= vectors.shape[-1]:
        raise ValueError(f"k must be an integer in 1..{vectors.shape[-1]} (the units), got {k!r}.")
    top = vectors.topk(k, dim=-1)
    return SemanticDictionary(layer, top.indices.cpu().numpy(), top.values.cpu().numpy())


def _vectors_objective(layer: str, vectors: torch.Tensor, cossim_pow: float) -> Objective:
    """Element ``b`` of the batch: ``direction_neuron`` of ``vectors[b]`` at the map's centre."""

    def inner(acts: Activations) -> torch.Tensor:
        maps = spatial_map(acts[layer], layer).maps  # (B, C, h, w)
        here = maps[:, :, maps.shape[-2] // 2, maps.shape[-1] // 2]  # (B, C)
        wanted = vectors.to(here)
        dot = (here * wanted).sum(1)  # (B,)
        if cossim_pow:
            cossim = dot / (here.norm(dim=1) * wanted.norm(dim=1) + 1e-4)
            dot = dot * cossim.clamp(min=0.1) ** cossim_pow
        return dot.sum()

    name = f"direction_neurons({layer!r}, {len(vectors)} positions, cossim_pow={cossim_pow})"
    return Objective(inner, name, {layer})


@dataclass
class GridCells:
    """One streamed batch of the activation grid.

    ``positions`` ``(n, 2)``: ``(y, x)`` of each rendered cell; ``images`` ``(n, cell, cell,
    3)`` in ``[0, 1]``; ``shape`` ``(H, W)`` of the layer's map; ``skipped`` ``(m, 2)``: the
    positions left out for their tiny activation norm (the same in every batch).
    """

    positions: np.ndarray
    images: np.ndarray = field(repr=False)
    shape: tuple[int, int]
    skipped: np.ndarray


def _stream(model, image, layer, settings: dict) -> Iterator[GridCells]:
    cell, steps, preprocess = settings["cell"], settings["steps"], settings["preprocess"]
    check_steps(steps)
    vectors = position_vectors(model, image, layer, settings["size"], preprocess)  # (H, W, C)
    height, width, _ = vectors.shape
    colours = resolve(model, preprocess).channels
    norms = vectors.norm(dim=-1)  # (H, W)
    keep = norms > settings["min_norm"] * norms.max() if float(norms.max()) > 0 else norms > 0
    positions = keep.nonzero().cpu().numpy()  # (P, 2) of (y, x)
    skipped = (~keep).nonzero().cpu().numpy()
    flat = vectors[keep]  # (P, C)
    count = settings["batch_size"] or max(1, len(flat))
    stop, options = settings["stop"], settings["options"]
    for start in range(0, len(flat), count):
        chunk = flat[start : start + count]
        objective = _vectors_objective(layer, chunk, settings["cossim_pow"])
        param_f = functools.partial(image_param, cell, batch=len(chunk), channels=colours)
        seed = settings["seed"]
        with Optimization(
            model, objective, param_f=param_f, seed=seed, preprocess=preprocess, **options
        ) as run:
            for _ in range(steps):
                if should_stop(stop):
                    return
                run.step()
            images = to_numpy(run.image())  # (n, cell, cell, C)
        yield GridCells(positions[start : start + count], images, (height, width), skipped)


def activation_grid(
    model: nn.Module,
    image: object,
    layer: str,
    cell: int = 64,
    steps: int = 128,
    cossim_pow: float = 1.0,
    min_norm: float = 0.1,
    batch_size: int | None = None,
    seed: int | None = 0,
    stop: StopSignal = None,
    size: int | tuple[int, int] | None = None,
    preprocess: Preprocess | None = None,
    **options,
) -> np.ndarray:
    """One feature visualization per position of ``layer`` on ``image``.

    Parameters
    ----------
    model, image, layer
        Any ``nn.Module``, an image as the package accepts one, a ``(B, C, H, W)`` or
        ``(B, N, C)`` layer.
    cell
        Side of each rendered cell, in pixels.
    steps
        Optimizer steps (all cells of a batch step together).
    cossim_pow
        Lucid's cosine-similarity power (0: plain dot product).
    min_norm
        Positions whose activation norm is below ``min_norm`` times the largest are skipped
        (their cells stay black).
    batch_size
        Positions per optimization; default all of them in one batch.
    seed, stop
        Same seed, same pixels; ``stop`` ends the render between steps (the grid then holds
        the batches finished so far).
    options
        Passed to :class:`~lucid_widgets.optvis.render.Optimization` (``transforms``,
        ``optimizer``, ``preprocess`` ...).

    Returns
    -------
    numpy array
        ``(H, W, cell, cell, 3)`` float32 in ``[0, 1]``.
    """
    settings = {"cell": cell, "steps": steps, "cossim_pow": cossim_pow, "min_norm": min_norm}
    settings.update(batch_size=batch_size, seed=seed, stop=stop, size=size)
    settings.update(preprocess=preprocess, options=options)
    grid = None
    for cells in _stream(model, image, layer, settings):
        if grid is None:
            grid = np.zeros((*cells.shape, cell, cell, cells.images.shape[-1]), np.float32)
        grid[cells.positions[:, 0], cells.positions[:, 1]] = cells.images
    if grid is None:  # stopped before the first batch, or nothing to render
        height, width, _ = position_vectors(model, image, layer, size, preprocess).shape
        grid = np.zeros((height, width, cell, cell, 3), np.float32)
    return grid


_SETTINGS = dict(
    zip(
        list(inspect.signature(activation_grid).parameters)[3:-1],
        activation_grid.__defaults__,
        strict=True,
    )
)


def iter_activation_grid(
    model: nn.Module, image: object, layer: str, **settings: Any
) -> Iterator[GridCells]:
    """Yield the cells of :func:`activation_grid` batch by batch, as each batch finishes.

    ``settings`` are the keyword arguments of :func:`activation_grid` (``cell``, ``steps``,
    ``cossim_pow``, ``min_norm``, ``batch_size``, ``seed``, ``stop``, ``size``,
    ``preprocess``); any others go to :class:`~lucid_widgets.optvis.render.Optimization`.
    ``stop`` (a ``threading.Event`` or a callable) ends the stream between steps.
    """
    known = {name: settings.pop(name) for name in list(settings) if name in _SETTINGS}
    return _stream(model, image, layer, {**_SETTINGS, **known, "options": settings})
