"""Tiny models for tests, also importable by the command line's ``module:factory`` spec."""

from __future__ import annotations

import torch
from torch import nn


class TinyNet(nn.Module):
    """conv -> relu -> conv -> relu -> pool -> linear: (B, 3, H, W) -> (B, 10)."""

    def __init__(self, in_channels: int = 3):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, 8, 3, padding=1)
        self.relu1 = nn.ReLU()
        self.conv2 = nn.Conv2d(8, 16, 3, stride=2, padding=1)
        self.relu2 = nn.ReLU(inplace=True)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(16, 10)
        self.lucid_aliases = {"early": "relu1", "late": "relu2"}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu2(self.conv2(self.relu1(self.conv1(x))))
        return self.fc(self.pool(x).flatten(1))


class TinyTokens(nn.Module):
    """Patchify -> one transformer block: activations (B, N, C)."""

    def __init__(self):
        super().__init__()
        self.patch = nn.Conv2d(3, 16, 4, stride=4)
        self.block = nn.TransformerEncoderLayer(16, 2, 32, batch_first=True, dropout=0.0)
        self.head = nn.Linear(16, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tokens = self.patch(x).flatten(2).transpose(1, 2)  # (B, N, C)
        return self.head(self.block(tokens).mean(1))


def tiny_net() -> TinyNet:
    torch.manual_seed(0)
    return TinyNet()


class TinyBatchNormNet(nn.Module):
    """Stride-2 RGB conv -> BN -> ReLU -> conv -> BN -> ReLU -> pool -> linear, with eval stats.

    The batch norms get random running statistics and affine parameters, so folding them is a
    real change of weights (not an identity).
    """

    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 5, stride=2, padding=2, bias=False)
        self.stem_bn = nn.BatchNorm2d(8)
        self.conv = nn.Conv2d(8, 12, 3, padding=1)
        self.bn = nn.BatchNorm2d(12)
        self.relu = nn.ReLU()
        self.fc = nn.Linear(12, 4)
        for norm in (self.stem_bn, self.bn):
            with torch.no_grad():
                norm.running_mean.uniform_(-0.5, 0.5)
                norm.running_var.uniform_(0.5, 2.0)
                norm.weight.uniform_(0.5, 1.5)
                norm.bias.uniform_(-0.2, 0.2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(self.stem_bn(self.stem(x)))
        x = self.relu(self.bn(self.conv(x)))
        return self.fc(x.mean((2, 3)))


class Branches(nn.Module):
    """An Inception-like block: two conv branches concatenated along channels."""

    def __init__(self, channels: int = 4):
        super().__init__()
        self.left = nn.Conv2d(3, channels, 3, padding=1)
        self.right = nn.Conv2d(3, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(torch.cat([self.left(x), self.right(x)], 1))


class TinyFlatHead(nn.Module):
    """conv -> .view -> linear: only 8 x 8 inputs pass the head, and no channels-last tensor."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.fc = nn.Linear(4 * 8 * 8, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x)  # (B, 4, H, W)
        return self.fc(y.view(y.shape[0], -1))
