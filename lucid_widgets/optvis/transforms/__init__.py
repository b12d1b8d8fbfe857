"""Random image transforms that make visualizations robust (Lucid's `optvis.transform`), fused.

A transform is a callable `transform(image, generator) -> image` on `(B, C, H, W)` tensors. Every
random choice is drawn on CPU from `generator` (a `torch.Generator`; None uses the global CPU
generator), so renders are bit-for-bit reproducible on CPU. Each transform draws once per call and
applies the same draw to every image of the batch, as Lucid does.

:func:`jitter`, :func:`random_scale` and :func:`random_rotate` are affine: each draws a 3x3 matrix
(homogeneous, centred pixel coordinates) and :func:`compose` multiplies consecutive ones into a
single bilinear `grid_sample` warp. A constant :func:`pad` right before them is
folded into that warp too (the output grows by the padding; samples outside the image take the pad
value). One warp replaces Lucid's crop + resize + rotate + crop, which is where the speed comes
from. Differences from Lucid/Lucent: jitter translates and keeps the size (Lucid crops), random
scale zooms about the centre and keeps the size (Lucid and Lucent resize the tensor).

Modules: :mod:`.base` (the :class:`Transform` base class), :mod:`.affine` (affine transforms and
:func:`warp`), :mod:`.pixel` (pad, crop, alpha, normalize) and :mod:`.composition`
(:func:`compose`).
"""

from __future__ import annotations

from lucid_widgets.optvis.transforms.affine import (
    AffineTransform,
    jitter,
    random_rotate,
    random_scale,
    warp,
)
from lucid_widgets.optvis.transforms.base import Generator, Transform, TransformFn
from lucid_widgets.optvis.transforms.composition import Compose, compose
from lucid_widgets.optvis.transforms.pixel import (
    collapse_alpha_random,
    crop_or_pad_to,
    normalize,
    pad,
)

__all__ = [
    "AffineTransform",
    "Compose",
    "Generator",
    "Transform",
    "TransformFn",
    "collapse_alpha_random",
    "compose",
    "crop_or_pad_to",
    "jitter",
    "normalize",
    "pad",
    "random_rotate",
    "random_scale",
    "standard_transforms",
    "warp",
]

standard_transforms: list[Transform] = [
    pad(12, mode="constant", constant_value=0.5),
    jitter(8),
    random_scale([1 + (i - 5) / 50 for i in range(11)]),
    random_rotate(list(range(-10, 11)) + 5 * [0]),
    jitter(4),
]
