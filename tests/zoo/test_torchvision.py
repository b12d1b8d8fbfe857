"""torchvision models through the zoo: weights from a file, metadata, aliases. Offline only."""

from __future__ import annotations

import pytest
import torch
import torchvision
from torch import nn

import lucid_widgets.zoo as zoo
from lucid_widgets.zoo.torchvision_models import _remap_densenet, default_aliases


@pytest.fixture
def offline(monkeypatch, tmp_path):
    hub = tmp_path / "hub"
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(hub))
    monkeypatch.setenv(zoo.OFFLINE_ENV, "1")
    monkeypatch.setattr(torch.hub, "download_url_to_file", lambda *a, **k: pytest.fail("download"))
    return hub


def pretrained_layout(name: str) -> nn.Module:
    """The architecture as torchvision's pretrained files store it (aux heads included)."""
    extra = {"aux_logits": True, "init_weights": False} if name == "googlenet" else {}
    torch.manual_seed(0)
    return torchvision.models.get_model(name, weights=None, **extra)


@pytest.mark.parametrize("name", ["resnet18", "googlenet", "mobilenet_v3_large", "alexnet"])
def test_loads_a_state_dict_file(offline, tmp_path, name):
    reference = pretrained_layout(name)
    path = tmp_path / f"{name}-mine.pth"
    torch.save(reference.state_dict(), path)
    model = zoo.load(name, weights=path)
    expected = reference.state_dict()
    for key, value in model.state_dict().items():
        assert torch.equal(value, expected[key]), key
    assert not model.training and model.lucid_name == name
    assert len(model.lucid_labels) == 1000 and model.lucid_labels[0] == "tench"
    pre = model.lucid_preprocess
    assert pre.mean == (0.485, 0.456, 0.406) and pre.std == (0.229, 0.224, 0.225)
    assert pre.value_range == (0.0, 1.0) and pre.input_size == (224, 224)
    modules = dict(model.named_modules())
    assert model.lucid_aliases and all(p in modules for p in model.lucid_aliases.values())
    assert not any(getattr(m, "inplace", False) for m in model.modules())
    if name == "googlenet":  # the file's aux heads are loaded, then dropped, as torchvision does
        assert model.aux1 is None and model.aux2 is None and model.transform_input
        assert model.lucid_aliases["mixed4a"] == "inception4a"
    with torch.no_grad():
        assert model(torch.zeros(1, 3, 64, 64)).shape == (1, 1000)


def test_wrong_keys_and_shapes_are_rejected(offline, tmp_path):
    state = pretrained_layout("resnet18").state_dict()
    state["head.weight"] = state.pop("fc.weight")
    state["conv1.weight"] = torch.zeros(64, 1, 7, 7)
    path = tmp_path / "broken.pth"
    torch.save(state, path)
    with pytest.raises(zoo.WeightsMismatchError) as info:
        zoo.load("resnet18", weights=path)
    message = str(info.value)
    assert "fc.weight" in message and "head.weight" in message
    assert "conv1.weight (file (64, 1, 7, 7), model (64, 3, 7, 7))" in message


def test_canonical_file_name_is_hash_checked(offline, tmp_path):
    path = tmp_path / "resnet18-f37072fd.pth"  # torchvision's file name, other content
    torch.save(pretrained_layout("resnet18").state_dict(), path)
    with pytest.raises(zoo.WeightsMismatchError, match="sha256"):
        zoo.load("resnet18", weights=path)


def test_offline_without_weights_explains_and_does_not_download(offline):
    with pytest.raises(zoo.WeightsUnavailableError) as info:
        zoo.load("resnet18")
    message = str(info.value)
    assert "https://download.pytorch.org/models/resnet18-f37072fd.pth" in message
    assert str(offline / "checkpoints" / "resnet18-f37072fd.pth") in message
    assert 'weights="path/to/' in message and "pretrained=False" in message
    assert "efficientnet_lite0" in message


def test_hub_cache_is_used_offline(offline):
    reference = pretrained_layout("resnet18")
    path = offline / "checkpoints" / "resnet18-f37072fd.pth"
    path.parent.mkdir(parents=True)
    torch.save(reference.state_dict(), path)
    model = zoo.load("resnet18")
    assert torch.equal(model.fc.weight, reference.fc.weight)


def test_weights_enum_member_by_name(offline):
    with pytest.raises(zoo.WeightsUnavailableError, match="resnet50-11ad3fa6.pth"):
        zoo.load("resnet50", weights="IMAGENET1K_V2")
    with pytest.raises(ValueError, match="IMAGENET1K_V1"):
        zoo.load("resnet50", weights="IMAGENET9K_V9")


def test_random_weights_need_no_file(offline):
    model = zoo.load("resnet18", pretrained=False)
    assert model.lucid_aliases["layer3"] == "layer3"
    with torch.no_grad():
        assert model(torch.zeros(1, 3, 32, 32)).shape == (1, 1000)


def test_vgg_and_alexnet_aliases_follow_caffe_names():
    with torch.device("meta"):  # no memory, no init time
        vgg = torchvision.models.vgg16()
        alexnet = torchvision.models.alexnet()
    aliases = default_aliases("vgg16", vgg)
    assert aliases["conv1_1"] == "features.1" and aliases["conv1_1_pre_relu"] == "features.0"
    assert aliases["conv5_3"] == "features.29" and aliases["pool5"] == "features.30"
    assert [aliases[f"fc{i}"] for i in (6, 7, 8)] == [
        "classifier.1",
        "classifier.4",
        "classifier.6",
    ]
    assert isinstance(vgg.features[29], nn.ReLU) and isinstance(vgg.features[28], nn.Conv2d)
    aliases = default_aliases("alexnet", alexnet)
    assert [aliases[f"conv{i}"] for i in range(1, 6)] == [f"features.{i}" for i in (1, 4, 7, 9, 11)]
    assert aliases["pool5"] == "features.12" and aliases["fc8"] == "classifier.6"


def test_vit_and_convnext_aliases():
    with torch.device("meta"):
        vit = torchvision.models.vit_b_16()
        convnext = torchvision.models.convnext_tiny()
    vit_aliases = default_aliases("vit_b_16", vit)
    assert vit_aliases["block11"] == "encoder.layers.encoder_layer_11"
    assert default_aliases("convnext_tiny", convnext)["stage4"] == "features.7"


def test_densenet_legacy_keys_are_remapped():
    value = torch.zeros(1)
    state = {"features.denseblock1.denselayer1.norm.1.weight": value, "classifier.bias": value}
    assert sorted(_remap_densenet(state)) == [
        "classifier.bias",
        "features.denseblock1.denselayer1.norm1.weight",
    ]
