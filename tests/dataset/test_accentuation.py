"""Feature accentuation: raise a unit from the photo while staying near its activations."""

from __future__ import annotations

import pytest
import skimage.data
import torch
from torch import nn

import lucid_widgets as lw
from lucid_widgets.dataset.sample import accentuation_of, deepdream_of
from lucid_widgets.optvis.hooks import capture
from lucid_widgets.optvis.preprocess import Preprocess

SIZE = 32
LAYER, UNIT = "4", 3


def make_model() -> nn.Module:
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3, padding=1), nn.ReLU(),
        nn.Conv2d(8, 6, 3, stride=2, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
        nn.Flatten(), nn.Linear(6, 4),
    )  # fmt: skip
    model.lucid_preprocess = Preprocess(input_size=(SIZE, SIZE))
    model.lucid_aliases = {"conv1": "1", "conv2": "3", "conv3": "5", "fc": "8"}
    return model.eval()


def activations(model, image, layers) -> dict[str, torch.Tensor]:
    batch = torch.as_tensor(image).permute(0, 3, 1, 2)  # (1, 3, H, W)
    with torch.no_grad(), capture(model, layers) as run:
        return run(model.lucid_preprocess(batch))


def render(model, objective, param_f) -> object:
    return lw.render_vis(
        model, objective, param_f=param_f, transforms=[], thresholds=(16,), seed=0,
        progress=False, redirected_relu_steps=0,
        optimizer=lambda params: torch.optim.Adam(params, lr=0.2),
    )[0]  # fmt: skip


def test_accentuation_raises_the_unit_and_stays_closer_than_deepdream():
    model = make_model()
    objective, param_f = accentuation_of(model, skimage.data.chelsea(), LAYER, UNIT)
    assert {"conv1", "conv2"} <= objective.layers  # the default regularized layers
    photo = param_f()[1]().detach().permute(0, 2, 3, 1).numpy()  # the start: the photo
    accentuated = render(model, objective, param_f)
    dream_objective, dream_param_f = deepdream_of(photo[0], LAYER)
    dreamed = render(model, dream_objective, dream_param_f)
    layers = ["conv1", "conv2", LAYER]
    before, after, dream = (activations(model, im, layers) for im in (photo, accentuated, dreamed))
    unit = lambda acts: acts[LAYER][0, UNIT].mean()  # noqa: E731
    assert unit(after) > unit(before) + 0.3 * unit(before).abs()
    for name in ("conv1", "conv2"):
        kept = (after[name] - before[name]).norm() / before[name].norm()
        moved = (dream[name] - before[name]).norm() / before[name].norm()
        assert kept < moved, name


def test_class_accentuation_and_bad_input():
    model = make_model()
    objective, _ = accentuation_of(model, skimage.data.coffee(), "logits", 2, regularize=["conv2"])
    assert objective.layers == {"conv2", "logits"}
    with pytest.raises(ValueError, match="strength"):
        accentuation_of(model, skimage.data.coffee(), LAYER, UNIT, strength=-1)
