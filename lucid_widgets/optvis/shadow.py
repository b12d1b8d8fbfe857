"""The user's model, never disturbed: shadow copies for internal passes and renders.

A :func:`shadow_copy` is the model's module tree in eval mode, sharing every tensor's storage,
with no hooks and no weight gradients: running it toggles no flag of the user's and fires no
hook of the user's. :func:`checked_shadow` also checks that the copy computes on its own (a
replaced ``forward`` may close over the model's modules); :func:`quiet` gives a module for a dry
pass, the checked shadow or else the model itself with its hooks :func:`silenced` in this
thread. :func:`user_hook_paths` says where the user has hooks (then a render runs the model
itself, so that the hooks see their own modules). :func:`pass_network` applies the renders' rule
to every other pass through the model (dataset examples, sample views, building blocks).
"""

from __future__ import annotations

import copy
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn

from lucid_widgets.optvis.hooks import internal_hook, is_internal_hook

__all__ = [
    "checked_shadow",
    "eval_mode",
    "pass_network",
    "quiet",
    "shadow_copy",
    "silenced",
    "user_hook_paths",
]

_HOOK_DICTS = ("_forward_hooks", "_forward_pre_hooks", "_backward_hooks", "_backward_pre_hooks")
_HOOK_FLAGS = ("_forward_hooks_with_kwargs", "_forward_hooks_always_called")


def user_hook_paths(model: nn.Module) -> list[str]:
    """Paths of the modules that hold hooks of the user's (``""`` is the model itself)."""
    paths = []
    for path, module in model.named_modules():
        # tuple(dict.values()) copies in one step: other threads add and remove hooks
        hooks = [h for name in _HOOK_DICTS for h in tuple(getattr(module, name, {}).values())]
        if any(not is_internal_hook(hook) for hook in hooks):
            paths.append(path)
    return paths


def _alias_memo(model: nn.Module) -> dict[int, torch.Tensor]:
    """``copy.deepcopy`` memo: each tensor of the model -> a tensor sharing its storage.

    Parameters become ``requires_grad=False`` parameters and buffers plain tensors, both made
    from ``.data``: their own version counters, so an optimizer step or a training pass the user
    runs on the model meanwhile does not invalidate a render's saved tensors.
    """
    memo: dict[int, torch.Tensor] = {}
    for module in model.modules():
        for parameter in module._parameters.values():
            if parameter is not None and id(parameter) not in memo:
                memo[id(parameter)] = nn.Parameter(parameter.data, requires_grad=False)
        for buffer in module._buffers.values():
            if buffer is not None:
                memo.setdefault(id(buffer), buffer.data)
        for value in tuple(module.__dict__.values()):  # plain tensor attributes
            if isinstance(value, torch.Tensor):
                memo.setdefault(id(value), value.detach())
    return memo


def shadow_copy(model: nn.Module) -> nn.Module | None:
    """A stand-in of ``model`` for internal passes, or ``None`` if it cannot be copied.

    The same module tree (same paths, same attributes, same ``forward`` overrides), in eval
    mode, sharing every parameter's and buffer's storage (no copy of the weights), with no
    hooks (the user's stay on the model and never fire for it) and no weight gradients. The
    model's own flags (``training``, ``requires_grad``) are not touched.
    """
    memo = _alias_memo(model)
    try:
        shadow = copy.deepcopy(model, memo)
    except Exception:  # noqa: BLE001 (a module holding a lock, a file, a C handle ...)
        return None
    for module in shadow.modules():
        for name in (*_HOOK_DICTS, *_HOOK_FLAGS):
            getattr(module, name, {}).clear()
        if getattr(module.__dict__.get("forward"), "lucid_redirected", False):
            del module.__dict__["forward"]  # another thread's render had patched the model
    return shadow.eval()


_EVAL_LOCK = threading.Lock()
_EVAL_STATE: dict[int, tuple[int, list]] = {}  # id(model) -> (open blocks, saved modes)


@contextmanager
def eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """Put ``model`` in eval mode for a ``with`` block; every module's flag is put back.

    Nested and concurrent blocks on one model (a render and a dataset pass in two threads) are
    counted: the first saves the flags and the last to leave restores them.
    """
    key = id(model)
    with _EVAL_LOCK:
        depth, modes = _EVAL_STATE.get(key, (0, []))
        if depth == 0:
            modes = [(module, module.training) for module in model.modules()]
            model.eval()
        _EVAL_STATE[key] = (depth + 1, modes)
    try:
        yield model
    finally:
        with _EVAL_LOCK:
            depth, modes = _EVAL_STATE.pop(key)
            if depth > 1:
                _EVAL_STATE[key] = (depth - 1, modes)
            else:
                for module, mode in modes:
                    module.training = mode


_SILENT = threading.local()  # per thread: how many silenced() blocks are open
_SILENCE_LOCK = threading.Lock()
_SILENCED: dict[int, list] = {}  # id(hook dict) -> [users, {key: original hook}]


def _silenceable(hook):
    def wrapper(*args, **kwargs):
        if getattr(_SILENT, "depth", 0):
            return None  # "no change", for every kind of hook
        return hook(*args, **kwargs)

    wrapper.lucid_silenced = hook
    return wrapper


def _hook_dicts(model: nn.Module) -> list[dict]:
    from torch.nn.modules import module as torch_module  # the global module hooks

    shared = [getattr(torch_module, f"_global{name}", None) for name in _HOOK_DICTS]
    own = [getattr(module, name, None) for module in model.modules() for name in _HOOK_DICTS]
    return [hooks for hooks in (*shared, *own) if isinstance(hooks, dict)]


@contextmanager
def silenced(model: nn.Module) -> Iterator[None]:
    """No hook of the user's (on ``model``'s modules, or global) fires in this thread meanwhile.

    Each user hook is wrapped, for the length of the block, by a function that skips it in a
    thread inside a ``silenced`` block and calls it everywhere else: the user's own forward
    passes in other threads see their hooks as usual. Hooks are put back on exit.
    """
    with _SILENCE_LOCK:
        dicts = _hook_dicts(model)
        for hooks in dicts:
            entry = _SILENCED.setdefault(id(hooks), [0, {}])
            if entry[0] == 0:
                for key, hook in list(hooks.items()):
                    if not is_internal_hook(hook):
                        entry[1][key] = hook
                        hooks[key] = _silenceable(hook)
            entry[0] += 1
    _SILENT.depth = getattr(_SILENT, "depth", 0) + 1
    try:
        yield
    finally:
        _SILENT.depth -= 1
        with _SILENCE_LOCK:
            for hooks in dicts:
                entry = _SILENCED[id(hooks)]
                entry[0] -= 1
                if entry[0] == 0:
                    del _SILENCED[id(hooks)]
                    for key, hook in entry[1].items():
                        if key in hooks:  # not removed by the user meanwhile
                            hooks[key] = hook


def _leaks(model: nn.Module, shadow: nn.Module, args: tuple, kwargs: dict) -> bool:
    """Whether a pass of ``shadow`` calls a module of ``model`` (a ``forward`` that closes over
    the model, say). A pass that raises (a head that needs another input size) is judged by
    what it ran before."""
    thread = threading.get_ident()
    called = []

    @internal_hook
    def hook(module, inputs):
        if threading.get_ident() == thread:
            called.append(module)

    handles = [module.register_forward_pre_hook(hook) for module in model.modules()]
    try:
        with silenced(model), torch.no_grad():
            shadow(*args, **kwargs)
    except Exception:  # noqa: BLE001 (judged by the modules called before the error)
        pass
    finally:
        for handle in handles:
            handle.remove()
    return bool(called)


def checked_shadow(model: nn.Module, *args, **kwargs) -> nn.Module | None:
    """A :func:`shadow_copy` checked to compute on its own on ``model(*args, **kwargs)``.

    ``None`` when the model cannot be copied, or when the copy reaches into the model (a
    replaced ``forward`` that closes over the model's modules): then only the model itself
    computes what the model computes.
    """
    shadow = shadow_copy(model)
    if shadow is None or _leaks(model, shadow, args, kwargs):
        return None
    return shadow


@contextmanager
def quiet(model: nn.Module, *args, **kwargs) -> Iterator[nn.Module]:
    """A module for a dry pass ``module(*args, **kwargs)`` that fires no hook of the user's.

    The :func:`checked_shadow` of ``model`` (eval mode, no flag of the model touched); else the
    model itself, in eval mode and :func:`silenced` for the block.
    """
    shadow = checked_shadow(model, *args, **kwargs)
    if shadow is not None:
        yield shadow
        return
    with eval_mode(model), silenced(model):
        yield model


@contextmanager
def pass_network(model: nn.Module, *args, **kwargs) -> Iterator[nn.Module]:
    """The module a pass through ``model`` runs, by the rule renders follow.

    The :func:`checked_shadow` (checked on ``model(*args, **kwargs)``) when the model has no
    hooks of the user's: eval mode, no weight gradients, and no flag of the model's ever
    touched, so the user may train or ``backward()`` the model meanwhile. Else (hooks of the
    user's, which must act, or a model that cannot be copied) the model itself in
    :func:`eval_mode` for the block. No ``requires_grad`` flag is toggled in either case: run
    the pass under ``torch.no_grad()``, or take gradients with respect to inputs or activations
    only (``torch.autograd.grad``). Hooks for the pass (a capture) go on the module yielded:
    it has the model's module paths and aliases.
    """
    shadow = None if user_hook_paths(model) else checked_shadow(model, *args, **kwargs)
    if shadow is not None:
        yield shadow
        return
    with eval_mode(model):
        yield model
