"""How a ``[0, 1]`` image becomes a network's input.

Every model carries (or is given) a :class:`Preprocess`: the value range its first layer expects,
the per-channel mean and standard deviation, its input size and channel count. The renderer keeps
images in ``[0, 1]`` and applies the model's preprocessing last, right before the forward pass.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

__all__ = ["IMAGENET", "Preprocess", "identity", "input_channels", "resolve"]


@dataclass(frozen=True)
class Preprocess:
    """Map a ``(B, C, H, W)`` image in ``[0, 1]`` to network input.

    Parameters
    ----------
    mean, std
        Per-channel statistics, in the units of ``value_range``.
    value_range
        The range that ``[0, 1]`` is stretched to before normalizing, e.g. ``(0, 255)``.
    input_size
        ``(height, width)`` the model was trained at; used for catalogs and dataset examples.
    channels
        Number of input channels.

    Examples
    --------
    >>> pre = Preprocess(mean=(0.5,), std=(0.5,), channels=1)
    >>> pre(torch.ones(1, 1, 2, 2)).flatten().tolist()
    [1.0, 1.0, 1.0, 1.0]
    """

    mean: tuple[float, ...] = (0.485, 0.456, 0.406)
    std: tuple[float, ...] = (0.229, 0.224, 0.225)
    value_range: tuple[float, float] = (0.0, 1.0)
    input_size: tuple[int, int] = (224, 224)
    channels: int = 3
    _cache: dict = field(default_factory=dict, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if len(self.mean) != self.channels or len(self.std) != self.channels:
            raise ValueError(
                f"Preprocess has channels={self.channels} but {len(self.mean)} mean and "
                f"{len(self.std)} std values; give one of each per channel."
            )
        if any(s <= 0 for s in self.std):
            raise ValueError(f"Preprocess std must be positive, got {self.std}.")

    def _affine(self, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Scale and shift so that ``x * scale + shift`` is the normalized input."""
        key = (like.device, like.dtype)
        if key not in self._cache:
            low, high = self.value_range
            mean = torch.tensor(self.mean, device=like.device, dtype=like.dtype)
            std = torch.tensor(self.std, device=like.device, dtype=like.dtype)
            scale = (high - low) / std
            shift = (low - mean) / std
            self._cache[key] = (scale.view(1, -1, 1, 1), shift.view(1, -1, 1, 1))
        return self._cache[key]

    def __call__(self, image: torch.Tensor) -> torch.Tensor:
        """Return network input for ``image`` ``(B, C, H, W)`` in ``[0, 1]``."""
        if image.dim() != 4 or image.shape[1] != self.channels:
            raise ValueError(
                f"Preprocess expects (B, {self.channels}, H, W) images, got shape "
                f"{tuple(image.shape)}. Does the parameterization's channel count match the model?"
            )
        scale, shift = self._affine(image)
        return image * scale + shift


IMAGENET = Preprocess()
"""ImageNet mean/std on ``[0, 1]`` input, 224 x 224, RGB: torchvision's convention."""


def input_channels(model: nn.Module) -> int | None:
    """Channel count of the model's first 2-d convolution, if it has one."""
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            return module.in_channels
    return None


def identity(channels: int = 3, input_size: tuple[int, int] = (224, 224)) -> Preprocess:
    """The preprocessing that feeds the ``[0, 1]`` image as is."""
    return Preprocess(
        mean=(0.0,) * channels, std=(1.0,) * channels, input_size=input_size, channels=channels
    )


def resolve(model: nn.Module, override: Preprocess | bool | None = None) -> Preprocess:
    """The preprocessing to use for ``model``.

    The explicit ``override`` wins (``False``: the identity, Lucent's "feed the image as is"),
    then ``model.lucid_preprocess``, then ImageNet statistics (replaced by mean 0.5 / std 0.5
    when the model's first conv takes other than 3 channels).
    """
    attached = getattr(model, "lucid_preprocess", None)
    if override is False:
        if attached is not None:
            return identity(attached.channels, attached.input_size)
        return identity(input_channels(model) or 3)
    if override is not None:
        if not isinstance(override, Preprocess):
            raise TypeError(
                f"preprocess must be a Preprocess, None (the model's own) or False (the image "
                f"as is), got {override!r}."
            )
        return override
    if attached is not None:
        return attached
    channels = input_channels(model)
    if channels is None or channels == 3:
        return IMAGENET
    return Preprocess(mean=(0.5,) * channels, std=(0.5,) * channels, channels=channels)
