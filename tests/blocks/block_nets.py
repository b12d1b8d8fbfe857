"""Small hand-set networks for the building-blocks tests."""

from __future__ import annotations

import torch
from torch import nn

from lucid_widgets.optvis.preprocess import Preprocess

PLAIN = Preprocess(mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0), input_size=(16, 16))

POSITIVE = torch.tensor([[0.0, 1.0, 0.0], [1.0, 2.0, 1.0], [0.0, 1.0, 0.0]])
NEGATIVE = -torch.tensor([[0.5, 0.0, 0.5], [0.0, 0.0, 0.0], [0.5, 0.0, 0.5]])


class TwoConv(nn.Module):
    """conv1 (3 -> 4) -> [eval BN] -> conv2 (4 -> 5, padding 1), optionally a concatenation.

    ``conv2`` unit 3 is built from unit 1 of ``conv1`` with :data:`POSITIVE` and from unit 0
    with :data:`NEGATIVE`; every other weight of ``conv2`` is zero.
    """

    def __init__(self, batch_norm: bool = False, concat: bool = False):
        super().__init__()
        torch.manual_seed(0)
        self.conv1 = nn.Conv2d(3, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4) if batch_norm else nn.Identity()
        self.concat = concat
        width = 8 if concat else 4
        self.conv2 = nn.Conv2d(width, 5, 3, padding=1)
        self.relu = nn.ReLU()
        self.fc = nn.Linear(5, 2)
        with torch.no_grad():
            self.conv2.weight.zero_()
            self.conv2.bias.zero_()
            offset = 4 if concat else 0  # the concatenation puts conv1 second
            self.conv2.weight[3, offset + 1] = POSITIVE
            self.conv2.weight[3, offset + 0] = NEGATIVE
            if batch_norm:
                self.bn.running_mean.copy_(torch.tensor([0.3, -0.2, 0.1, 0.0]))
                self.bn.running_var.copy_(torch.tensor([4.0, 0.25, 1.0, 2.0]))
                self.bn.weight.copy_(torch.tensor([1.0, 3.0, 0.5, 1.0]))
                self.bn.bias.copy_(torch.tensor([0.1, 0.2, 0.3, 0.4]))
        self.lucid_preprocess = PLAIN
        self.eval()

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, 3, H, W)
        first = self.bn(self.conv1(x))  # (B, 4, H, W)
        if self.concat:
            first = torch.cat([torch.ones_like(first), first], 1)  # (B, 8, H, W)
        second = self.relu(self.conv2(first))  # (B, 5, H, W)
        return self.fc(second.mean((2, 3)))


class SmallNonlinear(nn.Module):
    """conv -> ReLU -> conv -> ReLU -> conv: a nonlinear path between ``conv1`` and ``conv3``."""

    def __init__(self, seed: int = 0):
        super().__init__()
        torch.manual_seed(seed)
        self.conv1 = nn.Conv2d(3, 6, 3, padding=1)
        self.relu1 = nn.ReLU()
        self.conv2 = nn.Conv2d(6, 6, 3, padding=1)
        self.relu2 = nn.ReLU()
        self.conv3 = nn.Conv2d(6, 4, 3, padding=1)
        self.lucid_preprocess = PLAIN
        self.eval()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv3(self.relu2(self.conv2(self.relu1(self.conv1(x)))))


class LinearNet(nn.Module):
    """conv -> conv (stride 2) -> average pool -> linear, with biases and no nonlinearity."""

    def __init__(self, seed: int = 0):
        super().__init__()
        torch.manual_seed(seed)
        self.conv1 = nn.Conv2d(3, 6, 3, padding=1)
        self.conv2 = nn.Conv2d(6, 8, 3, stride=2, padding=1)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(8, 3)
        self.lucid_preprocess = PLAIN
        self.lucid_labels = ["cat", "dog", "fish"]
        self.eval()

    def head(self, first: torch.Tensor) -> torch.Tensor:
        """The logits from ``conv1``'s output."""
        return self.fc(self.pool(self.conv2(first)).flatten(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, 3, H, W) -> (B, 3)
        return self.head(self.conv1(x))


class NonlinearNet(LinearNet):
    """:class:`LinearNet` with a ReLU after each conv."""

    def head(self, first: torch.Tensor) -> torch.Tensor:
        return self.fc(self.pool(torch.relu(self.conv2(first))).flatten(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.relu(self.conv1(x)))


HORIZONTAL = torch.tensor([[-1.0, -1.0, -1.0], [2.0, 2.0, 2.0], [-1.0, -1.0, -1.0]])


class TextureNet(nn.Module):
    """Channels 0, 1 respond to horizontal stripes, 2, 3 to vertical ones; ``pool`` averages
    the rectified responses over 4 x 4 cells; a 1 x 1 conv and a mean give 2 logits."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1, bias=False)
        self.relu = nn.ReLU()
        self.pool = nn.AvgPool2d(4)
        self.mix = nn.Conv2d(4, 2, 1)
        with torch.no_grad():
            gray = torch.ones(3) / 3
            kernels = [HORIZONTAL, -HORIZONTAL, HORIZONTAL.T, -HORIZONTAL.T]
            self.conv.weight.copy_(torch.stack([gray[:, None, None] * k for k in kernels]))
            self.mix.weight.copy_(
                torch.tensor([[1.0, 0.5, -0.5, 0.2], [-0.3, 0.1, 1.0, 0.4]])[..., None, None]
            )
        self.lucid_preprocess = Preprocess(mean=(0.0,) * 3, std=(1.0,) * 3, input_size=(32, 32))
        self.eval()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.mix(self.pool(self.relu(self.conv(x)))).mean((2, 3))


def two_textures(size: int = 32) -> torch.Tensor:
    """``(3, size, size)``: horizontal stripes on the left half, vertical ones on the right."""
    stripes = (torch.arange(size) // 2 % 2).float()  # period 4 px
    image = torch.empty(size, size)
    half = size // 2
    image[:, :half] = stripes[:, None].expand(size, half)
    image[:, half:] = stripes[None, half:].expand(size, size - half)
    return image.expand(3, size, size).clone()
