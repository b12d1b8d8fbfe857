"""The batch-norm-folded shadow network: same outputs, model untouched, used only where exact."""

from __future__ import annotations

import pytest
import torch
from tiny_models import TinyBatchNormNet
from torch import nn

import lucid_widgets as lw
from lucid_widgets.optvis import param
from lucid_widgets.optvis.fast import folding
from lucid_widgets.optvis.hooks import capture
from lucid_widgets.optvis.render import Optimization


@pytest.fixture
def bn_net() -> TinyBatchNormNet:
    torch.manual_seed(0)
    return TinyBatchNormNet().eval()


def _input(size: int = 20) -> torch.Tensor:
    return torch.rand(2, 3, size, size, generator=torch.Generator().manual_seed(1))


@pytest.mark.parametrize("bias", [False, True])
@pytest.mark.parametrize("affine", [False, True])
def test_fold_conv_norm_matches_conv_then_norm(bias, affine):
    torch.manual_seed(0)
    conv = nn.Conv2d(3, 6, 3, bias=bias)
    norm = nn.BatchNorm2d(6, affine=affine).eval()
    norm.running_mean.uniform_(-1, 1)
    norm.running_var.uniform_(0.2, 3)
    if affine:
        nn.init.uniform_(norm.weight, -2, 2)
        nn.init.uniform_(norm.bias, -1, 1)
    weight, shift = folding.fold_conv_norm(conv, norm)
    x = torch.randn(2, 3, 9, 9)
    with torch.no_grad():
        expected = norm(conv(x))
    torch.testing.assert_close(nn.functional.conv2d(x, weight, shift), expected)


def test_shadow_folds_pairs_and_leaves_the_model_alone(bn_net):
    before = {k: v.clone() for k, v in bn_net.state_dict().items()}
    folded = folding.folded_network(bn_net, _input())
    assert folded is not None
    assert folded.pairs == {"stem": "stem_bn", "conv": "bn"}
    assert isinstance(folded.network.bn, nn.Identity) and isinstance(bn_net.bn, nn.BatchNorm2d)
    assert folded.network.fc.weight is bn_net.fc.weight  # unfolded tensors are shared
    assert folded.network.conv.weight is not bn_net.conv.weight
    assert folded.image_convs == ["stem"]
    for key, value in bn_net.state_dict().items():
        assert torch.equal(value, before[key]), key
    x = _input(28)
    with torch.no_grad():
        torch.testing.assert_close(folded.network(x), bn_net(x), rtol=1e-4, atol=1e-5)
    assert folded.can_read(["bn", "relu", "fc", "stem_bn"])
    assert not folded.can_read(["conv"]) and not folded.can_read(["stem"])  # raw conv outputs


def test_nothing_is_cached_each_call_folds_the_network_as_it_is(bn_net):
    first = folding.folded_network(bn_net, _input())
    assert folding.folded_network(bn_net, _input()) is not first
    with torch.no_grad():
        bn_net.bn.running_mean.add_(0.5)  # an in-place edit, as load_state_dict makes
    second = folding.folded_network(bn_net, _input())
    x = _input(16)
    with torch.no_grad():
        torch.testing.assert_close(second.network(x), bn_net(x), rtol=1e-4, atol=1e-5)
        assert not torch.allclose(first.network(x), bn_net(x), rtol=1e-3)


def test_no_shadow_in_training_mode_or_without_batch_norm(bn_net, tiny_net):
    assert folding.folded_network(bn_net.train(), _input()) is None
    assert folding.folded_network(tiny_net.eval(), _input()) is None


class SharedConvOutput(nn.Module):
    """The conv's output feeds the batch norm *and* a skip: folding it would be wrong."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 3, 3, padding=1)
        self.bn = nn.BatchNorm2d(3)
        with torch.no_grad():
            self.bn.running_mean.fill_(0.7)

    def forward(self, x):
        y = self.conv(x)
        return self.bn(y) + y


def test_a_conv_output_used_twice_is_not_folded():
    torch.manual_seed(0)
    model = SharedConvOutput().eval()
    assert folding.folded_network(model, _input()) is None  # the check against the model fails
    images = lw.render_vis(model, "bn:0", param_f=lambda: param.image(16), thresholds=(2,),
                           progress=False, seed=0)  # fmt: skip
    assert images[0].shape == (1, 16, 16, 3)


def test_folded_render_matches_the_unfolded_render(bn_net):
    losses = {}
    for fold in (False, True):
        with Optimization(bn_net, "bn:3", param_f=lambda: param.image(24), seed=0,
                          fold_batchnorm=fold) as run:  # fmt: skip
            losses[fold] = [run.step().loss for _ in range(4)]
            assert isinstance(run.network.bn, nn.Identity) is fold
            assert run.network is not bn_net  # a shadow copy either way
            image = run.image()
        losses[fold].append(image)
    for a, b in zip(losses[False][:-1], losses[True][:-1], strict=True):
        assert a == pytest.approx(b, rel=1e-3, abs=1e-5)
    torch.testing.assert_close(losses[False][-1], losses[True][-1], rtol=1e-3, atol=1e-4)


def test_raw_conv_objective_runs_the_unfolded_copy(bn_net):
    with Optimization(bn_net, "conv:1", param_f=lambda: param.image(16), seed=0) as run:
        run.step()
        assert isinstance(run.network.bn, nn.BatchNorm2d) and run.network is not bn_net
        run.objective = "bn:1"  # a folded layer: the folded copy from the next step on
        run.step()
        assert isinstance(run.network.bn, nn.Identity)


def test_a_model_with_hooks_of_its_own_is_run_itself_and_never_folded(bn_net):
    """A hook that changes a layer's output changes the render; it sees the user's module."""
    seen = []

    def zero(module, inputs, output):
        seen.append(module)
        return output * 0

    bn_net.relu.register_forward_hook(zero)
    with Optimization(bn_net, "fc:0", param_f=lambda: param.image(16), seed=0) as run:
        logits = run._activations(run.objective, run.image())["fc"]
        assert run.network is bn_net
    torch.testing.assert_close(logits, bn_net.fc.bias.expand_as(logits))
    assert seen and all(module is bn_net.relu for module in seen)


def test_another_renders_capture_hooks_stay_out_of_the_copies(bn_net):
    """A capture active on the model (another thread's render) is not copied."""
    with capture(bn_net, ["stem_bn"]), Optimization(bn_net, "bn:0", seed=0) as run:
        run.step()
        assert run.network is not bn_net
        assert not any(m._forward_hooks for m in run.network.modules())
