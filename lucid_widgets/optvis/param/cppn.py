"""Compositional pattern producing networks (CPPN) as an image parameterization (Lucid)."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import nn

from lucid_widgets.optvis.param.seeding import randn
from lucid_widgets.optvis.param.spatial import ParamResult

COORDINATE_RANGE = math.sqrt(3.0)  # linspace(-sqrt(3), sqrt(3)) has unit standard deviation


def composite_activation(values: torch.Tensor) -> torch.Tensor:
    """Lucid's CPPN activation: `atan(x) / 0.67` and `atan(x)^2 / 0.6`, concatenated on channels.

    `(B, C, H, W)` -> `(B, 2C, H, W)`; the constants give both halves unit RMS for `x ~ N(0, 1)`.
    """
    values = torch.atan(values)
    return torch.cat([values / 0.67, values * values / 0.6], dim=1)


def coordinate_grid(height: int, width: int) -> torch.Tensor:
    """`(3, H, W)` inputs of the CPPN: x, y (longer side spans [-sqrt(3), sqrt(3)]) and radius."""
    longest = max(height, width)
    extent_y = COORDINATE_RANGE * (height - 1) / max(longest - 1, 1)
    extent_x = COORDINATE_RANGE * (width - 1) / max(longest - 1, 1)
    y_range = torch.linspace(-extent_y, extent_y, height)
    x_range = torch.linspace(-extent_x, extent_x, width)
    y, x = torch.meshgrid(y_range, x_range, indexing="ij")  # (H, W) each
    radius = torch.sqrt(x * x + y * y)
    return torch.stack([x, y, radius])  # (3, H, W)


def _activation(activation_fn: Callable | type) -> Callable[[torch.Tensor], torch.Tensor]:
    if isinstance(activation_fn, type) and issubclass(activation_fn, nn.Module):
        return activation_fn()
    if not callable(activation_fn):
        raise TypeError(
            f"activation_fn must be a function of a (B, C, H, W) tensor or an nn.Module class, "
            f"got {type(activation_fn).__name__}"
        )
    return activation_fn


class CPPN(nn.Module):
    """`batch` independent CPPNs mapping a fixed (x, y, r) grid to `(B, C, H, W)` in `(0, 1)`.

    Each layer is a 1x1 convolution (one weight matrix per batch element), optionally instance
    normalization, then the activation; the output layer has zero-initialised weights and a
    sigmoid, so the first image is a flat colour, as in Lucid.
    """

    def __init__(
        self,
        height: int,
        width: int,
        batch: int = 1,
        num_output_channels: int = 3,
        num_hidden_channels: int = 24,
        num_layers: int = 8,
        activation_fn: Callable | type = composite_activation,
        normalize: bool = False,
    ) -> None:
        super().__init__()
        self.activation = _activation(activation_fn)
        self.normalize = normalize
        self.register_buffer("coordinates", coordinate_grid(height, width)[None])  # (1, 3, H, W)
        self.weights, self.biases = nn.ParameterList(), nn.ParameterList()
        self.norm_scales, self.norm_shifts = nn.ParameterList(), nn.ParameterList()
        in_channels = 3
        for _ in range(num_layers):
            self._add_layer(batch, in_channels, num_hidden_channels, std=1 / math.sqrt(in_channels))
            if normalize:
                self.norm_scales.append(nn.Parameter(torch.ones(batch, num_hidden_channels, 1, 1)))
                self.norm_shifts.append(nn.Parameter(torch.zeros(batch, num_hidden_channels, 1, 1)))
            probe = self.activation(torch.zeros(1, num_hidden_channels, 1, 1))
            in_channels = probe.shape[1]
        self._add_layer(batch, in_channels, num_output_channels, std=0.0)

    def _add_layer(self, batch: int, in_channels: int, out_channels: int, std: float) -> None:
        # Variance-scaling (fan-in) weights, N(0, 0.1) biases, as Lucid's slim.conv2d scope.
        self.weights.append(nn.Parameter(randn(batch, out_channels, in_channels, sd=std)))
        self.biases.append(nn.Parameter(randn(batch, out_channels, 1, 1, sd=0.1)))

    def forward(self) -> torch.Tensor:
        values = self.coordinates  # (1, 3, H, W)
        last = len(self.weights) - 1
        for index, (weight, bias) in enumerate(zip(self.weights, self.biases, strict=True)):
            values = torch.einsum(
                "boi,bihw->bohw", weight, values.expand(weight.shape[0], -1, -1, -1)
            )
            values = values + bias  # (B, C_out, H, W)
            if index == last:
                return torch.sigmoid(values)
            if self.normalize:
                mean = values.mean(dim=(2, 3), keepdim=True)
                var = values.var(dim=(2, 3), keepdim=True, unbiased=False)
                values = (values - mean) / torch.sqrt(var + 1e-5)
                values = values * self.norm_scales[index] + self.norm_shifts[index]
            values = self.activation(values)
        raise AssertionError("unreachable: the CPPN always has an output layer")


def cppn(
    size: int | tuple[int, int],
    batch: int = 1,
    num_output_channels: int = 3,
    num_hidden_channels: int = 24,
    num_layers: int = 8,
    activation_fn: Callable | type = composite_activation,
    normalize: bool = False,
) -> ParamResult:
    """CPPN image parameterization (Lucid's `cppn`).

    Parameters
    ----------
    size : int or (int, int)
        Image width (square image) or `(height, width)`.
    batch : int
        Number of images; unlike Lucid (which repeats one network) each gets its own network.
    num_output_channels, num_hidden_channels, num_layers : int
        Output channels (3), hidden width (24) and hidden layers (8) before the output layer.
    activation_fn : callable or nn.Module class
        Applied to `(B, C, H, W)` after each hidden layer; may change the channel count
        (the default :func:`composite_activation` doubles it).
    normalize : bool
        Instance-normalize each hidden layer (learnable scale and shift).

    Returns
    -------
    (params, image_f)
        `params` is the CPPN's parameter list; `image_f()` returns `(B, C, H, W)` in `(0, 1)`
        (already squashed by a sigmoid: do not wrap it in :func:`to_valid_rgb`).

    Notes
    -----
    Inputs are x, y and the radius `sqrt(x^2 + y^2)`; Lucid feeds only x and y.
    """
    height, width = (size, size) if isinstance(size, int) else tuple(size)
    counts = {"height": height, "width": width, "batch": batch, "num_layers": num_layers}
    counts.update(num_output_channels=num_output_channels, num_hidden_channels=num_hidden_channels)
    for name, value in counts.items():
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"cppn: {name} must be a positive integer, got {value!r}")
    network = CPPN(
        height, width, batch, num_output_channels, num_hidden_channels, num_layers,
        activation_fn, normalize,
    )  # fmt: skip
    return list(network.parameters()), network
