"""torchvision classification models by name, with weights that never hang offline.

The architecture is built with ``weights=None`` (plus the keyword arguments torchvision's own
builder sets when it loads pretrained weights: class count, ``transform_input``, image size, aux
heads), then the state dict is resolved by :mod:`lucid_widgets.zoo.weights` (a local file, the
torch hub cache, or a download after a fast connectivity probe), checked key for key and loaded.
The weights enum supplies the metadata: preprocessing (mean, std, crop size), class names, URL and
the sha256 prefix in the file name.

In-place activations (``ReLU(inplace=True)``) are switched to out-of-place so that a hooked layer's
captured output is not overwritten by the next module.
"""

from __future__ import annotations

import re
from enum import Enum
from pathlib import Path
from typing import Any

from torch import nn

from lucid_widgets.zoo.weights import StateDict, WeightsSource, load_weights, resolve_weights

__all__ = [
    "build_torchvision",
    "default_aliases",
    "is_torchvision_model",
    "torchvision_model_names",
    "torchvision_weights",
]

_HEAD_NAMES = {"fc", "classifier", "head", "heads", "avgpool", "dropout", "flatten", "permute"}


def torchvision_model_names() -> list[str]:
    """Names of torchvision's ImageNet classification models (``torchvision.models``)."""
    import torchvision.models

    return list(torchvision.models.list_models(module=torchvision.models))


def is_torchvision_model(name: str) -> bool:
    """Whether ``name`` is a torchvision classification model."""
    return name in torchvision_model_names()


def torchvision_weights(name: str, weights: Any = "DEFAULT") -> Enum:
    """The weights enum member of model ``name``: ``"DEFAULT"``, a member name or a member."""
    import torchvision.models

    weights_enum = torchvision.models.get_model_weights(name)
    if isinstance(weights, weights_enum):
        return weights
    if isinstance(weights, str) and weights in weights_enum.__members__:
        return weights_enum[weights]
    if isinstance(weights, str) and weights == "DEFAULT":
        return weights_enum.DEFAULT
    valid = ", ".join(["DEFAULT", *weights_enum.__members__])
    raise ValueError(f"Unknown weights {weights!r} for {name!r}; valid: {valid}.")


def _split_weights(name: str, weights: str | Path | Enum | None) -> tuple[Enum, Path | None]:
    """``weights=`` -> (weights enum member for metadata, local file or ``None``)."""
    if weights is None:
        return torchvision_weights(name), None
    if isinstance(weights, Enum):
        return torchvision_weights(name, weights), None
    path = Path(weights).expanduser()
    looks_like_member = isinstance(weights, str) and re.fullmatch(r"[A-Z][A-Z0-9_]*", weights)
    if looks_like_member and not path.exists():
        return torchvision_weights(name, weights), None
    return torchvision_weights(name), path


def _arch_kwargs(name: str, weights_member: Enum, loading: bool) -> dict[str, Any]:
    """Keyword arguments that make ``weights=None`` build the pretrained layout."""
    meta = weights_member.meta
    kwargs: dict[str, Any] = {}
    if meta.get("categories") is not None:
        kwargs["num_classes"] = len(meta["categories"])
    if name.startswith("vit_"):
        kwargs["image_size"] = meta["min_size"][0]
    elif name.startswith("maxvit_"):
        kwargs["input_size"] = meta["min_size"]
    if name in ("googlenet", "inception_v3"):
        # The files hold the aux heads; they are loaded, then dropped (as torchvision does).
        kwargs.update(transform_input=True, aux_logits=loading, init_weights=not loading)
    elif name.startswith("vgg") and loading:
        kwargs["init_weights"] = False  # skip the random init that loading overwrites
    return kwargs


def _drop_aux_heads(model: nn.Module) -> None:
    if hasattr(model, "aux_logits"):
        model.aux_logits = False
    for aux in ("aux1", "aux2", "AuxLogits"):
        if getattr(model, aux, None) is not None:
            setattr(model, aux, None)


_DENSENET_LEGACY = re.compile(
    r"^(.*denselayer\d+\.(?:norm|relu|conv))\.((?:[12])\.(?:weight|bias|running_mean|running_var))$"
)


def _remap_densenet(state: StateDict) -> StateDict:
    """DenseNet files use ``norm.1`` style keys that newer modules spell ``norm1``."""
    remapped: StateDict = {}
    for key, value in state.items():
        match = _DENSENET_LEGACY.match(key)
        remapped[match.group(1) + match.group(2) if match else key] = value
    return remapped


def _no_inplace(model: nn.Module) -> None:
    for module in model.modules():
        if isinstance(getattr(module, "inplace", None), bool):
            module.inplace = False


def _conv_relu_aliases(model: nn.Module) -> dict[str, str]:
    """AlexNet / VGG: post-ReLU ``conv1``.. or ``conv1_1``.., ``pool*``, ``fc6``..``fc8``.

    ``<conv>_pre_relu`` names the convolution itself.
    """
    is_alexnet = type(model).__name__ == "AlexNet"
    aliases: dict[str, str] = {}
    convs_seen, block, index_in_block = 0, 1, 0
    children = list(model.features.named_children())
    for position, (child_name, child) in enumerate(children):
        path = f"features.{child_name}"
        if isinstance(child, nn.Conv2d):
            convs_seen += 1
            index_in_block += 1
            alias = f"conv{convs_seen}" if is_alexnet else f"conv{block}_{index_in_block}"
            after = [f"features.{n}" for n, c in children[position + 1 :] if isinstance(c, nn.ReLU)]
            aliases[alias] = after[0] if after else path
            aliases[f"{alias}_pre_relu"] = path
        elif isinstance(child, nn.MaxPool2d):
            # Caffe names: AlexNet pool1, pool2, pool5 (after that conv); VGG pool1..pool5
            aliases[f"pool{convs_seen if is_alexnet else block}"] = path
            block, index_in_block = block + 1, 0
    head = list(model.classifier.named_children())
    linears = [n for n, c in head if isinstance(c, nn.Linear)]
    relus = [n for n, c in head if isinstance(c, nn.ReLU)]
    for number, linear in enumerate(linears, start=6):
        following = [r for r in relus if int(r) > int(linear)]
        last = linear == linears[-1] or not following
        aliases[f"fc{number}"] = f"classifier.{linear if last else following[0]}"
    return aliases


def _family_aliases(name: str, model: nn.Module) -> dict[str, str] | None:
    """Classic browse layers for the well-known families (``None``: no rule)."""
    children = dict(model.named_children())
    if name == "alexnet" or name.startswith("vgg"):
        return _conv_relu_aliases(model)
    if name == "googlenet":
        blocks = ["3a", "3b", "4a", "4b", "4c", "4d", "4e", "5a", "5b"]
        aliases = {f"conv{i}": f"conv{i}" for i in (1, 2, 3)}
        aliases.update({f"mixed{b}": f"inception{b}" for b in blocks})
        return aliases
    if name.startswith(("resnet", "resnext", "wide_resnet")):
        return {"stem": "maxpool", **{f"layer{i}": f"layer{i}" for i in range(1, 5)}}
    if name == "inception_v3":
        return {child: child for child in children if child.startswith(("Conv2d_", "Mixed_"))}
    if name.startswith("vit_"):
        layers = dict(model.encoder.layers.named_children())
        aliases = {f"block{i}": f"encoder.layers.{n}" for i, n in enumerate(layers)}
        return {"patches": "conv_proj", **aliases, "encoder": "encoder.ln"}
    if name.startswith(("convnext", "swin")):
        stages = {f"stage{i + 1}": f"features.{2 * i + 1}" for i in range(len(model.features) // 2)}
        return {"stem": "features.0", **stages}
    if name.startswith(("efficientnet", "mobilenet")):
        return {f"block{i}": f"features.{i}" for i in range(len(model.features))}
    if name.startswith("densenet"):
        return {
            child: f"features.{child}"
            for child, _ in model.features.named_children()
            if child.startswith(("denseblock", "transition"))
        }
    if name.startswith("squeezenet"):
        fires = [n for n, c in model.features.named_children() if type(c).__name__ == "Fire"]
        return {f"fire{i}": f"features.{n}" for i, n in enumerate(fires, start=2)}
    if name.startswith("regnet"):
        blocks = dict(model.trunk_output.named_children())
        return {f"stage{i}": f"trunk_output.{n}" for i, n in enumerate(blocks, start=1)}
    if name.startswith("mnasnet"):
        return {f"block{i}": f"layers.{i}" for i in range(len(model.layers))}
    if name.startswith("maxvit"):
        return {f"stage{i + 1}": f"blocks.{i}" for i in range(len(model.blocks))}
    return None


def default_aliases(name: str, model: nn.Module) -> dict[str, str]:
    """Alias -> dotted path for the layers worth browsing in torchvision model ``name``.

    Families: AlexNet ``conv1``..``conv5`` (post-ReLU; ``_pre_relu`` for the conv), ``pool1``..,
    ``fc6``..``fc8``; VGG ``conv1_1``..``conv5_3``/``conv5_4``, ``pool1``..``pool5``,
    ``fc6``..``fc8``; GoogLeNet ``mixed3a``..``mixed5b`` (= ``inception3a``..); ResNet ``stem``,
    ``layer1``..``layer4``; ViT ``patches``, ``block0``..; ConvNeXt / Swin ``stem``,
    ``stage1``..``stage4``; EfficientNet / MobileNet ``block{i}`` = ``features.{i}``; others their
    top-level children (the classifier head excluded).
    """
    aliases = _family_aliases(name, model)
    if aliases is None:
        aliases = {child: child for child, _ in model.named_children() if child not in _HEAD_NAMES}
    return aliases


def _preprocess(weights_member: Enum):  # -> Preprocess
    from lucid_widgets.optvis.preprocess import Preprocess

    transforms = weights_member.transforms()
    crop = int(transforms.crop_size[0])
    return Preprocess(
        mean=tuple(float(m) for m in transforms.mean),
        std=tuple(float(s) for s in transforms.std),
        value_range=(0.0, 1.0),
        input_size=(crop, crop),
        channels=3,
    )


def build_torchvision(
    name: str, pretrained: bool = True, weights: str | Path | Enum | None = None
) -> nn.Module:
    """Build torchvision model ``name`` in eval mode, on CPU, with lucid_widgets metadata.

    Parameters
    ----------
    name
        A torchvision classification model name, e.g. ``"resnet50"``.
    pretrained
        Load the weights enum's ``DEFAULT`` weights (hub cache, else download when online).
    weights
        A local state-dict file, or a weights enum member / member name (``"IMAGENET1K_V2"``).

    Raises
    ------
    WeightsUnavailableError
        Offline without the file; the message says how to get it.
    WeightsMismatchError
        The file does not fit the architecture.
    """
    import torchvision.models

    weights_member, path = _split_weights(name, weights)
    loading = pretrained or weights is not None
    source = WeightsSource.from_torch_hub_url(weights_member.url)
    resolved = resolve_weights(name, source, path) if loading else None  # fails fast
    model = torchvision.models.get_model(
        name, weights=None, **_arch_kwargs(name, weights_member, loading)
    )
    if resolved is not None:
        remap = _remap_densenet if name.startswith("densenet") else None
        load_weights(model, resolved, remap_keys=remap)
        _drop_aux_heads(model)
    _no_inplace(model)
    model.lucid_aliases = default_aliases(name, model)
    model.lucid_preprocess = _preprocess(weights_member)
    categories = weights_member.meta.get("categories")
    model.lucid_labels = list(categories) if categories is not None else None
    model.lucid_name = name
    return model.eval()


def cached_weights_path(name: str) -> Path:
    """Where model ``name``'s DEFAULT weights are (or would be) in the torch hub cache."""
    return WeightsSource.from_torch_hub_url(torchvision_weights(name).url).cache_path
