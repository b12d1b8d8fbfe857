"""Factories importable by the command line's ``module:factory`` model spec in tests."""

from __future__ import annotations

import torch
from conftest import TinyNet


def tiny_net() -> TinyNet:
    torch.manual_seed(0)
    return TinyNet()
