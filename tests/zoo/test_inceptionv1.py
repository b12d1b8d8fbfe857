"""Lucid's InceptionV1: state-dict layout, layer names, shapes and Lucid's conventions."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import lucid_widgets.zoo as zoo
from lucid_widgets.zoo.inceptionv1 import SamePadMaxPool, build_inceptionv1

# (block, in, 1x1, 3x3_bottleneck, 3x3, 5x5_bottleneck, 5x5, pool_reduce, out): lucid-facts.md
TABLE = [
    ("mixed3a", 192, 64, 96, 128, 16, 32, 32, 256),
    ("mixed3b", 256, 128, 128, 192, 32, 96, 64, 480),
    ("mixed4a", 480, 192, 96, 204, 16, 48, 64, 508),
    ("mixed4b", 508, 160, 112, 224, 24, 64, 64, 512),
    ("mixed4c", 512, 128, 128, 256, 24, 64, 64, 512),
    ("mixed4d", 512, 112, 144, 288, 32, 64, 64, 528),
    ("mixed4e", 528, 256, 160, 320, 32, 128, 128, 832),
    ("mixed5a", 832, 256, 160, 320, 48, 128, 128, 832),
    ("mixed5b", 832, 384, 192, 384, 48, 128, 128, 1024),
]


def documented_shapes() -> dict[str, tuple[int, ...]]:
    """Every state-dict key of the converted inception5h.pth and its shape."""
    convs = {
        "conv2d0": (64, 3, 7, 7),
        "conv2d1": (64, 64, 1, 1),
        "conv2d2": (192, 64, 3, 3),
    }
    for block, cin, c1, b3, c3, b5, c5, pool, _ in TABLE:
        convs[f"{block}_1x1"] = (c1, cin, 1, 1)
        convs[f"{block}_3x3_bottleneck"] = (b3, cin, 1, 1)
        convs[f"{block}_5x5_bottleneck"] = (b5, cin, 1, 1)
        convs[f"{block}_pool_reduce"] = (pool, cin, 1, 1)
        convs[f"{block}_3x3"] = (c3, b3, 3, 3)
        convs[f"{block}_5x5"] = (c5, b5, 5, 5)
    shapes = {}
    for name, shape in convs.items():
        shapes[f"{name}_pre_relu_conv.weight"] = shape
        shapes[f"{name}_pre_relu_conv.bias"] = shape[:1]
    shapes["softmax2_pre_activation_matmul.weight"] = (1008, 1024)
    shapes["softmax2_pre_activation_matmul.bias"] = (1008,)
    return shapes


@pytest.fixture(scope="module")
def model() -> nn.Module:
    torch.manual_seed(0)
    return build_inceptionv1(pretrained=False)


@pytest.fixture(scope="module")
def activations(model) -> dict[str, torch.Tensor]:
    """One forward pass at 224 px, recording every module's output."""
    outputs: dict[str, torch.Tensor] = {}
    handles = [
        module.register_forward_hook(lambda _m, _i, out, name=name: outputs.setdefault(name, out))
        for name, module in model.named_modules()
        if name
    ]
    torch.manual_seed(1)
    with torch.no_grad():
        outputs["logits"] = model(torch.randn(1, 3, 224, 224) * 50)
    for handle in handles:
        handle.remove()
    return outputs


def test_state_dict_keys_and_shapes_are_the_documented_ones(model):
    state = model.state_dict()
    expected = documented_shapes()
    assert list(state) == sorted(state, key=list(state).index)  # no duplicates
    assert set(state) == set(expected) and len(state) == len(expected) == 116
    assert {key: tuple(value.shape) for key, value in state.items()} == expected


def test_loads_a_state_dict_file_strictly(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, "download_url_to_file", lambda *a, **k: pytest.fail("download"))
    generator = torch.Generator().manual_seed(3)
    state = {k: torch.randn(s, generator=generator) for k, s in documented_shapes().items()}
    path = tmp_path / "inception5h.pth"
    torch.save(state, path)
    loaded = zoo.load("inceptionv1", weights=path)
    for key, value in loaded.state_dict().items():
        assert torch.equal(value, state[key]), key
    assert not loaded.training


def test_wrong_keys_are_rejected_with_a_clear_message(tmp_path):
    state = {k: torch.zeros(s) for k, s in documented_shapes().items()}
    state["mixed4a_3x3_conv.weight"] = state.pop("mixed4a_3x3_pre_relu_conv.weight")
    path = tmp_path / "renamed.pth"
    torch.save(state, path)
    with pytest.raises(zoo.WeightsMismatchError) as info:
        build_inceptionv1(weights=path)
    assert "mixed4a_3x3_pre_relu_conv.weight" in str(info.value)
    assert "mixed4a_3x3_conv.weight" in str(info.value)


def test_offline_pretrained_raises_without_downloading(monkeypatch, tmp_path):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    monkeypatch.setenv(zoo.OFFLINE_ENV, "1")
    monkeypatch.setattr(torch.hub, "download_url_to_file", lambda *a, **k: pytest.fail("download"))
    with pytest.raises(zoo.WeightsUnavailableError) as info:
        build_inceptionv1()
    message = str(info.value)
    assert "pytorch-old-tensorflow-models/raw/master/inception5h.pth" in message
    assert str(tmp_path / "checkpoints" / "inception5h.pth") in message


def test_output_is_1008_logits_and_softmax2_their_probabilities(activations):
    logits = activations["logits"]
    assert logits.shape == (1, 1008)
    assert torch.equal(activations["softmax2_pre_activation_matmul"], logits)
    assert torch.allclose(activations["softmax2"], logits.softmax(dim=1))


def test_block_outputs_have_the_documented_channels(activations):
    sizes = {"3": 28, "4": 14, "5": 7}
    for block, *_, out in TABLE:
        assert activations[block].shape == (1, out, sizes[block[5]], sizes[block[5]]), block
        assert activations[f"{block}_pre_relu"].shape == activations[block].shape
    assert activations["conv2d0"].shape == (1, 64, 112, 112)
    assert activations["conv2d2"].shape == (1, 192, 56, 56)
    assert activations["mixed4a"].shape[1] == 508


def test_block_output_is_relu_concat_in_lucid_order(activations):
    block = activations["mixed4a"]
    parts = ["mixed4a_1x1", "mixed4a_3x3", "mixed4a_5x5", "mixed4a_pool_reduce"]
    expected = torch.cat([activations[name] for name in parts], dim=1)
    assert torch.equal(block, expected)
    assert block[:, 192:396].shape[1] == 204  # the 3x3 branch sits second
    pre_relu = activations["mixed4a_pre_relu"]
    assert (pre_relu < 0).any() and torch.equal(block, pre_relu.clamp(min=0))


def test_post_relu_layers_are_hookable_relu_modules(model, activations):
    modules = dict(model.named_modules())
    for name in ["conv2d0", "conv2d1", "conv2d2", "mixed4a_3x3", "mixed4d_3x3_bottleneck"]:
        assert isinstance(modules[name], nn.ReLU) and not modules[name].inplace
    pre = activations["mixed4d_3x3_bottleneck_pre_relu_conv"]
    assert torch.equal(activations["mixed4d_3x3_bottleneck"], pre.clamp(min=0))
    assert (pre < 0).any()  # the pre-ReLU capture was not overwritten in place


@pytest.mark.parametrize(
    "alias",
    [
        "conv2d0_pre_relu",
        "mixed4a_3x3_pre_relu",
        "mixed4d_3x3_bottleneck_pre_relu",
        "mixed4a_pool_reduce_pre_relu",
        "softmax2_pre_activation",
    ],
)
def test_lucid_pre_relu_names_resolve_to_modules(model, alias):
    target = model.lucid_aliases[alias]
    assert target in dict(model.named_modules())
    assert alias in target


def test_lucid_browse_layers_are_aliased_to_themselves(model):
    browse = ["conv2d0", "conv2d1", "conv2d2"] + [row[0] for row in TABLE] + ["softmax2"]
    assert all(model.lucid_aliases[name] == name for name in browse)
    assert list(model.lucid_aliases)[: len(browse)] == browse


def test_every_alias_and_lucid_layer_name_exists(model):
    modules = dict(model.named_modules())
    assert all(path in modules for path in model.lucid_aliases.values())
    lucid_names = ["conv2d0", "conv2d1", "conv2d2", "softmax2"] + [row[0] for row in TABLE]
    lucid_names += ["maxpool0", "maxpool1", "maxpool4", "maxpool10", "localresponsenorm1"]
    assert all(name in modules for name in lucid_names)


def test_lrn_matches_lucid(model):
    for name in ("localresponsenorm0", "localresponsenorm1"):
        lrn = getattr(model, name)
        assert (lrn.size, lrn.alpha, lrn.beta, lrn.k) == (9, 9.99999974738e-05, 0.5, 1.0)


def test_same_pad_max_pool_pads_with_minus_infinity():
    x = -1.0 - torch.arange(16.0).view(1, 1, 4, 4)  # all negative: zero padding would show
    pooled = SamePadMaxPool()(x)  # (1, 1, 2, 2)
    reference = F.max_pool2d(F.pad(x, (0, 1, 0, 1), value=float("-inf")), 3, 2)
    assert torch.equal(pooled, reference)
    assert pooled.max() < 0
    assert pooled[0, 0, 1, 1] == x[0, 0, 2:, 2:].max()


def test_preprocess_is_x_times_255_minus_117(model):
    pre = model.lucid_preprocess
    assert pre.input_size == (224, 224) and pre.channels == 3
    image = torch.tensor([0.0, 0.5, 1.0]).view(1, 3, 1, 1).expand(1, 3, 2, 2)
    assert torch.allclose(pre(image)[0, :, 0, 0], torch.tensor([-117.0, 10.5, 138.0]))


def test_metadata(model):
    assert model.lucid_name == "inceptionv1"
    assert model.lucid_labels is None  # the 1008-label order is not available offline
    assert not model.training


def test_other_input_sizes_still_give_1008_logits(model):
    with torch.no_grad():
        assert model(torch.zeros(2, 3, 96, 128)).shape == (2, 1008)


def plain_inceptionv1(state: dict, x: torch.Tensor) -> dict[str, torch.Tensor]:
    """InceptionV1 written from lucid-facts.md with plain functions on the state dict alone.

    ``x`` is the network input (already ``255 * image - 117``); returns a few layers' outputs.
    """
    minus_inf = float("-inf")

    def conv(name, tensor, padding=0, stride=1):
        weight, bias = state[f"{name}_pre_relu_conv.weight"], state[f"{name}_pre_relu_conv.bias"]
        return F.conv2d(tensor, weight, bias, stride=stride, padding=padding).clamp(min=0)

    def pool(tensor):  # TensorFlow SAME 3x3 stride 2: pad right / bottom with -inf
        return F.max_pool2d(F.pad(tensor, (0, 1, 0, 1), value=minus_inf), 3, 2)

    def lrn(tensor, size=9, alpha=9.99999974738e-05, beta=0.5, k=1.0):
        squares = F.pad(tensor.pow(2), (0, 0, 0, 0, size // 2, (size - 1) // 2))  # channels
        window = squares.unfold(1, size, 1).sum(-1)  # (B, C, H, W): sum over the channel window
        return tensor / (k + alpha / size * window).pow(beta)

    def mixed(block, tensor):
        pooled = F.max_pool2d(F.pad(tensor, (1, 1, 1, 1), value=minus_inf), 3, 1)
        branches = [
            conv(f"{block}_1x1", tensor),
            conv(f"{block}_3x3", conv(f"{block}_3x3_bottleneck", tensor), padding=1),
            conv(f"{block}_5x5", conv(f"{block}_5x5_bottleneck", tensor), padding=2),
            conv(f"{block}_pool_reduce", pooled),
        ]
        return torch.cat(branches, 1)

    out = {"conv2d0": conv("conv2d0", F.pad(x, (2, 3, 2, 3)), stride=2)}
    y = conv("conv2d2", conv("conv2d1", lrn(pool(out["conv2d0"]))), padding=1)
    out["conv2d2"] = y
    y = pool(lrn(y))
    for block, *_ in TABLE:
        if block in ("mixed4a", "mixed5a"):
            y = pool(y)
        y = out[block] = mixed(block, y)
    features = F.avg_pool2d(y, 7).flatten(1)  # (B, 1024)
    linear = "softmax2_pre_activation_matmul"
    out["logits"] = F.linear(features, state[f"{linear}.weight"], state[f"{linear}.bias"])
    return out


def test_the_port_computes_what_the_documented_architecture_computes(tmp_path):
    """A weights file of seeded values through the port and through ``plain_inceptionv1``."""
    generator = torch.Generator().manual_seed(7)
    state = {}
    for key, shape in documented_shapes().items():
        fan_in = max(1, int(torch.tensor(shape[1:]).prod())) if len(shape) > 1 else 1
        scale = (2.0 / fan_in) ** 0.5 if key.endswith("weight") else 0.1
        state[key] = torch.randn(shape, generator=generator) * scale
    path = tmp_path / "seeded.pth"
    torch.save(state, path)
    model = build_inceptionv1(weights=path)
    image = torch.rand(2, 3, 224, 224, generator=generator)  # (B, 3, H, W) in [0, 1]
    names = ["conv2d0", "conv2d2", "mixed3a", "mixed4a", "mixed5b"]
    outputs: dict[str, torch.Tensor] = {}
    modules = dict(model.named_modules())
    handles = [
        modules[name].register_forward_hook(lambda _m, _i, o, name=name: outputs.update({name: o}))
        for name in names
    ]
    with torch.no_grad():
        outputs["logits"] = model(model.lucid_preprocess(image))
        expected = plain_inceptionv1(state, image * 255 - 117)
    for handle in handles:
        handle.remove()
    for name in [*names, "logits"]:
        scale = expected[name].abs().max()
        assert scale > 0, name  # a dead layer would compare nothing
        torch.testing.assert_close(outputs[name], expected[name], rtol=1e-4, atol=1e-4 * scale)
