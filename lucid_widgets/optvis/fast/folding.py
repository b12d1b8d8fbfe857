"""Batch norm folded into the convolution before it, for renders of a frozen eval-mode model.

In eval mode a ``BatchNorm`` that follows a convolution is a per-channel affine map, so it can be
folded into the convolution's weight and bias: ``bn(conv(x)) == conv'(x)``. A render then skips
the batch norm's forward pass and its backward pass at every step. On a CPU those are
memory-bound passes over whole activations, a large share of a step.

The user's model is never changed. :func:`folded_network` builds a *shadow*: a copy of the module
tree that shares every parameter and buffer with the model, except that each folded convolution
gets new weights and each folded batch norm becomes an ``nn.Identity``. Module paths stay the
same, so layer names mean the same modules. Pairs are found by a dry forward pass (a batch norm
whose input is the very tensor a convolution returned), and the shadow is checked against the
model on that input before it is used; a model where anything differs is rendered unfolded.

Layers whose output *is* a folded convolution's raw output (the convolution itself, or a wrapper
that returns it) read a different tensor in the shadow; :meth:`FoldedNetwork.can_read` says so,
and the render then runs the model itself for that objective.
"""

from __future__ import annotations

import copy
import threading
import weakref
from collections.abc import Iterable
from dataclasses import dataclass, field

import torch
from torch import nn

from lucid_widgets.optvis.fast import image_conv
from lucid_widgets.optvis.hooks import first_tensor, internal_hook, is_internal_hook

__all__ = ["FoldedNetwork", "fold_conv_norm", "folded_network"]

_CONVS = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)


@dataclass
class FoldedNetwork:
    """A shadow of a model with its conv -> batch norm pairs folded.

    Attributes
    ----------
    network
        The shadow module (shares the model's tensors except the folded convolutions').
    pairs
        ``{conv path: batch norm path}`` for every folded pair.
    raw_layers
        Paths of modules whose output is a folded convolution's raw output.
    signature
        The model state the shadow was built from (see :func:`_signature`).
    image_convs
        Paths of convolutions given the faster image gradient
        (:mod:`lucid_widgets.optvis.fast.image_conv`).
    """

    network: nn.Module
    pairs: dict[str, str]
    raw_layers: frozenset[str]
    signature: tuple
    image_convs: list[str] = field(default_factory=list)
    modules: dict[str, nn.Module] = field(default_factory=dict)  # the shadow's named_modules

    def can_read(self, paths: Iterable[str]) -> bool:
        """Whether every layer path reads the same tensor in the shadow as in the model."""
        return not any(path in self.raw_layers for path in paths)


def fold_conv_norm(conv: nn.Module, norm: nn.Module) -> tuple[torch.Tensor, torch.Tensor]:
    """The ``(weight, bias)`` of a convolution with an eval-mode batch norm folded into it.

    ``norm(conv(x))`` with running statistics equals a convolution with these.
    """
    with torch.no_grad():
        scale = torch.rsqrt(norm.running_var.double() + norm.eps)  # (C_out,)
        if norm.weight is not None:
            scale = scale * norm.weight.double()
        shift = -norm.running_mean.double() * scale
        if norm.bias is not None:
            shift = shift + norm.bias.double()
        if conv.bias is not None:
            shift = shift + conv.bias.double() * scale
        view = (-1,) + (1,) * (conv.weight.dim() - 1)  # (C_out, 1, ..., 1)
        weight = conv.weight.double() * scale.view(view)
        return weight.to(conv.weight.dtype), shift.to(conv.weight.dtype)


def _foldable_norm(module: nn.Module) -> bool:
    return (
        isinstance(module, _NORMS)
        and module.track_running_stats
        and module.running_mean is not None
        and module.running_var is not None
    )


def _foldable_conv(module: nn.Module) -> bool:
    return isinstance(module, _CONVS) and not getattr(module, "transposed", False)


_HOOK_DICTS = ("_forward_hooks", "_forward_pre_hooks", "_backward_hooks", "_backward_pre_hooks")


def _user_hooks(module: nn.Module) -> tuple[int, ...]:
    """Ids of the module's own hooks (not lucid_widgets' transient ones)."""
    # tuple(dict.values()) copies in one step: other threads' captures add and remove hooks
    hooks = [h for name in _HOOK_DICTS for h in tuple(getattr(module, name, {}).values())]
    return tuple(id(hook) for hook in hooks if not is_internal_hook(hook))


def _drop_internal_hooks(module: nn.Module) -> None:
    """Remove lucid_widgets' transient hooks (another thread's capture) from a copied module."""
    for name in _HOOK_DICTS:
        hooks = getattr(module, name, None)
        for key in [key for key, hook in (hooks or {}).items() if is_internal_hook(hook)]:
            del hooks[key]


def _signature(model: nn.Module) -> tuple:
    """What the shadow depends on: the module tree, its own hooks and every conv / batch norm
    tensor's state."""
    tree = []
    for path, module in model.named_modules():
        tree.append((path, id(module), _user_hooks(module)))
        if _foldable_conv(module) or _foldable_norm(module):
            for tensor in (*module.parameters(recurse=False), *module.buffers(recurse=False)):
                tree.append((id(tensor), tensor._version, tensor.data_ptr(), str(tensor.device)))
    return tuple(tree)


def _one_pass(network: nn.Module, network_input: torch.Tensor, handles: list) -> tuple:
    """One no-grad forward pass; remove ``handles`` after it. ``(finished, output)``.

    A pass that raises (a head that needs another input size, say) is judged by what it
    reached before.
    """
    try:
        with torch.no_grad():
            return True, network(network_input)
    except Exception:  # noqa: BLE001
        return False, None
    finally:
        for handle in handles:
            handle.remove()


def _dry_run_pairs(model: nn.Module, network_input: torch.Tensor):
    """Run ``model`` once; return ``(pairs, raw_layers)`` as seen by hooks on every module."""
    thread = threading.get_ident()
    conv_outputs: dict[int, tuple[str, torch.Tensor]] = {}
    norm_inputs: dict[str, torch.Tensor] = {}
    outputs: dict[str, torch.Tensor] = {}
    calls: dict[str, int] = {}
    handles = []

    def watch(path: str, module: nn.Module) -> None:
        @internal_hook
        def pre_hook(mod, inputs):
            if threading.get_ident() == thread and inputs and torch.is_tensor(inputs[0]):
                norm_inputs[path] = inputs[0]

        @internal_hook
        def hook(mod, inputs, output):
            if threading.get_ident() != thread:
                return
            calls[path] = calls.get(path, 0) + 1
            tensor = first_tensor(output)
            if tensor is not None:
                outputs[path] = tensor  # keeps it alive, so ids stay unique
                if _foldable_conv(mod):
                    conv_outputs[id(tensor)] = (path, tensor)

        if _foldable_norm(module):
            handles.append(module.register_forward_pre_hook(pre_hook))
        handles.append(module.register_forward_hook(hook))

    for path, module in model.named_modules():
        if path:
            watch(path, module)
    _one_pass(model, network_input, handles)
    pairs: dict[str, str] = {}
    for norm_path, tensor in norm_inputs.items():
        entry = conv_outputs.get(id(tensor))
        if entry is None or entry[1] is not tensor:
            continue
        conv_path = entry[0]
        if calls.get(conv_path) == 1 and calls.get(norm_path) == 1 and conv_path not in pairs:
            pairs[conv_path] = norm_path
    raw = frozenset(
        path for path, tensor in outputs.items() if conv_outputs.get(id(tensor), ("",))[0] in pairs
    )
    return pairs, raw


def _shadow(
    model: nn.Module, pairs: dict[str, str], image_convs: bool
) -> tuple[nn.Module, list[str]]:
    """A copy of the module tree sharing every tensor, with ``pairs`` folded.

    With ``image_convs``, qualifying convolutions get the faster image gradient; also returns
    their paths.
    """
    memo = {id(t): t for t in (*model.parameters(), *model.buffers())}
    shadow = copy.deepcopy(model, memo)
    for module in shadow.modules():  # what another thread's render had put on the model
        _drop_internal_hooks(module)
        if getattr(module.__dict__.get("forward"), "lucid_redirected", False):
            del module.__dict__["forward"]
    shadow.eval()
    modules = dict(shadow.named_modules())
    for conv_path, norm_path in pairs.items():
        conv = modules[conv_path]
        weight, bias = fold_conv_norm(conv, modules[norm_path])
        conv.weight = nn.Parameter(weight, requires_grad=False)
        conv.bias = nn.Parameter(bias, requires_grad=False)
        _replace(shadow, norm_path, nn.Identity())
    return shadow, image_conv.install(shadow) if image_convs else []


def _replace(root: nn.Module, path: str, module: nn.Module) -> None:
    parent_path, _, name = path.rpartition(".")
    parent = root.get_submodule(parent_path) if parent_path else root
    setattr(parent, name, module)


def _record(network: nn.Module, network_input: torch.Tensor, paths: Iterable[str]) -> dict:
    """Outputs of ``paths`` and the network's own output (key ``""``) on one no-grad pass."""
    thread = threading.get_ident()
    modules = dict(network.named_modules())
    outputs: dict[str, torch.Tensor | None] = {}
    handles = []
    for path in paths:

        @internal_hook
        def hook(module, inputs, output, path=path):
            if threading.get_ident() == thread:
                outputs.setdefault(path, first_tensor(output))

        handles.append(modules[path].register_forward_hook(hook))
    finished, output = _one_pass(network, network_input, handles)
    if finished:
        outputs[""] = first_tensor(output)
    return outputs


def _close(expected: torch.Tensor | None, actual: torch.Tensor | None) -> bool:
    if expected is None or actual is None:
        return expected is None and actual is None
    if expected.shape != actual.shape or not torch.isfinite(expected).all():
        return False
    scale = float(expected.abs().max()) if expected.numel() else 0.0
    return torch.allclose(actual, expected, rtol=1e-3, atol=1e-4 * max(scale, 1e-6))


def _agrees(model: nn.Module, shadow: nn.Module, network_input: torch.Tensor, paths) -> bool:
    """Whether the shadow computes what the model computes, at ``paths`` and at the output."""
    expected = _record(model, network_input, paths)
    actual = _record(shadow, network_input, paths)
    if not expected or expected.keys() != actual.keys():
        return False
    return all(_close(expected[key], actual[key]) for key in expected)


def _build(model: nn.Module, network_input: torch.Tensor) -> FoldedNetwork | None:
    # the stride-1 image gradient is a CPU (oneDNN) remedy; cuDNN's own is fast
    on_cpu = all(tensor.device.type == "cpu" for tensor in model.parameters())
    convs = on_cpu and any(image_conv.qualifies(module) for module in model.modules())
    if not convs and not any(_foldable_norm(module) for module in model.modules()):
        return None  # nothing to gain: no dry run
    pairs, raw = _dry_run_pairs(model, network_input)
    if not pairs and not convs:
        return None
    shadow, image_convs = _shadow(model, pairs, convs)
    if not _agrees(model, shadow, network_input, pairs.values()):
        return None
    return FoldedNetwork(
        network=shadow,
        pairs=pairs,
        raw_layers=raw,
        signature=_signature(model),
        image_convs=image_convs,
        modules=dict(shadow.named_modules()),
    )


_LOCK = threading.Lock()  # one lookup or build at a time: parallel renders share one shadow
_CACHE: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # model -> (signature, shadow)


def folded_network(model: nn.Module, network_input: torch.Tensor) -> FoldedNetwork | None:
    """The folded shadow of ``model`` (frozen and in eval mode), or ``None`` if nothing folds.

    Built on the first call from a dry forward pass on one element of ``network_input`` and
    cached per model; rebuilt when a module, or a conv / batch norm tensor, has changed since
    (``_version`` counters catch in-place edits such as an optimizer step or ``load_state_dict``).
    ``None`` when the model has no conv -> batch norm pair, when it is in training mode, or when
    the shadow's output differs from the model's.
    """
    if any(module.training for module in model.modules()):
        return None
    signature = _signature(model)
    with _LOCK:
        cached = _CACHE.get(model)
        if cached is not None and cached[0] == signature:
            return cached[1]
        try:
            folded = _build(model, network_input[:1].detach())
        except Exception:  # noqa: BLE001 (a model that cannot be copied renders unfolded)
            folded = None
        _CACHE[model] = (signature, folded)
    return folded
