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
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from lucid_widgets.param.color import valid_rgb
from lucid_widgets.param.spatial import random_fft_image, to_device_async

Generator = torch.Generator | None
TransformFn = Callable[[torch.Tensor, Generator], torch.Tensor]


def _choice(options: Sequence[float], generator: Generator) -> float:
    index = int(torch.randint(len(options), (), generator=generator, device="cpu"))
    return float(options[index])


def _options(values: Sequence[float], name: str) -> tuple[float, ...]:
    try:
        options = tuple(float(value) for value in values)
    except (TypeError, ValueError):
        options = ()
    if not options:
        raise ValueError(f"{name} needs a non-empty sequence of numbers, got {values!r}")
    return options


def _count(value: Any, what: str, minimum: int = 0) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{what} must be an integer >= {minimum} (pixels), got {value!r}")
    return value


class Transform:
    """Base class of the built-in transforms: `transform(image, generator) -> image`."""

    label = "transform"  # how the factory call that made it reads (its repr)

    def __repr__(self) -> str:
        return self.label

    def __call__(self, image: torch.Tensor, generator: Generator = None) -> torch.Tensor:
        raise NotImplementedError


class AffineTransform(Transform):
    """A random warp. `matrix(generator)` returns a `(3, 3)` float64 inverse map: centred pixel
    coordinates `(x, y, 1)` of an output pixel -> coordinates of the input it samples."""

    def matrix(self, generator: Generator) -> np.ndarray:
        raise NotImplementedError

    def __call__(self, image: torch.Tensor, generator: Generator = None) -> torch.Tensor:
        return warp(image, self.matrix(generator))


class _Jitter(AffineTransform):
    def __init__(self, d: int) -> None:
        self.d = _count(d, "jitter(d): d")
        self.label = f"jitter({d})"

    def matrix(self, generator: Generator) -> np.ndarray:
        shift_x, shift_y = torch.randint(
            -self.d, self.d + 1, (2,), generator=generator, device="cpu"
        ).tolist()
        # Content moves by (+shift_x, +shift_y): output pixel p samples input p - shift.
        return np.array([[1.0, 0.0, -shift_x], [0.0, 1.0, -shift_y], [0.0, 0.0, 1.0]])


class _RandomScale(AffineTransform):
    def __init__(self, scales: Sequence[float]) -> None:
        self.scales = _options(scales, "random_scale(scales)")
        if min(self.scales) <= 0:
            raise ValueError(f"random_scale: scales must be positive, got {self.scales}")
        self.label = f"random_scale({list(self.scales)})"

    def matrix(self, generator: Generator) -> np.ndarray:
        scale = _choice(self.scales, generator)
        return np.diag([1.0 / scale, 1.0 / scale, 1.0])  # zoom by `scale` about the centre


class _RandomRotate(AffineTransform):
    def __init__(self, angles: Sequence[float], units: str = "degrees") -> None:
        self.angles = _options(angles, "random_rotate(angles)")
        units = units.lower()
        if units not in ("degrees", "radians", "rads", "rad", "deg"):
            raise ValueError(f"random_rotate: units must be 'degrees' or 'radians', got {units!r}")
        self.to_radians = math.pi / 180 if units.startswith("deg") else 1.0
        self.label = f"random_rotate({list(self.angles)}, units={units!r})"

    def matrix(self, generator: Generator) -> np.ndarray:
        angle = _choice(self.angles, generator) * self.to_radians
        cos, sin = math.cos(angle), math.sin(angle)
        # Counter-clockwise on screen (y points down): output p samples input R(-angle) p.
        return np.array([[cos, -sin, 0.0], [sin, cos, 0.0], [0.0, 0.0, 1.0]])


def jitter(d: int) -> AffineTransform:
    """Translate by random integers in `[-d, d]` (x and y drawn separately), keeping the size.

    Uncovered pixels are 0, or the pad value when a constant :func:`pad` precedes it in
    :func:`compose`. Lucid's jitter crops instead (the image shrinks by `d`).
    """
    return _Jitter(d)


def random_scale(scales: Sequence[float]) -> AffineTransform:
    """Zoom about the centre by a factor drawn from `scales`, keeping the size (Lucent resizes)."""
    return _RandomScale(scales)


def random_rotate(angles: Sequence[float], units: str = "degrees") -> AffineTransform:
    """Rotate counter-clockwise about the centre by an angle drawn from `angles`."""
    return _RandomRotate(angles, units)


_IDENTITY = np.eye(3)
_BASE_GRIDS: dict[tuple, torch.Tensor] = {}


def _base_grid(height: int, width: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """Normalized output pixel centres `(x, y, 1)` as `(H * W, 3)`, as `affine_grid` makes them
    (align_corners=False); cached so each step costs one small matmul."""
    key = (height, width, device, dtype)
    if key not in _BASE_GRIDS:
        if len(_BASE_GRIDS) > 32:
            _BASE_GRIDS.clear()
        ys = (torch.arange(height, dtype=torch.float64, device="cpu") * 2 + 1) / height - 1
        xs = (torch.arange(width, dtype=torch.float64, device="cpu") * 2 + 1) / width - 1
        y, x = torch.meshgrid(ys, xs, indexing="ij")  # (H, W) each
        base = torch.stack([x, y, torch.ones_like(x)], dim=-1).view(-1, 3)
        _BASE_GRIDS[key] = base.to(device=device, dtype=dtype)
    return _BASE_GRIDS[key]


def warp(
    image: torch.Tensor,
    matrix: np.ndarray,
    size: tuple[int, int] | None = None,
    fill: float = 0.0,
) -> torch.Tensor:
    """Resample `image` `(B, C, H, W)` through an inverse affine map (bilinear).

    Parameters
    ----------
    matrix : np.ndarray
        `(3, 3)`: centred pixel coordinates of an output pixel -> input coordinates.
    size : (int, int), optional
        Output `(height, width)`, centred on the input (default: the input size).
    fill : float
        Value of samples outside the input.
    """
    batch, _, height, width = image.shape
    out_height, out_width = size or (height, width)
    if (out_height, out_width) == (height, width) and np.array_equal(matrix, _IDENTITY):
        return image
    to_input = np.diag([2.0 / width, 2.0 / height, 1.0])  # pixels -> normalized (input)
    from_output = np.diag([out_width / 2.0, out_height / 2.0, 1.0])  # normalized -> pixels
    theta = (to_input @ matrix @ from_output)[:2].T  # (3, 2)
    theta = to_device_async(torch.as_tensor(theta, dtype=image.dtype, device="cpu"), image.device)
    base = _base_grid(out_height, out_width, image.device, image.dtype)  # (H_out * W_out, 3)
    grid = (base @ theta).view(1, out_height, out_width, 2).expand(batch, -1, -1, -1)
    shifted = image - fill if fill else image  # zeros padding then + fill: outside -> fill
    out = F.grid_sample(shifted, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    return out + fill if fill else out


_PAD_MODES = ("constant", "reflect", "replicate", "circular", "symmetric")


class _Pad(Transform):
    def __init__(self, w: int, mode: str, constant_value: float | str) -> None:
        _count(w, "pad(w): w")
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
    return _Pad(w, mode, constant_value)


class _FusedWarp:
    """An optional constant pad followed by consecutive affine transforms, as one warp."""

    def __init__(self, padding: _Pad | None, affines: list[AffineTransform]) -> None:
        self.padding, self.affines = padding, affines

    def __call__(self, image: torch.Tensor, generator: Generator) -> torch.Tensor:
        height, width = image.shape[-2:]
        fill, size = 0.0, None
        if self.padding is not None:  # draws first, as sequential application would
            fill = self.padding.value(generator)
            size = (height + 2 * self.padding.w, width + 2 * self.padding.w)
        matrix = np.eye(3)
        for affine in self.affines:  # applied in order: inverse maps multiply left to right
            matrix = matrix @ affine.matrix(generator)
        return warp(image, matrix, size, fill)


class _Call:
    """A user's callable: `f(image)`, `f(image, generator)` or `f(image, *, generator=...)`."""

    def __init__(self, function: Callable, style: str) -> None:
        self.function, self.style = function, style

    def __call__(self, image: torch.Tensor, generator: Generator) -> torch.Tensor:
        if self.style == "positional":
            return self.function(image, generator)
        if self.style == "keyword":
            return self.function(image, generator=generator)
        return self.function(image)


def _call_style(function: Callable) -> str:
    """How to pass the generator, decided once from the signature."""
    if isinstance(function, Transform):
        return "positional"
    target = function.forward if isinstance(function, torch.nn.Module) else function
    try:
        parameters = list(inspect.signature(target).parameters.values())
    except (TypeError, ValueError):  # builtins without a signature: one argument
        return "image"
    kinds = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    positional = [parameter for parameter in parameters if parameter.kind in kinds]
    if len(positional) >= 2:
        second = positional[1]
        if second.default is inspect.Parameter.empty or second.name in ("generator", "rng"):
            return "positional"
    if any(p.name == "generator" and p.kind == p.KEYWORD_ONLY for p in parameters):
        return "keyword"
    return "image"


class Compose(Transform):
    """Transforms applied in order, consecutive affine ones (and a constant pad before them)
    fused into one warp. Build it with :func:`compose`."""

    def __init__(self, transforms: Sequence[Any]) -> None:
        self.transforms = _flatten(transforms)
        self.stages = _plan(self.transforms)
        self.label = f"compose({self.transforms!r})"

    def __call__(self, image: torch.Tensor, generator: Generator = None) -> torch.Tensor:
        for stage in self.stages:
            image = stage(image, generator)
        return image


def _flatten(transforms: Sequence[Any]) -> list[Any]:
    if callable(transforms):
        transforms = [transforms]
    if not isinstance(transforms, (list, tuple)):
        raise TypeError(f"compose expects a list of transforms, got {type(transforms).__name__}")
    flat = []
    for index, transform in enumerate(transforms):
        if isinstance(transform, Compose):
            flat += transform.transforms
        elif callable(transform):
            flat.append(transform)
        else:
            raise TypeError(
                f"compose: transform {index} is a {type(transform).__name__}, not a callable; "
                "use f(image, generator), f(image) or a built-in such as transforms.jitter(8)"
            )
    return flat


def _plan(transforms: list[Any]) -> list[TransformFn]:
    stages: list[TransformFn] = []
    index = 0
    while index < len(transforms):
        transform = transforms[index]
        padding = (
            transform if isinstance(transform, _Pad) and transform.mode == "constant" else None
        )
        start = index + 1 if padding is not None else index
        end = start
        while end < len(transforms) and isinstance(transforms[end], AffineTransform):
            end += 1
        if end > start:
            stages.append(_FusedWarp(padding, list(transforms[start:end])))
            index = end
        else:
            stages.append(_Call(transform, _call_style(transform)))
            index += 1
    return stages


def compose(transforms: Sequence[Any]) -> Compose:
    """Chain transforms into one `transform(image, generator)`.

    Accepts built-in transforms, nested compositions, `f(image, generator)` callables, and
    one-argument `f(image)` callables such as torchvision transforms (detected once, from the
    signature). Consecutive :func:`jitter` / :func:`random_scale` / :func:`random_rotate`, with a
    constant :func:`pad` right before them, run as a single bilinear warp.
    """
    return Compose(transforms)


def crop_or_pad_to(height: int, width: int, constant_value: float = 0.0) -> Transform:
    """Centre-crop or pad (with `constant_value`) to `(height, width)`, like TF's
    `resize_image_with_crop_or_pad`; meant as a last transform for fixed-size models."""
    _count(height, "crop_or_pad_to: height", 1), _count(width, "crop_or_pad_to: width", 1)
    return _CropOrPad(height, width, constant_value)


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
        self.mean, self.std = _options(mean, "normalize(mean)"), _options(std, "normalize(std)")
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

            def as_column(values: tuple[float, ...]) -> torch.Tensor:
                return torch.tensor(values, dtype=image.dtype, device=image.device).view(-1, 1, 1)

            self._cache[key] = (as_column(self.mean), as_column(self.std))
        mean, std = self._cache[key]
        return (image - mean) / std


def normalize(mean: Sequence[float], std: Sequence[float]) -> Transform:
    """`(image - mean) / std` per channel."""
    return _Normalize(mean, std)


standard_transforms: list[Transform] = [
    pad(12, mode="constant", constant_value=0.5),
    jitter(8),
    random_scale([1 + (i - 5) / 50 for i in range(11)]),
    random_rotate(list(range(-10, 11)) + 5 * [0]),
    jitter(4),
]
