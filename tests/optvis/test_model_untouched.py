"""The engine never disturbs the user's model and never renders a stale copy of it."""

from __future__ import annotations

import threading

import pytest
import torch
from tiny_models import TinyBatchNormNet, TinyFlatHead
from torch import nn

import lucid_widgets as lw
from lucid_widgets.optvis import param
from lucid_widgets.optvis.render import Optimization
from lucid_widgets.optvis.units import layer_units
from lucid_widgets.zoo import layers
from lucid_widgets.zoo.receptive_field import receptive_field_boxes


class GainNet(TinyBatchNormNet):
    """A forward that reads a plain attribute."""

    gain = 1.0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(self.stem_bn(self.stem(x)))
        x = self.relu(self.bn(self.conv(x)) * self.gain)
        return self.fc(x.mean((2, 3)))


@pytest.fixture
def net() -> GainNet:
    torch.manual_seed(0)
    return GainNet().eval()


def _render(model: nn.Module, fold: bool = True, objective: str = "fc:0") -> torch.Tensor:
    with Optimization(model, objective, param_f=lambda: param.image(16), seed=0,
                      transforms=[], fold_batchnorm=fold) as run:  # fmt: skip
        for _ in range(3):
            run.step()
        return run.image()


def _negate_bn_weight(m):
    m.bn.weight.data.mul_(-3)  # .data: the version counter does not move


def _change_eps(m):
    m.bn.eps = 5.0


def _set_gain(m):
    m.gain = -2.0


def _patch_conv_forward(m):
    conv = m.conv
    m.conv.forward = lambda x: nn.functional.conv2d(x, -conv.weight, conv.bias, padding=1)


def _flagged_hook(m):
    m.flag = False
    m.bn.register_forward_hook(lambda mod, inputs, out: -out if m.flag else None)
    _render(m)  # a first render with the hook off
    m.flag = True


@pytest.mark.parametrize(
    "edit", [_negate_bn_weight, _change_eps, _set_gain, _patch_conv_forward, _flagged_hook]
)
def test_a_render_shows_the_model_as_it_is_when_it_starts(net, edit):
    before = _render(net)  # a first (folded) render
    edit(net)
    after = _render(net)
    torch.testing.assert_close(after, _render(net, fold=False), rtol=1e-3, atol=1e-4)
    assert (after - before).abs().max() > 1e-3  # the edit shows


def test_internal_passes_fire_no_user_hook_and_steps_honour_them(net):
    """No dry pass, probe or check fires a hook; every step fires the hook that prunes."""
    late, seen = [], []
    net.fc.register_forward_hook(lambda *args: late.append(1))
    mask = torch.zeros(8, 1, 1)
    mask[3] = 1.0

    def prune(module, inputs, output):
        seen.append(module)
        return output * mask

    net.stem_bn.register_forward_hook(prune)
    lw.render_vis(net, "bn:3", param_f=lambda: param.image(16), thresholds=(4,),
                  progress=False)  # fmt: skip
    assert late == []  # the steps stop before fc; nothing else ran the model
    assert len(seen) == 4 and all(module is net.stem_bn for module in seen)  # once per step
    with Optimization(net, "stem_bn:5", param_f=lambda: param.image(16), seed=0) as run:
        values = run._activations(run.objective, run.image())["stem_bn"]  # the pruned unit
        values = values.detach()
        assert float(values[:, 5].abs().max()) == 0 and float(values[:, 3].abs().max()) > 0
    late.clear()
    layer_units(net, "bn")
    layers(net)
    receptive_field_boxes(net, "bn", method="measured")
    assert late == [] and len(seen) == 5  # no probe fired a hook


def test_hooks_on_a_model_without_them_do_not_fire_in_probes(net):
    calls = []
    handle = net.register_forward_hook(lambda *args: calls.append(1))
    handle.remove()
    net.fc.register_forward_pre_hook(lambda *args: calls.append(1))
    lw.render_vis(net, "bn:0", param_f=lambda: param.image(16), thresholds=(2,), progress=False)
    assert layer_units(net, "bn") == 12 and calls == []


def test_a_render_in_a_thread_leaves_the_model_free_for_training(net):
    """While a render runs, the user trains and backpropagates the same model in this thread."""
    net.train()
    at_step, resume = threading.Event(), threading.Event()
    flags = [p.requires_grad for p in net.parameters()]
    errors = []

    def callback(step):
        if step.step == 2:
            at_step.set()
            assert resume.wait(30), "the main thread never resumed the render"

    def render():
        try:
            lw.render_vis(net, "bn:1", param_f=lambda: param.image(16), thresholds=(5,),
                          progress=False, callback=callback)  # fmt: skip
        except Exception as error:  # noqa: BLE001
            errors.append(error)
            at_step.set()

    thread = threading.Thread(target=render)
    thread.start()
    assert at_step.wait(30)
    optimizer = torch.optim.SGD(net.parameters(), lr=0.1)
    loss = net(torch.rand(2, 3, 16, 16)).sum()
    loss.backward()  # no "element 0 of tensors does not require grad"
    optimizer.step()
    net.eval()
    net.train()  # a mode set mid-run stays
    resume.set()
    thread.join(60)
    assert not errors and not thread.is_alive()
    assert net.training and all(m.training for m in net.modules())
    assert [p.requires_grad for p in net.parameters()] == flags
    assert net.conv.weight.grad is not None


def test_a_render_computes_no_weight_gradient(net):
    net.conv.weight.requires_grad_(True)
    lw.render_vis(net, "bn:1", param_f=lambda: param.image(16), thresholds=(2,), progress=False)
    assert all(p.grad is None for p in net.parameters())
    assert all(p.requires_grad for p in net.parameters())


def test_a_forward_closing_over_the_model_is_run_itself(net):
    """A replaced forward that calls the model's own modules: the copy would read nothing."""
    original = net.forward
    net.forward = lambda x: original(x)
    images = lw.render_vis(net, "bn:1", param_f=lambda: param.image(16), thresholds=(2,),
                           progress=False, seed=0)  # fmt: skip
    assert images[0].shape == (1, 16, 16, 3)
    with Optimization(net, "bn:1", param_f=lambda: param.image(16)) as run:
        run.step()
        assert run.network is net


def test_a_head_that_needs_another_size_still_renders_a_shadow():
    model = TinyFlatHead().train()  # its head takes 8 x 8 inputs only
    with Optimization(model, "conv:1", param_f=lambda: param.image(16), transforms=[]) as run:
        run.step()
        assert run.network is not model  # the failing full check pass did not rule it out
        assert model.training  # so the model's flags stay as the user set them
