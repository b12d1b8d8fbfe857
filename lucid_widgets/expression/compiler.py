"""A small, safe grammar for objective expressions typed into the widget's editor.

Examples
--------
``layer3:7``, ``layer3:7 - 0.5 * layer3:12 + 0.1 * diversity(layer3)``,
``neuron(mixed4a, 476, x=3, y=4)``, ``mixed4a:476@3,4``, ``'features.0':12``,
``class_logit("golden retriever") - 1e-3 * total_variation()``.

Grammar (never ``eval``)::

    expr    := term (("+" | "-") term)*
    term    := unary (("*" | "/") unary)*
    unary   := ("-" | "+") unary | primary
    primary := NUMBER | "(" expr ")" | call | unitref
    call    := NAME "(" [arg ("," arg)*] ")"
    arg     := [NAME "="] (["-"] NUMBER | STRING | NAME)
    unitref := (NAME | STRING) ":" INT ["@" INT "," INT]

``layer:unit`` is ``channel(layer, unit)``; ``layer:unit@x,y`` is ``neuron(layer, unit, x=x, y=y)``.
Names may contain dots (``layer3.0.conv1``); quote names that start with a digit (``'0':3``).
"""

from __future__ import annotations

import difflib
import inspect
import math
import operator
import re
from collections.abc import Callable, Iterable
from typing import Any

from lucid_widgets.expression.parser import CONSTANTS, ExpressionError, Node, parse

__all__ = [
    "FUNCTIONS",
    "ExpressionError",
    "compile_objective",
    "parse",
    "referenced_layers",
    "unit_term",
]

# Objective constructors the editor may call (looked up on the objectives module).
FUNCTIONS: tuple[str, ...] = (
    "channel",
    "neuron",
    "deepdream",
    "diversity",
    "total_variation",
    "L1",
    "L2",
    "class_logit",
    "alignment",
    "blur_input_each_step",
    "blur_alpha_each_step",
    "channel_interpolate",
    "penalize_boundary_complexity",
)
_UNIT_PARAMS = ("unit", "channel", "n_channel", "n_neuron", "n")
_OPERATORS = {"+": operator.add, "-": operator.sub, "*": operator.mul, "/": operator.truediv}


def _closest(name: str, names: Iterable[str], count: int = 3) -> list[str]:
    names = list(dict.fromkeys(names))
    close = difflib.get_close_matches(name, names, n=count, cutoff=0.5)
    if not close:
        lowered = name.lower()
        close = [candidate for candidate in names if lowered in candidate.lower()][:count]
    return close


class _Compiler:
    def __init__(
        self,
        text: str,
        objectives: Any,
        layers: dict[str, int | None] | None,
        resolve_layer: Callable[[str], Any] | None,
    ) -> None:
        self.text = text
        self.objectives = objectives
        self.layers = layers
        self.resolve_layer = resolve_layer
        self.functions = {name.lower(): name for name in FUNCTIONS if hasattr(objectives, name)}

    def fail(self, message: str, node_or_token: Any, **extra: Any) -> ExpressionError:
        return ExpressionError(message, self.text, node_or_token.start, node_or_token.end, **extra)

    def check_layer(self, layer: str, span: Any) -> None:
        known = self.layers is not None and layer in self.layers
        if known or layer in ("input", "logits"):
            return
        if self.resolve_layer is not None:
            try:
                self.resolve_layer(layer)
                return
            except (KeyError, ValueError):
                pass
        if self.layers is None and self.resolve_layer is None:
            return
        names = list(self.layers or ())
        raise self.fail(
            f"unknown layer {layer!r}", span, expected="a layer name",
            suggestions=_closest(layer, names),
        )  # fmt: skip

    def check_unit(self, layer: str, unit: Any, span: Any) -> None:
        count = (self.layers or {}).get(layer)
        if isinstance(unit, int) and count is not None and not 0 <= unit < count:
            raise self.fail(
                f"unit {unit} is out of range for layer {layer!r} (it has {count} units: "
                f"0..{count - 1})", span, expected=f"a unit index below {count}",
            )  # fmt: skip

    def evaluate(self, node: Node) -> Any:
        if node.kind == "number":
            return node.value
        if node.kind == "unit":
            self.check_layer(node.layer, Node("name", node.start, node.value))
            self.check_unit(node.layer, node.unit, node)
            if node.position is None:
                return self.objectives.channel(node.layer, node.unit)
            x, y = node.position
            return self.objectives.neuron(node.layer, node.unit, x=x, y=y)
        if node.kind == "call":
            return self.call(node)
        if node.kind == "neg":
            value = self.evaluate(node.children[0])
            return -value if hasattr(value, "__neg__") else value * -1
        return self.binary(node)

    def binary(self, node: Node) -> Any:
        left, right = (self.evaluate(child) for child in node.children)
        if node.value == "/" and isinstance(right, (int, float)) and right == 0:
            raise self.fail("division by zero", node.children[1])
        try:
            result = _OPERATORS[node.value](left, right)
        except TypeError as error:
            raise self.fail(
                f"cannot apply {node.value!r} to these terms ({error})", node,
                expected="objectives combined with + - * / and numbers",
            ) from None  # fmt: skip
        if isinstance(result, float) and not math.isfinite(result):
            raise self.fail("number out of range", node, expected="finite numbers")
        return result

    def call(self, node: Node) -> Any:
        canonical = self.functions.get(str(node.value).lower())
        name_span = Node("call", node.start, node.start + len(node.value))
        if canonical is None:
            available = sorted(self.functions.values())
            raise self.fail(
                f"unknown function {node.value!r} (available: {', '.join(available)})",
                name_span, expected="an objective function",
                suggestions=_closest(node.value, available),
            )  # fmt: skip
        function = getattr(self.objectives, canonical)
        args = [value for value, _ in node.args]
        kwargs = {key: value for key, value, _ in node.kwargs}
        bound = self.bind(function, canonical, args, kwargs, node)
        tokens = dict(
            zip(bound.signature.parameters, [token for _, token in node.args], strict=False)
        )
        tokens.update({key: token for key, _, token in node.kwargs})
        for param, value in bound.arguments.items():
            if param.startswith("layer") and isinstance(value, str):
                self.check_layer(value, tokens.get(param, node))
        layer = bound.arguments.get("layer")
        for param in _UNIT_PARAMS:
            if isinstance(layer, str) and param in bound.arguments:
                self.check_unit(layer, bound.arguments[param], tokens.get(param, node))
        try:
            return function(*args, **kwargs)
        except (TypeError, ValueError, LookupError, ArithmeticError, RuntimeError) as error:
            raise self.fail(f"{canonical}(...) failed: {error}", node) from None

    def bind(self, function: Any, name: str, args: list, kwargs: dict, node: Node) -> Any:
        try:
            signature = inspect.signature(function)
        except (TypeError, ValueError):  # builtins without a signature
            return inspect.Signature().bind()
        try:
            return signature.bind(*args, **kwargs)
        except TypeError as error:
            raise self.fail(
                f"bad arguments for {name}{signature}: {error}", node,
                expected=f"{name}{signature}",
            ) from None  # fmt: skip


def compile_objective(
    text: str,
    objectives: Any = None,
    layers: dict[str, int | None] | None = None,
    resolve_layer: Callable[[str], Any] | None = None,
) -> Any:
    """Parse and build the objective that ``text`` describes.

    Parameters
    ----------
    text : str
        The expression, e.g. ``"layer3:7 - 0.5 * layer3:12"``.
    objectives : module, optional
        Where the objective constructors live (default ``lucid_widgets.optvis.objectives``).
    layers : dict, optional
        Known layer names (and aliases) -> unit count (or ``None`` when unknown), used to
        reject unknown layers and out-of-range units with the closest names.
    resolve_layer : callable, optional
        Called with a name not in ``layers``; it must raise ``KeyError``/``ValueError`` when
        the name is not a layer (e.g. ``functools.partial(hooks.resolve_layer, model)``).

    Returns
    -------
    Objective
        The combined objective.

    Raises
    ------
    ExpressionError
        With the position of the problem, what was expected and the closest names.
    """
    if objectives is None:
        from lucid_widgets.optvis import objectives as objectives_module

        objectives = objectives_module
    tree = parse(text)
    result = _Compiler(text, objectives, layers, resolve_layer).evaluate(tree)
    if isinstance(result, (int, float)):
        raise ExpressionError(
            "the expression has no objective term", text, 0, len(text),
            expected="at least one objective such as layer:unit",
        )  # fmt: skip
    return result


def _quote_layer(layer: str) -> str:
    if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_.]*", layer) and layer not in CONSTANTS:
        return layer
    quote = '"' if "'" in layer else "'"
    return f"{quote}{layer}{quote}"


def unit_term(layer: str, unit: int, kind: str = "channel") -> str:
    """The expression text for one unit: ``layer:7`` (channel) or ``neuron(layer, 7)``."""
    if kind == "neuron":
        return f"neuron({_quote_layer(layer)}, {int(unit)})"
    if kind != "channel":
        raise ValueError(f"unit kind must be 'channel' or 'neuron', got {kind!r}")
    return f"{_quote_layer(layer)}:{int(unit)}"


def referenced_layers(text: str) -> list[str]:
    """Layer names an expression reads, in the order written (``input`` / ``logits`` left out).

    Used to pick the layer of the widget's diversity term. Malformed text gives ``[]``.
    """
    try:
        tree = parse(text)
    except ExpressionError:
        return []
    found: list[str] = []

    def visit(node: Node) -> None:
        if node.kind == "unit":
            found.append(node.layer)
        elif node.kind == "call":
            layer = dict((key, value) for key, value, _ in node.kwargs).get("layer")
            if layer is None and node.args and isinstance(node.args[0][0], str):
                layer = node.args[0][0]
            if isinstance(layer, str):
                found.append(layer)
        for child in node.children:
            visit(child)

    visit(tree)
    return [name for name in dict.fromkeys(found) if name not in ("input", "logits")]
