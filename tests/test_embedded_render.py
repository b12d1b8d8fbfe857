"""The embedded pretrained model: a channel visualization really drives its channel."""

from __future__ import annotations

import pytest
import torch

import lucid_widgets as lw
from lucid_widgets.optvis.hooks import capture
from lucid_widgets.optvis.objective_base import Activations

pytestmark = pytest.mark.slow  # every test here runs the real embedded model


@pytest.fixture(scope="module")
def model():
    return lw.zoo.load("efficientnet_lite0")


def _channel_mean(model, image: torch.Tensor, layer: str, unit: int) -> float:
    with torch.no_grad(), capture(model, [layer]) as run:
        acts = run(model.lucid_preprocess(image))
    return float(lw.objectives.channel(layer, unit)(Activations(acts)))


def test_visualization_drives_its_channel_far_above_noise(model):
    layer, unit = "block5", 7
    images = lw.render_vis(
        model, f"{layer}:{unit}", param_f=lambda: lw.param.image(64), thresholds=(48,), seed=0,
        progress=False,
    )  # fmt: skip
    rendered = torch.from_numpy(images[-1]).permute(0, 3, 1, 2)  # (1, 3, 64, 64)
    generator = torch.Generator().manual_seed(0)
    noise = torch.rand(1, 3, 64, 64, generator=generator)
    grey = torch.full((1, 3, 64, 64), 0.5)
    rendered_value = _channel_mean(model, rendered, layer, unit)
    baseline = max(
        _channel_mean(model, noise, layer, unit), _channel_mean(model, grey, layer, unit)
    )
    assert rendered_value > 3 * max(baseline, 0.1), (rendered_value, baseline)


def test_the_default_maco_visualization_drives_its_channel_too(model):
    layer, unit = "block5", 7
    images = lw.render_vis(model, f"{layer}:{unit}", thresholds=(48,), seed=0, progress=False)
    rendered = torch.from_numpy(images[-1]).permute(0, 3, 1, 2)  # (1, 3, 128, 128), resized
    assert rendered.shape == (1, 3, 128, 128)
    grey = torch.full((1, 3, 128, 128), 0.5)
    noise = torch.rand(1, 3, 128, 128, generator=torch.Generator().manual_seed(0))
    baseline = max(
        _channel_mean(model, noise, layer, unit), _channel_mean(model, grey, layer, unit)
    )
    assert _channel_mean(model, rendered, layer, unit) > 3 * max(baseline, 0.1)
