"""attribution: completeness on a linear net, integrated gradients, targets, errors, chelsea."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from block_nets import LinearNet, NonlinearNet

from lucid_widgets.blocks import attribution
from lucid_widgets.optvis import objectives

IMAGE = torch.rand(3, 16, 16, generator=torch.Generator().manual_seed(3))


def _logit_at(model: LinearNet, first: torch.Tensor, index: int) -> float:
    with torch.no_grad():
        return float(model.head(first)[0, index])


def test_activation_times_gradient_is_complete_on_a_linear_net():
    model = LinearNet()
    attr = attribution(model, IMAGE, "conv1", target="dog")
    with torch.no_grad():
        first = model.conv1(IMAGE[None])
    score, base = _logit_at(model, first, 1), _logit_at(model, torch.zeros_like(first), 1)
    assert attr.score == pytest.approx(score, rel=1e-5)
    assert attr.total == pytest.approx(score - base, rel=1e-4, abs=1e-5)
    assert attr.spatial.shape == (16, 16) and attr.channels.shape == (6,)
    assert attr.spatial.sum() == pytest.approx(attr.channels.sum(), rel=1e-4, abs=1e-6)


def test_integrated_gradients_converge_to_the_difference():
    model = NonlinearNet(seed=2)
    errors = []
    for steps in (1, 4, 32):
        attr = attribution(model, IMAGE, "conv1", target=0, steps=steps)
        errors.append(abs(attr.total - (attr.score - attr.baseline_score)))
    assert errors[-1] < 0.02 * abs(attr.score - attr.baseline_score) + 1e-6
    assert errors[-1] < errors[0]


def test_a_baseline_image_is_the_start_of_the_path():
    model = NonlinearNet(seed=2)
    dark = torch.zeros(3, 16, 16)
    attr = attribution(model, IMAGE, "conv1", target=0, steps=32, baseline=dark)
    with torch.no_grad():
        expected = float(model(dark[None])[0, 0])
    assert attr.baseline_score == pytest.approx(expected, rel=1e-5)
    assert attr.total == pytest.approx(attr.score - expected, rel=0.05)


def test_targets_pair_unit_and_objective():
    model = NonlinearNet()
    cat, dog = (attribution(model, IMAGE, "conv1", target=name) for name in ("cat", "dog"))
    pair = attribution(model, IMAGE, "conv1", target=("cat", "dog"))
    np.testing.assert_allclose(pair.values, cat.values - dog.values, rtol=1e-4, atol=1e-7)
    unit = attribution(model, IMAGE, "conv1", target="conv2:5")
    objective = attribution(model, IMAGE, "conv1", target=objectives.channel("conv2", 5))
    np.testing.assert_allclose(unit.values, objective.values)
    assert np.abs(unit.values).sum() > 0


def test_spatial_attribution_between_two_layers_stays_in_the_receptive_field():
    model = NonlinearNet()
    attr = attribution(model, IMAGE, "conv1", target=("conv2", 2, 5))  # x=2, y=5 of 8x8
    rows, cols = np.nonzero(np.abs(attr.values).sum(0))
    # conv2 (3x3, stride 2, padding 1) at (y=5, x=2) reads conv1 rows 9..11, columns 3..5
    assert rows.min() >= 9 and rows.max() <= 11 and cols.min() >= 3 and cols.max() <= 5
    assert attr.score > 0


def test_token_layers(tiny_tokens):
    attr = attribution(tiny_tokens, torch.rand(3, 32, 32), "block", target=1, size=32)
    assert attr.spatial.shape == (8, 8) and attr.channels.shape == (16,)
    assert attr.cls is None and np.isfinite(attr.values).all()


def test_the_model_is_left_as_found():
    model = NonlinearNet().train()
    attribution(model, IMAGE, "conv1", target=0, steps=4)
    assert model.training and all(p.requires_grad for p in model.parameters())
    assert all(not m._forward_hooks for m in model.modules())


def test_bad_input_gets_clear_errors():
    model = NonlinearNet()
    with pytest.raises(ValueError, match=r"\(B, N, C\) token"):
        attribution(model, IMAGE, "fc", target=0)
    with pytest.raises(KeyError, match="closest: 'dog'"):
        attribution(model, IMAGE, "conv1", target="dgo")
    with pytest.raises(ValueError, match="does not depend"):
        attribution(model, IMAGE, "conv2", target="conv1:0")
    with pytest.raises(ValueError, match="3-channel"):
        attribution(model, torch.rand(5, 16, 16), "conv1", target=0)
    with pytest.raises(ValueError, match="steps"):
        attribution(model, IMAGE, "conv1", target=0, steps=0)
    del model.lucid_labels
    with pytest.raises(ValueError, match="lucid_labels"):
        attribution(model, IMAGE, "conv1", target="cat")


# The cat fills chelsea's centre crop; squashed to 224 x 224 uncropped, the blurred room is the
# right strip (x >= 192 px, measured by eye on the rendered photo) and the cat's face the box
# x 32..192, y 32..192: on the 7 x 7 head map, columns 1..5 / rows 1..5 and column 6.
CAT_ROWS, CAT_COLS, BACKGROUND_COLS = slice(1, 6), slice(1, 6), slice(6, 7)


@pytest.mark.slow
def test_egyptian_cat_on_chelsea_is_attributed_to_the_cat():
    skimage_data = pytest.importorskip("skimage.data")
    from PIL import Image

    import lucid_widgets as lw

    model = lw.zoo.load("efficientnet_lite0")
    photo = np.asarray(Image.fromarray(skimage_data.chelsea()).resize((224, 224)))
    attr = attribution(model, photo, "head", target="Egyptian cat")
    assert attr.spatial.shape == (7, 7)
    cat = attr.spatial[CAT_ROWS, CAT_COLS].mean()
    background = attr.spatial[:, BACKGROUND_COLS].mean()
    assert cat > 3 * background > 0
