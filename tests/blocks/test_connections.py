"""connections: expanded weights on hand-set linear paths, attribution elsewhere, clear errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from block_nets import NEGATIVE, POSITIVE, SmallNonlinear, TwoConv

from lucid_widgets.blocks import connections, layer_connections


def _assert_hand_set(conn, scale_positive: float = 1.0, scale_negative: float = 1.0) -> None:
    assert conn.method == "expanded_weights"
    assert list(conn.units[:2]) == [1, 0]
    assert conn.strength[0] > 0 > conn.strength[1]
    np.testing.assert_allclose(conn.kernels[0], POSITIVE * scale_positive, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(conn.kernels[1], NEGATIVE * scale_negative, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(conn.strength[2:], 0, atol=1e-6)
    assert conn.kernels.shape == (4, 3, 3)


def test_hand_set_two_conv_network():
    conn = connections(TwoConv(), "conv2", unit=3, source="conv1", k=4)
    _assert_hand_set(conn)
    np.testing.assert_allclose(conn.strength[:2], [POSITIVE.sum(), NEGATIVE.sum()], rtol=1e-5)


def test_through_eval_batch_norm_the_kernels_are_scaled():
    model = TwoConv(batch_norm=True)
    bn = model.bn
    scale = (bn.weight / torch.sqrt(bn.running_var + bn.eps)).detach()
    conn = connections(model, "conv2", unit=3, source="conv1", k=4)
    _assert_hand_set(conn, float(scale[1]), float(scale[0]))
    _assert_hand_set(connections(model, "conv2", unit=3, source="bn", k=4))


def test_through_a_concatenation():
    _assert_hand_set(connections(TwoConv(concat=True), "conv2", unit=3, source="conv1", k=4))


def test_direction_out_finds_the_unit_fed():
    conn = connections(TwoConv(), "conv1", unit=1, source="conv2", k=5, direction="out")
    assert conn.method == "expanded_weights" and conn.direction == "out"
    assert conn.units[0] == 3 and conn.strength[0] == pytest.approx(float(POSITIVE.sum()))
    np.testing.assert_allclose(conn.kernels[0], POSITIVE, atol=1e-6)
    np.testing.assert_allclose(conn.strength[1:], 0, atol=1e-6)
    negative = connections(TwoConv(), "conv1", unit=0, source="conv2", k=1, direction="out")
    assert negative.units[0] == 3 and negative.strength[0] < 0


def _ablation(model: SmallNonlinear, images: torch.Tensor, unit: int) -> np.ndarray:
    """Drop of conv3's unit (spatial and batch mean) when each conv1 unit is zeroed."""
    with torch.no_grad():
        early = model.conv1(images)

        def late(acts: torch.Tensor) -> float:
            return float(model.conv3(model.relu2(model.conv2(model.relu1(acts))))[:, unit].mean())

        base = late(early)
        effects = []
        for channel in range(early.shape[1]):
            ablated = early.clone()
            ablated[:, channel] = 0
            effects.append(base - late(ablated))
    return np.array(effects)


def test_attribution_fallback_agrees_with_brute_force_ablation():
    model = SmallNonlinear(seed=1)
    images = torch.rand(4, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    conn = connections(model, "conv3", unit=1, source="conv1", k=6, images=images)
    assert conn.method == "attribution" and conn.kernels is None and conn.images == 4
    effects = _ablation(model, images, unit=1)
    strength = np.zeros(6)
    strength[conn.units] = conn.strength
    strong = np.abs(effects) > 0.1 * np.abs(effects).max()
    assert (np.sign(strength[strong]) == np.sign(effects[strong])).all()
    assert list(conn.units[:3]) == list(np.argsort(-np.abs(effects))[:3])


def test_relu_identity_gives_expanded_weights_of_the_linear_network():
    model = SmallNonlinear(seed=1)
    conn = connections(model, "conv3", unit=1, source="conv1", k=6, relu_identity=True)
    assert conn.method == "expanded_weights"
    # the linear network conv3(conv2(.)) composes to a 5x5 kernel per source unit
    w2, w3 = model.conv2.weight.detach(), model.conv3.weight.detach()
    composed = torch.zeros(6, 5, 5)
    for dy in range(3):
        for dx in range(3):  # conv3 tap (dy, dx) reads conv2's kernel shifted by it
            composed[:, dy : dy + 3, dx : dx + 3] += torch.einsum(
                "m,mcij->cij", w3[1, :, dy, dx], w2
            )
    np.testing.assert_allclose(conn.kernels, composed[conn.units].numpy(), rtol=1e-4, atol=1e-6)
    assert conn.kernels.shape == (6, 5, 5)


def test_out_and_in_attribution_agree():
    model = SmallNonlinear(seed=1)
    images = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(2))
    into = connections(model, "conv3", unit=2, source="conv1", k=6, images=images)
    out = connections(
        model, "conv1", unit=int(into.units[0]), source="conv3", k=4, direction="out", images=images
    )
    index = list(out.units).index(2) if 2 in out.units else None
    assert index is not None
    assert out.strength[index] == pytest.approx(float(into.strength[0]), rel=1e-4)


def test_layer_connections_matches_single_units():
    model = TwoConv(batch_norm=True)
    every = layer_connections(model, "conv2", source="conv1", k=2)
    assert [conn.unit for conn in every] == list(range(5))
    single = connections(model, "conv2", unit=3, source="conv1", k=2)
    np.testing.assert_allclose(every[3].strength, single.strength)
    np.testing.assert_array_equal(every[3].units, single.units)


def test_default_source_is_the_previous_browsable_layer(tiny_net):
    conn = connections(tiny_net, "late", unit=0, k=3)
    assert conn.source == "early"
    out = connections(tiny_net, "early", unit=0, k=3, direction="out")
    assert out.source != "early" and out.direction == "out"


def test_token_layers_work(tiny_tokens):
    conn = connections(tiny_tokens, "block", unit=0, source="patch", k=4, size=32)
    assert conn.method == "attribution" and conn.units.shape == (4,)
    assert np.isfinite(conn.strength).all()


def test_the_model_is_left_exactly_as_found():
    model = TwoConv(batch_norm=True).train()
    model.conv1.weight.requires_grad_(False)
    flags = [p.requires_grad for p in model.parameters()]
    hooks = [len(m._forward_hooks) + len(m._forward_pre_hooks) for m in model.modules()]
    connections(model, "conv2", unit=3, source="conv1")
    connections(SmallNonlinear(), "conv3", unit=0, source="conv1", relu_identity=True)
    assert all(m.training for m in model.modules())
    assert [p.requires_grad for p in model.parameters()] == flags
    assert [len(m._forward_hooks) + len(m._forward_pre_hooks) for m in model.modules()] == hooks


def test_bad_input_gets_clear_errors(tiny_net):
    model = TwoConv()
    with pytest.raises(ValueError, match="comes after"):
        connections(model, "conv1", unit=0, source="conv2")
    with pytest.raises(ValueError, match="comes before"):
        connections(model, "conv2", unit=0, source="conv1", direction="out")
    with pytest.raises(ValueError, match=r"\(B, C, H, W\)"):
        connections(model, "fc", unit=0, source="conv2")
    with pytest.raises(ValueError, match="k must be"):
        connections(model, "conv2", unit=0, source="conv1", k=0)
    with pytest.raises(ValueError, match="direction"):
        connections(model, "conv2", unit=0, source="conv1", direction="up")
    with pytest.raises(IndexError, match="valid: 0..4"):
        connections(model, "conv2", unit=9, source="conv1")
    with pytest.raises(KeyError, match="conv2"):
        connections(model, "conv22", unit=0, source="conv1")
