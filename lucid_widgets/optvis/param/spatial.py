"""Pixel and Fourier (FFT) image parameterizations with Lucid's exact formulas."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch

from lucid_widgets.optvis.param.seeding import randn

ParamResult = tuple[list[torch.Tensor], Callable[[], torch.Tensor]]

DEFAULT_SD = 0.01
# Lucid divides the inverse FFT by this constant; it keeps the initial image desaturated.
FFT_DIVISOR = 4.0


def check_shape(shape: Sequence[int], name: str = "shape") -> tuple[int, int, int, int]:
    """Validate a `(B, C, H, W)` shape of positive integers and return it as a tuple."""
    try:
        values = tuple(int(size) for size in shape)
        exact = all(int(size) == size for size in shape)
    except (TypeError, ValueError):
        values, exact = (), False
    if len(values) != 4 or not exact or min(values) < 1:
        raise ValueError(
            f"{name} must be 4 positive integers (batch, channels, height, width), got {shape!r}"
        )
    return values  # type: ignore[return-value]


def _sd(sd: float | None) -> float:
    return DEFAULT_SD if sd is None else float(sd)


def rfft2d_freqs(height: int, width: int) -> np.ndarray:
    """Frequencies `sqrt(fx^2 + fy^2)` of Lucid's real 2-D FFT grid.

    Returns
    -------
    np.ndarray
        `(height, width // 2 + 1)` for even widths, `(height, width // 2 + 2)` for odd widths:
        Lucid keeps one more frequency when the width is odd and crops the extra pixel after the
        inverse FFT.
    """
    freq_y = np.fft.fftfreq(height)[:, None]
    extra = 2 if width % 2 == 1 else 1
    freq_x = np.fft.fftfreq(width)[: width // 2 + extra]
    return np.sqrt(freq_x * freq_x + freq_y * freq_y)


def fft_scale(height: int, width: int, decay_power: float = 1.0) -> np.ndarray:
    """Lucid's spectrum scale `1 / max(freq, 1 / max(w, h)) ** decay_power * sqrt(w * h)`."""
    freqs = rfft2d_freqs(height, width)
    scale = 1.0 / np.maximum(freqs, 1.0 / max(width, height)) ** decay_power
    return scale * np.sqrt(width * height)


def _fft_width(width: int) -> int:
    """Width of the inverse real FFT implied by Lucid's spectrum (`2 * (n - 1)`; w + 1 if odd)."""
    return width + 1 if width % 2 == 1 else width


def to_device_async(tensor: torch.Tensor, device: torch.device | str | None) -> torch.Tensor:
    """Copy a CPU tensor to `device` without blocking the host (pinned memory for CUDA)."""
    device = torch.device(device) if device is not None else tensor.device
    if device.type == "cuda" and tensor.device.type == "cpu":
        return tensor.pin_memory().to(device, non_blocking=True)
    return tensor.to(device)


def _default_tensor(array: np.ndarray) -> torch.Tensor:
    """A float32 tensor on the current default device (respects `with torch.device(...)`)."""
    return torch.as_tensor(array, dtype=torch.float32, device=torch.get_default_device())


def spectrum_to_image(
    spectrum: torch.Tensor,
    scale: torch.Tensor,
    height: int,
    width: int,
    divisor: float = FFT_DIVISOR,
) -> torch.Tensor:
    """Lucid's FFT image: `irfft2(scale * spectrum)[:h, :w] / 4`.

    Parameters
    ----------
    spectrum : torch.Tensor
        `(B, C, fh, fw, 2)` real and imaginary parts.
    scale : torch.Tensor
        `(fh, fw)` from :func:`fft_scale`.
    divisor : float
        Lucid's 4; pass 1 when `scale` already includes it (one kernel less per step).
    """
    scaled = torch.view_as_complex(spectrum) * scale  # (B, C, fh, fw) complex
    image = torch.fft.irfft2(scaled, s=(height, _fft_width(width)))  # (B, C, H, W or W + 1)
    if _fft_width(width) != width:
        image = image[..., :width]
    return image / divisor if divisor != 1 else image


def image_to_spectrum(image: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """Exact inverse of :func:`spectrum_to_image`: the spectrum `(B, C, fh, fw, 2)` of `image`.

    For odd widths the hidden extra column (cropped after the inverse FFT) is filled with the mean
    of the first and last columns, keeping the periodic image smooth.
    """
    height, width = image.shape[-2:]
    values = image * FFT_DIVISOR  # (B, C, H, W)
    if width % 2 == 1:
        extra = (values[..., :1] + values[..., -1:]) / 2
        values = torch.cat([values, extra], dim=-1)  # (B, C, H, W + 1)
    spectrum = torch.fft.rfft2(values, s=(height, _fft_width(width))) / scale
    return torch.view_as_real(spectrum).contiguous()


def fft_from_spectrum(
    spectrum: torch.Tensor, height: int, width: int, decay_power: float = 1.0
) -> ParamResult:
    """Build `(params, image_f)` around an initial spectrum `(B, C, fh, fw, 2)`."""
    scale = fft_scale(height, width, decay_power) / FFT_DIVISOR  # division folded in
    scale = _default_tensor(scale).to(spectrum.device)
    spectrum = spectrum.detach().clone().requires_grad_(True)

    def image_f() -> torch.Tensor:
        return spectrum_to_image(spectrum, scale, height, width, divisor=1.0)  # (B, C, H, W)

    return [spectrum], image_f


def fft_image(
    shape: Sequence[int], sd: float | None = None, decay_power: float = 1.0
) -> ParamResult:
    """Fourier-space image parameterization (Lucid's `fft_image`), values unsquashed.

    Parameters
    ----------
    shape : sequence of int
        `(B, C, H, W)`; odd heights and widths are supported.
    sd : float, optional
        Standard deviation of the normal initialisation of the spectrum (default 0.01).
    decay_power : float
        Exponent of the `1 / frequency` spectrum scale.

    Returns
    -------
    (params, image_f)
        `params` is `[spectrum]` with shape `(B, C, fh, fw, 2)`; `image_f()` returns raw values
        `(B, C, H, W)` (feed them to :func:`to_valid_rgb`).
    """
    batch, channels, height, width = check_shape(shape)
    freqs_shape = rfft2d_freqs(height, width).shape
    spectrum = randn(batch, channels, *freqs_shape, 2, sd=_sd(sd))
    return fft_from_spectrum(spectrum, height, width, decay_power)


def pixel_image(shape: Sequence[int], sd: float | None = None) -> ParamResult:
    """Plain pixel parameterization: one leaf tensor `(B, C, H, W)` initialised `N(0, sd)`.

    Returns
    -------
    (params, image_f)
        `image_f()` returns the raw tensor itself (feed it to :func:`to_valid_rgb`).
    """
    pixels = randn(*check_shape(shape), sd=_sd(sd)).requires_grad_(True)
    return [pixels], lambda: pixels


def random_fft_image(
    shape: Sequence[int],
    generator: torch.Generator | None,
    sd: float | None = None,
    decay_power: float = 1.0,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """A random raw FFT image `(B, C, H, W)` drawn from a CPU `generator` (Lucid's `image_sample`).

    The spectrum is drawn on CPU (so results are reproducible) and moved to `device`.
    """
    batch, channels, height, width = check_shape(shape)
    freqs_shape = rfft2d_freqs(height, width).shape
    spectrum = torch.randn(
        batch, channels, *freqs_shape, 2, generator=generator, device="cpu"
    ) * _sd(sd)
    spectrum = to_device_async(spectrum, device)
    key = (height, width, float(decay_power), spectrum.device)
    if key not in _SCALES:
        scale = fft_scale(height, width, decay_power)
        _SCALES[key] = torch.as_tensor(scale, dtype=torch.float32, device=spectrum.device)
    return spectrum_to_image(spectrum, _SCALES[key], height, width)


_SCALES: dict[tuple, torch.Tensor] = {}
