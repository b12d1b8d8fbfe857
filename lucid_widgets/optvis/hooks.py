"""Reading a model's intermediate activations: only the layers asked for, and no further.

Lucent registers a hook on every module and always runs the whole network. Here a
:func:`capture` hooks exactly the layers an objective reads and stops the forward pass as soon as
the last of them has produced its output, so an objective on an early layer costs an early-layer
forward.

The user's model is never disturbed: internal passes (dry runs, probes, renders) run a
:func:`shadow_copy` (the same module tree in eval mode, sharing every tensor's storage, with no
hooks and no weight gradients), so no flag of the user's is toggled and no hook of the user's
fires; :func:`quiet` gives one for a ``with`` block. :func:`frozen` (eval mode and no weight
gradients, restored on exit) remains for callers that run the model itself.
"""

from __future__ import annotations

import contextlib
import copy
import difflib
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager

import torch
from torch import nn

__all__ = [
    "RESERVED_LAYERS",
    "Capture",
    "LayerNotFoundError",
    "LayerNotReachedError",
    "capture",
    "checked_shadow",
    "first_tensor",
    "frozen",
    "internal_hook",
    "is_internal_hook",
    "eval_mode",
    "layer_names",
    "logits_tensor",
    "model_device",
    "model_dtype",
    "quiet",
    "resolve_layer",
    "shadow_copy",
    "silenced",
    "user_hook_paths",
]

RESERVED_LAYERS = ("input", "logits")


class LayerNotFoundError(KeyError, ValueError):
    """A layer name that is neither a module path, an alias nor a reserved name."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


class LayerNotReachedError(RuntimeError):
    """A hooked layer that the forward pass never called."""


class _StopForward(Exception):  # noqa: N818 (control flow, not an error)
    """Raised inside a hook to end the forward pass once every layer has been captured."""


def internal_hook(function):
    """Mark a hook as lucid_widgets' own (transient); copies of a model leave such hooks out.

    Hooks marked so are not the user's: they never make a model count as hooked (see
    :func:`user_hook_paths`).
    """
    function.lucid_internal = True
    return function


def is_internal_hook(function: object) -> bool:
    """Whether ``function`` was marked by :func:`internal_hook`."""
    return bool(getattr(function, "lucid_internal", False))


def layer_names(model: nn.Module) -> list[str]:
    """Every addressable layer: dotted module paths, then aliases, then reserved names."""
    names = [name for name, _ in model.named_modules() if name]
    aliases = list(getattr(model, "lucid_aliases", {}) or {})
    return names + [alias for alias in aliases if alias not in names] + list(RESERVED_LAYERS)


def resolve_layer(model: nn.Module, name: str) -> str:
    """Map an alias or dotted path to the dotted path of a module of ``model``.

    Reserved names (``"input"``, ``"logits"``) are returned unchanged.

    Raises
    ------
    LayerNotFoundError
        When ``name`` is unknown; the message lists the closest valid names.
    """
    return _resolve(model, name, dict(model.named_modules()))


def _resolve(model: nn.Module, name: str, modules: dict[str, nn.Module]) -> str:
    if not isinstance(name, str) or not name:
        raise LayerNotFoundError(f"A layer name must be a non-empty string, got {name!r}.")
    if name in RESERVED_LAYERS:
        return name
    aliases = getattr(model, "lucid_aliases", {}) or {}
    path = aliases.get(name, name)
    if path in modules and path:
        return path
    candidates = layer_names(model)
    close = difflib.get_close_matches(name, candidates, n=5, cutoff=0.5)
    if not close:
        close = [c for c in candidates if name.split(".")[0] in c][:5]
    hint = f" Closest names: {', '.join(close)}." if close else ""
    raise LayerNotFoundError(
        f"Unknown layer {name!r} in {type(model).__name__}.{hint} "
        f"Layers are named_modules() dotted paths ({len(modules) - 1} of them), the model's "
        f"aliases, or 'input' / 'logits'; list them with lucid_widgets.zoo.layers(model)."
    )


def model_device(model: nn.Module) -> torch.device:
    """The device of the model's first parameter or buffer (CPU for a stateless model)."""
    for tensor in model.parameters():
        return tensor.device
    for tensor in model.buffers():
        return tensor.device
    return torch.device("cpu")


def model_dtype(model: nn.Module) -> torch.dtype:
    """The dtype of the model's first floating-point parameter or buffer (float32 if none)."""
    for tensor in (*model.parameters(), *model.buffers()):
        if tensor.is_floating_point():
            return tensor.dtype
    return torch.float32


def logits_tensor(output: object) -> torch.Tensor:
    """The ``"logits"`` of a model's output.

    The output itself when it is a tensor; the ``"logits"`` entry of a dict (or a ``.logits``
    attribute, as Hugging Face outputs have); the first element of a tuple or list.

    Raises
    ------
    LayerNotReachedError
        When the output is a dict or object without a ``logits`` entry (it is never guessed).
    """
    if isinstance(output, torch.Tensor):
        return output
    if isinstance(output, dict):
        value = output.get("logits")
        where = f"a dict with keys {sorted(map(str, output))}"
    elif isinstance(output, (tuple, list)):
        value = output[0] if output else None
        where = f"a {type(output).__name__} whose first element is {type(value).__name__}"
    else:
        value = getattr(output, "logits", None)
        where = f"a {type(output).__name__} without a .logits attribute"
    if not isinstance(value, torch.Tensor):
        raise LayerNotReachedError(
            f"'logits' reads the model's output, which is {where}: 'logits' is the output "
            "tensor, its 'logits' key or attribute, or the first element of a tuple. Name the "
            "layer that computes the logits instead."
        )
    return value


def first_tensor(output: object) -> torch.Tensor | None:
    """The tensor of a module output: itself, or the first tensor of a tuple / list / dict."""
    if isinstance(output, torch.Tensor):
        return output
    if isinstance(output, (tuple, list)):
        items: Iterable = output
    elif isinstance(output, dict):
        items = output.values()
    else:
        items = (getattr(output, name, None) for name in ("last_hidden_state", "logits"))
    for item in items:
        if isinstance(item, torch.Tensor):
            return item
    return None


class Capture:
    """Runs a model and returns the outputs of a fixed set of layers.

    Build one with :func:`capture`; calling it with a network input returns a dict from the
    layer names as given (aliases included) to their output tensors.
    """

    def __init__(
        self,
        model: nn.Module,
        layers: Iterable[str],
        stop_early: bool = True,
        modules: dict[str, nn.Module] | None = None,
    ):
        self.model = model
        self.names = list(dict.fromkeys(layers))
        modules = dict(model.named_modules()) if modules is None else modules
        self.paths = {name: _resolve(model, name, modules) for name in self.names}
        self._thread = threading.get_ident()
        hooked = {path for path in self.paths.values() if path not in RESERVED_LAYERS}
        self.stop_early = stop_early and "logits" not in self.paths.values()
        self._outputs: dict[str, torch.Tensor] = {}
        self._pending: set[str] = set()
        self._handles = []
        for path in hooked:
            self._handles.append(modules[path].register_forward_hook(self._hook_for(path)))

    def _hook_for(self, path: str):
        def hook(module: nn.Module, inputs: tuple, output: object) -> None:
            if threading.get_ident() != self._thread:  # another thread's forward pass
                return
            if path in self._outputs:  # a module called twice: keep its first output
                return
            tensor = first_tensor(output)
            if tensor is None:
                raise LayerNotReachedError(
                    f"Layer {path!r} ({type(module).__name__}) returned "
                    f"{type(output).__name__}, which holds no tensor to read."
                )
            self._pending.discard(path)
            if self._pending or not self.stop_early:
                # the forward pass goes on: a later in-place op (`out += identity`, an in-place
                # ReLU) must not change what was captured
                tensor = tensor.clone()
            self._outputs[path] = tensor
            if self.stop_early and not self._pending:
                raise _StopForward

        return internal_hook(hook)

    def __call__(self, network_input: torch.Tensor, *args, **kwargs) -> dict[str, torch.Tensor]:
        """Run the model on ``network_input`` and return ``{layer name: output}``."""
        self._outputs = {}
        self._pending = {p for p in self.paths.values() if p not in RESERVED_LAYERS}
        logits = None
        with contextlib.suppress(_StopForward):
            logits = self.model(network_input, *args, **kwargs)
        if self._pending:
            missing = ", ".join(sorted(self._pending))
            raise LayerNotReachedError(
                f"The forward pass of {type(self.model).__name__} never called layer(s) "
                f"{missing}. Is the module used in forward(), or only defined?"
            )
        result = {}
        for name, path in self.paths.items():
            if path == "logits":
                result[name] = logits_tensor(logits)
            elif path != "input":
                result[name] = self._outputs[path]
        return result

    def remove(self) -> None:
        """Remove every hook this capture registered."""
        for handle in self._handles:
            handle.remove()
        self._handles = []


@contextmanager
def capture(
    model: nn.Module,
    layers: Iterable[str],
    stop_early: bool = True,
    modules: dict[str, nn.Module] | None = None,
) -> Iterator[Capture]:
    """Hook ``layers`` of ``model`` for the length of a ``with`` block.

    Parameters
    ----------
    model
        Any ``nn.Module``.
    layers
        Layer names: dotted paths, aliases, ``"input"`` (skipped: the caller owns the input) or
        ``"logits"`` (the model's output; disables stopping early).
    modules
        ``dict(model.named_modules())``, when the caller already has it (saves a walk per step).
    stop_early
        End the forward pass once every hooked layer has produced its output.

    Examples
    --------
    >>> with capture(model, ["layer3"]) as run:   # doctest: +SKIP
    ...     acts = run(images)                      # {"layer3": (B, C, H, W)}
    """
    hooks = Capture(model, layers, stop_early=stop_early, modules=modules)
    try:
        yield hooks
    finally:
        hooks.remove()


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


@contextmanager
def eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """Put ``model`` in eval mode for a ``with`` block; every module's flag is put back."""
    modes = [(module, module.training) for module in model.modules()]
    model.eval()
    try:
        yield model
    finally:
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
    the model, say) or fails."""
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
    except Exception:  # noqa: BLE001 (the caller runs the model itself and sees the error)
        return True
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


_FREEZE_LOCK = threading.Lock()
_FREEZE_STATE: dict[int, tuple[int, list, list]] = {}  # id(model) -> (depth, grads, modes)


@contextmanager
def frozen(model: nn.Module) -> Iterator[nn.Module]:
    """Put ``model`` in eval mode with no weight gradients; restore both on exit.

    Every parameter's ``requires_grad`` and every module's ``training`` flag are put back exactly,
    also when the body raises. Nested and concurrent uses (two renders of one model in two
    threads) are counted: the state is saved by the first and restored by the last to leave.
    """
    key = id(model)
    with _FREEZE_LOCK:
        depth, grads, modes = _FREEZE_STATE.get(key, (0, None, None))
        if depth == 0:
            grads = [(p, p.requires_grad) for p in model.parameters()]
            modes = [(m, m.training) for m in model.modules()]
            model.eval()
            for parameter, _ in grads:
                parameter.requires_grad_(False)
        _FREEZE_STATE[key] = (depth + 1, grads, modes)
    try:
        yield model
    finally:
        with _FREEZE_LOCK:
            depth, grads, modes = _FREEZE_STATE.pop(key)
            if depth > 1:
                _FREEZE_STATE[key] = (depth - 1, grads, modes)
            else:
                for parameter, flag in grads:
                    parameter.requires_grad_(flag)
                for module, mode in modes:
                    module.training = mode
