"""Default recipes: MACO without a param_f, Lucid's defaults around a user's own image, and
``recipe="lucid"`` for the classic defaults (render_vis, Optimization, render_units)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from tiny_models import TinyNet

import lucid_widgets as lw
from lucid_widgets.optvis.param import MacoImage, image
from lucid_widgets.optvis.param.maco import MacoCrops
from lucid_widgets.optvis.recipes import choose, render_options
from lucid_widgets.optvis.render import Optimization


def test_a_render_without_param_f_uses_macos_recipe(tiny_net):
    with Optimization(tiny_net, "conv2:1", seed=0) as run:
        assert isinstance(run._image_f, MacoImage) and run._image_f.size == (256, 256)
        assert isinstance(run.optimizer, torch.optim.NAdam)
        assert run.optimizer.param_groups[0]["lr"] == 1.0
        assert run.redirected_relu_steps == 0
        crops = run.transforms(torch.rand(1, 3, 256, 256), torch.Generator().manual_seed(0))
        assert crops.shape == (1, 3, 128, 128)  # MACO's crop of the 2x canvas
        canvas = run.step().image  # (1, 3, 256, 256): a step sees the canvas
        assert canvas.shape == (1, 3, 256, 256)
        centre = run._image_f()[..., 64:192, 64:192].detach()  # the middle, at its own scale
        torch.testing.assert_close(run.image(), centre)  # the result: the canvas's centre
    images = lw.render_vis(tiny_net, "conv2:1", thresholds=(2,), progress=False, seed=0)
    assert images[0].shape == (1, 128, 128, 3)


def test_recipe_lucid_gives_the_classic_defaults_back(tiny_net):
    with Optimization(tiny_net, "conv2:1", recipe="lucid", seed=0) as run:
        assert not isinstance(run._image_f, MacoImage)
        assert isinstance(run.optimizer, torch.optim.Adam)
        assert run.optimizer.param_groups[0]["lr"] == 0.05
        assert run.redirected_relu_steps == 16
        assert run.image().shape == (1, 3, 128, 128)
    classic = lw.render_vis(
        tiny_net, "conv2:1", thresholds=(3,), progress=False, seed=0, recipe="lucid"
    )
    spelled_out = lw.render_vis(
        tiny_net, "conv2:1", param_f=lambda: image(128), seed=0, thresholds=(3,),
        optimizer=lambda p: torch.optim.Adam(p, lr=0.05), redirected_relu_steps=16,
        transforms=lw.transforms.standard_transforms, progress=False,
    )  # fmt: skip
    np.testing.assert_array_equal(classic[0], spelled_out[0])


def test_an_own_param_f_keeps_lucids_defaults_for_the_rest(tiny_net):
    with Optimization(tiny_net, "conv2:1", param_f=lambda: image(16)) as run:
        assert isinstance(run.optimizer, torch.optim.Adam) and run.redirected_relu_steps == 16
        out = run.transforms(torch.rand(1, 3, 16, 16), torch.Generator().manual_seed(0))
        assert out.shape[-1] != 16  # Lucid's padding and scaling, not MACO's crop to a size
    options = render_options(None, 16, param_f=lambda: image(16))
    assert options["transforms"] is None  # the standard transforms
    with Optimization(tiny_net, "conv2:1", optimizer=lambda p: torch.optim.SGD(p, lr=1)) as run:
        assert isinstance(run._image_f, MacoImage)  # MACO's image keeps MACO's crops
        assert isinstance(run.optimizer, torch.optim.SGD)
        assert isinstance(run._transform.transforms[0], MacoCrops)


def test_bad_recipes_say_what_is_valid(tiny_net):
    with pytest.raises(ValueError, match=r"recipe must be one of \('maco', 'lucid'\)"):
        Optimization(tiny_net, "conv2:1", recipe="horama")
    with pytest.raises(ValueError, match="recipe='maco' makes its own image"):
        choose("maco", lambda: image(16))
    with pytest.raises(ValueError, match="MACO renders RGB images, but the model takes 1-channel"):
        Optimization(TinyNet(in_channels=1), "conv2:1")
    assert choose(None) == "maco" and choose("lucid", lambda: image(16)) == "lucid"


def test_render_units_defaults_to_maco_at_the_requested_size(tiny_net):
    options = dict(size=16, steps=2, batch_size=2, seed=0, progress=False)
    maco_grid = lw.render_units(tiny_net, "conv2", [0, 1, 2], **options)
    assert maco_grid.shape == (3, 16, 16, 3)
    classic = lw.render_units(tiny_net, "conv2", [0, 1, 2], recipe="lucid", **options)
    spelled_out = lw.render_units(
        tiny_net, "conv2", [0, 1, 2], param_f=lambda batch: image(16, batch=batch), **options
    )
    np.testing.assert_array_equal(classic, spelled_out)  # "lucid" = the old defaults
    assert not np.allclose(maco_grid, classic)
