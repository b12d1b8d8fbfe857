"""Inputs the engine takes as given: clear errors, no global state, any dtype, dict outputs."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch
from tiny_models import TinyFlatHead, TinyNet
from torch import nn

import lucid_widgets as lw
from lucid_widgets.optvis import objectives as obj
from lucid_widgets.optvis import param
from lucid_widgets.optvis.hooks import LayerNotReachedError
from lucid_widgets.optvis.render import Optimization


def small(size: int = 16, batch: int = 1):
    return lambda: param.image(size, batch=batch)


def test_concurrent_seeded_renders_leave_the_global_rng_alone(tiny_net):
    torch.manual_seed(123)
    state = torch.random.get_rng_state()
    started = threading.Barrier(3, timeout=30)
    images, errors = {}, []

    def render(seed: int) -> None:
        try:
            started.wait()
            for _ in range(3):
                with Optimization(tiny_net, "conv2:1", param_f=small(), seed=seed) as run:
                    run.step()
                    images.setdefault(seed, run.image())
        except Exception as error:  # noqa: BLE001
            errors.append(error)

    threads = [threading.Thread(target=render, args=(seed,)) for seed in (1, 2)]
    for thread in threads:
        thread.start()
    started.wait()
    draws = [torch.rand(1) for _ in range(50)]  # the user draws meanwhile
    for thread in threads:
        thread.join(60)
    assert not errors
    torch.random.set_rng_state(state)
    torch.testing.assert_close(torch.cat(draws), torch.cat([torch.rand(1) for _ in range(50)]))
    with Optimization(tiny_net, "conv2:1", param_f=small(), seed=1) as run:
        run.step()
        torch.testing.assert_close(run.image(), images[1])  # seeded: the same pixels


def test_seeded_init_is_the_same_on_every_call_and_independent_of_global_state():
    with param.seeded(torch.Generator().manual_seed(5)):
        first = param.image(8)[1]()
    torch.manual_seed(999)
    with param.seeded(torch.Generator().manual_seed(5)):
        second = param.image(8)[1]()
    torch.testing.assert_close(first, second)


class DictOut(nn.Module):
    def __init__(self):
        super().__init__()
        self.body = TinyNet()

    def forward(self, x):
        logits = self.body(x)  # (B, 10)
        return {"features": logits[:, :4] * 0 + 7.0, "logits": logits}


def test_logits_of_a_dict_output_read_the_logits_key():
    torch.manual_seed(0)
    model = DictOut().eval()
    x = torch.rand(1, 3, 16, 16)
    with Optimization(model, obj.class_logit(9), param_f=lambda: ([x.requires_grad_()], lambda: x),
                      transforms=[], preprocess=False) as run:  # fmt: skip
        value = run.objective(run._activations(run.objective, x))
    torch.testing.assert_close(value, model(x)["logits"][:, 9].mean())
    with pytest.raises(IndexError, match="10 units"):  # no silent read of "features"
        lw.render_vis(model, obj.class_logit(12), param_f=small(), thresholds=(1,),
                      progress=False)  # fmt: skip


def test_logits_of_a_dict_without_them_raise():
    class Features(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 3)

        def forward(self, x):
            return {"features": self.conv(x)}

    with pytest.raises(LayerNotReachedError, match="'features'"):
        lw.render_vis(Features(), obj.class_logit(0), param_f=small(), thresholds=(1,),
                      progress=False)  # fmt: skip


@pytest.mark.parametrize("dtype", [torch.float64, torch.float16, torch.bfloat16])
def test_models_in_other_dtypes_render(tiny_net, dtype):
    model = tiny_net.to(dtype).eval()
    images = lw.render_vis(model, "conv2:1", param_f=small(), thresholds=(2,), progress=False,
                           seed=0)  # fmt: skip
    assert images[0].shape == (1, 16, 16, 3) and images[0].dtype == np.float32
    assert np.isfinite(images[0]).all()
    assert all(p.dtype == dtype for p in model.parameters())


def test_a_meta_model_gets_a_clear_message():
    with torch.device("meta"):
        model = TinyNet()
    with pytest.raises(ValueError, match="meta device"):
        lw.render_vis(model, "conv2:1", param_f=small(), thresholds=(1,), progress=False)


def test_preprocess_false_feeds_the_image_as_is(tiny_net):
    seen = []
    tiny_net.conv1.register_forward_pre_hook(lambda module, inputs: seen.append(inputs[0]))
    with Optimization(tiny_net, "conv2:1", param_f=small(), transforms=[], preprocess=False,
                      seed=0) as run:  # fmt: skip
        run.step()
        image = seen[-1].detach()
        assert float(image.min()) >= 0 and float(image.max()) <= 1  # not normalized
    images = lw.render_vis(tiny_net, "conv2:1", param_f=small(), thresholds=(1,),
                           preprocess=False, progress=False)  # fmt: skip
    assert images[0].shape == (1, 16, 16, 3)
    grid = lw.render_units(tiny_net, "conv2", [0, 1], size=16, steps=1, preprocess=False,
                           progress=False)  # fmt: skip
    assert grid.shape == (2, 16, 16, 3)
    with pytest.raises(TypeError, match="False"):
        lw.render_vis(tiny_net, "conv2:1", preprocess=True, thresholds=(1,), progress=False)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        (dict(thresholds=(2.5,)), "integer step counts"),
        (dict(thresholds=(True,)), "integer step counts"),
        (dict(thresholds=(4, 2)), "increasing"),
        (dict(seed=1.5), "seed must be an integer"),
        (dict(seed=True), "seed must be an integer"),
    ],
)
def test_bad_render_arguments_are_rejected(tiny_net, kwargs, match):
    with pytest.raises(ValueError, match=match):
        lw.render_vis(tiny_net, "conv2:1", param_f=small(), progress=False, **kwargs)


def test_steps_must_be_a_real_count(tiny_net):
    for steps in (True, 2.0, 0):
        with pytest.raises(ValueError, match="positive integer"):
            list(lw.optimize(tiny_net, "conv2:1", steps=steps, param_f=small()))


def test_a_huge_seed_is_reduced_not_overflowed(tiny_net):
    images = lw.render_vis(tiny_net, "conv2:1", param_f=small(), thresholds=(1,), seed=2**70,
                           progress=False)  # fmt: skip
    again = lw.render_vis(tiny_net, "conv2:1", param_f=small(), thresholds=(1,), seed=2**70,
                          progress=False)  # fmt: skip
    np.testing.assert_array_equal(images[0], again[0])
    grid = lw.render_units(tiny_net, "conv2", [0], size=16, steps=1, seed=2**64 - 1,
                           progress=False)  # fmt: skip
    assert grid.shape == (1, 16, 16, 3)


def test_a_negative_batch_index_is_rejected():
    for batch in (-1, 1.5, True):
        with pytest.raises(ValueError, match="batch index"):
            obj.channel("conv2", 1, batch=batch)


def test_every_unit_is_checked_before_the_first_step(tiny_net):
    steps = []
    with pytest.raises(IndexError, match="16 units"):
        lw.render_units(tiny_net, "conv2", range(10**6), size=16, steps=2, progress=False,
                        stop=lambda: bool(steps.append(1)))  # fmt: skip
    assert steps == []  # not one step was taken


def test_channels_last_falls_back_by_trying_contiguous():
    torch.manual_seed(0)
    model = TinyFlatHead().eval()
    with Optimization(
        model, "fc:1", param_f=small(8), channels_last=True, seed=0, transforms=[]
    ) as run:
        run.step()
        assert run.channels_last is False
        run.step()
    with Optimization(
        model, "conv:1", param_f=small(8), channels_last=True, seed=0, transforms=[]
    ) as run:
        run.step()  # stops before the .view: channels-last stays
        assert run.channels_last is True
