"""param.maco: fixed magnitude, optimized phase, crop-and-noise transforms, transparency."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import lucid_widgets as lw
from lucid_widgets.display import to_uint8
from lucid_widgets.optvis.objective_base import Objective
from lucid_widgets.optvis.param import load_spectrum, maco, maco_transforms
from lucid_widgets.optvis.param.maco import SPECTRUM_FILE, estimate_spectrum
from lucid_widgets.optvis.preprocess import Preprocess
from lucid_widgets.optvis.render import Optimization

CANVAS, INPUT = 32, 16


def tiny_net() -> nn.Module:
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(3, 6, 3, padding=1), nn.ReLU(), nn.Conv2d(6, 4, 3, stride=2, padding=1),
        nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 5),
    )  # fmt: skip
    model.lucid_preprocess = Preprocess(input_size=(INPUT, INPUT))
    return model.eval()


def magnitude_and_phase(image_f) -> tuple[torch.Tensor, torch.Tensor]:
    """rfft2 of the standardized spatial image, without the columns irfft2 cannot keep."""
    with torch.no_grad():
        spectrum = torch.fft.rfft2(image_f.spatial())[..., 1:-1]  # (B, 3, H, W // 2 - 1)
    magnitude = spectrum.abs()
    return magnitude / magnitude.flatten(1).norm(dim=1).view(-1, 1, 1, 1), spectrum.angle()


def test_magnitude_stays_fixed_while_the_phase_changes():
    params, image_f = maco(CANVAS, batch=2, input_size=INPUT)
    before_magnitude, before_phase = magnitude_and_phase(image_f)
    fixed = image_f.magnitude[..., 1:-1]
    fixed = fixed / fixed.norm()
    with Optimization(
        tiny_net(), "2:1", param_f=lambda: (params, image_f),
        transforms=maco_transforms(INPUT), seed=0,
        optimizer=lambda p: torch.optim.NAdam(p, lr=1.0),
    ) as run:  # fmt: skip
        for _ in range(3):
            run.step()
    after_magnitude, after_phase = magnitude_and_phase(image_f)
    torch.testing.assert_close(after_magnitude, before_magnitude, atol=1e-4, rtol=1e-3)
    torch.testing.assert_close(after_magnitude[0], fixed, atol=1e-4, rtol=1e-3)
    changed = (torch.remainder(after_phase - before_phase + np.pi, 2 * np.pi) - np.pi).abs()
    assert changed.mean() > 0.1  # the phase moved


def test_images_in_range_and_reproducible_with_a_seed():
    def render(seed: int) -> np.ndarray:
        return lw.render_vis(
            tiny_net(), "2:0", param_f=lambda: maco(CANVAS, batch=2),
            transforms=maco_transforms(INPUT), thresholds=(3,), seed=seed, progress=False,
        )[0]  # fmt: skip

    first, again, other = render(5), render(5), render(6)
    assert first.shape == (2, CANVAS, CANVAS, 3)
    assert first.min() >= 0 and first.max() <= 1
    np.testing.assert_array_equal(first, again)
    assert not np.allclose(first, other)


def test_transparency_is_non_negative_and_follows_the_gradient():
    params, image_f = maco(CANVAS, batch=3)

    def left_half(acts) -> torch.Tensor:
        return acts["input"][..., : CANVAS // 2].mean()  # reads only the left half

    objective = Objective(left_half, "left half", {"input"})
    lw.render_vis(
        tiny_net(), objective, param_f=lambda: (params, image_f), transforms=[],
        thresholds=(2,), progress=False,
    )  # fmt: skip
    alpha = image_f.transparency()  # (B, 1, H, W)
    assert alpha.shape == (3, 1, CANVAS, CANVAS)
    assert (alpha >= 0).all()
    assert (alpha[..., : CANVAS // 2] > 0).all() and (alpha[..., CANVAS // 2 :] == 0).all()
    rgba = image_f.rgba()
    assert rgba.shape == (3, CANVAS, CANVAS, 4) and rgba.min() >= 0 and rgba.max() <= 1
    np.testing.assert_array_equal(rgba[..., CANVAS // 2 :, 3], 0)
    shown = to_uint8(rgba)  # show / save composite the alpha over a checkerboard
    assert shown.shape == (3, CANVAS, CANVAS, 3)


def test_spectrum_estimate_is_deterministic_and_shipped():
    skimage_data = pytest.importorskip("skimage.data")
    photos = [skimage_data.chelsea(), skimage_data.coffee()]
    first, again = estimate_spectrum(photos, size=64), estimate_spectrum(photos, size=64)
    assert first.shape == (3, 64, 33) and first.dtype == np.float32
    np.testing.assert_array_equal(first, again)
    assert first[:, 1, 0].mean() > first[:, 20, 20].mean()  # natural images: ~1/f
    shipped = load_spectrum()
    assert shipped.shape == (3, 128, 65) and SPECTRUM_FILE.stat().st_size < 100_000
    names = ("astronaut", "chelsea", "coffee", "rocket")  # as tools/natural_spectrum.py
    estimate = estimate_spectrum([getattr(skimage_data, name)() for name in names], size=128)
    np.testing.assert_allclose(shipped, estimate, rtol=2e-3, atol=2e-3)


def test_a_user_spectrum_file_is_resized_to_the_canvas(tmp_path):
    path = tmp_path / "spectrum.npy"
    np.save(path, np.random.default_rng(0).random((3, 64, 33)).astype(np.float32) + 0.1)
    _, image_f = maco(40, 24, spectrum=path)  # width 40, height 24
    assert image_f.magnitude.shape == (3, 24, 40 // 2 + 1)
    assert image_f().shape == (1, 3, 24, 40)


@pytest.mark.parametrize(
    ("array", "message"),
    [
        (np.ones((3, 10)), r"\(3, h, w\)"),
        (np.ones((4, 16, 9)), r"\(3, h, w\)"),
        (np.full((3, 16, 9), np.nan), "finite"),
    ],
)
def test_bad_spectrum_files_are_refused(tmp_path, array, message):
    path = tmp_path / "bad.npy"
    np.save(path, array)
    with pytest.raises(ValueError, match=message):
        maco(32, spectrum=path)


def test_bad_canvas_and_crop_fractions_are_refused():
    with pytest.raises(ValueError, match="smaller than the network's input"):
        maco(200, input_size=224)
    with pytest.raises(ValueError, match="smaller than the network's input"):
        maco_transforms(64)[0](torch.rand(1, 3, 32, 32))
    for crop in ((0.0, 0.5), (0.5, 1.2), (0.8, 0.4)):
        with pytest.raises(ValueError, match=r"0 < low <= high <= 1"):
            maco_transforms(INPUT, crop=crop)


@pytest.mark.slow  # vit_b_16: 86 M parameters, even at 32 px
def test_works_on_a_vit_batched():
    torchvision = pytest.importorskip("torchvision")
    torch.manual_seed(0)
    vit = torchvision.models.vit_b_16(weights=None, image_size=32).eval()  # random weights
    nn.init.normal_(vit.heads.head.weight, std=0.02)  # torchvision zero-initializes the head
    vit.lucid_preprocess = Preprocess(input_size=(32, 32))
    params, image_f = maco(48, batch=2, input_size=32)
    objective = lw.objectives.class_logit(3, batch=0) + lw.objectives.class_logit(7, batch=1)
    start = image_f().detach().clone()
    lw.render_vis(
        vit, objective, param_f=lambda: (params, image_f), transforms=maco_transforms(32),
        optimizer=lambda p: torch.optim.NAdam(p, lr=1.0), thresholds=(2,), progress=False,
    )  # fmt: skip
    assert not torch.allclose(image_f().detach(), start)
    assert (image_f.transparency().flatten(1).amax(1) > 0).all()  # both images got gradient
    assert all(p.requires_grad for p in vit.parameters())  # the model is left as found


def test_picture_is_the_canvas_resized_with_its_transparency_as_alpha():
    params, image_f = maco(CANVAS, batch=2, output_size=INPUT)

    def left_half(acts) -> torch.Tensor:
        return acts["input"][..., : CANVAS // 2].mean()

    objective = Objective(left_half, "left half", {"input"})
    before = image_f.picture(alpha=True)
    assert before.shape == (2, 4, INPUT, INPUT) and (before[:, 3] == 0).all()  # no step yet
    lw.render_vis(
        tiny_net(), objective, param_f=lambda: (params, image_f), transforms=[],
        thresholds=(2,), progress=False,
    )  # fmt: skip
    canvas = image_f().detach()  # (B, 3, CANVAS, CANVAS): what the steps optimize
    picture = image_f.picture(alpha=True)  # (B, 4, INPUT, INPUT)
    assert canvas.shape[-1] == CANVAS and picture.shape == (2, 4, INPUT, INPUT)
    resized = torch.nn.functional.interpolate(canvas, size=(INPUT, INPUT), mode="area")
    assert (picture[:, :3] - resized).abs().max() < 0.1  # the whole canvas, antialiased
    alpha = picture[:, 3]
    assert alpha.min() >= 0 and alpha.max() == 1
    assert (alpha[..., : INPUT // 2] > 0).all() and (alpha[..., INPUT // 2 :] == 0).all()
    assert image_f.rgba().shape == (2, INPUT, INPUT, 4)
    step_picture = image_f.picture(canvas)  # a step's canvas image: resized, no alpha
    torch.testing.assert_close(step_picture, picture[:, :3])
    with pytest.raises(ValueError, match="output_size must be a side or"):
        maco(CANVAS, output_size=(8, 8, 8))


def test_output_crop_shows_the_canvas_centre_at_its_own_scale():
    params, image_f = maco(CANVAS, batch=2, output_size=INPUT, output_crop=0.5)

    def left_half(acts) -> torch.Tensor:
        return acts["input"][..., : CANVAS // 2].mean()

    lw.render_vis(
        tiny_net(), Objective(left_half, "left half", {"input"}),
        param_f=lambda: (params, image_f), transforms=[], thresholds=(2,), progress=False,
    )  # fmt: skip
    canvas = image_f().detach()  # (B, 3, CANVAS, CANVAS)
    middle = slice(CANVAS // 4, CANVAS // 4 + INPUT)
    picture = image_f.picture(alpha=True)  # (B, 4, INPUT, INPUT): the centre, not resized
    torch.testing.assert_close(picture[:, :3], canvas[..., middle, middle])
    torch.testing.assert_close(image_f.picture(canvas), picture[:, :3])  # a step's canvas too
    alpha = picture[:, 3]  # the gradient of the same pixels: the canvas's left half only
    assert (alpha[..., : INPUT // 2] > 0).all() and (alpha[..., INPUT // 2 :] == 0).all()
    _, odd = maco(30, output_crop=0.5)
    assert odd.picture().shape == (1, 3, 15, 15)  # default output size: the crop's own
    _, upscaled = maco(CANVAS, output_size=CANVAS, output_crop=0.5)
    assert upscaled.picture().shape == (1, 3, CANVAS, CANVAS)  # the centre resized up


@pytest.mark.parametrize("crop", [0, -0.5, 1.5, float("nan"), "half", True])
def test_output_crop_outside_zero_one_is_refused(crop):
    with pytest.raises(ValueError, match="output_crop must be"):
        maco(CANVAS, output_crop=crop)
