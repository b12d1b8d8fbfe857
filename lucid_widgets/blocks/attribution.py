"""Attribution: how much each unit and position of a layer contributes to a target scalar.

The paper's linear approximation, activation x gradient of the target with respect to the
layer's activations at the image; with ``steps=`` the integrated-gradients refinement (the mean
gradient along the straight path from a baseline to the activations, midpoint rule), whose total
tends to ``target(image) - target(baseline)``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from lucid_widgets.blocks.common import (
    internal_pass,
    layer_outputs,
    load_images,
    replaced_forward,
    spatial_map,
)
from lucid_widgets.optvis import objectives
from lucid_widgets.optvis.hooks import resolve_layer
from lucid_widgets.optvis.objective_base import Activations, Objective, as_objective
from lucid_widgets.optvis.preprocess import Preprocess
from lucid_widgets.zoo.labels import find_label

__all__ = ["Attribution", "attribution", "target_objective"]

Target = int | str | tuple | Objective | Callable


@dataclass
class Attribution:
    """Activation x gradient of one layer to a target, on one image.

    Attributes
    ----------
    layer, target
        The layer and a readable name of the target scalar.
    values
        ``(C, H, W)`` attribution of each unit at each position.
    gradient
        ``(C, H, W)`` gradient of the target (the mean along the path with ``steps``).
    cls
        ``(C,)`` attribution of a token layer's class token, else ``None``.
    score, baseline_score
        The target at the image, and at the baseline (``None`` without ``steps``).
    """

    layer: str
    target: str
    values: np.ndarray = field(repr=False)
    gradient: np.ndarray = field(repr=False)
    cls: np.ndarray | None = field(repr=False)
    score: float
    baseline_score: float | None = None

    @property
    def spatial(self) -> np.ndarray:
        """``(H, W)``: attribution summed over channels."""
        return self.values.sum(0)

    @property
    def channels(self) -> np.ndarray:
        """``(C,)``: attribution summed over positions (and the class token)."""
        total = self.values.sum((1, 2))
        return total if self.cls is None else total + self.cls

    @property
    def total(self) -> float:
        """The sum of every attribution (completeness: ``score - baseline`` on a linear path)."""
        return float(self.channels.sum())

    def groups(self, groups: object) -> np.ndarray:
        """``(n_groups,)``: attribution of each neuron group to the target.

        Group ``g`` stands for the part ``spatial[g] x directions[g]`` of the activations; its
        attribution is the gradient times that part (Lucid's group attribution).
        """
        spatial, directions = np.asarray(groups.spatial), np.asarray(groups.directions)
        if spatial.ndim == 4:  # groups over several images: the first is this one
            spatial = spatial[0]
        if spatial.shape[1:] != self.values.shape[1:] or directions.shape[1] != len(self.values):
            raise ValueError(
                f"The groups ({spatial.shape[0]} groups of {directions.shape[1]} units over "
                f"{spatial.shape[1:]}) are not of this attribution's layer and image "
                f"({len(self.values)} units over {self.values.shape[1:]})."
            )
        # (g, H, W) x (g, C) x (C, H, W) -> (g,)
        return np.einsum("ghw,gc,chw->g", spatial, directions, self.gradient)


def _class_index(model: nn.Module, label: int | str) -> int:
    if isinstance(label, (int, np.integer)) and not isinstance(label, bool):
        return int(label)
    labels = getattr(model, "lucid_labels", None)
    if not labels:
        raise ValueError(
            f"Target class {label!r} needs class names, but the model has no lucid_labels; "
            "pass the class index, or set model.lucid_labels."
        )
    return find_label(labels, label)


def _position_objective(layer: str, x: int, y: int) -> Objective:
    """The norm of ``layer``'s activation vector at position ``(x, y)``."""

    def inner(acts: Activations) -> torch.Tensor:
        maps = spatial_map(acts[layer], layer).maps  # (B, C, H, W)
        height, width = maps.shape[-2:]
        if not (0 <= x < width and 0 <= y < height):
            raise IndexError(f"Position x={x}, y={y} is outside {layer!r}'s {height}x{width} map.")
        return maps[:, :, y, x].norm(dim=1).mean()

    return Objective(inner, f"norm({layer!r}, x={x}, y={y})", {layer})


def _is_layer_unit(model: nn.Module, target: str) -> bool:
    layer, _, unit = target.rpartition(":")
    if not layer or not unit.strip().isdigit():
        return False
    try:
        resolve_layer(model, layer.strip())
    except KeyError:
        return False
    return True


def target_objective(model: nn.Module, target: Target) -> Objective:
    """The target as an Objective: a class index or name, ``"layer:unit"``, a pair of classes
    (their logit difference), ``(layer, x, y)`` (that position's activation norm), or an
    Objective."""
    if isinstance(target, Objective) or callable(target):
        return as_objective(target)
    if isinstance(target, str) and _is_layer_unit(model, target):
        return as_objective(target)
    if isinstance(target, tuple) and len(target) == 3 and isinstance(target[0], str):
        layer, x, y = target
        resolve_layer(model, layer)
        return _position_objective(layer, int(x), int(y))
    if isinstance(target, tuple) and len(target) == 2:
        first, second = (_class_index(model, item) for item in target)
        difference = objectives.class_logit(first) - objectives.class_logit(second)
        difference.name = f"logit {target[0]!r} - logit {target[1]!r}"
        return difference
    if isinstance(target, (int, str, np.integer)):
        return objectives.class_logit(_class_index(model, target))
    raise TypeError(
        f"Cannot read target {target!r}: give a class index or name, 'layer:unit', a pair of "
        "classes (a, b), a position (layer, x, y) of a later layer, or an Objective."
    )


def _baseline_maps(model, baseline, layer, acts, pre, size) -> torch.Tensor:
    """The baseline activations ``(1, ...)``: zeros, a tensor of the layer's shape, or an image."""
    if baseline is None:
        return torch.zeros_like(acts)
    if isinstance(baseline, torch.Tensor) and baseline.shape[-(acts.dim() - 1) :] == acts.shape[1:]:
        return baseline.reshape(acts.shape).to(acts)
    batch, _ = load_images(model, baseline, size, pre)
    with torch.no_grad():
        return layer_outputs(model, pre(batch[:1]), [layer])[layer].to(acts)


def _score(objective: Objective, outputs: dict, model: nn.Module) -> torch.Tensor:
    value = objective(Activations(outputs, getattr(model, "lucid_labels", None)))
    return value.sum() if value.dim() else value


def attribution(
    model: nn.Module,
    image: object,
    layer: str,
    target: Target,
    steps: int | None = None,
    baseline: object = None,
    size: int | tuple[int, int] | None = None,
    preprocess: Preprocess | None = None,
) -> Attribution:
    """Attribution of ``layer``'s units and positions to ``target`` on ``image``.

    Parameters
    ----------
    model
        Any ``nn.Module``; left exactly as found.
    image
        Path, PIL image, ``(H, W[, C])`` array or ``(C, H, W)`` tensor; resized and
        centre-cropped to ``size`` (default the model's input size).
    layer
        A ``(B, C, H, W)`` or ``(B, N, C)`` layer.
    target
        A class index or name (``"Egyptian cat"``), ``"layer:unit"`` (a unit's mean), a pair of
        classes ``("tabby", "tiger cat")`` (their logit difference), ``("block11", x, y)`` (the
        activation norm at one position of a later layer: spatial attribution between two
        layers), or any Objective.
    steps
        ``None``: activation x gradient at the image. An int: integrated gradients with that
        many points (one batched pass).
    baseline
        The integrated-gradients start: ``None`` (zero activations), a tensor of the layer's
        activation shape, or an image (its activations).

    Returns
    -------
    Attribution
        ``.spatial (H, W)``, ``.channels (C,)``, ``.groups(groups)``, ``.values (C, H, W)``.
    """
    if steps is not None and (isinstance(steps, bool) or not isinstance(steps, int) or steps < 1):
        raise ValueError(f"steps must be None or a positive integer, got {steps!r}.")
    objective = target_objective(model, target)
    reads = [name for name in objective.layers if name != "input"]
    if "input" in objective.layers:
        raise ValueError("The target reads the input image, which does not depend on the layer.")
    batch, pre = load_images(model, image, size, preprocess)
    network_input = pre(batch[:1])  # (1, C, H, W)
    with internal_pass(model, network_input) as network:
        with torch.no_grad():
            acts = layer_outputs(network, network_input, [layer])[layer]  # (1, C, H, W) / (1, N, C)
        spatial_map(acts, layer)  # positions needed
        start = None if steps is None else _baseline_maps(network, baseline, layer, acts, pre, size)
        leaf = _path(acts, start, steps).detach().requires_grad_(True)  # (P, ...)
        with torch.enable_grad():
            outputs = replaced_forward(network, network_input, layer, lambda out: leaf, reads)
            mean = _score(objective, outputs, model)  # objectives average over the batch
            grad = None
            if mean.requires_grad:
                (grad,) = torch.autograd.grad(mean, leaf, allow_unused=True)
        if grad is None:
            raise ValueError(
                f"The target {objective.name} does not depend on layer {layer!r}; pick a layer "
                "before the one the target reads."
            )
        gradient = grad.sum(0, keepdim=True)  # (1, ...): the mean gradient along the path
        if start is None:
            return _result(
                layer, objective.name, acts * gradient, gradient, float(mean.detach()), None
            )
        score = _value(objective, network, network_input, layer, acts)
        base = _value(objective, network, network_input, layer, start)
    return _result(layer, objective.name, (acts - start) * gradient, gradient, score, base)


def _path(acts: torch.Tensor, start: torch.Tensor | None, steps: int | None) -> torch.Tensor:
    """The points the gradient is taken at: the activations, or ``steps`` midpoints of the path."""
    if start is None:
        return acts
    alphas = (torch.arange(steps, device=acts.device, dtype=acts.dtype) + 0.5) / steps
    shape = (steps,) + (1,) * (acts.dim() - 1)
    return start + alphas.reshape(shape) * (acts - start)  # (steps, ...)


def _value(objective, model, network_input, layer, maps) -> float:
    """The target with ``layer``'s output replaced by ``maps``."""
    reads = [name for name in objective.layers if name != "input"]
    with torch.no_grad():
        outputs = replaced_forward(model, network_input, layer, lambda out: maps, reads)
        return float(_score(objective, outputs, model))


def _result(layer, name, values, gradient, score, base) -> Attribution:
    attr, grad = spatial_map(values, layer), spatial_map(gradient, layer)
    return Attribution(
        layer=layer,
        target=name,
        values=attr.maps[0].detach().float().cpu().numpy(),
        gradient=grad.maps[0].detach().float().cpu().numpy(),
        cls=None if attr.cls is None else attr.cls[0].detach().float().cpu().numpy(),
        score=score,
        baseline_score=base,
    )
