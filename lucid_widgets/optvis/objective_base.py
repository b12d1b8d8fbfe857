"""The :class:`Objective` type: a function of activations, its layers, and a readable name."""

from __future__ import annotations

import functools
import numbers
import re
from collections.abc import Callable, Iterable, Mapping, Sequence

import torch

from lucid_widgets.optvis.activations import check_unit, unit_map

__all__ = ["Activations", "Objective", "as_objective", "batch_arg", "channel", "handle_batch"]

ObjectiveFn = Callable[["Activations"], torch.Tensor]

_LAYER_UNIT = re.compile(r"^\s*(?P<layer>[^:\s]+)\s*:\s*(?P<unit>\d{1,18})\s*$")


class Activations(dict):
    """Layer name -> activation tensor, plus the model's class labels for name lookups."""

    def __init__(self, values: Mapping[str, torch.Tensor], labels: Sequence[str] | None = None):
        super().__init__(values)
        self.labels = labels

    def __missing__(self, key: str) -> torch.Tensor:
        raise KeyError(
            f"The objective read layer {key!r}, which it did not declare; declared layers are "
            f"{sorted(self)}. Pass it in Objective(..., layers=...)."
        )


class Objective:
    """A value to maximize, computed from a model's activations.

    Parameters
    ----------
    fn
        ``fn(acts) -> scalar tensor`` where ``acts`` maps layer names to activations.
    name
        A readable description, shown in progress bars and widgets.
    layers
        The layer names ``fn`` reads; only these are hooked, and the forward pass stops after
        the last of them.

    Examples
    --------
    >>> from lucid_widgets import objectives as obj
    >>> combined = obj.channel("layer3", 7) - 0.5 * obj.channel("layer3", 12)
    >>> combined.name
    "channel('layer3', 7) - 0.5 * channel('layer3', 12)"
    """

    def __init__(self, fn: ObjectiveFn, name: str = "objective", layers: Iterable[str] = ()):
        self.fn = fn
        self.name = name
        self.layers = frozenset(layers)
        self.terms: tuple[Objective, ...] = (self,)  # the summands of a sum (see Objective.sum)

    def __call__(self, acts: Activations) -> torch.Tensor:
        return self.fn(acts)

    def __repr__(self) -> str:
        return f"Objective({self.name})"

    @staticmethod
    def _wrap(name: str) -> str:
        return f"({name})" if (" + " in name or " - " in name) else name

    def _combine(self, other: object, op: Callable, symbol: str, wrap_other: bool) -> Objective:
        if isinstance(other, numbers.Number):
            value = float(other)

            def number_fn(acts: Activations) -> torch.Tensor:
                return op(self(acts), value)

            return Objective(number_fn, f"{self._wrap(self.name)} {symbol} {other}", self.layers)
        other = as_objective(other)

        def fn(acts: Activations) -> torch.Tensor:
            return op(self(acts), other(acts))

        right = self._wrap(other.name) if wrap_other else other.name
        left = self._wrap(self.name) if symbol in "*/" else self.name
        return Objective(fn, f"{left} {symbol} {right}", self.layers | other.layers)

    def __add__(self, other: object) -> Objective:
        if isinstance(other, Objective):  # a flat sum: a + b + c nests no closure in another
            return Objective.sum((*self.terms, *other.terms))
        return self._combine(other, torch.add, "+", wrap_other=False)

    def __sub__(self, other: object) -> Objective:
        return self._combine(other, torch.sub, "-", wrap_other=True)

    def __mul__(self, other: object) -> Objective:
        return self._combine(other, torch.mul, "*", wrap_other=True)

    def __truediv__(self, other: object) -> Objective:
        return self._combine(other, torch.div, "/", wrap_other=True)

    def __radd__(self, other: object) -> Objective:
        if isinstance(other, numbers.Number) and other == 0:  # builtin sum() starts at 0
            return self
        return self + other

    def __rsub__(self, other: object) -> Objective:
        return -self + other

    def __rmul__(self, other: object) -> Objective:
        if isinstance(other, numbers.Number):
            value = float(other)
            return Objective(
                lambda acts: value * self(acts), f"{other} * {self._wrap(self.name)}", self.layers
            )
        return as_objective(other) * self

    def __rtruediv__(self, other: object) -> Objective:
        return (
            as_objective(other) / self
            if not isinstance(other, numbers.Number)
            else Objective(
                lambda acts: float(other) / self(acts),
                f"{other} / {self._wrap(self.name)}",
                self.layers,
            )
        )

    def __neg__(self) -> Objective:
        return Objective(lambda acts: -self(acts), f"-{self._wrap(self.name)}", self.layers)

    @staticmethod
    def sum(objectives: Iterable[Objective]) -> Objective:
        """The sum of several objectives, named ``a + b + ...``.

        Sums are flat: ``a + b + c`` (and the builtin ``sum()``) build one sum of three terms,
        so a sum of thousands of objectives evaluates without deep recursion.
        """
        items = [term for item in objectives for term in as_objective(item).terms]
        if not items:
            raise ValueError("Objective.sum needs at least one objective.")
        if len(items) == 1:
            return items[0]

        def fn(acts: Activations) -> torch.Tensor:
            total = items[0](acts)
            for item in items[1:]:
                total = total + item(acts)
            return total

        layers = frozenset().union(*(item.layers for item in items))
        summed = Objective(fn, " + ".join(item.name for item in items), layers)
        summed.terms = tuple(items)
        return summed


def as_objective(obj: Objective | str | Callable) -> Objective:
    """Turn ``"layer:unit"`` strings and plain callables into :class:`Objective`.

    A plain callable must take the activations mapping; it declares no layers, so prefer
    :class:`Objective` with ``layers=`` for your own objectives.
    """
    if isinstance(obj, Objective):
        return obj
    if isinstance(obj, str):
        match = _LAYER_UNIT.match(obj)
        if not match:
            raise ValueError(
                f"Cannot read objective {obj!r}: a string objective is 'layer:unit', e.g. "
                "'layer3:7' or 'mixed4a:476'."
            )
        return channel(match["layer"], int(match["unit"]))
    if callable(obj):
        layers = getattr(obj, "layers", ())
        return Objective(obj, getattr(obj, "__name__", "objective"), layers)
    raise TypeError(
        f"An objective must be an Objective, a 'layer:unit' string or a callable, "
        f"got {type(obj).__name__}."
    )


def handle_batch(batch: int | None) -> Callable[[ObjectiveFn], ObjectiveFn]:
    """Restrict an objective function to one batch element (``batch=i``), as Lucid."""

    if batch is not None and (
        not isinstance(batch, numbers.Integral) or isinstance(batch, bool) or batch < 0
    ):
        raise ValueError(
            f"batch must be None (every element) or a batch index 0, 1, ..., got {batch!r}."
        )

    def decorator(fn: ObjectiveFn) -> ObjectiveFn:
        if batch is None:
            return fn

        @functools.wraps(fn)
        def inner(acts: Activations) -> torch.Tensor:
            sizes = {tensor.shape[0] for tensor in acts.values()}
            if any(batch >= size for size in sizes):
                raise IndexError(
                    f"Objective targets batch element {batch}, but the batch has "
                    f"{min(sizes)} element(s)."
                )
            sliced = Activations(
                {name: tensor[batch : batch + 1] for name, tensor in acts.items()}, acts.labels
            )
            return fn(sliced)

        return inner

    return decorator


def batch_arg(batch: int | None) -> str:
    """``", batch=i"`` for an objective's name, or nothing."""
    return "" if batch is None else f", batch={batch}"


def channel(layer: str, unit: int, batch: int | None = None) -> Objective:
    """Mean activation of one channel over all positions.

    >>> obj = channel("layer3", 7)   # maximize channel 7 of layer3
    """

    @handle_batch(batch)
    def inner(acts: Activations) -> torch.Tensor:
        tensor = acts[layer]
        check_unit(layer, tensor, unit)
        return unit_map(tensor, unit).mean()

    return Objective(inner, f"channel({layer!r}, {unit}{batch_arg(batch)})", {layer})
