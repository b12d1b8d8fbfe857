"""The objective grammar of the editor and the CLI: text -> :class:`~lucid_widgets.Objective`.

A small recursive-descent parser (:mod:`.parser`, never ``eval``) and a compiler that turns its
tree into engine objectives (:mod:`.compiler`).

>>> from lucid_widgets.expression import compile_objective                  # doctest: +SKIP
>>> compile_objective("block10:5 - 0.5 * block10:7", model)                 # doctest: +SKIP
"""

from lucid_widgets.expression.compiler import compile_objective, referenced_layers, unit_term
from lucid_widgets.expression.parser import ExpressionError, parse

__all__ = ["ExpressionError", "compile_objective", "parse", "referenced_layers", "unit_term"]
