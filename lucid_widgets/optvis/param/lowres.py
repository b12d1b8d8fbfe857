"""Low-resolution tensors upsampled bilinearly, and Laplacian pyramids built from them (Lucid)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from lucid_widgets.optvis.param.seeding import randn
from lucid_widgets.optvis.param.spatial import DEFAULT_SD, ParamResult, check_shape


def _as_sizes(shape: Sequence[int], name: str) -> tuple[int, ...]:
    try:
        sizes = tuple(int(size) for size in shape)
    except (TypeError, ValueError):
        sizes = ()
    if not sizes or min(sizes) < 1:
        raise ValueError(f"{name} must be a sequence of positive integers, got {shape!r}")
    return sizes


def resize_linear(tensor: torch.Tensor, shape: Sequence[int]) -> torch.Tensor:
    """Resize every dimension of `tensor` to `shape` with linear interpolation.

    Uses half-pixel centres (`align_corners=False`); Lucid's TF1 resize used the older
    asymmetric mapping, so values differ by a sub-pixel shift.
    """
    shape = tuple(shape)
    if tensor.dim() == 4 and tuple(tensor.shape[:2]) == shape[:2]:
        if tuple(tensor.shape[2:]) == shape[2:]:
            return tensor
        return F.interpolate(tensor, size=shape[2:], mode="bilinear", align_corners=False)
    for dim, size in enumerate(shape):
        if tensor.shape[dim] == size:
            continue
        moved = tensor.movedim(dim, -1)  # (..., L)
        flat = moved.reshape(-1, 1, moved.shape[-1])  # (N, 1, L)
        flat = F.interpolate(flat, size=size, mode="linear", align_corners=False)
        tensor = flat.reshape(*moved.shape[:-1], size).movedim(-1, dim)
    return tensor


def _offsets(
    offset: int | bool | Sequence[int | bool] | None, shape: tuple, underlying: tuple
) -> list[int]:
    entries = list(offset) if isinstance(offset, (list, tuple)) else [offset] * len(shape)
    if len(entries) != len(shape):
        raise ValueError(f"offset needs one entry per dimension ({len(shape)}), got {offset!r}")
    result = []
    for entry, size, low in zip(entries, shape, underlying, strict=True):
        if entry is True:
            entry = size / low / 2
        elif entry is False or entry is None:
            entry = 0
        amount = int(entry)
        if not 0 <= amount <= size:
            raise ValueError(
                f"offset entries must be in [0, {size}] for that dimension, got {entry}"
            )
        result.append(amount)
    return result


def _shift_symmetric(tensor: torch.Tensor, offsets: list[int]) -> torch.Tensor:
    """Pad each dimension in front by its offset with mirrored values (edge included), then crop."""
    for dim, amount in enumerate(offsets):
        if amount == 0:
            continue
        size = tensor.shape[dim]
        front = tensor.narrow(dim, 0, amount).flip(dim)  # TF's "SYMMETRIC" padding
        tensor = torch.cat([front, tensor], dim).narrow(dim, 0, size)
    return tensor


def lowres_tensor(
    shape: Sequence[int],
    underlying_shape: Sequence[int],
    offset: int | bool | Sequence[int | bool] | None = None,
    sd: float | None = None,
) -> ParamResult:
    """A tensor of `shape` parameterized by a smaller tensor, upsampled linearly (Lucid).

    Parameters
    ----------
    shape : sequence of int
        Shape of the result, e.g. `(B, C, H, W)`.
    underlying_shape : sequence of int
        Shape of the parameter (same number of dimensions), e.g. `(B, C, H // 4, W // 4)`.
    offset : int, bool or sequence, optional
        Shift the interpolated tensor by that many entries per dimension (mirrored padding in
        front, then cropped), like a phase. `True` shifts by half the upsampling ratio, `False` or
        None by nothing; a scalar applies to every dimension.
    sd : float, optional
        Standard deviation of the normal initialisation (default 0.01).

    Returns
    -------
    (params, image_f)
        `params` is `[low]` (`underlying_shape`); `image_f()` returns the raw tensor of `shape`.
    """
    shape = _as_sizes(shape, "shape")
    underlying = _as_sizes(underlying_shape, "underlying_shape")
    if len(shape) != len(underlying):
        raise ValueError(
            f"shape {shape} and underlying_shape {underlying} need the same number of dimensions"
        )
    offsets = _offsets(offset, shape, underlying) if offset is not None else None
    low = randn(*underlying, sd=DEFAULT_SD if sd is None else sd).requires_grad_(True)

    def tensor_f() -> torch.Tensor:
        tensor = resize_linear(low, shape)
        return _shift_symmetric(tensor, offsets) if offsets else tensor

    return [low], tensor_f


def laplacian_pyramid(
    shape: Sequence[int], levels: int = 4, sd: float | None = None
) -> ParamResult:
    """Sum of `levels` low-resolution tensors at sizes `(H // 2**n, W // 2**n)` (Lucid).

    Parameters
    ----------
    shape : sequence of int
        `(B, C, H, W)` of the result.
    levels : int
        Number of pyramid levels (default 4); sizes below 1 pixel are clamped to 1.
    sd : float, optional
        Standard deviation of each level's initialisation (default 0.01).

    Returns
    -------
    (params, image_f)
        One parameter per level; `image_f()` returns raw values `(B, C, H, W)`.
    """
    batch, channels, height, width = check_shape(shape)
    if int(levels) != levels or levels < 1:
        raise ValueError(f"levels must be a positive integer, got {levels!r}")
    params, level_fs = [], []
    for level in range(int(levels)):
        factor = 2**level
        low_shape = (batch, channels, max(height // factor, 1), max(width // factor, 1))
        level_params, level_f = lowres_tensor((batch, channels, height, width), low_shape, sd=sd)
        params += level_params
        level_fs.append(level_f)

    def image_f() -> torch.Tensor:
        return sum(level_f() for level_f in level_fs)  # (B, C, H, W)

    return params, image_f
