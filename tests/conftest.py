"""Shared fixtures: tiny models built here, so unit tests run in seconds on a CPU."""

from __future__ import annotations

import pytest
import torch
from tiny_models import TinyNet, TinyTokens


@pytest.fixture
def tiny_net() -> TinyNet:
    torch.manual_seed(0)
    return TinyNet()


@pytest.fixture
def tiny_tokens() -> TinyTokens:
    torch.manual_seed(0)
    return TinyTokens().eval()
