"""Neuron groups: non-negative matrix factorization of a layer's ``(positions, channels)`` map.

As Lucid's ``ChannelReducer(n, "NMF")``: the activations of one image (or several) are reshaped
to ``(N * H * W, C)``, negative values clipped to zero, and factorized with scikit-learn's
``NMF`` into spatial factors ``(N * H * W, n)`` and directions ``(n, C)``. Each group is a
direction in the layer's unit space together with where on the image it fires.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from lucid_widgets.blocks.common import internal_pass, layer_outputs, load_images, spatial_map
from lucid_widgets.optvis import objectives
from lucid_widgets.optvis.objective_base import Objective
from lucid_widgets.optvis.preprocess import Preprocess

__all__ = ["NeuronGroups", "factorize", "neuron_groups"]


@dataclass
class NeuronGroups:
    """Groups of units that fire together at the same places, largest first.

    Attributes
    ----------
    layer
        The layer factorized.
    spatial
        ``(n_groups, H, W)`` non-negative maps for one image; ``(N, n_groups, H, W)`` for
        several.
    directions
        ``(n_groups, C)`` non-negative components (each group's weight on every unit).
    error
        Frobenius norm of the residual, ``||X - spatial x directions||``.
    relative_error
        ``error / ||X||`` (0 is a perfect reconstruction).
    seed
        The NMF's ``random_state``.
    """

    layer: str
    spatial: np.ndarray = field(repr=False)
    directions: np.ndarray = field(repr=False)
    error: float
    relative_error: float
    seed: int

    @property
    def n_groups(self) -> int:
        """Number of groups."""
        return len(self.directions)

    def objective(self, index: int, cossim_pow: float = 0.0, batch: int | None = None) -> Objective:
        """A ``direction`` objective along group ``index``'s component: renders the group
        (on batch element ``batch`` only, when given)."""
        if not 0 <= index < self.n_groups:
            last = self.n_groups - 1
            raise IndexError(f"Group {index} out of range; valid: 0..{last}.")
        vector = torch.as_tensor(self.directions[index], dtype=torch.float32)
        return objectives.direction(self.layer, vector, cossim_pow=cossim_pow, batch=batch)

    def batch_objective(self, cossim_pow: float = 0.0) -> Objective:
        """Every group at once: batch element ``i`` of a batch of ``n_groups`` renders group
        ``i`` (one optimization for all the groups)."""
        return Objective.sum(self.objective(i, cossim_pow, batch=i) for i in range(self.n_groups))


def _check_groups(n_groups: int, channels: int, layer: str) -> None:
    if isinstance(n_groups, bool) or not isinstance(n_groups, int) or n_groups < 1:
        raise ValueError(f"n_groups must be a positive integer, got {n_groups!r}.")
    if n_groups > channels:
        raise ValueError(
            f"n_groups={n_groups} is more than the {channels} units of layer {layer!r}; "
            f"use 1..{channels}."
        )


def factorize(
    matrix: np.ndarray, n_groups: int, seed: int = 0, max_iter: int = 500
) -> tuple[np.ndarray, np.ndarray, float]:
    """NMF of a non-negative ``(samples, C)`` matrix: ``(samples, n)``, ``(n, C)``, error.

    Groups come back ordered by their share of the reconstruction, largest first.
    """
    from sklearn.decomposition import NMF

    init = "nndsvda" if n_groups <= min(matrix.shape) else "random"
    model = NMF(n_components=n_groups, init=init, random_state=seed, max_iter=max_iter)
    with warnings.catch_warnings():  # a slow convergence is reported in the error, not a warning
        warnings.simplefilter("ignore")
        spatial = model.fit_transform(matrix)
    directions = model.components_
    share = spatial.sum(0) * np.linalg.norm(directions, axis=1)
    order = np.argsort(-share, kind="stable")
    return spatial[:, order], directions[order], float(model.reconstruction_err_)


def neuron_groups(
    model: nn.Module,
    images: object,
    layer: str,
    n_groups: int = 6,
    seed: int = 0,
    size: int | tuple[int, int] | None = None,
    preprocess: Preprocess | None = None,
    max_iter: int = 500,
) -> NeuronGroups:
    """Factorize ``layer``'s activations on ``images`` into ``n_groups`` neuron groups.

    Parameters
    ----------
    model
        Any ``nn.Module``; left exactly as found.
    images
        One image (path, PIL, array, tensor), a list of them, or a ``(N, C, H, W)`` tensor;
        several images are factorized jointly (one set of directions).
    layer
        A ``(B, C, H, W)`` or ``(B, N, C)`` layer.
    n_groups
        Number of groups, ``1..C`` (the paper uses 6).
    seed
        The NMF's ``random_state``: same seed, same groups.

    Returns
    -------
    NeuronGroups
        ``.spatial (n_groups, H, W)``, ``.directions (n_groups, C)``, ``.objective(i)``.

    Raises
    ------
    ValueError
        For ``n_groups`` outside ``1..C``, a layer without positions, or a map that is all zero
        after clipping the negative values (nothing to factor).
    """
    batch, pre = load_images(model, images, size, preprocess)
    network_input = pre(batch)  # (N, C, H, W)
    with internal_pass(model, network_input) as network, torch.no_grad():
        acts = layer_outputs(network, network_input, [layer])[layer]
    maps = spatial_map(acts, layer).maps.float()  # (N, C, H, W)
    count, channels, height, width = maps.shape
    _check_groups(n_groups, channels, layer)
    matrix = maps.clamp(min=0).permute(0, 2, 3, 1).reshape(-1, channels).cpu().numpy()
    norm = float(np.linalg.norm(matrix))
    if norm == 0:
        raise ValueError(
            f"Layer {layer!r} is all zero (or negative) on this image, so NMF has nothing to "
            "factor; pick another layer or image."
        )
    spatial, directions, error = factorize(matrix, n_groups, seed, max_iter)
    spatial = spatial.reshape(count, height, width, n_groups).transpose(0, 3, 1, 2)
    return NeuronGroups(
        layer=layer,
        spatial=(spatial[0] if count == 1 else spatial).astype(np.float32),
        directions=directions.astype(np.float32),
        error=error,
        relative_error=error / norm,
        seed=seed,
    )
