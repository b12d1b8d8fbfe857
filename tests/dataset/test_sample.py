"""A sample image through the network: predictions, top units, activation maps, per-image views."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import skimage.data
import torch
import torch.nn.functional as F
from dataset_support import SIZE
from dataset_support import make_model as tiny_net
from PIL import Image
from torch import nn

from lucid_widgets.dataset.sample import caricature_of, deepdream_of, default_layers, sample_view
from lucid_widgets.dataset.sources import load_image
from lucid_widgets.optvis.hooks import LayerNotFoundError, capture

LABELS = [f"class {index}" for index in range(7)]


def make_model() -> nn.Module:
    model = tiny_net(widths=(5, 6, 7))  # SIZE x SIZE input
    model.lucid_labels = LABELS
    return model


def photo() -> np.ndarray:
    return skimage.data.chelsea()  # (300, 451, 3) uint8


def direct(model, image, layers):
    """The resized input and a plain forward with hooks on ``layers`` (and the logits)."""
    batch = load_image(image, (SIZE, SIZE), 3).float().div(255)[None]
    with torch.no_grad(), capture(model, [*layers, "logits"]) as run:
        return batch, run(model.lucid_preprocess(batch))


def test_predictions_match_a_direct_forward():
    model = make_model()
    view = sample_view(model, photo(), layers=["0", "3"])
    batch, acts = direct(model, photo(), ["0", "3"])
    probabilities = acts["logits"][0].softmax(0)
    expected = probabilities.argsort(descending=True)[:5].tolist()
    assert [p.index for p in view.predictions] == expected
    assert [p.label for p in view.predictions] == [LABELS[i] for i in expected]
    np.testing.assert_allclose(
        [p.probability for p in view.predictions], probabilities[expected].numpy(), rtol=1e-5
    )
    assert view.image.shape == (SIZE, SIZE, 3) and view.image.dtype == np.uint8
    np.testing.assert_array_equal(view.image, (batch[0].permute(1, 2, 0) * 255).round().byte())


def test_top_units_and_maps_match_a_direct_forward():
    model = make_model()
    view = sample_view(model, photo(), layers=["0", "3", "7"], top_units=3)
    _, acts = direct(model, photo(), ["0", "3", "7"])
    for layer, map_size in (("0", (SIZE, SIZE)), ("3", (SIZE // 2, SIZE // 2))):
        tensor = acts[layer][0]  # (C, H', W')
        scores = tensor.flatten(1).amax(1)
        expected = scores.argsort(descending=True)[:3]
        np.testing.assert_array_equal(view[layer].units, expected.numpy())
        np.testing.assert_allclose(view[layer].values, scores[expected].numpy(), rtol=1e-5)
        unit = int(view[layer].units[0])
        unit_map = view.activation_map(layer, unit)
        assert unit_map.shape == map_size
        np.testing.assert_allclose(unit_map, tensor[unit].numpy(), rtol=1e-5, atol=1e-6)
        upsampled = view.activation_map(layer, unit, upsample=True)
        assert upsampled.shape == (SIZE, SIZE)
        assert view[layer].maps().shape == (3, *map_size)
        assert view[layer].maps(upsample=True).shape == (3, SIZE, SIZE)
    np.testing.assert_allclose(view["7"].values[0], acts["7"][0].max().item(), rtol=1e-5)
    by_mean = sample_view(model, photo(), layers="3", top_units=6, reduce="mean")
    means = acts["3"][0].flatten(1).mean(1)
    np.testing.assert_array_equal(by_mean["3"].units, means.argsort(descending=True).numpy())


def test_image_inputs_and_default_layers(tmp_path):
    model = make_model()
    path = tmp_path / "gray.png"
    Image.fromarray(skimage.data.camera()).save(path)
    from_path = sample_view(model, path, layers="3")
    from_pil = sample_view(model, Image.open(path), layers="3")
    np.testing.assert_array_equal(from_path.image, from_pil.image)
    assert (from_path.image[..., 0] == from_path.image[..., 2]).all()  # gray -> RGB
    tensor_view = sample_view(model, torch.rand(3, 40, 20), layers="3")
    assert tensor_view.image.shape == (SIZE, SIZE, 3)
    model.lucid_aliases = {"early": "0", "late": "3"}
    assert default_layers(model) == ["early", "late"]
    assert list(sample_view(model, photo()).layers) == ["early", "late"]


def test_default_layers_without_aliases_are_convolutions():
    layers = default_layers(make_model())
    assert layers == ["0", "3", "7"]  # the catalog: convolutions and the linear head


def test_bad_arguments():
    model = make_model()
    with pytest.raises(LayerNotFoundError):
        sample_view(model, photo(), layers="conv9")
    with pytest.raises(ValueError, match="reduce"):
        sample_view(model, photo(), layers="0", reduce="median")
    with pytest.raises(ValueError, match="top_units"):
        sample_view(model, photo(), layers="0", top_units=0)
    with pytest.raises(IndexError, match="out of range"):
        sample_view(model, photo(), layers="0").activation_map("0", 99)


def test_deepdream_of_starts_from_the_image():
    picture = torch.rand(3, 12, 10)
    objective, param_f = deepdream_of(picture, "3")
    assert objective.layers == frozenset({"3"})
    params, image_f = param_f()
    assert params and all(p.requires_grad for p in params)
    np.testing.assert_allclose(image_f().detach()[0].numpy(), picture.numpy(), atol=1e-3)
    _, sized = deepdream_of(Path(skimage.data.__file__).parent / "astronaut.png", "3", size=(8, 8))
    assert sized()[1]().shape == (1, 3, 8, 8)


def test_caricature_objective_prefers_the_photo():
    model = make_model()
    objective, param_f = caricature_of(model, photo(), "3", cossim_pow=1.0)
    assert objective.layers == frozenset({"3"})
    batch, acts = direct(model, photo(), ["3"])
    target = acts["3"]
    value = objective({"3": target}).item()
    np.testing.assert_allclose(value, (target**2).sum().item(), rtol=1e-4)  # cossim is 1
    scaled = F.interpolate(target, size=(5, 5), mode="bilinear")
    assert objective({"3": scaled}).item() > 0  # another map size: the target is resized
    params, image_f = param_f()
    assert image_f().shape == (1, 3, SIZE, SIZE)
    _, from_photo = caricature_of(model, photo(), "3", start="image")
    np.testing.assert_allclose(from_photo()[1]().detach().numpy(), batch.numpy(), atol=1e-3)
    with pytest.raises(ValueError, match="start"):
        caricature_of(model, photo(), "3", start="gray")


def test_caricature_renders_and_improves():
    from lucid_widgets.optvis.render import render_vis

    model = make_model()
    objective, param_f = caricature_of(model, photo(), "3")
    torch.manual_seed(0)
    params, image_f = param_f()
    with torch.no_grad(), capture(model, ["3"]) as run:
        before = objective({"3": run(model.lucid_preprocess(image_f()))["3"]}).item()
    images = render_vis(
        model, objective, param_f, thresholds=(24,), transforms=[], progress=False, seed=0
    )
    after_image = torch.from_numpy(images[0]).permute(0, 3, 1, 2).float()
    with torch.no_grad(), capture(model, ["3"]) as run:
        after = objective({"3": run(model.lucid_preprocess(after_image))["3"]}).item()
    assert after > before
