"""InceptionV1 as in Lucid and OpenAI Microscope (the ``inception5h`` TensorFlow graph).

The architecture reproduces the graph that Lucid visualizes, with module names that are Lucid's
layer names, so ``"mixed4a:476"`` means the same unit here as in Lucid, Lucent and Microscope:

* ``conv2d0``, ``conv2d1``, ``conv2d2`` and ``mixed3a_1x1``, ``mixed4d_3x3_bottleneck`` ... are
  :class:`torch.nn.ReLU` modules (post-ReLU activations, hookable);
* ``mixed3a`` .. ``mixed5b`` are :class:`Concat` modules: the block output, the concatenation of
  the ReLU'd ``1x1``, ``3x3``, ``5x5`` and ``pool_reduce`` branches, in that order;
* ``mixed3a_pre_relu`` .. are the same concatenation before the ReLUs (as Lucid adds them);
* the convolutions are ``<layer>_pre_relu_conv`` (state-dict keys ``<layer>_pre_relu_conv.weight``
  / ``.bias``, as in the converted weights file); the aliases ``<layer>_pre_relu`` point to them;
* ``softmax2_pre_activation_matmul`` (alias ``softmax2_pre_activation``) is the 1024 -> 1008 linear
  layer whose output the model returns; ``softmax2`` holds the probabilities.

TensorFlow's ``"SAME"`` padding is explicit: the input is padded (left 2, right 3, top 2, bottom 3)
before the 7x7 stride-2 stem, and stride-2 max pools pad right/bottom by one with ``-inf``.
Input: RGB in ``[0, 255]`` minus 117 (``Preprocess(mean=(117,)*3, std=(1,)*3,
value_range=(0, 255))``), 224 x 224 (other sizes work: the final pool is global).

Labels: the graph has 1008 logits whose label list (``imagenet_comp_graph_label_strings.txt``,
index 0 = ``"dummy"``) is in its own order and cannot be derived offline from torchvision's
ImageNet order, so ``lucid_labels`` is ``None``; set ``model.lucid_labels`` yourself from that file
if you have it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from lucid_widgets.zoo.weights import WeightsSource, load_weights, resolve_weights

__all__ = [
    "BLOCKS",
    "NUM_CLASSES",
    "WEIGHTS",
    "BlockSpec",
    "Concat",
    "InceptionV1",
    "build_inceptionv1",
    "default_aliases",
    "inceptionv1_preprocess",
]

NUM_CLASSES = 1008
WEIGHTS = WeightsSource(
    url="https://github.com/ProGamerGov/pytorch-old-tensorflow-models/raw/master/inception5h.pth",
    filename="inception5h.pth",
)
LRN_SIZE = 9
LRN_ALPHA = 9.99999974738e-05
LRN_BETA = 0.5
LRN_K = 1.0
INPUT_MEAN = 117.0  # Lucid feeds x * 255 - 117


@dataclass(frozen=True)
class BlockSpec:
    """Channel widths of one mixed block (input and each branch)."""

    name: str
    in_channels: int
    c1x1: int
    c3x3_bottleneck: int
    c3x3: int
    c5x5_bottleneck: int
    c5x5: int
    pool_reduce: int

    @property
    def out_channels(self) -> int:
        return self.c1x1 + self.c3x3 + self.c5x5 + self.pool_reduce


BLOCKS: tuple[BlockSpec, ...] = (
    BlockSpec("mixed3a", 192, 64, 96, 128, 16, 32, 32),
    BlockSpec("mixed3b", 256, 128, 128, 192, 32, 96, 64),
    BlockSpec("mixed4a", 480, 192, 96, 204, 16, 48, 64),
    BlockSpec("mixed4b", 508, 160, 112, 224, 24, 64, 64),
    BlockSpec("mixed4c", 512, 128, 128, 256, 24, 64, 64),
    BlockSpec("mixed4d", 512, 112, 144, 288, 32, 64, 64),
    BlockSpec("mixed4e", 528, 256, 160, 320, 32, 128, 128),
    BlockSpec("mixed5a", 832, 256, 160, 320, 48, 128, 128),
    BlockSpec("mixed5b", 832, 384, 192, 384, 48, 128, 128),
)
# The stride-2 max pool that follows a block (Lucid's names).
_POOL_AFTER = {"mixed3b": "maxpool4", "mixed4e": "maxpool10"}


class Concat(nn.Module):
    """Concatenate along channels: ``(B, C_i, H, W)`` ... -> ``(B, sum C_i, H, W)``."""

    def forward(self, *tensors: torch.Tensor) -> torch.Tensor:
        return torch.cat(tensors, dim=1)


class SamePadMaxPool(nn.Module):
    """3x3 stride-2 max pool with TensorFlow "SAME" padding (right/bottom by one, ``-inf``)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.pad(x, (0, 1, 0, 1), value=float("-inf"))
        return F.max_pool2d(x, kernel_size=3, stride=2)


def _lrn() -> nn.LocalResponseNorm:
    return nn.LocalResponseNorm(LRN_SIZE, alpha=LRN_ALPHA, beta=LRN_BETA, k=LRN_K)


class InceptionV1(nn.Module):
    """Lucid's InceptionV1 (``inception5h``), returning the 1008 logits ``(B, 1008)``."""

    def __init__(self, num_classes: int = NUM_CLASSES) -> None:
        super().__init__()
        self._add_conv("conv2d0", 3, 64, 7, stride=2)
        self.maxpool0 = SamePadMaxPool()
        self.localresponsenorm0 = _lrn()
        self._add_conv("conv2d1", 64, 64, 1)
        self._add_conv("conv2d2", 64, 192, 3, padding=1)
        self.localresponsenorm1 = _lrn()
        self.maxpool1 = SamePadMaxPool()
        for spec in BLOCKS:
            self._add_block(spec)
            if spec.name in _POOL_AFTER:
                self.add_module(_POOL_AFTER[spec.name], SamePadMaxPool())
        self.avgpool0 = nn.AdaptiveAvgPool2d(1)  # = 7x7 average pool at 224 px input
        self.softmax2_pre_activation_matmul = nn.Linear(BLOCKS[-1].out_channels, num_classes)
        self.softmax2 = nn.Softmax(dim=1)

    def _add_conv(
        self, name: str, in_channels: int, out_channels: int, kernel: int, **kwargs: int
    ) -> None:
        """Add ``<name>_pre_relu_conv`` (conv with bias) and ``<name>`` (its ReLU)."""
        conv = nn.Conv2d(in_channels, out_channels, kernel, bias=True, **kwargs)
        self.add_module(f"{name}_pre_relu_conv", conv)
        self.add_module(name, nn.ReLU())

    def _add_block(self, spec: BlockSpec) -> None:
        name = spec.name
        self._add_conv(f"{name}_1x1", spec.in_channels, spec.c1x1, 1)
        self._add_conv(f"{name}_3x3_bottleneck", spec.in_channels, spec.c3x3_bottleneck, 1)
        self._add_conv(f"{name}_3x3", spec.c3x3_bottleneck, spec.c3x3, 3, padding=1)
        self._add_conv(f"{name}_5x5_bottleneck", spec.in_channels, spec.c5x5_bottleneck, 1)
        self._add_conv(f"{name}_5x5", spec.c5x5_bottleneck, spec.c5x5, 5, padding=2)
        # max_pool2d's implicit padding is -inf, as TensorFlow's SAME pooling.
        self.add_module(f"{name}_pool", nn.MaxPool2d(3, stride=1, padding=1))
        self._add_conv(f"{name}_pool_reduce", spec.in_channels, spec.pool_reduce, 1)
        self.add_module(f"{name}_pre_relu", Concat())
        self.add_module(name, Concat())

    def _conv_relu(self, name: str, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Return ``(pre_relu, post_relu)`` of layer ``name``."""
        pre_relu = getattr(self, f"{name}_pre_relu_conv")(x)
        return pre_relu, getattr(self, name)(pre_relu)

    def _block(self, name: str, x: torch.Tensor) -> torch.Tensor:
        pre_1x1, out_1x1 = self._conv_relu(f"{name}_1x1", x)
        _, bottleneck_3x3 = self._conv_relu(f"{name}_3x3_bottleneck", x)
        pre_3x3, out_3x3 = self._conv_relu(f"{name}_3x3", bottleneck_3x3)
        _, bottleneck_5x5 = self._conv_relu(f"{name}_5x5_bottleneck", x)
        pre_5x5, out_5x5 = self._conv_relu(f"{name}_5x5", bottleneck_5x5)
        pooled = getattr(self, f"{name}_pool")(x)
        pre_pool, out_pool = self._conv_relu(f"{name}_pool_reduce", pooled)
        getattr(self, f"{name}_pre_relu")(pre_1x1, pre_3x3, pre_5x5, pre_pool)
        return getattr(self, name)(out_1x1, out_3x3, out_5x5, out_pool)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, 3, H, W)`` in ``[0, 255] - 117`` -> logits ``(B, 1008)``."""
        x = F.pad(x, (2, 3, 2, 3))  # TF SAME for 7x7 stride 2 at even sizes
        _, x = self._conv_relu("conv2d0", x)  # (B, 64, H/2, W/2)
        x = self.localresponsenorm0(self.maxpool0(x))  # (B, 64, H/4, W/4)
        _, x = self._conv_relu("conv2d1", x)
        _, x = self._conv_relu("conv2d2", x)  # (B, 192, H/4, W/4)
        x = self.maxpool1(self.localresponsenorm1(x))  # (B, 192, H/8, W/8)
        for spec in BLOCKS:
            x = self._block(spec.name, x)
            if spec.name in _POOL_AFTER:
                x = getattr(self, _POOL_AFTER[spec.name])(x)
        x = self.avgpool0(x).flatten(1)  # (B, 1024)
        logits = self.softmax2_pre_activation_matmul(x)  # (B, 1008)
        self.softmax2(logits)  # probabilities, computed so hooks on "softmax2" see them
        return logits


def default_aliases() -> dict[str, str]:
    """Layer names -> module paths: Lucid's browse layers, then its pre-ReLU names.

    The browse layers (``conv2d0`` .. ``conv2d2``, ``mixed3a`` .. ``mixed5b``, ``softmax2``) are
    module names already and map to themselves, so the catalog lists them as curated layers; the
    ``<layer>_pre_relu`` names map to the ``<layer>_pre_relu_conv`` convolutions and
    ``softmax2_pre_activation`` to the final linear layer.
    """
    stem = ["conv2d0", "conv2d1", "conv2d2"]
    aliases = {name: name for name in [*stem, *(spec.name for spec in BLOCKS), "softmax2"]}
    branches = ("1x1", "3x3_bottleneck", "3x3", "5x5_bottleneck", "5x5", "pool_reduce")
    conv_layers = stem + [f"{spec.name}_{branch}" for spec in BLOCKS for branch in branches]
    aliases.update({f"{name}_pre_relu": f"{name}_pre_relu_conv" for name in conv_layers})
    aliases["softmax2_pre_activation"] = "softmax2_pre_activation_matmul"
    return aliases


BROWSE_LAYERS = ("conv2d0", "conv2d1", "conv2d2", *(spec.name for spec in BLOCKS), "softmax2")
"""The layers Microscope shows for InceptionV1, in forward order."""


def inceptionv1_preprocess():  # -> Preprocess
    """Lucid's input convention: ``[0, 1]`` -> ``[0, 255]``, minus 117, 224 x 224 RGB."""
    from lucid_widgets.optvis.preprocess import Preprocess

    return Preprocess(
        mean=(INPUT_MEAN,) * 3,
        std=(1.0, 1.0, 1.0),
        value_range=(0.0, 255.0),
        input_size=(224, 224),
        channels=3,
    )


def build_inceptionv1(pretrained: bool = True, weights: str | Path | None = None) -> InceptionV1:
    """Build Lucid's InceptionV1 in eval mode, on CPU, with lucid_widgets metadata.

    Parameters
    ----------
    pretrained
        Load the converted ``inception5h.pth`` weights: from the torch hub cache, else downloaded
        when online. Ignored when ``weights`` is given.
    weights
        Path of a state dict with this architecture's keys (``<layer>_pre_relu_conv.weight`` ...).

    Raises
    ------
    WeightsUnavailableError
        Offline without the file (the message says how to get it).
    WeightsMismatchError
        The file's keys or shapes differ from the architecture's.
    """
    loading = weights is not None or pretrained
    resolved = resolve_weights("inceptionv1", WEIGHTS, weights) if loading else None
    model = InceptionV1()
    if resolved is not None:
        load_weights(model, resolved)
    model.lucid_aliases = default_aliases()
    model.lucid_browse = BROWSE_LAYERS
    model.lucid_preprocess = inceptionv1_preprocess()
    model.lucid_labels = None  # the 1008-entry label order is not available offline
    model.lucid_name = "inceptionv1"
    return model.eval()
