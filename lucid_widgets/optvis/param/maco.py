"""MACO: phase-only optimization under a fixed natural-image magnitude spectrum (Fel et al. 2023).

The image is the inverse real FFT of ``magnitude * exp(i * phase)``; only the phase is a parameter.
Phase and spatial image are standardized (zero mean, unit std per image) every step, the colours
re-correlated, then squashed into ``[0, 1]`` by a sigmoid. The magnitude is the mean magnitude
spectrum of natural photos in decorrelated colour space: by default the one shipped with the
package (``natural_spectrum.npy``, estimated by ``tools/natural_spectrum.py`` from the photos that
scikit-image ships; no network), or any ``(3, h, w)`` ``.npy`` file the user supplies (e.g. the
authors' ``imagenet_decorrelated.npy``).

The canvas is usually larger than the network's input: :func:`maco_transforms` takes one random
crop per image and step (centre around the middle), resizes it to the input and adds noise. The
absolute image gradient of the objective is accumulated over the steps: the transparency map,
returned with the image by :meth:`MacoImage.rgba`.

>>> params, image_f = maco(448, batch=4)                                    # doctest: +SKIP
>>> render_vis(model, obj, param_f=lambda: (params, image_f),
...            transforms=maco_transforms(224))                             # doctest: +SKIP
>>> show(image_f.rgba())                                                    # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from lucid_widgets.optvis.param.color import correlate_color, decorrelate_color
from lucid_widgets.optvis.param.seeding import rand
from lucid_widgets.optvis.param.spatial import ParamResult
from lucid_widgets.optvis.transforms.base import Transform

__all__ = [
    "SPECTRUM_FILE",
    "MacoCrops",
    "MacoImage",
    "estimate_spectrum",
    "load_spectrum",
    "maco",
    "maco_transforms",
]

SPECTRUM_FILE = Path(__file__).with_name("natural_spectrum.npy")
EPS = 1e-4
# The standardized phase is scaled to the std of an angle uniform on [-pi, pi): with std 1 its mean
# cosine is ~0.6 and every frequency adds a coherent zero-phase part, a bright blob at the corners.
PHASE_STD = float(np.pi / np.sqrt(3.0))


def _standardize(values: torch.Tensor) -> torch.Tensor:
    """Zero mean, unit std over every dimension but the batch.  # (B, ...) -> (B, ...)"""
    flat = values.flatten(1)
    mean = flat.mean(1).view(-1, *[1] * (values.dim() - 1))
    std = flat.std(1).view(-1, *[1] * (values.dim() - 1))
    return (values - mean) / (std + EPS)


def estimate_spectrum(images: Sequence[np.ndarray], size: int = 128) -> np.ndarray:
    """Mean magnitude spectrum of natural photos in decorrelated colour space.

    Each photo (``(H, W, 3)``, uint8 or float in ``[0, 1]``, at least ``size`` px on each side)
    is cut into non-overlapping ``size`` x ``size`` tiles on a fixed grid; every tile is mapped to
    decorrelated colours, its mean removed, and the magnitudes of its real 2-D FFT averaged.
    Deterministic: no randomness, the same photos give the same array.

    Returns
    -------
    np.ndarray
        ``(3, size, size // 2 + 1)`` float32 (rfft layout), scaled to mean 1.
    """
    total = np.zeros((3, size, size // 2 + 1), dtype=np.float64)
    count = 0
    for photo in images:
        array = np.asarray(photo)
        if array.ndim != 3 or array.shape[-1] != 3:
            raise ValueError(f"photos must be (H, W, 3) RGB arrays, got shape {array.shape}.")
        values = array.astype(np.float64) / (255.0 if array.dtype == np.uint8 else 1.0)
        tensor = torch.as_tensor(values, dtype=torch.float64).permute(2, 0, 1)[None]
        tensor = correlate_color(tensor)[0]  # (3, H, W) decorrelated colours
        for top in range(0, tensor.shape[1] - size + 1, size):
            for left in range(0, tensor.shape[2] - size + 1, size):
                tile = tensor[:, top : top + size, left : left + size]
                tile = tile - tile.mean(dim=(1, 2), keepdim=True)
                total += torch.fft.rfft2(tile).abs().numpy()  # (3, size, size // 2 + 1)
                count += 1
    if count == 0:
        raise ValueError(f"no photo is at least {size} x {size} px: nothing to estimate from.")
    mean = total / count
    return (mean / mean.mean()).astype(np.float32)


def load_spectrum(source: str | Path | np.ndarray | None = None) -> np.ndarray:
    """A ``(3, h, w)`` magnitude spectrum (rfft layout) from a ``.npy`` file or an array.

    ``None`` loads the spectrum shipped with the package. Raises ``ValueError`` naming what is
    wrong when the array is not ``(3, h, w)`` with ``h >= 4``, ``w >= 3``, finite and
    non-negative, and ``FileNotFoundError`` for a missing file.
    """
    if source is None:
        source = SPECTRUM_FILE
    if isinstance(source, (str, Path)):
        path = Path(source)
        if not path.is_file():
            raise FileNotFoundError(f"spectrum file {str(path)!r} does not exist.")
        array = np.load(path, allow_pickle=False)
        what = f"the spectrum in {str(path)!r}"
    else:
        array, what = np.asarray(source), "the spectrum"
    if array.ndim != 3 or array.shape[0] != 3 or array.shape[1] < 4 or array.shape[2] < 3:
        raise ValueError(
            f"{what} has shape {array.shape}; a magnitude spectrum is (3, h, w) in rfft layout "
            "(3 decorrelated colour channels, h >= 4 rows, w >= 3 columns), e.g. (3, 128, 65)."
        )
    if not np.isfinite(array).all() or (array < 0).any():
        raise ValueError(f"{what} must be finite and non-negative (it is a magnitude).")
    return array.astype(np.float32)


def resize_spectrum(spectrum: np.ndarray, height: int, width: int) -> torch.Tensor:
    """Resample a ``(3, h, w)`` rfft-layout spectrum to the rfft grid of a ``height x width`` image.

    Rows are shifted so that frequency runs monotonically before the bilinear resize, then shifted
    back. Returns ``(3, height, width // 2 + 1)`` on the default device.
    """
    tensor = torch.as_tensor(spectrum, dtype=torch.float32)
    shifted = torch.fft.fftshift(tensor, dim=1)[None]  # (1, 3, h, w)
    size = (height, width // 2 + 1)
    resized = F.interpolate(shifted, size=size, mode="bilinear", align_corners=True)[0]
    return torch.fft.ifftshift(resized, dim=1).to(torch.get_default_device())


class MacoImage:
    """``image_f`` of :func:`maco`: the image, its transparency, and the raw spatial image."""

    def __init__(
        self,
        phase: torch.Tensor,
        magnitude: torch.Tensor,
        height: int,
        width: int,
        output_size: tuple[int, int] | None = None,
        output_crop: float = 1.0,
    ):
        self.phase = phase  # (B, 3, H, W // 2 + 1), the only parameter
        self.magnitude = magnitude  # (3, H, W // 2 + 1), fixed
        self.size = (height, width)
        self.output_size = output_size  # (h, w) of picture(), None: the crop itself
        self.output_crop = output_crop  # the centred fraction of the canvas side picture() shows
        self.gradient = torch.zeros(phase.shape[0], 1, height, width, device=phase.device)

    def spatial(self) -> torch.Tensor:
        """The standardized image before colour correlation and sigmoid.  # (B, 3, H, W)"""
        phase = _standardize(self.phase) * PHASE_STD
        spectrum = torch.polar(self.magnitude.expand_as(phase), phase)  # (B, 3, H, W//2+1)
        return _standardize(torch.fft.irfft2(spectrum, s=self.size))

    def __call__(self) -> torch.Tensor:
        image = torch.sigmoid(decorrelate_color(self.spatial()))  # (B, 3, H, W) in [0, 1]
        if image.requires_grad:
            image.register_hook(self._accumulate)
        return image

    def _accumulate(self, grad: torch.Tensor) -> None:
        self.gradient += grad.detach().abs().sum(1, keepdim=True)  # (B, 1, H, W)

    def transparency(self) -> torch.Tensor:
        """Accumulated absolute gradient, ``(B, 1, H, W)``, scaled to ``[0, 1]`` per image."""
        peak = self.gradient.flatten(1).amax(1).clamp_min(1e-12).view(-1, 1, 1, 1)
        return self.gradient / peak

    def picture(
        self, image: torch.Tensor | None = None, alpha: bool = False, percentile: float = 99.0
    ) -> torch.Tensor:
        """The image as shown: the canvas's centred ``output_crop``, resized to ``output_size``,
        and, with ``alpha``, the transparency.

        Parameters
        ----------
        image
            A ``(B, 3, H, W)`` image this parameterization made (a step's image); default: the
            current one. A canvas-sized image is cropped to its centred ``output_crop``; any
            image is then resized to the output size unless it has it.
        alpha
            Add the transparency as a 4th channel: the accumulated gradient (averaged down to
            the picture's size) divided by its ``percentile`` per image, clipped to 1, so that a
            few hot pixels do not hide the rest. Zero before the first step.

        Returns
        -------
        torch.Tensor
            ``(B, 3, h, w)``, or ``(B, 4, h, w)`` with ``alpha``, in ``[0, 1]``, detached;
            ``(h, w)`` is ``output_size`` (default: the size of the centred crop).
        """
        with torch.no_grad():
            image = self() if image is None else image.detach()  # (B, 3, H, W)
            size = tuple(self.output_size or self._crop_box()[2:])
            if tuple(image.shape[-2:]) == self.size:  # a canvas
                image = self._centre(image)  # (B, 3, H', W')
            if tuple(image.shape[-2:]) != size:
                image = F.interpolate(image, size=size, mode="bilinear", antialias=True)
                image = image.clamp(0, 1)  # (B, 3, h, w)
            if not alpha:
                return image
            gradient = self._centre(self.gradient)  # (B, 1, H', W')
            if tuple(gradient.shape[-2:]) != size:
                gradient = F.adaptive_avg_pool2d(gradient, size)  # (B, 1, h, w)
            level = torch.quantile(gradient.flatten(1), percentile / 100.0, dim=1)
            transparency = gradient / level.clamp_min(1e-12).view(-1, 1, 1, 1)
            return torch.cat([image, transparency.clamp(0, 1)], 1)  # (B, 4, h, w)

    def _crop_box(self) -> tuple[int, int, int, int]:
        """``(top, left, height, width)`` of the canvas's centred ``output_crop``."""
        height, width = (max(1, round(side * self.output_crop)) for side in self.size)
        return (self.size[0] - height) // 2, (self.size[1] - width) // 2, height, width

    def _centre(self, canvas: torch.Tensor) -> torch.Tensor:
        """The centred ``output_crop`` of a ``(B, C, H, W)`` canvas-sized tensor (a view)."""
        top, left, height, width = self._crop_box()
        return canvas[..., top : top + height, left : left + width]

    def rgba(self, percentile: float = 99.0) -> np.ndarray:
        """:meth:`picture` with alpha as numpy, ``(B, h, w, 4)`` in ``[0, 1]``.

        ``show`` / ``save`` composite it over a checkerboard.
        """
        rgba = self.picture(alpha=True, percentile=percentile)  # (B, 4, h, w)
        return rgba.permute(0, 2, 3, 1).cpu().numpy()


def maco(
    w: int,
    h: int | None = None,
    batch: int = 1,
    spectrum: str | Path | np.ndarray | None = None,
    input_size: int | Sequence[int] | None = None,
    output_size: int | Sequence[int] | None = None,
    output_crop: float = 1.0,
) -> ParamResult:
    """MACO's parameterization: a phase-only image under a fixed natural magnitude spectrum.

    Parameters
    ----------
    w, h
        Canvas width and height (``h`` defaults to ``w``).
    batch
        Images (one per unit for grids).
    spectrum
        A ``(3, h, w)`` rfft-layout magnitude spectrum, or a ``.npy`` file of one; default: the
        spectrum shipped with the package (estimated from scikit-image's photos). Resized to the
        canvas.
    input_size
        The network's input side (or ``(height, width)``); when given, a smaller canvas raises
        ``ValueError``.
    output_size
        The side (or ``(height, width)``) of :meth:`MacoImage.picture` and :meth:`MacoImage.rgba`:
        the shown part of the canvas resized (antialiased) for display and results; default:
        that part's own size. ``image_f()`` itself always returns the canvas (what the
        transforms crop).
    output_crop
        The centred fraction of the canvas side that :meth:`MacoImage.picture` shows, in
        ``(0, 1]``: ``1`` the whole canvas; the mean crop fraction of :func:`maco_transforms`
        (``0.5`` for its default crops) shows the middle at the scale the network saw it (what
        the transfer benchmark's judges recognize best: see ``benchmarks/README.md``).

    Returns
    -------
    (params, image_f)
        ``params`` is ``[phase]`` ``(B, 3, H, W // 2 + 1)``; ``image_f`` is a :class:`MacoImage`
        returning ``(B, 3, H, W)`` in ``[0, 1]`` (``image_f.rgba()`` adds the transparency).
    """
    width = _positive(w, "w")
    height = width if h is None else _positive(h, "h")
    batch = _positive(batch, "batch")
    if input_size is not None:
        need = (input_size,) * 2 if isinstance(input_size, int) else tuple(input_size)
        if height < need[0] or width < need[1]:
            raise ValueError(
                f"the MACO canvas ({height} x {width}) is smaller than the network's input "
                f"({need[0]} x {need[1]}); use a canvas at least that large (e.g. 2x the input)."
            )
    magnitude = resize_spectrum(load_spectrum(spectrum), height, width)
    phase = (rand(batch, 3, height, width // 2 + 1) * 2 - 1) * np.pi  # uniform angles
    phase.requires_grad_(True)
    output = None if output_size is None else _pair(output_size, "output_size")
    crop = _fraction(output_crop, "output_crop")
    return [phase], MacoImage(phase, magnitude, height, width, output, crop)


def _fraction(value: object, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.floating, np.integer)):
        raise ValueError(f"{name} must be a number in (0, 1], got {value!r}.")
    if not 0 < float(value) <= 1:
        raise ValueError(f"{name} must be in (0, 1] (a fraction of the canvas side), got {value}.")
    return float(value)


def _pair(value: int | Sequence[int], name: str) -> tuple[int, int]:
    """A side or ``(height, width)`` of positive integers -> ``(height, width)``."""
    pair = (value, value) if isinstance(value, (int, np.integer)) else tuple(value)
    if len(pair) != 2:
        raise ValueError(f"{name} must be a side or (height, width), got {value!r}")
    return _positive(pair[0], name), _positive(pair[1], name)


def _positive(value: object, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


class MacoCrops(Transform):
    """One random crop per image, resized to the input, plus normal and uniform noise."""

    def __init__(
        self, size: tuple[int, int], crop: tuple[float, float], spread: float, noise: float
    ):
        self.size, self.crop, self.spread, self.noise = size, crop, spread, noise
        self.label = f"maco_transforms({size}, crop={crop}, noise={noise})"

    def __call__(self, image: torch.Tensor, generator: torch.Generator = None) -> torch.Tensor:
        batch, _, height, width = image.shape  # (B, C, H, W)
        if height < self.size[0] or width < self.size[1]:
            raise ValueError(
                f"the canvas ({height} x {width}) is smaller than the network's input "
                f"{self.size}: MACO crops a larger canvas; make it at least the input size."
            )
        low, high = self.crop
        scale = low + (high - low) * torch.rand(batch, generator=generator)  # (B,)
        centre = (torch.randn(batch, 2, generator=generator) * self.spread * 2).clamp(-1, 1)
        centre = centre * (1 - scale[:, None])  # the crop stays inside the canvas
        theta = torch.zeros(batch, 2, 3)
        theta[:, 0, 0] = theta[:, 1, 1] = scale
        theta[:, :, 2] = centre
        theta = theta.to(image.device, image.dtype)
        grid = F.affine_grid(theta, [batch, image.shape[1], *self.size], align_corners=False)
        crops = F.grid_sample(image, grid, mode="bilinear", align_corners=False)  # (B, C, h, w)
        if self.noise > 0:
            normal = torch.randn(crops.shape, generator=generator).to(crops.device, crops.dtype)
            uniform = torch.rand(crops.shape, generator=generator).to(crops.device, crops.dtype)
            crops = crops + self.noise * (normal + 2 * uniform - 1)
        return crops


def maco_transforms(
    input_size: int | Sequence[int] = 224,
    crop: Sequence[float] = (0.4, 0.6),
    spread: float = 0.15,
    noise: float = 0.01,
) -> list[Transform]:
    """MACO's crop-and-noise transforms, to pass as ``transforms=`` with a :func:`maco` canvas.

    Parameters
    ----------
    input_size
        The network's input side (or ``(height, width)``): every crop is resized to it.
    crop
        ``(low, high)`` fractions of the canvas side, each in ``(0, 1]`` (Horama: 0.20-0.25 of a
        1280 px canvas; the default suits a canvas about twice the input).
    spread
        Standard deviation of the crop centres around the middle, in canvas sides (0.15).
    noise
        Scale of the added normal and uniform noise, in ``[0, 1]`` pixel units (MACO's 0.05 in
        normalized units is about 0.01 here).
    """
    size = (input_size,) * 2 if isinstance(input_size, int) else tuple(int(s) for s in input_size)
    if len(size) != 2 or min(size) < 1:
        raise ValueError(f"input_size must be a side or (height, width), got {input_size!r}.")
    low, high = (float(value) for value in crop)
    if not (0 < low <= high <= 1):
        raise ValueError(
            f"crop fractions must satisfy 0 < low <= high <= 1 (fractions of the canvas side), "
            f"got {tuple(crop)}."
        )
    if spread < 0 or noise < 0:
        raise ValueError(f"spread and noise must be >= 0, got {spread} and {noise}.")
    return [MacoCrops(size, (low, high), float(spread), float(noise))]
