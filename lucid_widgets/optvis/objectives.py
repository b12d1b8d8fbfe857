"""Objectives: small composable values to maximize.

An :class:`Objective` wraps a function of the activations it reads, the names of those layers and
a readable name. Objectives combine with arithmetic, as in Lucid::

    from lucid_widgets.optvis import objectives
    obj = objectives.channel("mixed4a", 476) - 0.5 * objectives.diversity("mixed4a")
    obj.name    # "channel('mixed4a', 476) - 0.5 * diversity('mixed4a')"
    obj.layers  # frozenset({'mixed4a'})

Convention: every objective is a value to **increase**; renderers minimize ``-objective``.
Activations arrive as ``(B, C, H, W)`` (conv), ``(B, C)`` (linear) or ``(B, N, C)`` (transformer
tokens); ``"input"`` is the parameterized image ``(B, C, H, W)`` in ``[0, 1]``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from lucid_widgets.optvis.activations import check_unit, unit_count, unit_map
from lucid_widgets.optvis.objective_base import (
    Activations,
    Objective,
    as_objective,
    batch_arg,
    channel,
    handle_batch,
)

__all__ = [
    "Activations",
    "L1",
    "L2",
    "Objective",
    "alignment",
    "as_objective",
    "blur_input_each_step",
    "channel",
    "channel_interpolate",
    "class_logit",
    "deepdream",
    "direction",
    "direction_neuron",
    "diversity",
    "dot_compare",
    "input_diff",
    "neuron",
    "total_variation",
]


def _centre(tensor: torch.Tensor, x: int | None, y: int | None) -> tuple[int, int]:
    height, width = tensor.shape[-2:]
    x = width // 2 if x is None else x
    y = height // 2 if y is None else y
    if not (0 <= x < width and 0 <= y < height):
        raise IndexError(f"Position x={x}, y={y} is outside the {height}x{width} (HxW) map.")
    return x, y


def neuron(
    layer: str, unit: int, x: int | None = None, y: int | None = None, batch: int | None = None
) -> Objective:
    """Activation of one unit at one position (the centre by default).

    ``x`` indexes width and ``y`` height (correct on non-square maps); for token tensors
    ``(B, N, C)`` ``x`` is the token index (centre token by default); linear layers have no
    position and equal :func:`channel`.
    """

    @handle_batch(batch)
    def inner(acts: Activations) -> torch.Tensor:
        tensor = acts[layer]
        check_unit(layer, tensor, unit)
        if tensor.dim() == 4:
            col, row = _centre(tensor, x, y)
            return tensor[:, unit, row, col].mean()
        if tensor.dim() == 3:
            token = tensor.shape[1] // 2 if x is None else x
            return tensor[:, token, unit].mean()
        return tensor[:, unit].mean()

    where = "" if x is None and y is None else f", x={x}, y={y}"
    return Objective(inner, f"neuron({layer!r}, {unit}{where}{batch_arg(batch)})", {layer})


def _channels_last(tensor: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) -> (B, H, W, C); (B, N, C) and (B, C) unchanged."""
    return tensor.permute(0, 2, 3, 1) if tensor.dim() == 4 else tensor


def _dot_cossim(acts: torch.Tensor, vec: torch.Tensor, cossim_pow: float) -> torch.Tensor:
    """Lucid's dot product times ``max(0.1, cossim) ** cossim_pow``, averaged over positions."""
    dot = (acts * vec).sum(-1)
    if cossim_pow == 0:
        return dot.mean()
    eps = 1e-4
    cossim = dot / (eps + acts.norm(dim=-1)) / (eps + vec.norm(dim=-1))
    return (dot * cossim.clamp(min=0.1) ** cossim_pow).mean()


def _as_vector(vec: Sequence[float] | torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    vec = torch.as_tensor(vec, dtype=like.dtype, device=like.device)
    if vec.shape[-1] != like.shape[-1]:
        raise ValueError(
            f"Direction has {vec.shape[-1]} entries but the layer has {like.shape[-1]} units."
        )
    return vec


def direction(
    layer: str, vec: Sequence[float] | torch.Tensor, cossim_pow: float = 0, batch: int | None = None
) -> Objective:
    """Move the layer's activations along ``vec`` (one entry per unit) at every position."""

    @handle_batch(batch)
    def inner(acts: Activations) -> torch.Tensor:
        tensor = _channels_last(acts[layer])
        return _dot_cossim(tensor, _as_vector(vec, tensor), cossim_pow)

    name = f"direction({layer!r}, <{len(vec)}-vector>, cossim_pow={cossim_pow}{batch_arg(batch)})"
    return Objective(inner, name, {layer})


def direction_neuron(
    layer: str,
    vec: Sequence[float] | torch.Tensor,
    x: int | None = None,
    y: int | None = None,
    cossim_pow: float = 0,
    batch: int | None = None,
) -> Objective:
    """:func:`direction` at one position (the centre by default)."""

    @handle_batch(batch)
    def inner(acts: Activations) -> torch.Tensor:
        tensor = acts[layer]
        if tensor.dim() == 4:
            col, row = _centre(tensor, x, y)
            tensor = tensor[:, :, row, col]
        elif tensor.dim() == 3:
            tensor = tensor[:, tensor.shape[1] // 2 if x is None else x]
        return _dot_cossim(tensor, _as_vector(vec, tensor), cossim_pow)

    name = f"direction_neuron({layer!r}, <{len(vec)}-vector>{batch_arg(batch)})"
    return Objective(inner, name, {layer})


def deepdream(layer: str, batch: int | None = None) -> Objective:
    """Mean of squared activations of a whole layer (DeepDream)."""

    @handle_batch(batch)
    def inner(acts: Activations) -> torch.Tensor:
        return (acts[layer] ** 2).mean()

    return Objective(inner, f"deepdream({layer!r}{batch_arg(batch)})", {layer})


def class_logit(label: int | str, batch: int | None = None) -> Objective:
    """The pre-softmax logit of a class, by index or by name (from the model's labels)."""

    @handle_batch(batch)
    def inner(acts: Activations) -> torch.Tensor:
        logits = acts["logits"]
        index = _label_index(label, acts.labels)
        check_unit("logits", logits, index)
        return logits[:, index].mean()

    return Objective(inner, f"class_logit({label!r}{batch_arg(batch)})", {"logits"})


def _label_index(label: int | str, labels: Sequence[str] | None) -> int:
    if isinstance(label, int):
        return label
    if not labels:
        raise ValueError(
            f"class_logit({label!r}) needs class names, but the model has no lucid_labels; "
            "pass the class index instead, or set model.lucid_labels."
        )
    lowered = [name.lower() for name in labels]
    if label.lower() in lowered:
        return lowered.index(label.lower())
    import difflib

    close = difflib.get_close_matches(label.lower(), lowered, n=5, cutoff=0.5)
    hint = ", ".join(repr(labels[lowered.index(c)]) for c in close) or "none close"
    raise ValueError(f"Unknown class name {label!r}; closest: {hint}.")


def total_variation(layer: str = "input") -> Objective:
    """Sum of absolute differences between neighbouring pixels (a penalty: subtract it)."""

    def inner(acts: Activations) -> torch.Tensor:
        image = acts[layer]  # (B, C, H, W)
        vertical = (image[..., 1:, :] - image[..., :-1, :]).abs().sum()
        horizontal = (image[..., :, 1:] - image[..., :, :-1]).abs().sum()
        return vertical + horizontal

    return Objective(inner, f"total_variation({layer!r})", {layer})


def L1(layer: str = "input", constant: float = 0.0, batch: int | None = None) -> Objective:  # noqa: N802
    """Sum of absolute differences from ``constant`` (a penalty: subtract it)."""

    @handle_batch(batch)
    def inner(acts: Activations) -> torch.Tensor:
        return (acts[layer] - constant).abs().sum()

    return Objective(inner, f"L1({layer!r})", {layer})


def L2(  # noqa: N802
    layer: str = "input", constant: float = 0.0, epsilon: float = 1e-6, batch: int | None = None
) -> Objective:
    """Euclidean distance from ``constant`` (a penalty: subtract it)."""

    @handle_batch(batch)
    def inner(acts: Activations) -> torch.Tensor:
        return torch.sqrt(epsilon + ((acts[layer] - constant) ** 2).sum())

    return Objective(inner, f"L2({layer!r})", {layer})


def _blur(image: torch.Tensor) -> torch.Tensor:
    """Lucid's 3x3 binomial blur, renormalized at the borders."""
    kernel = torch.tensor([1.0, 2.0, 1.0], dtype=image.dtype, device=image.device)
    kernel = torch.outer(kernel, kernel)
    kernel = (kernel / kernel.sum()).expand(image.shape[1], 1, 3, 3)
    blurred = F.conv2d(image, kernel, padding=1, groups=image.shape[1])
    norm = F.conv2d(torch.ones_like(image[:1]), kernel, padding=1, groups=image.shape[1])
    return blurred / norm


def blur_input_each_step() -> Objective:
    """Half the squared distance to a blurred copy of the input (a penalty: subtract it).

    Subtracting it pulls the image towards its own blur at every step, as Lucid.
    """

    def inner(acts: Activations) -> torch.Tensor:
        image = acts["input"]
        return 0.5 * ((image - _blur(image).detach()) ** 2).sum()

    return Objective(inner, "blur_input_each_step()", {"input"})


def channel_interpolate(layer1: str, unit1: int, layer2: str, unit2: int) -> Objective:
    """Interpolate between two channels across the batch: element 0 is unit1, the last unit2."""

    def inner(acts: Activations) -> torch.Tensor:
        first, second = acts[layer1], acts[layer2]
        check_unit(layer1, first, unit1)
        check_unit(layer2, second, unit2)
        batch = first.shape[0]
        weights = (
            torch.linspace(0, 1, batch, device=first.device) if batch > 1 else first.new_zeros(1)
        )
        first_means = unit_map(first, unit1).reshape(batch, -1).mean(1)
        second_means = unit_map(second, unit2).reshape(batch, -1).mean(1)
        return ((1 - weights) * first_means + weights * second_means).sum()

    name = f"channel_interpolate({layer1!r}, {unit1}, {layer2!r}, {unit2})"
    return Objective(inner, name, {layer1, layer2})


def alignment(layer: str, decay_ratio: float = 2) -> Objective:
    """Encourage neighbouring batch elements to look alike (for interpolations), as Lucid."""

    def inner(acts: Activations) -> torch.Tensor:
        tensor = acts[layer]
        total = tensor.new_zeros(())
        for distance in (1, 2, 3, 4):
            if distance >= tensor.shape[0]:
                break
            squared = ((tensor[:-distance] - tensor[distance:]) ** 2).flatten(1).mean(1)
            total = total + squared.sum() / decay_ratio**distance
        return -total

    return Objective(inner, f"alignment({layer!r}, decay_ratio={decay_ratio})", {layer})


def diversity(layer: str) -> Objective:
    """Mean cosine similarity of the batch elements' Gram matrices (Lucid's definition).

    Higher means *less* diverse: subtract it to ask for distinct images, as in
    ``channel("layer3", 7) - 1e2 * diversity("layer3")``.
    """

    def inner(acts: Activations) -> torch.Tensor:
        tensor = acts[layer]
        batch = tensor.shape[0]
        if batch < 2:
            return tensor.new_zeros(())
        flat = _channels_last(tensor).reshape(batch, -1, unit_count(tensor))  # (B, positions, C)
        grams = flat.transpose(1, 2) @ flat  # (B, C, C)
        grams = F.normalize(grams.flatten(1), dim=1, eps=1e-10)  # (B, C * C)
        similarity = grams @ grams.T  # (B, B)
        return (similarity.sum() - similarity.diagonal().sum()) / batch

    return Objective(inner, f"diversity({layer!r})", {layer})


def input_diff(image: torch.Tensor) -> Objective:
    """Root-mean-square distance of the input from ``image`` (B, C, H, W) in [0, 1]."""

    def inner(acts: Activations) -> torch.Tensor:
        current = acts["input"]
        target = image.to(device=current.device, dtype=current.dtype)
        return torch.sqrt(((current - target) ** 2).mean())

    return Objective(inner, "input_diff(<image>)", {"input"})


def dot_compare(layer: str, batch: int = 1, cossim_pow: float = 0) -> Objective:
    """Match batch element ``batch`` to element 0's activations (caricature / feature inversion).

    Element 0 holds the reference image's activations, element ``batch`` the image optimized
    towards them; the value is Lucid's dot product times the floored cosine power.
    """

    def inner(acts: Activations) -> torch.Tensor:
        tensor = _channels_last(acts[layer])
        return _dot_cossim(tensor[batch], tensor[0].detach(), cossim_pow)

    return Objective(
        inner, f"dot_compare({layer!r}, batch={batch}, cossim_pow={cossim_pow})", {layer}
    )
