"""MACO in the widget: the preview's and the grid's ``param="maco"``, its transparency as the
frame's alpha, its recipe (crops, NAdam, no redirected ReLU) and Lucid's for a user's own image."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from PIL import Image

from lucid_widgets.optvis.param.maco import MacoCrops, MacoImage
from lucid_widgets.optvis.recipes import maco_recipe
from lucid_widgets.widget import LivePreview, Microscope
from lucid_widgets.widget import engine as widget_engine
from lucid_widgets.widget.engine import GridConfig, PreviewConfig

TIMEOUT = 120
SIZE = 16


def decoded(frame: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(frame)))


def test_maco_frame_carries_the_transparency_as_alpha(tiny_net, close_widgets):
    settings = {"size": SIZE, "steps": 6, "param": "maco", "alpha": True, "seed": 1}
    widget = LivePreview(tiny_net, "neuron('late', 1)", settings=settings)
    close_widgets.append(widget)
    assert widget.wait(TIMEOUT)
    assert (widget.status, widget.step) == ("done", 6), widget.message
    assert widget.frame_meta["mime"] == "image/webp"  # JPEG has no alpha
    pixels = decoded(widget.frame)
    assert pixels.shape == (SIZE, SIZE, 4)  # the 2x canvas's centre, at its own scale
    image_f = widget._worker.preview.run.image_param[1]
    assert isinstance(image_f, MacoImage) and image_f.size == (2 * SIZE, 2 * SIZE)
    middle = slice(SIZE // 2, SIZE // 2 + SIZE)
    gradient = image_f.gradient[0, 0, middle, middle].numpy()  # (SIZE, SIZE): the shown pixels
    assert gradient.min() >= 0
    level = np.quantile(gradient, 0.99)
    expected = np.round(np.clip(gradient / level, 0, 1) * 255)
    assert np.abs(pixels[..., 3].astype(float) - expected).max() <= 2  # alpha = transparency
    hot, cold = gradient > np.quantile(gradient, 0.75), gradient <= np.quantile(gradient, 0.25)
    assert pixels[..., 3][hot].mean() > pixels[..., 3][cold].mean() + 50
    assert widget.images.shape == (1, SIZE, SIZE, 4)


def test_maco_without_alpha_sends_the_canvas_centre_as_jpeg(tiny_net, close_widgets):
    widget = LivePreview(
        tiny_net, "late:1", settings={"size": SIZE, "steps": 3, "param": "maco", "batch": 2}
    )
    close_widgets.append(widget)
    assert widget.wait(TIMEOUT)
    assert widget.status == "done", widget.message
    assert widget.frame.startswith(b"\xff\xd8\xff")
    assert widget.images.shape == (2, SIZE, SIZE, 3)
    assert decoded(widget.frame).shape == (SIZE, 2 * SIZE + 2, 3)  # two tiles side by side


def test_choosing_maco_brings_its_learning_rate_and_keeps_a_chosen_one():
    config = PreviewConfig(param="fft", lr=0.05)
    assert config.merged({"param": "maco"}).lr == widget_engine.DEFAULT_LR["maco"] == 1.0
    assert config.merged({"param": "maco"}).merged({"param": "fft"}).lr == 0.05
    assert config.merged({**config.to_dict(), "param": "maco"}).lr == 1.0  # as the UI sends it
    assert config.merged({"param": "maco", "lr": 0.3}).lr == 0.3
    assert config.merged({"lr": 0.2}).merged({"param": "maco"}).lr == 0.2
    with pytest.raises(ValueError, match=r"one of \('fft', 'pixel', 'maco'\)"):
        PreviewConfig.from_dict({"param": "horama"})


def test_maco_preview_uses_its_recipe_and_keeps_it_on_resume(tiny_net):
    config = PreviewConfig(size=SIZE, param="maco", lr=0.7)
    run = widget_engine.make_preview(tiny_net, "late:1", config)
    try:
        optimizer = run.optimizer
        assert isinstance(optimizer, torch.optim.NAdam)
        assert optimizer.param_groups[0]["lr"] == 0.7
        assert run.optimization.redirected_relu_steps == 0
        assert isinstance(run.standard_transforms[0], MacoCrops)
        widget_engine.set_transforms(run, False)
        assert run.transforms(torch.ones(1, 3, 4, 4), None).shape == (1, 3, 4, 4)  # none
        widget_engine.set_transforms(run, True)
        assert run.transforms(torch.ones(1, 3, 32, 32), None).shape == (1, 3, SIZE, SIZE)
        assert run.step().image.shape == (1, 3, SIZE, SIZE)
        run.close()
        resumed = widget_engine.resume_preview(tiny_net, run, config, {}, steps_done=1)
        assert resumed.params[0] is run.params[0] and resumed.optimizer is optimizer
        assert resumed.transforms(torch.ones(1, 3, 32, 32), None).shape == (1, 3, SIZE, SIZE)
        assert resumed.image().shape == (1, 3, SIZE, SIZE)
        resumed.close()
    finally:
        run.close()


def test_an_own_image_keeps_lucids_defaults_under_maco_settings(tiny_net):
    from lucid_widgets.optvis.param import image

    config = PreviewConfig(size=SIZE, param="maco", lr=1.0)
    overrides = {"param_f": lambda: image(SIZE)}
    run = widget_engine.make_preview(tiny_net, "late:1", config, overrides)
    try:
        assert isinstance(run.optimizer, torch.optim.Adam)
        assert run.optimizer.param_groups[0]["lr"] == 0.05  # not MACO's NAdam at 1.0
        assert run.standard_transforms is None  # Lucid's standard transforms, no MACO crops
        assert run.optimization.redirected_relu_steps == 16
        widget_engine.set_learning_rate(run, 1.0)  # the maco lr setting is not this Adam's
        assert run.optimizer.param_groups[0]["lr"] == 0.05
        assert run.step().image.shape == (1, 3, SIZE, SIZE)
    finally:
        run.close()


def test_maco_grid_thumbnails_are_at_the_grid_size(tiny_net):
    config = GridConfig(size=SIZE, steps=2, param="maco")
    batch = widget_engine.make_grid_batch(tiny_net, "late", [0, 1, 2], "channel", config)
    try:
        batch.step()
        assert batch.image().shape == (3, 3, SIZE, SIZE)
        assert batch.image_param[1].size == (2 * SIZE, 2 * SIZE)
    finally:
        batch.close()


def test_microscope_grid_renders_with_maco(tiny_net, close_widgets):
    widget = Microscope(
        tiny_net, layer="late", page_size=4,
        grid_settings={"size": SIZE, "steps": 2, "batch_size": 4, "param": "maco"},
    )  # fmt: skip
    close_widgets.append(widget)
    assert widget.wait(TIMEOUT)
    assert widget.grid_progress["state"] == "done", widget.message
    thumbnails = widget.grid_images()
    assert sorted(thumbnails) == [0, 1, 2, 3] and thumbnails[0].shape == (SIZE, SIZE, 3)


def test_maco_needs_rgb():
    with pytest.raises(ValueError, match="MACO renders RGB images, but the model takes 1-channel"):
        maco_recipe(SIZE, channels=1)


def test_maco_is_the_default_and_other_channel_counts_get_the_fourier_image():
    from tiny_models import TinyNet

    assert (PreviewConfig().param, PreviewConfig().lr, GridConfig().param) == ("maco", 1.0, "maco")
    grey = TinyNet(in_channels=1)
    batch = widget_engine.make_grid_batch(grey, "late", [0, 1], "channel", GridConfig(size=SIZE))
    try:
        assert not isinstance(batch.image_param[1], MacoImage)
        assert isinstance(batch.optimizer, torch.optim.Adam)
        batch.step()
        assert batch.image().shape == (2, 1, SIZE, SIZE)
    finally:
        batch.close()
