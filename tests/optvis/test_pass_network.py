"""pass_network: the shadow copy unless the user has hooks; eval_mode counted across threads."""

from __future__ import annotations

import torch
from tiny_models import TinyBatchNormNet

from lucid_widgets.optvis.shadow import eval_mode, pass_network


def test_the_shadow_runs_unless_the_user_has_hooks():
    model = TinyBatchNormNet().train()
    probe = torch.rand(1, 3, 16, 16)
    with pass_network(model, probe) as network:
        assert network is not model and not network.training and model.training
        assert all(not p.requires_grad for p in network.parameters())
        assert all(p.requires_grad for p in model.parameters())
        assert network.conv.weight.data_ptr() == model.conv.weight.data_ptr()  # shared storage
    model.bn.register_forward_hook(lambda *args: None)
    with pass_network(model, probe) as network:
        assert network is model and not model.training
    assert all(module.training for module in model.modules())


def test_eval_mode_blocks_that_end_out_of_order_restore_the_mode_last():
    """Two passes on one model in two threads: the first to end must not restore the mode."""
    model = TinyBatchNormNet().train()
    first, second = eval_mode(model), eval_mode(model)
    first.__enter__()
    second.__enter__()
    first.__exit__(None, None, None)
    assert not any(module.training for module in model.modules())  # the second still runs
    second.__exit__(None, None, None)
    assert all(module.training for module in model.modules())
