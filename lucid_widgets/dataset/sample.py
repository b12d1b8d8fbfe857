"""A sample image through the network: predictions, the units it excites, their maps.

:func:`sample_view` runs one forward pass with hooks on every requested layer (and the logits)
and returns a :class:`SampleView`. :func:`deepdream_of` and :func:`caricature_of` build the
objective and ``param_f`` for Microscope's per-image views (DeepDream of the image, and a
caricature / feature inversion of what a layer sees in it); :func:`accentuation_of` raises one
unit or class in the photo while keeping the image's activations near the photo's.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from lucid_widgets.dataset.images import as_float, load_image
from lucid_widgets.optvis.arrays import to_uint8
from lucid_widgets.optvis.hooks import capture, model_device, resolve_layer
from lucid_widgets.optvis.preprocess import Preprocess, resolve
from lucid_widgets.optvis.shadow import pass_network
from lucid_widgets.zoo.receptive_field import model_dtype

__all__ = [
    "LayerSample",
    "accentuation_of",
    "Prediction",
    "SampleView",
    "caricature_of",
    "deepdream_of",
    "default_layers",
    "resolve_layers",
    "sample_view",
]

_SPATIAL_KINDS = ("conv", "linear")


def default_layers(model: nn.Module) -> list[str]:
    """The layers a browser shows: the model's aliases, else the zoo catalog's browsable
    convolutional / linear layers (one dry forward), else every ``Conv2d``."""
    aliases = getattr(model, "lucid_aliases", None)
    if aliases:
        return list(aliases)
    try:
        from lucid_widgets.zoo import catalog
    except ImportError:
        catalog = None
    if catalog is not None:
        infos = catalog.layers(model)
        names = [i.alias or i.name for i in infos if i.browsable and i.kind in _SPATIAL_KINDS]
        if names:
            return names
    names = [name for name, module in model.named_modules() if isinstance(module, nn.Conv2d)]
    if not names:
        raise ValueError(
            f"{type(model).__name__} has no aliases and no Conv2d layers; pass layers=[...]."
        )
    return names


def resolve_layers(model: nn.Module, layers: str | Sequence[str] | None) -> dict[str, str]:
    """Layer names (default :func:`default_layers`) -> dotted paths, one name per path.

    Raises ``LayerNotFoundError`` for an unknown name and ``ValueError`` for ``"input"``.
    """
    if layers is None:
        layers = default_layers(model)
    names = [layers] if isinstance(layers, str) else list(layers)
    if not names:
        raise ValueError("layers is empty; give a layer name or a list of names.")
    paths: dict[str, str] = {}
    for name in names:
        path = resolve_layer(model, name)
        if path == "input":
            raise ValueError("'input' has no units to rank; give a layer of the model.")
        if path not in paths.values():
            paths[name] = path
    return paths


@dataclass(frozen=True)
class Prediction:
    """One of the model's top classes for the sample image."""

    index: int
    label: str
    probability: float
    logit: float


@dataclass
class LayerSample:
    """The units of one layer that the image excites most.

    ``units`` and ``values`` ``(top_units,)``: unit indices, strongest first, ranked by the
    spatial **max** of each unit's map (``reduce="mean"`` ranks by the spatial mean).
    ``activations``: the whole layer, ``(C, H', W')`` (or ``(C,)`` for a linear layer), float32.
    """

    layer: str
    units: np.ndarray
    values: np.ndarray
    activations: np.ndarray = field(repr=False)
    input_size: tuple[int, int]
    reduce: str = "max"

    def activation_map(self, unit: int, upsample: bool = False) -> np.ndarray:
        """``(H', W')`` map of ``unit``; ``upsample=True`` resizes it (bilinear) to the image."""
        if not 0 <= unit < self.activations.shape[0]:
            raise IndexError(
                f"Unit {unit} out of range: {self.layer!r} has {self.activations.shape[0]} units."
            )
        unit_map = self.activations[unit]
        if unit_map.ndim == 0:
            unit_map = unit_map.reshape(1, 1)
        if not upsample:
            return unit_map
        tensor = torch.from_numpy(np.ascontiguousarray(unit_map))[None, None]
        resized = F.interpolate(tensor, size=self.input_size, mode="bilinear", align_corners=False)
        return resized[0, 0].numpy()

    def maps(self, upsample: bool = False) -> np.ndarray:
        """``(top_units, H', W')`` (or image-sized) maps of the top units, in rank order."""
        return np.stack([self.activation_map(int(unit), upsample) for unit in self.units])


@dataclass
class SampleView:
    """What a network makes of one image; ``view[layer]`` is a :class:`LayerSample`."""

    image: np.ndarray  # (H, W, 3) uint8: the resized, centre-cropped network input
    predictions: list[Prediction]
    layers: dict[str, LayerSample]

    def __getitem__(self, layer: str) -> LayerSample:
        if layer not in self.layers:
            raise KeyError(f"Layer {layer!r} not in this view; it has {', '.join(self.layers)}.")
        return self.layers[layer]

    def activation_map(self, layer: str, unit: int, upsample: bool = False) -> np.ndarray:
        """See :meth:`LayerSample.activation_map`."""
        return self[layer].activation_map(unit, upsample)


def _as_batch(image: object, pre: Preprocess, device, dtype) -> torch.Tensor:
    """Any image (path, PIL, array, tensor) -> ``(1, C, H, W)`` float in [0, 1] at input size."""
    tensor = as_float(load_image(image, pre.input_size, pre.channels))  # (C, H, W)
    return tensor[None].to(device=device, dtype=dtype)


def _outputs(model: nn.Module, network_input: torch.Tensor, layers: list[str]) -> dict:
    """``{layer: output}`` of one no-grad pass, run on the model's shadow copy (see
    :func:`~lucid_widgets.optvis.shadow.pass_network`): no flag of the model's is touched."""
    with (
        pass_network(model, network_input) as network,
        torch.no_grad(),
        capture(network, layers) as run,
    ):
        return run(network_input)


def _predictions(logits: torch.Tensor, labels: Sequence[str] | None, top: int) -> list[Prediction]:
    if logits.dim() != 2:
        return []
    logits = logits[0].float()
    probabilities = logits.softmax(0)
    best = probabilities.topk(min(top, logits.numel()))
    return [
        Prediction(
            index=int(index),
            label=str(labels[index]) if labels is not None and index < len(labels) else str(index),
            probability=float(probability),
            logit=float(logits[index]),
        )
        for probability, index in zip(best.values.tolist(), best.indices.tolist(), strict=True)
    ]


def _layer_sample(
    name: str, output: torch.Tensor, top_units: int, reduce: str, pre: Preprocess
) -> LayerSample:
    """The top units of one layer's ``output`` ``(1, C, H', W')`` or ``(1, C)``."""
    tensor = output[0].float()  # (C, H', W') or (C,)
    if tensor.dim() not in (1, 3):
        raise ValueError(
            f"Layer {name!r} has output shape {tuple(output.shape)}; sample_view reads "
            "(B, C, H, W) or (B, C) layers."
        )
    if tensor.dim() == 1:
        scores = tensor
    else:
        scores = tensor.flatten(1).amax(1) if reduce == "max" else tensor.flatten(1).mean(1)
    best = scores.topk(min(top_units, scores.numel()))
    return LayerSample(
        layer=name,
        units=best.indices.cpu().numpy(),
        values=best.values.cpu().numpy(),
        activations=tensor.cpu().numpy(),
        input_size=tuple(pre.input_size),
        reduce=reduce,
    )


def sample_view(
    model: nn.Module,
    image: object,
    layers: str | Sequence[str] | None = None,
    top_units: int = 8,
    preprocess: Preprocess | None = None,
    reduce: str = "max",
    top_classes: int = 5,
) -> SampleView:
    """Run ``image`` through ``model`` and report its top classes and most excited units.

    Parameters
    ----------
    model
        Any ``nn.Module``; ``model.lucid_labels`` names the classes when present.
    image
        A file path, PIL image, numpy array ``(H, W[, C])`` or tensor ``(C, H, W)``; resized
        (shorter side) and centre-cropped to the model's input size.
    layers
        A name or list of names; default :func:`default_layers`.
    top_units
        Units kept per layer, strongest first.
    reduce
        ``"max"`` (default) or ``"mean"``: how a unit's map is reduced to its score.
    top_classes
        Number of predictions (the model's output must be ``(1, classes)``; else none).
    """
    if reduce not in ("max", "mean"):
        raise ValueError(f"reduce must be 'max' or 'mean', got {reduce!r}.")
    if isinstance(top_units, bool) or not isinstance(top_units, int) or top_units < 1:
        raise ValueError(f"top_units must be a positive integer, got {top_units!r}.")
    pre = resolve(model, preprocess)
    names = list(resolve_layers(model, layers))  # clear errors before the forward
    batch = _as_batch(image, pre, model_device(model), model_dtype(model))  # (1, C, H, W)
    acts = _outputs(model, pre(batch), [*names, "logits"])
    result = {name: _layer_sample(name, acts[name], top_units, reduce, pre) for name in names}
    return SampleView(
        image=to_uint8(batch.float(), rgb=True)[0],  # (H, W, 3)
        predictions=_predictions(acts["logits"], getattr(model, "lucid_labels", None), top_classes),
        layers=result,
    )


# ---------------------------------------------------------------------------- per-image views


def _picture(image: object, size: tuple[int, int] | None, channels: int = 3) -> object:
    """A path becomes a PIL image; with ``size``, any image is resized + centre-cropped."""
    if size is not None:
        return as_float(load_image(image, size, channels))  # (C, H, W)
    if isinstance(image, (str, os.PathLike)):
        with Image.open(image) as opened:
            return opened.convert("RGB" if channels == 3 else "L")
    return image


def deepdream_of(
    image: object, layer: str, size: tuple[int, int] | None = None
) -> tuple[object, Callable]:
    """DeepDream of a photo: ``(objectives.deepdream(layer), param_f starting at the image)``.

    ``size`` ``(height, width)`` resizes + centre-crops the image first (e.g. to the model's
    input size); by default it is used as it is. Render with ``render_vis(model, objective,
    param_f)``.
    """
    from lucid_widgets.optvis import objectives, param

    picture = _picture(image, size)
    return objectives.deepdream(layer), lambda: param.from_image(picture)


def caricature_of(
    model: nn.Module,
    image: object,
    layer: str,
    cossim_pow: float = 1.0,
    start: str = "noise",
    preprocess: Preprocess | None = None,
) -> tuple[object, Callable]:
    """Caricature (feature inversion): an image whose ``layer`` activations match the photo's.

    The objective is Lucid's ``dot_compare``: the dot product of the rendered image's
    activations with the photo's (taken once here, on the photo resized to the input size),
    times ``max(0.1, cossim) ** cossim_pow``; the photo's activations are resized to the
    rendered map when transforms change its size. ``start`` is ``"noise"`` (Lucid's default
    image parameterization) or ``"image"`` (start from the photo).

    Returns
    -------
    (objective, param_f)
        Render with ``render_vis(model, objective, param_f)``.
    """
    from lucid_widgets.optvis import objectives, param

    if start not in ("noise", "image"):
        raise ValueError(f"start must be 'noise' or 'image', got {start!r}.")
    pre = resolve(model, preprocess)
    batch = _as_batch(image, pre, model_device(model), model_dtype(model))  # (1, C, H, W)
    target = _outputs(model, pre(batch), [layer])[layer].float()  # (1, C, H', W') or (1, C)

    def inner(acts) -> torch.Tensor:
        current = acts[layer].float()  # (B, C, h, w)
        reference = target.to(current.device)
        if current.dim() == 4 and current.shape[-2:] != reference.shape[-2:]:
            reference = F.interpolate(reference, size=current.shape[-2:], mode="bilinear")
        dot = (current * reference).flatten(1).sum(1)  # (B,)
        if cossim_pow == 0:
            return dot.mean()
        norms = current.flatten(1).norm(dim=1) * reference.flatten(1).norm(dim=1)
        cossim = dot / (norms + 1e-6)
        return (dot * cossim.clamp(min=0.1) ** cossim_pow).mean()

    objective = objectives.Objective(
        inner, f"caricature({layer!r}, cossim_pow={cossim_pow})", {layer}
    )
    height, width = pre.input_size
    picture = batch[0].float().cpu()
    if start == "image":
        return objective, lambda: param.from_image(picture)
    return objective, lambda: param.image(width, height, channels=pre.channels)


def _layers_before(model: nn.Module, layer: str, count: int) -> list[str]:
    """Up to ``count`` browsable layers before ``layer`` (evenly spaced, in network order)."""
    path = resolve_layer(model, layer)
    candidates = [name for name in default_layers(model) if resolve_layer(model, name) != path]
    order = {name: index for index, (name, _) in enumerate(model.named_modules())}
    stop = order.get(path, len(order))
    earlier = [name for name in candidates if order.get(resolve_layer(model, name), stop) < stop]
    if len(earlier) <= count:
        return earlier
    picks = np.linspace(0, len(earlier) - 1, count).round().astype(int)
    return [earlier[index] for index in sorted(set(picks.tolist()))]


def accentuation_of(
    model: nn.Module,
    image: object,
    layer: str,
    unit: int | str,
    regularize: Sequence[str] | None = None,
    strength: float = 1.0,
    preprocess: Preprocess | None = None,
) -> tuple[object, Callable]:
    """Feature accentuation (Hamblin et al. 2024): the photo, changed to raise one unit or class.

    The objective is the unit's mean activation (``layer="logits"``: the class logit, ``unit``
    an index or a label) minus ``strength`` times the relative squared distance
    ``||a_l(x) - a_l(photo)||^2 / ||a_l(photo)||^2`` summed over the ``regularize`` layers,
    scaled by the standard deviation of ``layer``'s activations on the photo, so that both terms
    are in the unit's units (strength 1: raising the unit by one such std may cost a relative
    distance of 1). The
    render starts from the photo, so the change stays close to it along the network: a view
    between the caricature and the dataset examples.

    Parameters
    ----------
    model, image
        The network and the photo (path, PIL, array or tensor; resized to the input size).
    layer, unit
        What to raise.
    regularize
        Layers whose activations are kept near the photo's; default up to 4 browsable layers
        before ``layer``, evenly spaced (the model's aliases, else its catalog).
    strength
        Weight of the regularizer (0: plain activation maximization from the photo).

    Returns
    -------
    (objective, param_f)
        Render with ``render_vis(model, objective, param_f)``, as :func:`deepdream_of`.
    """
    from lucid_widgets.optvis import objectives, param

    if strength < 0:
        raise ValueError(f"strength must be >= 0, got {strength!r}.")
    pre = resolve(model, preprocess)
    raise_ = objectives.class_logit(unit) if layer == "logits" else objectives.channel(layer, unit)
    kept = _layers_before(model, layer, 4) if regularize is None else list(regularize)
    batch = _as_batch(image, pre, model_device(model), model_dtype(model))  # (1, C, H, W)
    acts = _outputs(model, pre(batch), [*kept, layer])
    scale = float(acts[layer].float().std().clamp_min(1e-6))  # the layer's spread on the photo
    targets = {name: acts[name].detach().float() for name in kept}

    def inner(current) -> torch.Tensor:
        distance = 0.0
        for name, target in targets.items():
            value = current[name].float()  # (B, C, h, w) or (B, C)
            reference = target.to(value.device)
            if value.dim() == 4 and value.shape[-2:] != reference.shape[-2:]:
                reference = F.interpolate(reference, size=value.shape[-2:], mode="bilinear")
            squared = (value - reference).pow(2).flatten(1).sum(1)  # (B,)
            distance = distance + (squared / reference.pow(2).sum().clamp_min(1e-12)).mean()
        return raise_(current) - strength * scale * distance

    name = f"accentuation({layer!r}, {unit!r}, strength={strength})"
    objective = objectives.Objective(inner, name, {*kept, *raise_.layers})
    picture = batch[0].float().cpu()
    return objective, lambda: param.from_image(picture)
