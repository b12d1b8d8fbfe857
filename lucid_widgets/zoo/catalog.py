"""A model's layer catalog: every module's output shape, unit count and kind, from one forward.

:func:`layers` runs a single dry forward pass (no gradients, eval mode) with a hook on every named
module and records the first output of each, in the order the outputs are produced. The result
drives the layer browser: names, readable aliases, shapes, how many units a layer has, and whether
a layer is worth browsing at all (convolutions, linear layers, block outputs; not the batch norms,
activations and wrappers that repeat a neighbour's output).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from lucid_widgets.optvis.hooks import first_tensor, internal_hook, model_device
from lucid_widgets.optvis.preprocess import resolve
from lucid_widgets.optvis.shadow import quiet

__all__ = ["LayerInfo", "layer_table", "layers"]

_CONV_1D = (nn.Conv1d, nn.ConvTranspose1d, nn.BatchNorm1d, nn.MaxPool1d, nn.AvgPool1d)
_UNIT_TYPES = (nn.modules.conv._ConvNd, nn.Linear, nn.Bilinear, nn.MultiheadAttention)
_PLAIN_CONTAINERS = (nn.Sequential, nn.ModuleList, nn.ModuleDict)
_PASSTHROUGH = (  # outputs that repeat their input up to scaling: never a block's output of note
    nn.modules.batchnorm._NormBase,
    nn.LayerNorm,
    nn.GroupNorm,
    nn.LocalResponseNorm,
    nn.modules.dropout._DropoutNd,
    nn.Identity,
    nn.Flatten,
    nn.Unflatten,
)
_KIND_BY_RANK = {1: "linear", 2: "tokens", 3: "conv", 4: "volume"}


@dataclass(frozen=True)
class LayerInfo:
    """One module of a model, as seen in a forward pass.

    Attributes
    ----------
    name
        Dotted module path (``model.named_modules()``).
    alias
        Readable name from ``model.lucid_aliases``, or ``None``.
    type
        The module's class name, e.g. ``"Conv2d"``.
    shape
        Output shape without the batch dimension, e.g. ``(64, 56, 56)``.
    units
        Number of channels (units): dim 1 of ``(B, C, H, W)``, ``(B, C)``, ``(B, C, L)`` for 1-d
        convolutions and ``(B, C, D, H, W)``; the last dim of ``(B, N, C)`` token sequences.
        ``None`` for a ``(B,)`` output.
    kind
        ``"conv"`` ``(B, C, H, W)``, ``"linear"`` ``(B, C)``, ``"tokens"`` ``(B, N, C)``,
        ``"conv1d"`` ``(B, C, L)``, ``"volume"`` ``(B, C, D, H, W)``, ``"scalar"`` ``(B,)`` or
        ``"other"``.
    browsable
        Worth showing in a layer browser (see :func:`layers`).
    depth
        Number of components of ``name`` (top-level children have depth 1).
    group
        The block the module belongs to, for grouping in a UI: the top-level name, extended
        through plain ``Sequential`` / ``ModuleList`` / ``ModuleDict`` containers into the
        blocks (modules with children) they hold: ``layer1.0.conv1`` is in group ``layer1.0``,
        ``features.3`` (a conv in a plain ``features``) in ``features``, ``conv1`` in ``conv1``.
    order
        Index in the order the outputs were produced (a container comes after its children).
    """

    name: str
    alias: str | None
    type: str
    shape: tuple[int, ...]
    units: int | None
    kind: str
    browsable: bool
    depth: int
    group: str
    order: int


@dataclass
class _Record:
    name: str
    module: nn.Module
    output: torch.Tensor  # kept alive so that identity (``id``) comparisons stay valid
    shape: tuple[int, ...]  # at the time of the call, before any in-place change
    order: int


def _input_size(size: int | tuple[int, int] | None, default: tuple[int, int]) -> tuple[int, int]:
    if size is None:
        return tuple(default)
    if isinstance(size, int):
        size = (size, size)
    if len(size) != 2 or not all(isinstance(s, int) and s > 0 for s in size):
        raise ValueError(f"input_size must be a positive int or (height, width), got {size!r}")
    return tuple(size)


def _move(value: Any, device: torch.device) -> Any:
    return value.to(device) if isinstance(value, torch.Tensor) else value


def _call_args(model: nn.Module, example_input: Any, input_size: Any) -> tuple[tuple, dict, str]:
    """Positional and keyword arguments for the dry forward, and a description for errors."""
    device = model_device(model)
    if example_input is None:
        preprocess = resolve(model)
        height, width = _input_size(input_size, preprocess.input_size)
        generator = torch.Generator().manual_seed(0)
        image = torch.rand(1, preprocess.channels, height, width, generator=generator)
        dtype = next((p.dtype for p in model.parameters() if p.is_floating_point()), None)
        batch = preprocess(image).to(device=device, dtype=dtype)  # (1, C, H, W)
        return (batch,), {}, f"a random image {tuple(batch.shape)}"
    if input_size is not None:
        raise ValueError("pass either example_input or input_size, not both")
    if isinstance(example_input, torch.Tensor):
        return (_move(example_input, device),), {}, f"a tensor {tuple(example_input.shape)}"
    if isinstance(example_input, (tuple, list)):
        args = tuple(_move(arg, device) for arg in example_input)
        return args, {}, f"{len(args)} positional arguments"
    if isinstance(example_input, Mapping):
        kwargs = {str(key): _move(value, device) for key, value in example_input.items()}
        return (), kwargs, f"keyword arguments {sorted(kwargs)}"
    raise TypeError(
        "example_input must be a tensor, a tuple/list of positional arguments or a dict of "
        f"keyword arguments, got {type(example_input).__name__}"
    )


def _record_forward(model: nn.Module, args: tuple, kwargs: dict, what: str) -> list[_Record]:
    """Run ``model(*args, **kwargs)`` once, recording each module's first tensor output."""
    records: dict[str, _Record] = {}
    originals = dict(model.named_modules())  # records name the user's modules, not the copy's

    def make_hook(name: str):
        def hook(module: nn.Module, inputs: Any, output: Any) -> None:
            tensor = first_tensor(output)
            if name not in records and tensor is not None and tensor.dim() >= 1:
                shape = tuple(tensor.shape)
                records[name] = _Record(name, originals[name], tensor, shape, len(records))

        return internal_hook(hook)

    # a shadow copy in eval mode: the user's hooks do not fire and no flag of theirs changes
    with quiet(model, *args, **kwargs) as network:
        handles = [
            module.register_forward_hook(make_hook(name))
            for name, module in network.named_modules()
            if name
        ]
        try:
            with torch.no_grad():
                network(*args, **kwargs)
        except Exception as error:
            raise RuntimeError(
                f"the catalog's dry forward pass of {type(model).__name__} with {what} "
                f"failed ({type(error).__name__}: {error}); pass input_size=(height, width) "
                "or example_input=<tensor | tuple of args | dict of kwargs> that the "
                "model's forward accepts"
            ) from error
        finally:
            for handle in handles:
                handle.remove()
    return sorted(records.values(), key=lambda record: record.order)


def _kind(record: _Record, previous_1d: set[tuple[int, ...]]) -> str:
    rank = len(record.shape) - 1  # without the batch dimension
    if rank == 0:
        return "scalar"
    if rank == 2 and (isinstance(record.module, _CONV_1D) or record.shape in previous_1d):
        return "conv1d"
    return _KIND_BY_RANK.get(rank, "other")


def _units(kind: str, shape: tuple[int, ...]) -> int | None:
    if kind == "scalar" or not shape:
        return None
    return shape[-1] if kind == "tokens" else shape[0]


def _group(name: str, modules: Mapping[str, nn.Module]) -> str:
    """The top-level name, extended through plain containers into the blocks they hold."""
    parts = name.split(".")
    depth = 1
    while depth < len(parts):
        parent, child = ".".join(parts[:depth]), modules[".".join(parts[: depth + 1])]
        if type(modules[parent]) not in _PLAIN_CONTAINERS or next(child.children(), None) is None:
            break
        depth += 1
    return ".".join(parts[:depth])


def _browsable(records: list[_Record]) -> set[str]:
    """Names worth browsing: units layers, block outputs, one representative per shared output.

    Modules that return the very same tensor (a wrapper and its last child) form one class.
    In each class the ``Conv`` / ``Linear`` / attention modules are browsable; without one, a
    container that computed the tensor itself (residual add, concatenation) is a block output;
    otherwise the outermost container that is not a plain ``Sequential`` / ``ModuleList``
    represents the class (else the innermost plain one, unless it merely wraps a norm, dropout
    or identity). Lone activations, norms, dropout, pooling and identities are not browsable.
    """
    classes: dict[int, list[_Record]] = {}
    for record in records:
        classes.setdefault(id(record.output), []).append(record)
    chosen: set[str] = set()
    for members in classes.values():
        units_layers = [r.name for r in members if isinstance(r.module, _UNIT_TYPES)]
        if units_layers:
            chosen.update(units_layers)
            continue
        containers = sorted(
            (r for r in members if next(r.module.children(), None) is not None),
            key=lambda r: r.name.count("."),
        )
        if not containers:
            continue
        producer = members[0]  # the first to return this tensor is the one that computed it
        if producer in containers:
            chosen.add(producer.name)
            continue
        rich = [r for r in containers if type(r.module) not in _PLAIN_CONTAINERS]
        if rich:
            chosen.add(rich[0].name)
        elif not isinstance(producer.module, _PASSTHROUGH):
            chosen.add(containers[-1].name)
    return chosen


def layers(
    model: nn.Module,
    example_input: Any = None,
    input_size: int | tuple[int, int] | None = None,
) -> list[LayerInfo]:
    """Catalog every module of ``model`` from one dry forward pass, in forward order.

    Parameters
    ----------
    model
        Any ``nn.Module``. Its hooks are removed and every module's training flag restored
        afterwards, also on error.
    example_input
        What to call the model with, for models that need more than an image: a tensor, a
        tuple/list of positional arguments, or a dict of keyword arguments. Tensors are moved
        to the model's device.
    input_size
        ``(height, width)`` (or one int) of the random image used when ``example_input`` is not
        given; default ``model.lucid_preprocess.input_size`` (224 x 224). The channel count and
        normalization come from ``preprocess.resolve(model)``.

    Returns
    -------
    list[LayerInfo]
        One entry per module whose output holds a tensor (tuples give their first tensor), in
        the order the outputs were produced; modules called several times are recorded at
        their first call; modules never called, the root and non-tensor outputs are left out.
        ``browsable``: when the model has ``lucid_aliases``, exactly the aliased layers (the
        zoo's curated list); otherwise convolutions, linear and attention layers, block outputs
        (containers that compute a new tensor, e.g. a residual sum) and one representative of
        wrappers around other modules (not lone activations, norms, pooling or dropout).

    Raises
    ------
    RuntimeError
        When the dry forward fails (the message says how to supply a working input).
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"layers() needs an nn.Module, got {type(model).__name__}")
    args, kwargs, what = _call_args(model, example_input, input_size)
    records = _record_forward(model, args, kwargs, what)
    aliases: dict[str, str] = {}
    for alias, path in (getattr(model, "lucid_aliases", None) or {}).items():
        aliases.setdefault(path, alias)
    # ``lucid_browse`` (layer names or aliases) curates the browsable layers; else the aliased
    # layers are browsable; a model with neither gets the heuristic.
    browse = getattr(model, "lucid_browse", None)
    named = getattr(model, "lucid_aliases", None) or {}
    if browse:
        browsable = {named.get(name, name) for name in browse}
    else:
        browsable = set(aliases) if aliases else _browsable(records)
    modules = dict(model.named_modules())
    infos, shapes_1d = [], set()
    for record in records:
        shape = record.shape[1:]
        kind = _kind(record, shapes_1d)
        if kind == "conv1d":
            shapes_1d.add(record.shape)
        infos.append(
            LayerInfo(
                name=record.name,
                alias=aliases.get(record.name),
                type=type(record.module).__name__,
                shape=shape,
                units=_units(kind, shape),
                kind=kind,
                browsable=record.name in browsable,
                depth=record.name.count(".") + 1,
                group=_group(record.name, modules),
                order=record.order,
            )
        )
    return infos


def layer_table(infos: Iterable[LayerInfo], browsable_only: bool = False) -> str:
    """A plain-text table of a catalog, one row per layer (``*`` marks browsable layers)."""
    header = ("#", "name", "alias", "type", "shape", "units", "kind", "")
    rows = [
        (
            str(info.order),
            info.name,
            info.alias or "",
            info.type,
            "x".join(str(size) for size in info.shape),
            "" if info.units is None else str(info.units),
            info.kind,
            "*" if info.browsable else "",
        )
        for info in infos
        if info.browsable or not browsable_only
    ]
    widths = [max(len(row[column]) for row in [header, *rows]) for column in range(len(header))]
    lines = [
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in [header, *rows]
    ]
    return "\n".join([lines[0], "-" * len(lines[0]), *lines[1:]])
