"""The layer catalog: shapes, units, kinds, browsability and forward order from one dry forward."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from lucid_widgets.optvis.preprocess import Preprocess
from lucid_widgets.zoo.catalog import LayerInfo, layer_table, layers


def real_outputs(model: nn.Module, *args, **kwargs) -> dict[str, tuple[int, ...]]:
    """Output shapes (without batch) of every module at its first call, in completion order."""
    shapes: dict[str, tuple[int, ...]] = {}
    handles = []
    for name, module in model.named_modules():
        if not name:
            continue

        def hook(module, inputs, output, name=name):
            tensor = output[0] if isinstance(output, tuple) else output
            shapes.setdefault(name, tuple(tensor.shape[1:]))

        handles.append(module.register_forward_hook(hook))
    try:
        with torch.no_grad():
            model.eval()(*args, **kwargs)
    finally:
        for handle in handles:
            handle.remove()
    return shapes


def assert_matches_forward(infos: list[LayerInfo], model: nn.Module, *args, **kwargs) -> None:
    expected = real_outputs(model, *args, **kwargs)
    assert [info.name for info in infos] == list(expected)
    assert {info.name: info.shape for info in infos} == expected
    assert [info.order for info in infos] == list(range(len(infos)))


def assert_clean(model: nn.Module) -> None:
    for module in model.modules():
        assert not module._forward_hooks and not module._forward_pre_hooks


class Residual(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)
        self.bn = nn.BatchNorm2d(channels)
        self.act = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.bn(self.conv(x)) + x)


def tiny_cnn() -> nn.Sequential:
    return nn.Sequential(
        nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU()),  # a plain block ending in ReLU
        nn.MaxPool2d(2),
        Residual(8),
        nn.Sequential(nn.Conv2d(8, 16, 1), nn.BatchNorm2d(16)),  # wraps a norm: not browsable
        nn.ReLU(),
        nn.Dropout(0.5),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(16, 10),
    )


def test_tiny_cnn_shapes_order_kinds():
    model = tiny_cnn()
    infos = layers(model, input_size=16)
    assert_matches_forward(infos, model, torch.rand(1, 3, 16, 16))
    by_name = {info.name: info for info in infos}
    # a container's output comes after its children's
    names = [info.name for info in infos]
    assert names[:4] == ["0.0", "0.1", "0", "1"]
    assert names.index("2.conv") < names.index("2.act") < names.index("2")
    assert by_name["0.0"] == LayerInfo(
        "0.0", None, "Conv2d", (8, 16, 16), 8, "conv", True, 2, "0", 0
    )
    assert (by_name["8"].kind, by_name["8"].units, by_name["8"].shape) == ("linear", 10, (10,))
    assert (by_name["7"].kind, by_name["7"].units) == ("linear", 16)
    assert by_name["2.bn"].group == "2" and by_name["2"].depth == 1 and by_name["2.bn"].depth == 2


def test_browsable_filtering():
    infos = layers(tiny_cnn(), input_size=16)
    browsable = {info.name for info in infos if info.browsable}
    # convs and linear layers; the residual block (a new tensor); the plain block "0", which
    # repeats its ReLU; not "3", which only repeats a batch norm; no lone activation, pool,
    # norm, dropout or flatten
    assert browsable == {"0.0", "0", "2.conv", "2", "3.0", "8"}


def test_aliases_curate_the_browsable_layers():
    model = tiny_cnn()
    model.lucid_aliases = {"block": "2", "relu": "4", "also_block": "2"}
    infos = {info.name: info for info in layers(model, input_size=16)}
    assert {name for name, info in infos.items() if info.browsable} == {"2", "4"}
    assert infos["2"].alias == "block" and infos["4"].alias == "relu" and infos["0"].alias is None


def test_hooks_removed_and_training_mode_restored():
    model = tiny_cnn().train()
    model[2].eval()  # a mixed state must come back exactly
    layers(model, input_size=16)
    assert_clean(model)
    assert model.training and model[0].training and not model[2].training
    assert not model[2].bn.training  # eval() recursed into it before the catalog
    # also when the forward fails (a wrong channel count)
    with pytest.raises(RuntimeError, match="input_size=.*example_input="):
        layers(model, example_input=torch.rand(1, 4, 16, 16))
    assert_clean(model)
    assert model.training and not model[2].training


def test_one_channel_model_without_metadata():
    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 26 * 26, 10))
    infos = layers(model, input_size=(28, 28))  # channels from the first conv
    assert_matches_forward(infos, model, torch.rand(1, 1, 28, 28))
    assert infos[0].shape == (4, 26, 26)


def test_n_channel_model_uses_its_preprocess():
    model = nn.Sequential(nn.Conv2d(5, 6, 3, padding=1), nn.Conv2d(6, 7, 1))
    model.lucid_preprocess = Preprocess(
        mean=(0.5,) * 5, std=(0.25,) * 5, input_size=(12, 20), channels=5
    )
    infos = layers(model)
    assert [info.shape for info in infos] == [(6, 12, 20), (7, 12, 20)]
    assert layers(model, input_size=8)[1].shape == (7, 8, 8)


class TinyViT(nn.Module):
    """Patch embedding, two transformer blocks, a class token read-out."""

    def __init__(self, dim: int = 16) -> None:
        super().__init__()
        self.patch = nn.Conv2d(3, dim, 8, stride=8)
        self.blocks = nn.Sequential(
            *(
                nn.TransformerEncoderLayer(dim, 2, dim_feedforward=32, batch_first=True)
                for _ in range(2)
            )
        )
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, 3, H, W)
        tokens = self.patch(x).flatten(2).transpose(1, 2)  # (B, N, dim)
        return self.head(self.norm(self.blocks(tokens))[:, 0])  # (B, 10)


def test_tiny_transformer_tokens():
    model = TinyViT()
    infos = layers(model, input_size=32)
    assert_matches_forward(infos, model, torch.rand(1, 3, 32, 32))
    by_name = {info.name: info for info in infos}
    block = by_name["blocks.0"]
    assert (block.shape, block.kind, block.units, block.browsable) == ((16, 16), "tokens", 16, True)
    attention = by_name["blocks.0.self_attn"]  # returns (output, weights): the first is used
    assert (attention.shape, attention.browsable) == ((16, 16), True)
    assert by_name["blocks.1.linear1"].units == 32 and by_name["blocks.1.linear1"].browsable
    assert not by_name["norm"].browsable and not by_name["blocks.0.dropout1"].browsable
    assert by_name["blocks.0.norm1"].group == "blocks.0"
    assert by_name["head"].kind == "linear"


class NeedsArguments(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.image = nn.Conv2d(3, 4, 3, padding=1)
        self.text = nn.Embedding(10, 4)
        self.mix = nn.Linear(8, 2)

    def forward(self, image: torch.Tensor, ids: torch.Tensor, *, scale: float = 1.0):
        pooled = self.image(image).mean(dim=(2, 3))  # (B, 4)
        text = self.text(ids).mean(dim=1)  # (B, 4)
        return {"logits": self.mix(torch.cat([pooled, text], 1)) * scale, "note": "ok"}


def test_model_with_extra_forward_arguments():
    model = NeedsArguments()
    image, ids = torch.rand(2, 3, 8, 8), torch.tensor([[1, 2, 3], [4, 5, 6]])
    expected = [("image", (4, 8, 8)), ("text", (3, 4)), ("mix", (2,))]
    by_args = layers(model, example_input=(image, ids))
    assert [(info.name, info.shape) for info in by_args] == expected
    by_kwargs = layers(model, example_input={"image": image, "ids": ids, "scale": 2.0})
    assert by_kwargs == by_args
    assert by_args[1].kind == "tokens" and by_args[1].units == 4
    with pytest.raises(RuntimeError, match="dry forward pass of NeedsArguments"):
        layers(model)  # a lone image is not enough
    assert_clean(model)


class Odd(nn.Module):
    """Outputs that are not plain tensors, and a module called twice."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv1d(2, 6, 3, padding=1)
        self.act = nn.ReLU()
        self.gru = nn.GRU(6, 5, batch_first=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, 2, L)
        hidden = self.act(self.conv(x))  # (B, 6, L)
        sequence, _ = self.gru(hidden.transpose(1, 2))  # (B, L, 5): a tuple output
        return self.act(sequence)  # the second call of act is not recorded


class Silent(nn.Module):
    def forward(self, x: torch.Tensor) -> None:
        return None


def test_conv1d_tuples_repeated_calls_and_non_tensor_outputs():
    model = Odd()
    model.silent = Silent()
    original = model.forward
    model.forward = lambda x: (model.silent(x), original(x))[1]
    infos = layers(model, example_input=torch.rand(1, 2, 9))
    by_name = {info.name: info for info in infos}
    assert "silent" not in by_name
    assert (by_name["conv"].kind, by_name["conv"].units) == ("conv1d", 6)
    assert (by_name["act"].shape, by_name["act"].kind) == ((6, 9), "conv1d")  # first call
    gru = by_name["gru"]
    assert (gru.shape, gru.kind, gru.units) == ((9, 5), "tokens", 5)
    assert_clean(model)


def test_bad_arguments():
    model = tiny_cnn()
    with pytest.raises(TypeError, match="nn.Module"):
        layers("resnet")
    with pytest.raises(ValueError, match="either example_input or input_size"):
        layers(model, example_input=torch.rand(1, 3, 8, 8), input_size=8)
    with pytest.raises(ValueError, match="input_size must be"):
        layers(model, input_size=(8, 0))
    with pytest.raises(TypeError, match="example_input must be"):
        layers(model, example_input="an image")


def test_layer_table():
    infos = layers(tiny_cnn(), input_size=16)
    table = layer_table(infos)
    lines = table.splitlines()
    assert lines[0].split() == ["#", "name", "alias", "type", "shape", "units", "kind"]
    assert len(lines) == 2 + len(infos)
    assert "Conv2d" in lines[2] and "8x16x16" in lines[2] and lines[2].endswith("*")
    short = layer_table(infos, browsable_only=True)
    assert len(short.splitlines()) == 2 + sum(info.browsable for info in infos)
    assert "Dropout" in table and "Dropout" not in short
