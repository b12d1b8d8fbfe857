"""Tests of the random image transforms (lucid_widgets.optvis.transforms)."""

import inspect

import pytest
import torch
import torch.nn.functional as F
import torchvision  # a dependency of the package

from lucid_widgets.optvis import param, transforms
from lucid_widgets.optvis.transforms import warp


def _generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _smooth_image(batch=2, channels=3, size=40) -> torch.Tensor:
    """Low-frequency pattern: bilinear resampling twice or once gives nearly the same values."""
    coords = torch.linspace(0, 1, size)
    y, x = torch.meshgrid(coords, coords, indexing="ij")
    layers = [torch.sin(2.2 * x + 1.3 * y + c) * 0.4 + 0.5 for c in range(batch * channels)]
    return torch.stack(layers).view(batch, channels, size, size)


def _sequential(transform_list, image, generator):
    for transform in transform_list:
        image = transform(image, generator)
    return image


def test_standard_transforms_use_lucids_numbers():
    pad, jitter_8, scale, rotate, jitter_4 = transforms.standard_transforms
    assert (pad.w, pad.mode, pad.constant_value) == (12, "constant", 0.5)
    assert (jitter_8.d, jitter_4.d) == (8, 4)
    assert scale.scales == tuple(1 + (i - 5) / 50 for i in range(11))
    assert rotate.angles == tuple(range(-10, 11)) + 5 * (0,)


def test_standard_transforms_fuse_into_one_warp():
    composed = transforms.compose(transforms.standard_transforms)
    assert len(composed.stages) == 1
    output = composed(torch.rand(2, 3, 32, 32), _generator(0))
    assert output.shape == (2, 3, 56, 56)  # padded by 12 on each side


def test_same_seed_is_bit_identical_and_seeds_differ():
    composed = transforms.compose(transforms.standard_transforms)
    image = torch.rand(2, 3, 32, 32)
    first = composed(image, _generator(5))
    again = composed(image, _generator(5))
    assert torch.equal(first, again)
    others = [composed(image, _generator(seed)) for seed in range(6, 10)]
    assert all(not torch.equal(first, other) for other in others)


def test_jitter_keeps_size_and_shifts_by_drawn_integers():
    image = torch.zeros(1, 1, 21, 21)
    image[0, 0, 10, 10] = 1.0
    jitter = transforms.jitter(3)
    for seed in range(8):
        matrix = jitter.matrix(_generator(seed))
        shift_x, shift_y = -matrix[0, 2], -matrix[1, 2]
        assert shift_x == int(shift_x) and -3 <= shift_x <= 3 and -3 <= shift_y <= 3
        output = jitter(image, _generator(seed))
        assert output.shape == image.shape
        expected = torch.zeros_like(image)
        expected[0, 0, 10 + int(shift_y), 10 + int(shift_x)] = 1.0
        torch.testing.assert_close(output, expected, atol=1e-5, rtol=0)


def test_jitter_draws_cover_both_signs():
    jitter = transforms.jitter(2)
    shifts = {tuple(jitter.matrix(_generator(seed))[:2, 2]) for seed in range(60)}
    assert {value for pair in shifts for value in pair} == {-2.0, -1.0, 0.0, 1.0, 2.0}


def test_rotate_zero_and_scale_one_are_identity():
    image = torch.rand(2, 3, 16, 16)
    identity = transforms.compose([transforms.random_rotate([0]), transforms.random_scale([1])])
    assert torch.equal(identity(image, _generator(0)), image)
    assert torch.equal(transforms.jitter(0)(image, _generator(0)), image)


def test_rotate_is_counter_clockwise_and_scale_zooms_about_centre():
    image = torch.zeros(1, 1, 9, 9)
    image[0, 0, 4, 6] = 1.0  # right of the centre
    rotated = transforms.random_rotate([90])(image, None)
    assert rotated[0, 0].argmax() == 2 * 9 + 4  # now above the centre
    radians = transforms.random_rotate([torch.pi / 2], units="radians")(image, None)
    torch.testing.assert_close(radians, rotated)
    zoomed = transforms.random_scale([2.0])(image, None)
    assert zoomed.shape == image.shape and zoomed[0, 0, 4, 8] > 0.2  # twice as far out


def test_fused_composition_equals_sequential_application():
    transform_list = [
        transforms.pad(6, mode="constant", constant_value=0.5),
        transforms.jitter(3),
        transforms.random_scale([0.9, 1.05, 1.1]),
        transforms.random_rotate([-10, 7, 10]),
        transforms.jitter(2),
    ]
    image = _smooth_image()
    for seed in range(4):
        fused = transforms.compose(transform_list)(image, _generator(seed))
        sequential = _sequential(transform_list, image, _generator(seed))
        assert fused.shape == sequential.shape == (2, 3, 52, 52)
        inner = (slice(None), slice(None), slice(16, -16), slice(16, -16))  # away from edges
        torch.testing.assert_close(fused[inner], sequential[inner], atol=0.01, rtol=0)


def test_fused_pad_and_integer_jitter_is_an_exact_shift():
    jitter = transforms.jitter(4)
    composed = transforms.compose([transforms.pad(4, "constant", constant_value=0.25), jitter])
    image = torch.rand(2, 3, 12, 12)
    wide = F.pad(image, (8, 8, 8, 8), value=0.25)  # (2, 3, 28, 28)
    for seed in range(4):
        shift_x, shift_y = (-jitter.matrix(_generator(seed))[:2, 2]).astype(int)
        expected = wide[..., 4 - shift_y : 24 - shift_y, 4 - shift_x : 24 - shift_x]
        fused = composed(image, _generator(seed))
        torch.testing.assert_close(fused, expected, atol=1e-5, rtol=0)
        # sequential application agrees wherever the padded image covers the output
        sequential = _sequential(composed.transforms, image, _generator(seed))
        torch.testing.assert_close(fused[..., 4:-4, 4:-4], sequential[..., 4:-4, 4:-4])


def test_fused_warp_fills_outside_with_pad_value():
    composed = transforms.compose([transforms.pad(2, mode="constant", constant_value=0.5),
                                   transforms.random_rotate([45])])  # fmt: skip
    output = composed(torch.ones(1, 1, 8, 8), None)
    assert output[0, 0, 0, 0] == pytest.approx(0.5)


@pytest.mark.parametrize("mode", ["reflect", "replicate", "circular"])
def test_pad_modes_match_torch(mode):
    image = torch.rand(1, 2, 6, 7)
    padded = transforms.pad(2, mode=mode)(image, None)
    torch.testing.assert_close(padded, F.pad(image, (2, 2, 2, 2), mode=mode))


def test_pad_constant_symmetric_and_uniform():
    image = torch.arange(3.0).view(1, 1, 1, 3).expand(1, 1, 3, 3)
    constant = transforms.pad(1, mode="CONSTANT", constant_value=0.7)(image, None)
    assert constant.shape == (1, 1, 5, 5) and constant[0, 0, 0, 0] == pytest.approx(0.7)
    symmetric = transforms.pad(2, mode="symmetric")(image, None)
    assert symmetric[0, 0, 2].tolist() == [1.0, 0.0, 0.0, 1.0, 2.0, 2.0, 1.0]
    uniform = transforms.pad(1, mode="constant", constant_value="uniform")
    first, second = uniform(image, _generator(1)), uniform(image, _generator(1))
    assert torch.equal(first, second) and 0 <= first[0, 0, 0, 0] < 1
    with pytest.raises(ValueError, match="mode must be one of"):
        transforms.pad(2, mode="wrap")


def test_crop_or_pad_to_centres():
    image = torch.arange(30.0).view(1, 1, 5, 6)
    cropped = transforms.crop_or_pad_to(3, 2)(image, None)
    torch.testing.assert_close(cropped, image[..., 1:4, 2:4])
    padded = transforms.crop_or_pad_to(7, 8)(image, None)
    assert padded.shape == (1, 1, 7, 8) and torch.equal(padded[..., 1:6, 1:7], image)
    assert padded[..., 0, :].abs().sum() == 0
    mixed = transforms.crop_or_pad_to(3, 10)(image, None)
    assert mixed.shape == (1, 1, 3, 10) and torch.equal(mixed[..., 2:8], image[..., 1:4, :])


def test_collapse_alpha_random():
    colour = torch.rand(2, 3, 16, 16)
    collapse = transforms.collapse_alpha_random()
    opaque = collapse(torch.cat([colour, torch.ones(2, 1, 16, 16)], 1), _generator(0))
    assert opaque.shape == (2, 3, 16, 16)
    torch.testing.assert_close(opaque, colour)
    transparent = torch.cat([colour, torch.zeros(2, 1, 16, 16)], 1)
    background = collapse(transparent, _generator(0))
    assert background.min() > 0 and background.max() < 1 and background.std() > 0.01
    assert torch.equal(background, collapse(transparent, _generator(0)))
    assert not torch.equal(background, collapse(transparent, _generator(1)))
    with pytest.raises(ValueError, match="alpha=True"):
        collapse(colour, None)


def test_normalize():
    image = torch.rand(2, 3, 4, 4)
    normalized = transforms.normalize([0.5, 0.4, 0.3], [0.2, 0.1, 0.5])(image, None)
    torch.testing.assert_close(normalized[:, 1], (image[:, 1] - 0.4) / 0.1)
    with pytest.raises(ValueError, match="channels"):
        transforms.normalize([0.5], [0.2])(image, None)


def test_gradients_flow_through_standard_transforms():
    params, image_f = param.image(24, batch=2, alpha=True)
    pipeline = transforms.compose(
        [transforms.collapse_alpha_random(), *transforms.standard_transforms,
         transforms.crop_or_pad_to(24, 24), transforms.normalize([0.5] * 3, [0.25] * 3)]
    )  # fmt: skip
    output = pipeline(image_f(), _generator(0))
    assert output.shape == (2, 3, 24, 24)
    output.square().sum().backward()
    assert params[0].grad is not None and params[0].grad.abs().sum() > 0


def test_compose_accepts_user_callables():
    image = torch.rand(1, 3, 8, 8)
    seen = []

    def with_keyword(image, *, generator=None):
        seen.append(generator)
        return image

    composed = transforms.compose([
        lambda x: x * 2,
        lambda x, g: x + torch.rand((), generator=g),
        with_keyword,
        torch.nn.Identity(),
        transforms.compose([transforms.jitter(1)]),  # nested compositions are flattened
    ])  # fmt: skip
    generator = _generator(0)
    output = composed(image, generator)
    assert output.shape == image.shape and seen == [generator]
    assert len(composed.transforms) == 5
    blur = torchvision.transforms.GaussianBlur(3)
    out = transforms.compose([blur])(image, generator)
    assert out.shape == image.shape
    with pytest.raises(TypeError, match="not a callable"):
        transforms.compose([transforms.jitter(1), 3])


def test_transforms_draw_on_cpu_under_a_device_context():
    image = torch.rand(1, 3, 16, 16)
    composed = transforms.compose(transforms.standard_transforms)
    with torch.device("meta"):
        output = composed(image, _generator(2))
    assert torch.equal(output, composed(image, _generator(2)))


def test_warp_matches_affine_definition():
    image = _smooth_image(batch=1, channels=1)
    shifted = warp(image, torch.tensor([[1.0, 0, -2], [0, 1, -1], [0, 0, 1]]).numpy())
    torch.testing.assert_close(shifted[..., 1:, 2:], image[..., :-1, :-2], atol=1e-5, rtol=0)
    # a general map with a larger output equals torch's affine_grid in normalized coordinates
    image = torch.rand(2, 3, 10, 14)
    matrix = torch.tensor([[0.9, -0.2, 1.5], [0.3, 1.1, -0.5], [0, 0, 1]], dtype=torch.float64)
    warped = warp(image, matrix.numpy(), size=(16, 18), fill=0.0)
    to_input = torch.diag(torch.tensor([2 / 14, 2 / 10, 1.0], dtype=torch.float64))
    from_output = torch.diag(torch.tensor([18 / 2, 16 / 2, 1.0], dtype=torch.float64))
    theta = (to_input @ matrix @ from_output)[:2].float().expand(2, 2, 3)
    grid = F.affine_grid(theta, [2, 3, 16, 18], align_corners=False)
    torch.testing.assert_close(warped, F.grid_sample(image, grid, align_corners=False))


def test_public_transform_signatures():
    for name in ("jitter", "pad", "random_scale", "random_rotate", "crop_or_pad_to", "normalize"):
        assert callable(getattr(transforms, name))
    assert list(inspect.signature(transforms.pad).parameters) == ["w", "mode", "constant_value"]
    with pytest.raises(ValueError, match=r"integer >= 0"):
        transforms.jitter(-1)
    with pytest.raises(ValueError, match="scales must be positive"):
        transforms.random_scale([0.0])
    with pytest.raises(ValueError, match="units"):
        transforms.random_rotate([1], units="turns")
