"""Tokenizer and recursive-descent parser of the objective grammar (see :mod:`.expression`).

Produces a tree of :class:`Node` with character spans, and :class:`ExpressionError` (position,
what was expected) on malformed text. Nothing here evaluates anything.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

__all__ = [
    "CONSTANTS",
    "MAX_DEPTH",
    "MAX_LENGTH",
    "MAX_NUMBER_LENGTH",
    "MAX_OPERATORS",
    "ExpressionError",
    "Node",
    "Token",
    "parse",
    "tokenize",
    "unquote",
]

CONSTANTS = {"True": True, "False": False, "None": None}

# Limits that keep every input well inside Python's recursion limit (the parser, the compiler
# and the objective it builds all recurse over the tree) and its int-parsing limit.
MAX_LENGTH = 4000  # characters
MAX_DEPTH = 50  # nested parentheses and signs
MAX_OPERATORS = 200  # binary + - * / in one expression
MAX_NUMBER_LENGTH = 40  # characters of one number

_TOKEN_RE = re.compile(
    r"""
    (?P<space>\s+)
  | (?P<number>(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)
  | (?P<name>[A-Za-z_][A-Za-z0-9_.]*)
  | (?P<string>'[^']*'|"[^"]*")
  | (?P<op>[-+*/():@,=])
    """,
    re.VERBOSE,
)


class ExpressionError(ValueError):
    """A bad objective expression, with the position of the problem.

    Attributes
    ----------
    message : str
        What is wrong.
    position, end : int
        Character span of the problem in ``text`` (0-based, end exclusive).
    expected : str
        What the parser expected there (may be empty).
    suggestions : list of str
        Closest valid names (for unknown layers or functions).
    """

    def __init__(
        self,
        message: str,
        text: str,
        position: int,
        end: int | None = None,
        expected: str = "",
        suggestions: Sequence[str] = (),
    ) -> None:
        self.message = message
        self.text = text
        self.position = max(0, min(position, len(text)))
        self.end = max(self.position + 1, end if end is not None else self.position + 1)
        self.expected = expected
        self.suggestions = list(suggestions)
        caret = " " * self.position + "^" * max(1, min(self.end, len(text) + 1) - self.position)
        hint = f"; did you mean {', '.join(self.suggestions)}?" if self.suggestions else ""
        super().__init__(f"{message} at position {self.position}{hint}\n  {text}\n  {caret}")

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly description (what the widget's error trait holds)."""
        return {
            "message": self.message,
            "position": self.position,
            "end": self.end,
            "expected": self.expected,
            "suggestions": self.suggestions,
        }


@dataclass(frozen=True)
class Token:
    kind: str  # "number" | "name" | "string" | "op" | "end"
    text: str
    start: int
    end: int


@dataclass(frozen=True)
class Node:
    """An expression tree node; ``kind`` is number/unit/call/neg/binary."""

    kind: str
    start: int
    end: int
    value: Any = None  # number, operator or function name
    layer: str = ""
    unit: int = -1
    position: tuple[int, int] | None = None
    children: tuple[Node, ...] = ()
    args: tuple[tuple[Any, Token], ...] = ()
    kwargs: tuple[tuple[str, Any, Token], ...] = field(default=())


def tokenize(text: str) -> list[Token]:
    """Split ``text`` into tokens, raising `ExpressionError` on an unknown character."""
    tokens, index = [], 0
    while index < len(text):
        match = _TOKEN_RE.match(text, index)
        if match is None:
            raise ExpressionError(
                f"unexpected character {text[index]!r}",
                text,
                index,
                expected="a number, a name, a quoted name or one of + - * / ( ) : @ , =",
            )
        kind = match.lastgroup or ""
        if kind == "number" and len(match.group()) > MAX_NUMBER_LENGTH:
            raise ExpressionError(
                f"number too long ({len(match.group())} characters; at most "
                f"{MAX_NUMBER_LENGTH})", text, match.start(), match.end(),
                expected="a number such as 7, 0.5 or 1e-3",
            )  # fmt: skip
        if kind != "space":
            tokens.append(Token(kind, match.group(), match.start(), match.end()))
        index = match.end()
    tokens.append(Token("end", "", len(text), len(text)))
    return tokens


class _Parser:
    def __init__(self, text: str) -> None:
        if len(text) > MAX_LENGTH:
            raise ExpressionError(
                f"expression too long ({len(text)} characters; at most {MAX_LENGTH})",
                text, MAX_LENGTH, len(text), expected="a shorter expression",
            )  # fmt: skip
        self.text = text
        self.tokens = tokenize(text)
        self.index = 0
        self.depth = 0
        self.operators = 0

    def nest(self, token: Token) -> None:
        """Count one more level of parentheses or signs, failing beyond ``MAX_DEPTH``."""
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise ExpressionError(
                f"expression nested too deeply (more than {MAX_DEPTH} levels of parentheses "
                "and signs)", self.text, token.start, token.end, expected="a flatter expression",
            )  # fmt: skip

    def operator(self) -> str:
        """Take a binary operator, failing beyond ``MAX_OPERATORS`` of them."""
        token = self.advance()
        self.operators += 1
        if self.operators > MAX_OPERATORS:
            raise ExpressionError(
                f"expression too long (more than {MAX_OPERATORS} operators)", self.text,
                token.start, token.end, expected="fewer terms",
            )  # fmt: skip
        return token.text

    @property
    def token(self) -> Token:
        return self.tokens[self.index]

    def advance(self) -> Token:
        token = self.token
        self.index += 1
        return token

    def error(self, message: str, expected: str, token: Token | None = None) -> ExpressionError:
        token = token or self.token
        found = "end of expression" if token.kind == "end" else repr(token.text)
        return ExpressionError(
            f"{message}, found {found}", self.text, token.start, token.end, expected
        )

    def expect_op(self, op: str, what: str) -> Token:
        if self.token.kind == "op" and self.token.text == op:
            return self.advance()
        raise self.error(f"expected {op!r} {what}", repr(op))

    def parse(self) -> Node:
        if self.token.kind == "end":
            raise self.error("empty expression", "an objective such as layer:unit")
        node = self.expr()
        if self.token.kind != "end":
            raise self.error("unexpected token", "an operator (+ - * /) or the end")
        return node

    def expr(self) -> Node:
        node = self.term()
        while self.token.kind == "op" and self.token.text in "+-":
            op = self.operator()
            right = self.term()
            node = Node("binary", node.start, right.end, op, children=(node, right))
        return node

    def term(self) -> Node:
        node = self.unary()
        while self.token.kind == "op" and self.token.text in "*/":
            op = self.operator()
            right = self.unary()
            node = Node("binary", node.start, right.end, op, children=(node, right))
        return node

    def unary(self) -> Node:
        if self.token.kind == "op" and self.token.text in "+-":
            op = self.advance()
            self.nest(op)
            operand = self.unary()
            self.depth -= 1
            if op.text == "+":
                return operand
            return Node("neg", op.start, operand.end, children=(operand,))
        return self.primary()

    def primary(self) -> Node:
        token = self.token
        if token.kind == "number":
            self.advance()
            return Node("number", token.start, token.end, self.finite(token))
        if token.kind == "op" and token.text == "(":
            self.advance()
            self.nest(token)
            node = self.expr()
            close = self.expect_op(")", "to close the parenthesis")
            self.depth -= 1
            return replace(node, start=token.start, end=close.end)
        if token.kind in ("name", "string"):
            self.advance()
            following = self.token
            if token.kind == "name" and following.kind == "op" and following.text == "(":
                return self.call(token)
            if following.kind == "op" and following.text == ":":
                return self.unitref(token)
            call = " or '(' for a function call" * (token.kind == "name")
            raise ExpressionError(
                f"expected ':unit' after {unquote(token)!r}{call}", self.text, token.start,
                token.end, expected="':' followed by a unit number, e.g. layer3:7",
            )  # fmt: skip
        raise self.error("expected a term", "a number, layer:unit, a function call or '('")

    def finite(self, token: Token) -> float:
        value = float(token.text)
        if not math.isfinite(value):
            raise self.error("number out of range", "a finite number", token)
        return value

    def integer(self, what: str) -> int:
        token = self.token
        if token.kind != "number" or not token.text.isdigit():
            raise self.error(f"expected {what} (a whole number)", what)
        self.advance()
        return int(token.text)

    def unitref(self, name: Token) -> Node:
        self.advance()  # ":"
        unit = self.integer("a unit index")
        end, position = self.tokens[self.index - 1].end, None
        if self.token.kind == "op" and self.token.text == "@":
            self.advance()
            x = self.integer("an x position")
            self.expect_op(",", "between x and y")
            y = self.integer("a y position")
            position, end = (x, y), self.tokens[self.index - 1].end
        return Node(
            "unit", name.start, end, name.end, layer=unquote(name), unit=unit, position=position
        )  # value: where the layer name ends

    def call(self, name: Token) -> Node:
        self.advance()  # "("
        args: list[tuple[Any, Token]] = []
        kwargs: list[tuple[str, Any, Token]] = []
        while not (self.token.kind == "op" and self.token.text == ")"):
            if args or kwargs:
                self.expect_op(",", "between arguments")
            keyword = None
            if self.token.kind == "name" and self.tokens[self.index + 1].text == "=":
                keyword = self.advance().text
                self.advance()
            value, token = self.argument()
            if keyword is not None:
                kwargs.append((keyword, value, token))
            elif kwargs:
                raise self.error("positional argument after keyword argument", "name=value", token)
            else:
                args.append((value, token))
        close = self.advance()
        return Node(
            "call", name.start, close.end, name.text, args=tuple(args), kwargs=tuple(kwargs)
        )

    def argument(self) -> tuple[Any, Token]:
        token = self.token
        sign = 1.0
        if token.kind == "op" and token.text == "-":
            self.advance()
            sign = -1.0
            if self.token.kind != "number":
                raise self.error("expected a number after '-'", "a number")
        token = self.token
        if token.kind == "number":
            self.advance()
            is_int = re.fullmatch(r"\d+", token.text) is not None
            return (int(token.text) * int(sign) if is_int else self.finite(token) * sign), token
        if token.kind == "string":
            self.advance()
            return unquote(token), token
        if token.kind == "name":
            self.advance()
            return CONSTANTS.get(token.text, token.text), token
        raise self.error("expected an argument", "a number, a quoted string or a name")


def unquote(token: Token) -> str:
    return token.text[1:-1] if token.kind == "string" else token.text


def parse(text: str) -> Node:
    """Parse ``text`` into an expression tree, raising `ExpressionError` when it is malformed."""
    if not isinstance(text, str):
        raise TypeError(f"objective expression must be a str, got {type(text).__name__}")
    return _Parser(text).parse()
