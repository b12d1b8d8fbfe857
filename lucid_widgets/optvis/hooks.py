"""Reading a model's intermediate activations: only the layers asked for, and no further.

Lucent registers a hook on every module and always runs the whole network. Here a
:func:`capture` hooks exactly the layers an objective reads and stops the forward pass as soon as
the last of them has produced its output, so an objective on an early layer costs an early-layer
forward.

Internal passes, renders, dataset passes and building blocks run a shadow copy of the model (see
:mod:`lucid_widgets.optvis.shadow`, :func:`~lucid_widgets.optvis.shadow.pass_network`); the
package itself no longer calls :func:`frozen` (eval mode and no weight gradients, restored on
exit, which other threads see), kept for code that runs a model itself.
"""

from __future__ import annotations

import contextlib
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
    "first_tensor",
    "frozen",
    "internal_hook",
    "is_internal_hook",
    "layer_names",
    "logits_tensor",
    "model_device",
    "model_dtype",
    "resolve_layer",
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
