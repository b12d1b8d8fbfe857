"""Small, fast atlas settings shared by the atlas tests."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture
def fast() -> dict:
    """A few steps on 24-pixel images: seconds per build on a CPU."""
    return dict(size=24, steps=2, batch_size=4, progress=False)


@pytest.fixture
def images() -> torch.Tensor:
    """Ten random images (N, C, H, W) in [0, 1]."""
    return torch.rand(10, 3, 24, 24, generator=torch.Generator().manual_seed(1))


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The Ray tests run last: see tests/atlas/test_ray.py."""
    items.sort(key=lambda item: "test_ray.py" in str(item.path))
