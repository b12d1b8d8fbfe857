"""Colour decorrelation and squashing of raw image tensors into valid `[0, 1]` colours (Lucid)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

# Square root of ImageNet's colour correlation matrix (Lucid's `color_correlation_svd_sqrt`).
COLOR_CORRELATION_SVD_SQRT = np.asarray(
    [[0.26, 0.09, 0.02], [0.27, 0.00, -0.05], [0.27, -0.09, 0.03]], dtype=np.float32
)
MAX_NORM_SVD_SQRT = float(np.max(np.linalg.norm(COLOR_CORRELATION_SVD_SQRT, axis=0)))
COLOR_CORRELATION_NORMALIZED = COLOR_CORRELATION_SVD_SQRT / MAX_NORM_SVD_SQRT
COLOR_MEAN = (0.48, 0.46, 0.41)

# Logits are clamped to this distance from 0 and 1 when an image is inverted through the sigmoid.
LOGIT_EPS = 1e-4


_CONSTANTS: dict[tuple, torch.Tensor] = {}


def _constant(name: str, like: torch.Tensor) -> torch.Tensor:
    """A colour constant on `like`'s device and dtype, cached (no host-to-device copy per step)."""
    key = (name, like.device, like.dtype)
    if key not in _CONSTANTS:
        values = {
            "matrix": COLOR_CORRELATION_NORMALIZED.astype(np.float64),
            "inverse": np.linalg.inv(COLOR_CORRELATION_NORMALIZED.astype(np.float64)),
            "mean": np.asarray(COLOR_MEAN, dtype=np.float64).reshape(1, 3, 1, 1),
        }[name]
        _CONSTANTS[key] = torch.as_tensor(values, dtype=like.dtype, device=like.device)
    return _CONSTANTS[key]


def _mix_channels(matrix: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
    """`matrix` (3, 3) applied to every colour vector of `image` (B, 3, H, W)."""
    return (matrix @ image.flatten(2)).view(image.shape)  # (B, 3, H, W)


def decorrelate_color(image: torch.Tensor) -> torch.Tensor:
    """Map colours from Lucid's decorrelated colour space to RGB.

    Parameters
    ----------
    image : torch.Tensor
        `(B, C, H, W)`. Only 3-channel images are transformed; any other channel count is returned
        unchanged (there is no colour correlation to undo for 1 or N channels).

    Returns
    -------
    torch.Tensor
        `(B, C, H, W)`: each colour vector multiplied by the normalized correlation sqrt matrix.
    """
    if image.shape[1] != 3:
        return image
    return _mix_channels(_constant("matrix", image), image)


def correlate_color(image: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`decorrelate_color` (identity unless the image has 3 channels)."""
    if image.shape[1] != 3:
        return image
    return _mix_channels(_constant("inverse", image), image)


class _ConstrainLinf(torch.autograd.Function):
    """Clip to `[-1, 1]`; gradients pass except where they would push a clipped value further out.

    Lucid's `constrain_L_inf` (x / max(1, |x|)) with a projected gradient, so values stuck at the
    boundary can come back into range.
    """

    @staticmethod
    def forward(ctx, values: torch.Tensor) -> torch.Tensor:  # noqa: D102
        ctx.save_for_backward(values)
        return values.clamp(-1.0, 1.0)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:  # noqa: D102
        (values,) = ctx.saved_tensors
        # A gradient-descent step moves by -grad: outward when values * grad < 0.
        blocked = (values.abs() >= 1.0) & (values * grad < 0)
        return torch.where(blocked, torch.zeros_like(grad), grad)


def constrain_linf(values: torch.Tensor) -> torch.Tensor:
    """Clip `values` into `[-1, 1]` with Lucid's projected gradient (see `_ConstrainLinf`)."""
    return _ConstrainLinf.apply(values)


def valid_rgb(image: torch.Tensor, decorrelate: bool = False, sigmoid: bool = True) -> torch.Tensor:
    """Tensor version of :func:`to_valid_rgb`: `(B, C, H, W)` raw values -> `[0, 1]`."""
    if decorrelate:
        image = decorrelate_color(image)
        if not sigmoid and image.shape[1] == 3:
            image = image + _constant("mean", image)
    if sigmoid:
        return torch.sigmoid(image)
    return constrain_linf(2 * image - 1) / 2 + 0.5


def to_valid_rgb(
    image_f: Callable[[], torch.Tensor], decorrelate: bool = False, sigmoid: bool = True
) -> Callable[[], torch.Tensor]:
    """Wrap a raw image function so that it returns valid colours in `[0, 1]` (Lucid's recipe).

    Parameters
    ----------
    image_f : callable
        Zero-argument function returning raw values `(B, C, H, W)`.
    decorrelate : bool
        Interpret the channels as Lucid's decorrelated colour space and map them to RGB with the
        square root of ImageNet's colour correlation normalized by its largest column norm.
        Only applies to 3 channels; other channel counts pass through unchanged.
    sigmoid : bool
        Squash with a sigmoid (default). When False the values are clipped instead
        (`constrain_L_inf(2x - 1) / 2 + 0.5`), and with `decorrelate` Lucid's colour mean
        `(0.48, 0.46, 0.41)` is added first.

    Returns
    -------
    callable
        Zero-argument function returning `(B, C, H, W)` in `[0, 1]`.
    """
    if not callable(image_f):
        raise TypeError(
            f"to_valid_rgb expects a zero-argument function returning (B, C, H, W), got "
            f"{type(image_f).__name__}; wrap a tensor as `lambda: tensor`"
        )

    def valid_image() -> torch.Tensor:
        return valid_rgb(image_f(), decorrelate=decorrelate, sigmoid=sigmoid)

    return valid_image


def inverse_valid_rgb(image: torch.Tensor, decorrelate: bool = False) -> torch.Tensor:
    """Raw values that the sigmoid path of :func:`valid_rgb` maps to `image` (`[0, 1]`).

    Values are clamped to `[LOGIT_EPS, 1 - LOGIT_EPS]` before the logit, so exact 0 and 1 come back
    within `LOGIT_EPS`.
    """
    raw = torch.logit(image.clamp(LOGIT_EPS, 1.0 - LOGIT_EPS))
    return correlate_color(raw) if decorrelate else raw
