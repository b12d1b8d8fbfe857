"""Tests of the image parameterizations (lucid_widgets.optvis.param)."""

import numpy as np
import pytest
import torch
from PIL import Image

from lucid_widgets.optvis import param
from lucid_widgets.optvis.param.color import COLOR_CORRELATION_SVD_SQRT, COLOR_MEAN, valid_rgb
from lucid_widgets.optvis.param.spatial import fft_scale


def lucid_fft_reference(spectrum: np.ndarray, height: int, width: int) -> np.ndarray:
    """Lucid's TF formula written with numpy: irfft2d (length 2 * (fw - 1)) of the scaled spectrum,
    cropped and divided by 4. `spectrum` is (B, C, fh, fw, 2)."""
    fy = np.fft.fftfreq(height)[:, None]
    fx = np.fft.fftfreq(width)[: width // 2 + (2 if width % 2 else 1)]
    freqs = np.sqrt(fx * fx + fy * fy)
    scale = 1.0 / np.maximum(freqs, 1.0 / max(width, height)) * np.sqrt(width * height)
    complex_spectrum = (spectrum[..., 0] + 1j * spectrum[..., 1]) * scale
    fft_width = 2 * (freqs.shape[1] - 1)
    image = np.fft.irfft2(complex_spectrum, s=(height, fft_width))
    return image[..., :height, :width] / 4.0


def test_rfft2d_freqs_and_scale_on_known_grid():
    freqs = param.rfft2d_freqs(4, 4)
    assert freqs.shape == (4, 3)
    np.testing.assert_allclose(freqs[:, 0], [0.0, 0.25, 0.5, 0.25])
    np.testing.assert_allclose(freqs[0], [0.0, 0.25, 0.5])
    np.testing.assert_allclose(freqs[2, 2], np.sqrt(0.5))
    scale = fft_scale(4, 4)
    # 1 / max(f, 1/4) * sqrt(16): DC and f=1/4 -> 16, f=1/2 -> 8, f=sqrt(1/2) -> 4 * sqrt(2)
    np.testing.assert_allclose(scale[0], [16.0, 16.0, 8.0])
    np.testing.assert_allclose(scale[2, 2], 4.0 * np.sqrt(2.0))
    assert param.rfft2d_freqs(5, 7).shape == (5, 5)  # odd width keeps one more frequency
    assert param.rfft2d_freqs(6, 8).shape == (6, 5)


@pytest.mark.parametrize(("height", "width", "channels"), [(6, 8, 3), (7, 9, 1), (5, 4, 5)])
def test_fft_image_matches_lucid_formula(height, width, channels):
    torch.manual_seed(0)
    params, image_f = param.fft_image((2, channels, height, width))
    spectrum = params[0]
    assert spectrum.shape == (2, channels, *param.rfft2d_freqs(height, width).shape, 2)
    assert abs(spectrum.detach().std().item() - 0.01) < 0.004  # normal init with sd 0.01
    image = image_f()
    assert image.shape == (2, channels, height, width)
    expected = lucid_fft_reference(spectrum.detach().double().numpy(), height, width)
    np.testing.assert_allclose(image.detach().numpy(), expected, atol=1e-6)


def test_fft_image_has_more_low_frequency_power():
    torch.manual_seed(1)
    _, image_f = param.fft_image((4, 3, 64, 64))
    power = torch.fft.rfft2(image_f().detach()).abs().mean(dim=(0, 1))  # (64, 33)
    low, high = power[1:4, 1:4].mean(), power[28:36, 24:33].mean()
    assert low > 10 * high
    assert image_f().detach().abs().mean() < 0.1  # starts close to grey after the sigmoid


@pytest.mark.parametrize("channels", [1, 3, 5])
@pytest.mark.parametrize("alpha", [False, True])
@pytest.mark.parametrize("fft", [False, True])
def test_image_shapes_and_range(channels, alpha, fft):
    params, image_f = param.image(9, 6, batch=2, channels=channels, alpha=alpha, fft=fft)
    image = image_f()
    assert image.shape == (2, channels + int(alpha), 6, 9)
    assert image.min() > 0 and image.max() < 1
    image.sum().backward()
    assert params[0].grad is not None and params[0].grad.abs().sum() > 0


def test_image_decorrelation_only_for_three_channels():
    torch.manual_seed(3)
    _, decorrelated = param.image(8, channels=5, decorrelate=True, sd=1.0)
    torch.manual_seed(3)
    _, plain = param.image(8, channels=5, decorrelate=False, sd=1.0)
    torch.testing.assert_close(decorrelated(), plain())
    torch.manual_seed(3)
    _, rgb_decorrelated = param.image(8, decorrelate=True, sd=1.0)
    torch.manual_seed(3)
    _, rgb_plain = param.image(8, decorrelate=False, sd=1.0)
    assert (rgb_decorrelated() - rgb_plain()).abs().max() > 1e-3


def test_image_rejects_bad_sizes():
    with pytest.raises(ValueError, match="w must be a positive integer"):
        param.image(0)
    with pytest.raises(ValueError, match="channels"):
        param.image(8, channels=0)


def test_to_valid_rgb_ranges_and_colour_matrix():
    raw = torch.randn(2, 3, 5, 5) * 10
    sigmoid_image = param.to_valid_rgb(lambda: raw, decorrelate=True)()
    assert sigmoid_image.min() >= 0 and sigmoid_image.max() <= 1
    clipped = param.to_valid_rgb(lambda: raw, decorrelate=False, sigmoid=False)()
    assert clipped.min() == 0 and clipped.max() == 1
    # decorrelated clip path adds Lucid's colour mean
    grey = param.to_valid_rgb(lambda: torch.zeros(1, 3, 2, 2), decorrelate=True, sigmoid=False)()
    torch.testing.assert_close(grey[0, :, 0, 0], torch.tensor(COLOR_MEAN))
    # columns normalized by the largest column norm
    mapped = param.decorrelate_color(torch.eye(3).view(3, 3, 1, 1))[..., 0, 0].T  # (3, 3)
    expected = COLOR_CORRELATION_SVD_SQRT / np.linalg.norm(COLOR_CORRELATION_SVD_SQRT, axis=0).max()
    np.testing.assert_allclose(mapped.numpy(), expected, atol=1e-6)
    with pytest.raises(TypeError, match="zero-argument function"):
        param.to_valid_rgb(torch.zeros(1, 3, 2, 2))


def test_clip_path_blocks_only_outward_gradients():
    raw = torch.tensor([2.0, 2.0, 0.2]).view(1, 3, 1, 1).requires_grad_(True)
    image = valid_rgb(raw, sigmoid=False)  # clip of 2x - 1: first two are clipped at 1
    (image * torch.tensor([1.0, -1.0, 1.0]).view(1, 3, 1, 1)).sum().backward()
    # d(loss)/d(raw) > 0 means descent lowers raw (inward): passes; < 0 pushes outward: blocked
    assert raw.grad[0, 0, 0, 0] != 0 and raw.grad[0, 1, 0, 0] == 0 and raw.grad[0, 2, 0, 0] != 0


def _photo(batch=2, height=11, width=13, channels=3, seed=0):
    rng = np.random.default_rng(seed)
    photo = rng.random((batch, height, width, channels)).astype(np.float32)
    photo[0, 0, 0, 0], photo[0, 0, 1, 0] = 0.0, 1.0  # exact extremes survive within 1e-3
    return photo


@pytest.mark.parametrize("fft", [True, False])
@pytest.mark.parametrize("decorrelate", [True, False])
@pytest.mark.parametrize(("height", "width"), [(11, 13), (12, 10)])
def test_from_image_round_trip(fft, decorrelate, height, width):
    photo = _photo(height=height, width=width)
    params, image_f = param.from_image(photo, decorrelate=decorrelate, fft=fft)
    assert all(p.is_leaf and p.requires_grad for p in params)
    image = image_f().detach().permute(0, 2, 3, 1).numpy()
    np.testing.assert_allclose(image, photo, atol=1e-3)


def test_from_image_alpha_and_formats():
    rgba = _photo(channels=4)
    _, image_f = param.from_image(rgba, alpha=True)
    np.testing.assert_allclose(image_f().detach().permute(0, 2, 3, 1).numpy(), rgba, atol=1e-3)
    _, opaque_f = param.from_image(rgba[..., :3], alpha=True)
    assert opaque_f().shape == (2, 4, 11, 13) and opaque_f()[:, 3].min() > 0.999
    uint8 = (rgba[0, ..., :3] * 255).round().astype(np.uint8)  # (H, W, 3)
    for picture in (uint8, Image.fromarray(uint8), torch.from_numpy(uint8).permute(2, 0, 1)):
        _, image_f = param.from_image(picture)
        image = image_f().detach()
        assert image.shape == (1, 3, 11, 13)
        np.testing.assert_allclose(image[0].permute(1, 2, 0).numpy(), uint8 / 255.0, atol=1e-3)
    rgba_pil = Image.fromarray((rgba[0] * 255).astype(np.uint8), mode="RGBA")
    assert param.from_image(rgba_pil)[1]().shape == (1, 3, 11, 13)
    assert param.from_image(rgba_pil, alpha=True)[1]().shape == (1, 4, 11, 13)
    grey = Image.fromarray(uint8[..., 0])
    assert param.from_image(grey)[1]().shape == (1, 1, 11, 13)


def test_from_image_rejects_bad_input():
    with pytest.raises(ValueError, match=r"values must be in \[0, 1\]"):
        param.from_image(np.full((4, 4, 3), 200.0))
    with pytest.raises(TypeError, match="numpy array"):
        param.from_image([[0.5]])
    with pytest.raises(ValueError, match="numpy images must be"):
        param.from_image(np.zeros((1, 1, 4, 4, 3)))


def test_from_image_optimizes_away_from_photo():
    photo = _photo(batch=1, height=8, width=8)
    params, image_f = param.from_image(photo)
    optimizer = torch.optim.Adam(params, lr=0.05)
    loss = image_f()[:, 0].mean()
    loss.backward()
    optimizer.step()
    assert image_f()[:, 0].mean() < loss


def test_lowres_tensor_shape_offset_and_gradients():
    params, tensor_f = param.lowres_tensor((2, 3, 16, 12), (2, 3, 4, 3))
    assert params[0].shape == (2, 3, 4, 3)
    tensor = tensor_f()
    assert tensor.shape == (2, 3, 16, 12)
    tensor.sum().backward()
    assert params[0].grad.abs().sum() > 0
    # a 1-D ramp upsampled linearly, then shifted by 2 with mirrored padding in front
    params, tensor_f = param.lowres_tensor((8,), (8,), offset=2)
    params[0].data = torch.arange(8.0)
    torch.testing.assert_close(tensor_f(), torch.tensor([1.0, 0, 0, 1, 2, 3, 4, 5]))
    with pytest.raises(ValueError, match="same number of dimensions"):
        param.lowres_tensor((2, 3, 8, 8), (3, 4, 4))


def test_laplacian_pyramid_levels_and_gradients():
    params, image_f = param.laplacian_pyramid((1, 3, 16, 20), levels=4)
    assert [tuple(p.shape[2:]) for p in params] == [(16, 20), (8, 10), (4, 5), (2, 2)]
    image = image_f()
    assert image.shape == (1, 3, 16, 20)
    image.square().sum().backward()
    assert all(p.grad.abs().sum() > 0 for p in params)


@pytest.mark.parametrize("normalize", [False, True])
def test_cppn_shapes_start_and_gradients(normalize):
    torch.manual_seed(0)
    params, image_f = param.cppn(12, batch=2, num_hidden_channels=6, num_layers=3,
                                 normalize=normalize)  # fmt: skip
    image = image_f()
    assert image.shape == (2, 3, 12, 12)
    assert image.min() > 0 and image.max() < 1
    flat = image.flatten(2)  # zero output weights: each image starts as one flat colour
    torch.testing.assert_close(flat, flat[..., :1].expand_as(flat))
    optimizer = torch.optim.Adam(params, lr=0.05)
    for _ in range(2):
        optimizer.zero_grad()
        (image_f()[:, 0] - image_f()[:, 1]).square().mean().neg().backward()
        optimizer.step()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in params)
    assert image_f()[:, :2].flatten(2).std(dim=-1).min() > 0  # patterns appear where optimized


def test_cppn_rectangular_and_custom_activation():
    _, image_f = param.cppn((6, 10), num_output_channels=1, activation_fn=torch.nn.Tanh)
    assert image_f().shape == (1, 1, 6, 10)
    with pytest.raises(TypeError, match="activation_fn"):
        param.cppn(8, activation_fn=3)


def test_parameterizations_follow_default_device():
    with torch.device("meta"):
        tensors = [
            *param.image(8, batch=2)[0],
            *param.image(8, fft=False)[0],
            *param.laplacian_pyramid((1, 3, 8, 8))[0],
            *param.cppn(8, num_layers=2)[0],
            param.image(8)[1](),
            param.cppn(8, num_layers=2)[1](),
        ]
    assert all(tensor.device.type == "meta" for tensor in tensors)
