"""Shared fixtures: tiny models built here, so unit tests run in seconds on a CPU."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

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


# --- the `slow` marker means what it says ------------------------------------------------------
# A test not marked `slow` that loads the real embedded model's weights fails, naming the marker,
# so the marker cannot drift away from where the real model is used.
_RUNNING: dict[str, bool] = {"slow": True}


@pytest.hookimpl(wrapper=True)
def pytest_runtest_setup(item: pytest.Item) -> object:
    _RUNNING["slow"] = item.get_closest_marker("slow") is not None
    return (yield)


@pytest.fixture(autouse=True, scope="session")
def _embedded_weights_need_the_slow_marker() -> Iterator[None]:
    from lucid_widgets.zoo.efficientnet_lite0 import default_weights_path

    embedded, real_load = default_weights_path().resolve(), torch.load

    def load(f: object, *args: object, **kwargs: object) -> object:
        path = Path(f).resolve() if isinstance(f, str | os.PathLike) else None
        if path == embedded and not _RUNNING["slow"]:
            pytest.fail("this test loads the real embedded model: mark it @pytest.mark.slow")
        return real_load(f, *args, **kwargs)

    torch.load = load
    yield
    torch.load = real_load
