"""EfficientNet-Lite0 (the embedded model), ImageNet labels and real-image loading."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from skimage import data as skimage_data  # scikit-image: a test dependency
from torch import nn

from lucid_widgets.dataset.prepare import prepare_image, to_tensor
from lucid_widgets.optvis.preprocess import Preprocess
from lucid_widgets.zoo.catalog import layers
from lucid_widgets.zoo.efficientnet_lite0 import (
    SameConv2d,
    build_efficientnet_lite0,
    default_weights_path,
)
from lucid_widgets.zoo.labels import LabelNotFoundError, find_label, imagenet_labels
from lucid_widgets.zoo.weights import WeightsMismatchError, verify_state_dict

LITE0_PARAMETERS = 4_652_008  # EfficientNet-Lite0: 4.65 M parameters


@pytest.fixture(scope="module")
def model() -> nn.Module:
    return build_efficientnet_lite0()


@pytest.fixture(scope="module")
def weights_file() -> dict[str, torch.Tensor]:
    return torch.load(default_weights_path(), map_location="cpu", weights_only=True)


# --- architecture and weights -------------------------------------------------------------


@pytest.mark.slow  # the real embedded model (its pretrained weights)
def test_every_key_of_the_weights_file_is_matched(model, weights_file):
    state = model.state_dict()
    assert list(weights_file) == list(state)  # same keys, same order
    assert len(state) == 296
    for key, tensor in weights_file.items():
        assert state[key].shape == tensor.shape, key
        assert torch.equal(state[key], tensor), key


@pytest.mark.slow  # the real embedded model (its pretrained weights)
def test_parameter_count(model):
    assert sum(p.numel() for p in model.parameters()) == LITE0_PARAMETERS


@pytest.mark.slow  # the real embedded model (its pretrained weights)
def test_metadata_and_eval_mode(model):
    assert model.lucid_name == "efficientnet_lite0"
    assert not any(module.training for module in model.modules())
    pre = model.lucid_preprocess
    assert isinstance(pre, Preprocess)
    assert pre.mean == (0.485, 0.456, 0.406) and pre.std == (0.229, 0.224, 0.225)
    assert (pre.value_range, pre.input_size, pre.channels) == ((0.0, 1.0), (224, 224), 3)
    assert model.lucid_labels == imagenet_labels()
    modules = dict(model.named_modules())
    aliases = model.lucid_aliases
    assert all(path in modules for path in aliases.values())
    assert not {"input", "logits"} & set(aliases)
    assert [f"block{i}" for i in range(16)] == [a for a in aliases if a[5:].isdigit()]
    assert {"stem", "head", "pool", "fc"} <= set(aliases)


@pytest.mark.slow  # the real embedded model (its pretrained weights)
def test_random_weights_when_not_pretrained(weights_file):
    fresh = build_efficientnet_lite0(pretrained=False)
    assert not torch.equal(fresh._conv_stem.weight, weights_file["_conv_stem.weight"])
    assert fresh.lucid_name == "efficientnet_lite0" and not fresh.training


@pytest.mark.slow  # the real embedded model (its pretrained weights)
def test_mismatched_state_dict_names_the_bad_keys(model, weights_file):
    bad = dict(weights_file)
    bad["_blocks.3._expand_konv.weight"] = bad.pop("_blocks.3._expand_conv.weight")
    bad["_fc.weight"] = torch.zeros(10, 1280)
    with pytest.raises(WeightsMismatchError) as error:
        verify_state_dict(model, bad)
    message = str(error.value)
    assert "1 missing keys: _blocks.3._expand_conv.weight" in message
    assert "1 unexpected keys: _blocks.3._expand_konv.weight" in message
    assert "_fc.weight (file (10, 1280), model (1000, 1280))" in message


def test_weights_argument_loads_and_verifies_a_file(tmp_path):
    path = tmp_path / "tiny.pth"
    torch.save({"conv.weight": torch.zeros(1)}, path)
    with pytest.raises(WeightsMismatchError, match="missing keys: _conv_stem.weight"):
        build_efficientnet_lite0(weights=path)
    with pytest.raises(FileNotFoundError, match="nope.pth"):
        build_efficientnet_lite0(weights=tmp_path / "nope.pth")


@pytest.mark.parametrize("size", [7, 8, 9, 224])
@pytest.mark.parametrize(("kernel", "stride"), [(3, 2), (5, 2), (3, 1), (5, 1), (1, 1)])
def test_same_conv_matches_tensorflow_padding(size, kernel, stride):
    conv = SameConv2d(2, 3, kernel, stride=stride, bias=False)
    image = torch.randn(1, 2, size, size + 1)
    out = conv(image)
    assert out.shape[-2:] == (-(-size // stride), -(-(size + 1) // stride))  # ceil
    # TensorFlow puts the odd padding row / column at the bottom / right.
    pads = []
    for length in (size + 1, size):  # F.pad order: width first
        total = max((-(-length // stride) - 1) * stride + kernel - length, 0)
        pads += [total // 2, total - total // 2]
    expected = F.conv2d(F.pad(image, pads), conv.weight, stride=stride)
    torch.testing.assert_close(out, expected)


@pytest.mark.slow  # the real embedded model (its pretrained weights)
def test_runs_at_other_input_sizes(model):
    with torch.no_grad():
        assert model(torch.zeros(1, 3, 97, 64)).shape == (1, 1000)


# --- real photos --------------------------------------------------------------------------


@pytest.mark.slow  # the real embedded model (its pretrained weights)
def test_classifies_real_photos(model):
    labels = model.lucid_labels
    photos = {
        "chelsea": skimage_data.chelsea(),  # a cat, RGB
        "coffee": skimage_data.coffee(),  # a cup of espresso, RGB
        "camera": skimage_data.camera(),  # the cameraman: grayscale, a camera on a tripod
        "rocket": skimage_data.rocket(),  # a rocket on its launch pad
    }
    batch = torch.cat([prepare_image(p, model.lucid_preprocess) for p in photos.values()])
    assert batch.shape == (4, 3, 224, 224)
    with torch.no_grad():
        top5 = model(model.lucid_preprocess(batch)).topk(5, dim=1).indices  # (4, 5)
    top = {name: [labels[i] for i in row] for name, row in zip(photos, top5.tolist(), strict=True)}
    assert top["chelsea"][0] == "Egyptian cat", top["chelsea"]
    assert top["coffee"][0] == "espresso", top["coffee"]
    assert "tripod" in top["camera"], top["camera"]
    assert {"missile", "projectile", "space shuttle"} & set(top["rocket"]), top["rocket"]


@pytest.mark.slow  # the real embedded model (its pretrained weights)
def test_catalog_of_the_model(model):
    infos = {info.name: info for info in layers(model)}
    assert len(infos) == len(list(model.named_modules())) - 2  # all but the root, _blocks
    by_alias = {info.alias: info for info in infos.values() if info.alias}
    assert by_alias["stem"].shape == (32, 112, 112)
    assert by_alias["block0"].shape == (16, 112, 112)
    assert by_alias["block15_expand"].shape == (1152, 7, 7)
    assert by_alias["block15"].shape == (320, 7, 7) and by_alias["block15"].units == 320
    assert by_alias["head"].shape == (1280, 7, 7)
    assert by_alias["fc"].shape == (1000,) and by_alias["fc"].kind == "linear"
    browsable = {info.name for info in infos.values() if info.browsable}
    assert browsable == set(model.lucid_aliases.values())
    assert infos["_blocks.3._bn0"].group == "_blocks.3"
    assert not model.training and not model._forward_hooks


# --- labels -------------------------------------------------------------------------------


def test_imagenet_labels():
    labels = imagenet_labels()
    assert len(labels) == 1000 == len(set(labels))
    assert (labels[0], labels[285], labels[967]) == ("tench", "Egyptian cat", "espresso")
    labels.append("mine")
    assert len(imagenet_labels()) == 1000  # callers get a copy


def test_find_label():
    labels = imagenet_labels()
    assert find_label(labels, "Egyptian cat") == 285
    assert find_label(labels, "  EGYPTIAN CAT ") == 285
    with pytest.raises(LabelNotFoundError, match="closest: 'Egyptian cat'") as error:
        find_label(labels, "egyptian kat")
    assert isinstance(error.value, KeyError) and isinstance(error.value, ValueError)
    with pytest.raises(LabelNotFoundError, match="ambiguous.*\\[0, 2\\]"):
        find_label(["a", "b", "A"], "a")
    with pytest.raises(TypeError):
        find_label(labels, 285)


# --- image loading ------------------------------------------------------------------------


def test_prepare_image_resizes_shorter_side_then_crops_centre():
    image = np.zeros((40, 80, 3), np.uint8)
    image[:, 30:50] = 255  # a white vertical band in the middle
    out = prepare_image(image, size=16, crop_fraction=1.0)
    assert out.shape == (1, 3, 16, 16) and out.dtype == torch.float32
    # resized to 16 x 32 (band: columns 12..19), then columns 8..23 are kept: band at 4..11
    assert out[..., 5:11].min() > 0.9
    assert out[..., :3].max() == 0.0 and out[..., 13:].max() == 0.0
    assert prepare_image(image, Preprocess(input_size=(8, 12))).shape == (1, 3, 8, 12)


def test_prepare_image_converts_formats(tmp_path):
    from PIL import Image

    gray = (np.arange(32 * 32).reshape(32, 32) % 256).astype(np.uint8)
    rgb = prepare_image(gray, size=32, crop_fraction=1.0)
    assert rgb.shape == (1, 3, 32, 32) and torch.equal(rgb[:, 0], rgb[:, 2])
    torch.testing.assert_close(rgb[0, 0], torch.from_numpy(gray).float() / 255)
    rgba = np.concatenate([np.full((32, 32, 3), 255, np.uint8), np.zeros((32, 32, 1), np.uint8)], 2)
    assert prepare_image(rgba, size=32).shape == (1, 3, 32, 32)
    assert prepare_image(rgba, size=32).min() == 1.0  # alpha dropped, not multiplied
    one = prepare_image(np.ones((32, 32, 3), np.float32) * 0.5, size=16, channels=1)
    assert one.shape == (1, 1, 16, 16) and torch.allclose(one, torch.tensor(0.5))
    path = tmp_path / "photo.png"
    Image.fromarray(gray).save(path)
    assert torch.equal(to_tensor(path), to_tensor(Image.fromarray(gray)))
    assert torch.equal(to_tensor(path)[0, 0], to_tensor(gray)[0, 0])
    assert to_tensor(torch.rand(3, 5, 6)).shape == (1, 3, 5, 6)


def test_prepare_image_rejects_bad_input():
    with pytest.raises(TypeError, match="int32"):
        prepare_image(np.zeros((8, 8, 3), np.int32))
    with pytest.raises(ValueError, match=r"\(H, W\) or \(H, W, C\)"):
        prepare_image(np.zeros((2, 8, 8, 3), np.uint8))
    with pytest.raises(TypeError, match="cannot read an image from list"):
        prepare_image([[0.0]])
    with pytest.raises(ValueError, match="5 channels to 3"):
        prepare_image(np.zeros((8, 8, 5), np.float32), size=8)
