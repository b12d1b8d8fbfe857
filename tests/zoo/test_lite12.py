"""EfficientNet-Lite1 / Lite2: architecture, every weight key, two photos, zoo listing."""

from __future__ import annotations

import sys

import pytest
import torch
import torch.nn.functional as F

import lucid_widgets.zoo as zoo
from lucid_widgets.zoo import efficientnet_lite12
from lucid_widgets.zoo.catalog import layers
from lucid_widgets.zoo.efficientnet_lite0 import BLOCKS, stage_blocks
from lucid_widgets.zoo.efficientnet_lite12 import VARIANTS, variant_weights_path
from lucid_widgets.zoo.weights import WeightsUnavailableError

NAMES = ("efficientnet_lite1", "efficientnet_lite2")
CATS = range(281, 286)  # tabby, tiger cat, Persian, Siamese, Egyptian cat
ESPRESSO = 967


def test_stage_blocks_keep_lite0_and_scale_lite1_lite2():
    assert stage_blocks() == BLOCKS and len(BLOCKS) == 16
    lite1, lite2 = stage_blocks(1.0, 1.1), stage_blocks(1.1, 1.2)
    assert len(lite1) == len(lite2) == 21
    assert sorted({b.out_channels for b in lite2}) == [16, 24, 48, 88, 120, 208, 352]
    assert sorted({b.out_channels for b in lite1}) == [16, 24, 40, 80, 112, 192, 320]
    assert [b.stage for b in lite1].count(6) == 5  # ceil(4 * 1.1); the first and last stay 1
    assert [b.stage for b in lite1].count(1) == [b.stage for b in lite1].count(7) == 1


@pytest.mark.slow
@pytest.mark.parametrize("name", NAMES)
def test_every_key_is_loaded_and_the_photos_are_classified(name):
    skimage_data = pytest.importorskip("skimage.data")
    model = zoo.load(name)
    state = torch.load(variant_weights_path(name), map_location="cpu", weights_only=True)
    assert list(model.state_dict()) == list(state)  # same keys, same order
    for key, tensor in state.items():
        assert torch.equal(model.state_dict()[key], tensor), key
    pre = model.lucid_preprocess
    assert pre.input_size == ((240, 240) if name.endswith("1") else (260, 260))
    photos = torch.stack(
        [
            F.interpolate(
                torch.as_tensor(photo).permute(2, 0, 1)[None].float() / 255,
                size=pre.input_size, mode="bilinear", antialias=True,
            )[0]
            for photo in (skimage_data.chelsea(), skimage_data.coffee())
        ]
    )  # fmt: skip  # (2, 3, H, W)
    with torch.no_grad():
        best = model(pre(photos)).argmax(1).tolist()
    assert best[0] in CATS and best[1] == ESPRESSO
    assert model.lucid_labels[ESPRESSO] == "espresso"


@pytest.mark.parametrize("name", NAMES)
def test_metadata_aliases_and_catalog_as_for_lite0(name):
    model = zoo.load(name, pretrained=False)
    assert model.lucid_name == name and not model.training
    aliases = model.lucid_aliases
    modules = dict(model.named_modules())
    assert all(path in modules for path in aliases.values())
    assert [f"block{i}" for i in range(21)] == [a for a in aliases if a[5:].isdigit()]
    browsable = {info.alias for info in layers(model) if info.browsable}
    assert {"stem", "block20", "head", "fc"} <= browsable
    assert zoo.load(name.replace("_", "-"), pretrained=False).lucid_name == name


def test_missing_weight_packages_say_how_to_get_them(monkeypatch):
    for variant in VARIANTS.values():
        monkeypatch.setitem(sys.modules, variant.module, None)  # import now raises ImportError
    monkeypatch.setattr(efficientnet_lite12.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(WeightsUnavailableError, match=r"lucid-widgets\[models\]"):
        zoo.load("efficientnet_lite2")
    listing = {entry.name: entry for entry in zoo.available()}
    for name in NAMES:
        assert not listing[name].weights_local
        assert "lucid-widgets[models]" in listing[name].description
    assert zoo.load("efficientnet_lite1", pretrained=False).lucid_name == "efficientnet_lite1"
