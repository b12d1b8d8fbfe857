"""Non-affine transforms: padding, centre crop / pad, alpha collapse and normalization."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from lucid_widgets.optvis.param.color import valid_rgb
from lucid_widgets.optvis.param.spatial import random_fft_image
from lucid_widgets.optvis.transforms.base import Generator, Transform, options_of, pixel_count

__all__ = ["collapse_alpha_random", "crop_or_pad_to", "normalize", "pad"]

_PAD_MODES = ("constant", "reflect", "replicate", "circular", "symmetric")


class Pad(Transform):
    """Pad `w` pixels on every side; made by :func:`pad` (a constant one fuses into a warp)."""

    def __init__(self, w: int, mode: str, constant_value: float | str) -> None:
        pixel_count(w, "pad(w): w")
        self.mode = mode.lower()
        if self.mode not in _PAD_MODES:
            raise ValueError(f"pad: mode must be one of {_PAD_MODES}, got {mode!r}")
        if constant_value != "uniform" and not isinstance(constant_value, (int, float)):
            raise ValueError(
                f"pad: constant_value must be a number or 'uniform', got {constant_value!r}"
            )
        self.w, self.constant_value = w, constant_value
        self.label = f"pad({w}, mode={self.mode!r}, constant_value={constant_value!r})"

    def value(self, generator: Generator) -> float:
        """The fill value; `'uniform'` draws one from U(0, 1) per call, as Lucid."""
        if self.constant_value == "uniform":
            return float(torch.rand((), generator=generator, device="cpu"))
        return float(self.constant_value)

    def __call__(self, image: torch.Tensor, generator: Generator = None) -> torch.Tensor:
        w = self.w
        if self.mode == "constant":
            return F.pad(image, (w, w, w, w), mode="constant", value=self.value(generator))
        if self.mode == "symmetric":  # mirror including the edge pixel (TF's SYMMETRIC)
            rows = torch.cat([image[..., :w, :].flip(-2), image, image[..., -w:, :].flip(-2)], -2)
            return torch.cat([rows[..., :w].flip(-1), rows, rows[..., -w:].flip(-1)], -1)
        if self.mode == "reflect" and w >= min(image.shape[-2:]):
            raise ValueError(
                f"pad: reflect padding {w} must be smaller than the image {image.shape}"
            )
        return F.pad(image, (w, w, w, w), mode=self.mode)


def pad(w: int, mode: str = "reflect", constant_value: float | str = 0.5) -> Transform:
    """Pad `w` pixels on every side.

    Parameters
    ----------
    mode : str
        'reflect' (default, as Lucid), 'constant', 'replicate', 'circular' or 'symmetric'
        (case-insensitive).
    constant_value : float or 'uniform'
        Fill of 'constant' mode; 'uniform' draws one value in [0, 1) per call.
    """
    return Pad(w, mode, constant_value)


class _CropOrPad(Transform):
    def __init__(self, height: int, width: int, constant_value: float) -> None:
        self.height, self.width, self.constant_value = height, width, constant_value
        self.label = f"crop_or_pad_to({height}, {width})"

    def __call__(self, image: torch.Tensor, generator: Generator = None) -> torch.Tensor:
        height, width = image.shape[-2:]
        top, left = max(height - self.height, 0) // 2, max(width - self.width, 0) // 2
        image = image[..., top : top + self.height, left : left + self.width]
        pad_y, pad_x = max(self.height - height, 0), max(self.width - width, 0)
        if pad_y or pad_x:
            padding = (pad_x // 2, pad_x - pad_x // 2, pad_y // 2, pad_y - pad_y // 2)
            image = F.pad(image, padding, mode="constant", value=self.constant_value)
        return image


def crop_or_pad_to(height: int, width: int, constant_value: float = 0.0) -> Transform:
    """Centre-crop or pad (with `constant_value`) to `(height, width)`, like TF's
    `resize_image_with_crop_or_pad`; meant as a last transform for fixed-size models."""
    pixel_count(height, "crop_or_pad_to: height", 1), pixel_count(width, "crop_or_pad_to: width", 1)
    return _CropOrPad(height, width, constant_value)


class _CollapseAlphaRandom(Transform):
    def __init__(self, sd: float) -> None:
        self.sd = float(sd)
        self.label = f"collapse_alpha_random(sd={sd})"

    def __call__(self, image: torch.Tensor, generator: Generator = None) -> torch.Tensor:
        batch, channels, height, width = image.shape
        if channels in (1, 3):
            raise ValueError(
                f"collapse_alpha_random expects colour channels + alpha (e.g. RGBA, 4 channels), "
                f"got {channels}; create the image with param.image(..., alpha=True)"
            )
        colour, alpha = image[:, :-1], image[:, -1:]
        raw = random_fft_image(
            (batch, channels - 1, height, width), generator, sd=self.sd, device=image.device
        )
        background = valid_rgb(raw.to(image.dtype), decorrelate=True)  # (B, C - 1, H, W)
        return alpha * colour + (1 - alpha) * background


def collapse_alpha_random(sd: float = 0.5) -> Transform:
    """Blend an image's last (alpha) channel over a random background (Lucid).

    The background is a random decorrelated FFT image (spectrum sd `sd`) through a sigmoid, one per
    batch element. `(B, C + 1, H, W)` -> `(B, C, H, W)`.
    """
    return _CollapseAlphaRandom(sd)


class _Normalize(Transform):
    def __init__(self, mean: Sequence[float], std: Sequence[float]) -> None:
        self.mean, self.std = options_of(mean, "normalize(mean)"), options_of(std, "normalize(std)")
        if len(self.mean) != len(self.std) or min(self.std) <= 0:
            raise ValueError(f"normalize: mean {self.mean} and positive std {self.std} must match")
        self._cache: dict[tuple, tuple[torch.Tensor, torch.Tensor]] = {}
        self.label = f"normalize({list(self.mean)}, {list(self.std)})"

    def __call__(self, image: torch.Tensor, generator: Generator = None) -> torch.Tensor:
        if image.shape[1] != len(self.mean):
            raise ValueError(
                f"normalize: image has {image.shape[1]} channels, mean/std have {len(self.mean)}"
            )
        key = (image.device, image.dtype)
        if key not in self._cache:
            self._cache[key] = (_column(self.mean, image), _column(self.std, image))
        mean, std = self._cache[key]  # (C, 1, 1) each
        return (image - mean) / std


def _column(values: tuple[float, ...], like: torch.Tensor) -> torch.Tensor:
    """``values`` as a ``(C, 1, 1)`` tensor on ``like``'s device, in its dtype."""
    return torch.tensor(values, dtype=like.dtype, device=like.device).view(-1, 1, 1)


def normalize(mean: Sequence[float], std: Sequence[float]) -> Transform:
    """`(image - mean) / std` per channel."""
    return _Normalize(mean, std)
