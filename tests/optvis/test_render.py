"""The renderer: truncated forward passes, reproducible seeds, the model left as found, errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import lucid_widgets as lw
from lucid_widgets.optvis import objectives as obj
from lucid_widgets.optvis import param
from lucid_widgets.optvis.hooks import LayerNotFoundError, LayerNotReachedError, capture, frozen
from lucid_widgets.optvis.redirected_relu import redirected_relu
from lucid_widgets.optvis.render import Optimization


def small(batch: int = 1, size: int = 24):
    return lambda: param.image(size, batch=batch)


def _state(model: nn.Module):
    return (
        [(name, p.requires_grad, p.detach().clone()) for name, p in model.named_parameters()],
        [(name, m.training) for name, m in model.named_modules()],
    )


def _assert_same_state(model: nn.Module, state) -> None:
    params, modes = state
    for (name, flag, value), (_, parameter) in zip(params, model.named_parameters(), strict=True):
        assert parameter.requires_grad == flag, name
        assert torch.equal(parameter.detach(), value), name
    assert [(n, m.training) for n, m in model.named_modules()] == modes
    for module in model.modules():
        assert not module._forward_hooks and not module._forward_pre_hooks
        assert "forward" not in module.__dict__


def test_render_vis_returns_one_array_per_threshold(tiny_net):
    images = lw.render_vis(
        tiny_net, "conv2:3", param_f=small(batch=2), thresholds=(3, 6), seed=0, progress=False
    )
    assert [image.shape for image in images] == [(2, 24, 24, 3), (2, 24, 24, 3)]
    assert all(
        image.dtype == np.float32 and 0 <= image.min() <= image.max() <= 1 for image in images
    )
    assert not np.array_equal(images[0], images[1])


def test_seed_reproduces_bit_for_bit_and_differs_between_seeds(tiny_net):
    def render(seed):
        return lw.render_vis(
            tiny_net, "conv2:1", param_f=small(batch=2), thresholds=(5,), seed=seed, progress=False
        )[0]

    first, again, other = render(3), render(3), render(4)
    assert np.array_equal(first, again)
    assert not np.array_equal(first, other)


def test_seed_leaves_global_rng_alone(tiny_net):
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    lw.render_vis(tiny_net, "conv1:0", param_f=small(), thresholds=(2,), seed=0, progress=False)
    assert torch.equal(torch.rand(3), expected)


def test_forward_stops_after_last_hooked_layer(tiny_net):
    calls = []
    tiny_net.fc.register_forward_hook(lambda *args: calls.append("fc"))
    tiny_net.conv2.register_forward_hook(lambda *args: calls.append("conv2"))
    lw.render_vis(tiny_net, "conv1:0", param_f=small(), thresholds=(3,), progress=False)
    assert calls == []
    lw.render_vis(tiny_net, "conv2:0", param_f=small(), thresholds=(2,), progress=False)
    assert calls == ["conv2", "conv2"]
    lw.render_vis(tiny_net, obj.class_logit(1), param_f=small(), thresholds=(1,), progress=False)
    assert calls[-2:] == ["conv2", "fc"]


def test_input_only_objective_runs_no_forward(tiny_net):
    calls = []
    tiny_net.conv1.register_forward_hook(lambda *args: calls.append(1))
    lw.render_vis(
        tiny_net, -obj.total_variation(), param_f=small(), thresholds=(2,), progress=False
    )
    assert calls == []


def test_model_left_exactly_as_found(tiny_net):
    tiny_net.train()
    tiny_net.conv1.weight.requires_grad_(False)
    tiny_net.fc.eval()
    state = _state(tiny_net)
    lw.render_vis(tiny_net, "late:2", param_f=small(), thresholds=(4,), progress=False)
    _assert_same_state(tiny_net, state)
    assert tiny_net.conv2.weight.grad is None  # weights were frozen: no gradient computed


def test_model_restored_when_objective_raises(tiny_net):
    tiny_net.train()
    state = _state(tiny_net)

    def broken(acts):
        raise RuntimeError("boom")

    objective = obj.Objective(broken, "broken", {"conv2"})
    with pytest.raises(RuntimeError, match="boom"):
        lw.render_vis(tiny_net, objective, param_f=small(), thresholds=(2,), progress=False)
    _assert_same_state(tiny_net, state)


def test_unknown_layer_lists_closest_names(tiny_net):
    with pytest.raises(LayerNotFoundError, match="conv2") as info:
        lw.render_vis(tiny_net, "conv3:1", param_f=small(), progress=False)
    assert "Closest names" in str(info.value)
    with pytest.raises(KeyError):  # also a KeyError, for dict-style callers
        lw.render_vis(tiny_net, "lat:1", param_f=small(), progress=False)


def test_unit_out_of_range_names_the_count(tiny_net):
    state = _state(tiny_net)
    with pytest.raises(IndexError, match="has 16 units"):
        lw.render_vis(tiny_net, "conv2:99", param_f=small(), progress=False)
    _assert_same_state(tiny_net, state)


def test_layer_not_reached_is_an_error(tiny_net):
    tiny_net.unused = nn.Conv2d(16, 4, 1)
    with pytest.raises(LayerNotReachedError, match="unused"):
        lw.render_vis(tiny_net, "unused:1", param_f=small(), progress=False)
    assert not tiny_net.unused._forward_hooks


def test_non_finite_loss_is_an_error(tiny_net):
    objective = obj.channel("conv2", 1) / 0.0 * 0.0
    with pytest.raises(FloatingPointError, match="step 1"):
        lw.render_vis(tiny_net, objective, param_f=small(), progress=False)


@pytest.mark.parametrize("thresholds", [(), (0,), (8, 4), ("a",), (5, 5)])
def test_bad_thresholds(tiny_net, thresholds):
    with pytest.raises(ValueError, match="thresholds"):
        lw.render_vis(tiny_net, "conv2:1", param_f=small(), thresholds=thresholds, progress=False)


def test_bad_model_and_steps(tiny_net):
    with pytest.raises(TypeError, match="nn.Module"):
        lw.render_vis(object(), "conv2:1")
    with pytest.raises(ValueError, match="steps"):
        list(lw.optimize(tiny_net, "conv2:1", steps=0))


def test_channel_mismatch_is_explained():
    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU())
    with pytest.raises(ValueError, match="channel"):
        lw.render_vis(model, "0:1", param_f=lambda: param.image(16), progress=False)
    images = lw.render_vis(
        model, "0:1", param_f=lambda: param.image(16, channels=1), thresholds=(2,), progress=False
    )
    assert images[0].shape == (1, 16, 16, 1)


def test_alpha_images_are_composited_for_the_model(tiny_net):
    images = lw.render_vis(
        tiny_net, "conv2:1", param_f=lambda: param.image(16, alpha=True), thresholds=(2,),
        progress=False,
    )  # fmt: skip
    assert images[0].shape == (1, 16, 16, 4)

    def fixed(rgb: float, alpha: float):
        image = torch.full((1, 4, 8, 8), rgb)
        image[:, 3] = alpha
        leaf = torch.zeros(1, requires_grad=True)
        return lambda: ([leaf], lambda: image + 0 * leaf)

    def seen(rgb: float, alpha: float) -> torch.Tensor:  # what the network is fed
        run = Optimization(tiny_net, "conv2:1", param_f=fixed(rgb, alpha), transforms=[], seed=0,
                           preprocess=False)  # fmt: skip
        return run._network_input(run.image())

    torch.testing.assert_close(seen(0.3, 1.0), torch.full((1, 3, 8, 8), 0.3))  # opaque: itself
    background = seen(0.3, 0.0)  # transparent: the random background only
    torch.testing.assert_close(background, seen(0.9, 0.0))
    assert not torch.allclose(background, torch.full_like(background, 0.3))
    half = seen(0.3, 0.5)
    torch.testing.assert_close(half, 0.5 * 0.3 + 0.5 * background)


def test_optimize_yields_steps_and_restores_on_break(tiny_net):
    tiny_net.train()
    state = _state(tiny_net)
    seen = []
    for step in lw.optimize(tiny_net, "conv2:1", steps=10, param_f=small(batch=2), seed=0):
        seen.append(step)
        if step.step == 4:
            break
    assert [s.step for s in seen] == [1, 2, 3, 4]
    assert seen[0].image.shape == (2, 3, 24, 24) and not seen[0].image.requires_grad
    assert seen[-1].loss < seen[0].loss
    assert seen[0].objective == "channel('conv2', 1)"
    del seen
    _assert_same_state(tiny_net, state)


def test_objective_swaps_mid_run(tiny_net):
    with lw.Optimization(tiny_net, "conv2:1", param_f=small(), seed=0) as run:
        assert run.step().objective == "channel('conv2', 1)"
        run.objective = obj.channel("conv1", 2) - obj.channel("conv2", 3)
        assert run.step().objective == "channel('conv1', 2) - channel('conv2', 3)"
        with pytest.raises(LayerNotFoundError):
            run.objective = "nope:1"
        assert run.step().objective == "channel('conv1', 2) - channel('conv2', 3)"


def test_callback_and_keyboard_interrupt_return_partial(tiny_net):
    steps = []

    def callback(step):
        steps.append(step.step)
        if step.step == 3:
            raise KeyboardInterrupt

    images = lw.render_vis(
        tiny_net, "conv2:1", param_f=small(), thresholds=(2, 50), callback=callback, progress=False
    )
    assert steps == [1, 2, 3]
    assert len(images) == 2  # the threshold reached, plus the image at interruption


def test_stop_event_ends_render(tiny_net):
    import threading

    stop = threading.Event()
    steps = []

    def callback(step):
        steps.append(step.step)
        if step.step == 5:
            stop.set()

    images = lw.render_vis(
        tiny_net, "conv2:1", param_f=small(), thresholds=(100,), callback=callback, stop=stop,
        progress=False,
    )  # fmt: skip
    assert steps == [1, 2, 3, 4, 5]  # no step after the stop
    assert len(images) == 1 and images[0].shape == (1, 24, 24, 3)  # the current image


def test_stop_set_before_the_first_step_returns_the_start_image(tiny_net):
    import threading

    stop = threading.Event()
    stop.set()
    start = lw.render_vis(tiny_net, "conv2:1", param_f=small(), thresholds=(1,), seed=3,
                          transforms=[], progress=False, stop=stop)  # fmt: skip
    with Optimization(tiny_net, "conv2:1", param_f=small(), seed=3) as run:
        expected = run.image()
    assert len(start) == 1
    np.testing.assert_allclose(start[0], expected.permute(0, 2, 3, 1).numpy(), atol=1e-6)
    units = lw.render_units(tiny_net, "conv2", range(3), size=16, steps=2, progress=False,
                            stop=stop)  # fmt: skip
    assert units.shape == (0, 16, 16, 3)


def test_redirected_relu_revives_a_dead_start():
    model = nn.Sequential(nn.Conv2d(3, 2, 1), nn.ReLU())
    with torch.no_grad():
        model[0].weight.fill_(1.0)
        model[0].bias.fill_(-10.0)  # every unit dead for inputs in [0, 1]
    image = torch.rand(1, 3, 4, 4, requires_grad=True)
    model(image)[:, 0].mean().neg().backward()
    assert image.grad.abs().sum() == 0  # plain ReLU: stuck
    image.grad = None
    with redirected_relu(model):
        model(image)[:, 0].mean().neg().backward()
    assert (image.grad < 0).all()  # descent direction raises the input, towards the active range
    assert "forward" not in model[1].__dict__


def test_capture_is_thread_local_and_counts_freezes(tiny_net):
    tiny_net.train()
    with frozen(tiny_net), frozen(tiny_net):
        assert not tiny_net.training
    assert tiny_net.training
    with capture(tiny_net, ["conv1", "early"]) as run:
        acts = run(torch.rand(1, 3, 8, 8))
    assert set(acts) == {"conv1", "early"} and acts["early"].shape == (1, 8, 8, 8)
    assert not tiny_net.conv1._forward_hooks


def test_render_units_batches_units(tiny_net):
    grid = lw.render_units(tiny_net, "conv2", units=[0, 3, 5], size=16, steps=3, batch_size=2,
                           progress=False, seed=0)  # fmt: skip
    assert grid.shape == (3, 16, 16, 3)
    streamed = list(lw.iter_units(tiny_net, "conv2", range(5), size=16, steps=2, batch_size=2))
    assert [units for units, _ in streamed] == [[0, 1], [2, 3], [4]]
    with pytest.raises(IndexError, match="16 units"):
        lw.render_units(tiny_net, "conv2", units=[20], size=16, steps=1, progress=False)


def test_render_units_matches_separate_objectives(tiny_net):
    from lucid_widgets.optvis.units import unit_batch_objective

    acts = obj.Activations({"conv2": torch.rand(2, 16, 4, 4)})
    batched = unit_batch_objective("conv2", [3, 7])(acts)
    separate = obj.channel("conv2", 3, batch=0)(acts) + obj.channel("conv2", 7, batch=1)(acts)
    assert float(batched) == pytest.approx(float(separate))


class _ViewNet(nn.Module):
    """Flattens a feature map with .view, which channels-last tensors cannot do."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, stride=4)
        self.fc = nn.Linear(4 * 4 * 4, 3)

    def forward(self, x):
        features = self.conv(x)
        return self.fc(features.view(features.shape[0], -1))


def test_channels_last_falls_back_for_models_that_need_contiguous_input():
    torch.manual_seed(0)
    model = _ViewNet()
    with lw.Optimization(
        model, obj.class_logit(1), param_f=small(size=16), transforms=[], seed=0
    ) as run:
        assert run.channels_last  # on by default on CPU
        run.step()
        assert not run.channels_last  # the .view failed once; contiguous from then on
        run.step()


def test_channels_last_gives_the_same_render(tiny_net):
    def render(channels_last):
        with lw.Optimization(
            tiny_net, "conv2:3", param_f=small(), seed=0, channels_last=channels_last
        ) as run:
            for _ in range(4):
                run.step()
            return run.image()

    assert torch.allclose(render(True), render(False), atol=1e-4)


def test_micro_batches_yield_whole_batches_reproducibly(tiny_net, monkeypatch):
    import lucid_widgets.optvis.units as units_module

    sizes = []
    original = units_module.unit_batch_objective

    def recording(layer, units, kind="channel"):
        sizes.append(len(units))
        return original(layer, units, kind)

    monkeypatch.setattr(units_module, "unit_batch_objective", recording)

    def stream():
        return list(lw.iter_units(tiny_net, "conv2", range(6), size=16, steps=2, batch_size=4,
                                  micro_batch=2, seed=1))  # fmt: skip

    first = stream()
    assert [units for units, _ in first] == [[0, 1, 2, 3], [4, 5]]
    assert first[0][1].shape == (4, 16, 16, 3)
    assert sizes == [2, 2, 2]  # optimizations of at most micro_batch units
    again = stream()
    assert all(np.array_equal(a[1], b[1]) for a, b in zip(first, again, strict=True))


def test_parallel_workers_match_one_worker_and_restore_threads(tiny_net):
    threads = torch.get_num_threads()
    options = dict(size=16, steps=3, batch_size=4, micro_batch=1, seed=2, progress=False)
    one = lw.render_units(tiny_net, "conv2", range(4), workers=1, **options)
    two = lw.render_units(tiny_net, "conv2", range(4), workers=2, **options)
    np.testing.assert_allclose(one, two, atol=1e-5)
    assert torch.get_num_threads() == threads


def test_parallel_workers_stop_and_raise_cleanly(tiny_net):
    import threading

    state = _state(tiny_net)
    steps = []
    both = threading.Barrier(2, timeout=30)  # broken unless two threads ask at once

    def stop() -> bool:  # asked before every step of every worker
        if threading.get_ident() not in steps:
            both.wait()
        steps.append(threading.get_ident())
        return len(steps) > 6

    streamed = list(lw.iter_units(tiny_net, "conv2", range(8), size=16, steps=50, batch_size=8,
                                  micro_batch=2, workers=2, stop=stop))  # fmt: skip
    assert streamed == []  # stopped before the batch finished
    assert len(set(steps)) == 2  # two worker threads took steps
    with pytest.raises(IndexError, match="16 units"):
        lw.render_units(tiny_net, "conv2", [0, 99], size=16, steps=2, micro_batch=1, workers=2,
                        progress=False)  # fmt: skip
    _assert_same_state(tiny_net, state)
    assert not [t for t in threading.enumerate() if t.name.startswith("lucid-units")]


def _lucid_redirected_grad(x: torch.Tensor, grad: torch.Tensor, upper: float) -> torch.Tensor:
    """Lucid's redirected_relu_grad / redirected_relu6_grad, written out plainly."""
    blocked = (x < 0) | (x > upper)
    relu_grad = torch.where(blocked, torch.zeros_like(grad), grad)
    pushing = ((x < 0) & (grad > 0)) | ((x > upper) & (grad < 0))
    redirected = torch.where(pushing, torch.zeros_like(grad), grad)
    alive = relu_grad.flatten(1).norm(dim=1) > 0
    return torch.where(alive.view(-1, 1, 1, 1), relu_grad, redirected)


@pytest.mark.parametrize("activation", [nn.ReLU(), nn.ReLU6()])
def test_redirected_gradient_matches_lucids_formula(activation):
    upper = 6.0 if isinstance(activation, nn.ReLU6) else float("inf")
    x = torch.randn(3, 4, 5, 5) * 4
    x[1] = -x[1].abs() - 0.1  # element 1: every unit dead
    x[2, :, 0, 0] = 7.0  # above ReLU6's range
    grad = torch.randn_like(x)
    leaf = x.clone().requires_grad_(True)
    model = nn.Sequential(activation)
    with redirected_relu(model):
        model(leaf).backward(grad)
    torch.testing.assert_close(leaf.grad, _lucid_redirected_grad(x, grad, upper))
