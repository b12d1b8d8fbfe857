"""`param.image` (Lucid's default parameterization) and `param.from_image` (start from a photo)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from lucid_widgets.optvis.param.color import LOGIT_EPS, inverse_valid_rgb, valid_rgb
from lucid_widgets.optvis.param.spatial import (
    ParamResult,
    fft_from_spectrum,
    fft_image,
    fft_scale,
    image_to_spectrum,
    pixel_image,
)


def _positive_int(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def _squash(
    raw_f: Callable[[], torch.Tensor], channels: int, alpha: bool, decorrelate: bool
) -> Callable[[], torch.Tensor]:
    """Colour channels through `valid_rgb` (sigmoid), the alpha channel through a sigmoid."""

    def image_f() -> torch.Tensor:
        raw = raw_f()  # (B, C + alpha, H, W)
        if not alpha:
            return valid_rgb(raw, decorrelate=decorrelate, sigmoid=True)
        colour = valid_rgb(raw[:, :channels], decorrelate=decorrelate, sigmoid=True)
        return torch.cat([colour, torch.sigmoid(raw[:, channels:])], dim=1)

    return image_f


def image(
    w: int,
    h: int | None = None,
    batch: int = 1,
    sd: float | None = None,
    decorrelate: bool = True,
    fft: bool = True,
    alpha: bool = False,
    channels: int = 3,
) -> ParamResult:
    """Lucid's default image parameterization.

    Parameters
    ----------
    w, h : int
        Width and height (`h` defaults to `w`).
    batch : int
        Number of images.
    sd : float, optional
        Initialisation standard deviation (default 0.01).
    decorrelate : bool
        Decorrelated colour space (only affects 3 colour channels).
    fft : bool
        Fourier parameterization (True) or plain pixels (False).
    alpha : bool
        Add an alpha channel (sigmoid of its own raw channel) after the colour channels.
    channels : int
        Colour channels (1 for grayscale models, 3, or any N).

    Returns
    -------
    (params, image_f)
        `image_f()` returns `(B, channels (+1 with alpha), H, W)` in `[0, 1]`.
    """
    width = _positive_int(w, "w")
    height = width if h is None else _positive_int(h, "h")
    batch = _positive_int(batch, "batch")
    channels = _positive_int(channels, "channels")
    shape = (batch, channels + int(bool(alpha)), height, width)
    params, raw_f = (fft_image if fft else pixel_image)(shape, sd=sd)
    return params, _squash(raw_f, channels, bool(alpha), decorrelate)


def _is_pil_image(value: Any) -> bool:
    return type(value).__module__.startswith("PIL.") and hasattr(value, "getbands")


def _pil_to_array(picture: Any, alpha: bool) -> np.ndarray:
    mode = picture.mode
    if mode not in ("L", "LA", "RGB", "RGBA"):
        has_alpha = "A" in picture.getbands() or "transparency" in picture.info
        picture = picture.convert("RGBA" if alpha and has_alpha else "RGB")
    elif not alpha and mode in ("LA", "RGBA"):
        picture = picture.convert(mode[:-1])
    array = np.asarray(picture)
    return array[..., None] if array.ndim == 2 else array  # (H, W, C)


_INTEGER_MAX = {"uint8": 255.0, "uint16": 65535.0, "bool": 1.0}


def _scale_integers(array: np.ndarray | torch.Tensor) -> np.ndarray | torch.Tensor:
    """uint8 -> /255, uint16 -> /65535, bool -> 0/1, as float64; other dtypes unchanged."""
    maximum = _INTEGER_MAX.get(str(array.dtype).removeprefix("torch."))
    if maximum is None:
        return array
    if isinstance(array, torch.Tensor):
        return array.to(torch.float64) / maximum
    return array.astype(np.float64) / maximum


def _as_image_tensor(picture: Any, alpha: bool) -> torch.Tensor:
    """Any supported picture -> float32 `(B, C, H, W)` in `[0, 1]` on the default device."""
    if _is_pil_image(picture):
        picture = _pil_to_array(picture, alpha)
    if isinstance(picture, np.ndarray):
        array = _scale_integers(picture)
        if array.ndim == 2:
            array = array[None, :, :, None]
        elif array.ndim == 3:
            array = array[None]
        if array.ndim != 4:
            raise ValueError(
                f"from_image: numpy images must be (H, W), (H, W, C) or (B, H, W, C), "
                f"got shape {picture.shape}"
            )
        tensor = torch.as_tensor(np.ascontiguousarray(array, dtype=np.float32), device="cpu")
        tensor = tensor.permute(0, 3, 1, 2)  # (B, C, H, W)
    elif isinstance(picture, torch.Tensor):
        tensor = _scale_integers(picture.detach()).float()
        if tensor.dim() == 3:
            tensor = tensor[None]
        if tensor.dim() != 4:
            raise ValueError(
                f"from_image: tensors must be (C, H, W) or (B, C, H, W), got {tuple(picture.shape)}"
            )
    else:
        raise TypeError(
            "from_image expects a numpy array (H, W, C) / (B, H, W, C), a PIL image or a tensor "
            f"(B, C, H, W), got {type(picture).__name__}"
        )
    low, high = float(tensor.min()), float(tensor.max())
    if low < -1e-3 or high > 1 + 1e-3:
        raise ValueError(
            f"from_image: values must be in [0, 1] (floats) or uint8 0..255, got "
            f"{low:.3g}..{high:.3g}; divide 0..255 floats by 255"
        )
    return tensor.to(torch.get_default_device()).clamp(0.0, 1.0).contiguous()


def _split_alpha(tensor: torch.Tensor, alpha: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
    if not alpha:
        return tensor, None
    channels = tensor.shape[1]
    if channels in (2, 4):
        return tensor[:, :-1], tensor[:, -1:]
    return tensor, torch.ones_like(tensor[:, :1])  # opaque


def from_image(
    image: Any, decorrelate: bool = True, fft: bool = True, alpha: bool = False
) -> ParamResult:
    """A parameterization whose first image is `image` (caricature, DeepDream of a photo).

    Parameters
    ----------
    image : numpy array, PIL image or tensor
        numpy `(H, W)`, `(H, W, C)` or `(B, H, W, C)` floats in `[0, 1]` or uint8; a PIL image; or
        a tensor `(C, H, W)` / `(B, C, H, W)` in `[0, 1]` (uint8 is divided by 255).
    decorrelate, fft : bool
        As in :func:`image`; the picture is mapped back through the sigmoid (logit, clamped to
        `[1e-4, 1 - 1e-4]`), the colour decorrelation and the FFT exactly.
    alpha : bool
        Add an alpha channel. Images with 4 (or 2) channels give their last channel as alpha;
        others start fully opaque. Without `alpha`, PIL images lose their alpha band and every
        array/tensor channel is a colour channel.

    Returns
    -------
    (params, image_f)
        `image_f()` at step 0 reproduces `image` as `(B, C, H, W)` (to within ~1e-4).
    """
    tensor = _as_image_tensor(image, bool(alpha))  # (B, C, H, W)
    colour, alpha_channel = _split_alpha(tensor, bool(alpha))
    raw = inverse_valid_rgb(colour, decorrelate=decorrelate)
    if alpha_channel is not None:
        raw_alpha = torch.logit(alpha_channel.clamp(LOGIT_EPS, 1.0 - LOGIT_EPS))
        raw = torch.cat([raw, raw_alpha], dim=1)  # (B, C + 1, H, W)
    height, width = raw.shape[-2:]
    if fft:
        scale = torch.as_tensor(fft_scale(height, width), dtype=raw.dtype, device=raw.device)
        params, raw_f = fft_from_spectrum(image_to_spectrum(raw, scale), height, width)
    else:
        pixels = raw.clone().requires_grad_(True)
        params, raw_f = [pixels], lambda: pixels
    return params, _squash(raw_f, colour.shape[1], alpha_channel is not None, decorrelate)
