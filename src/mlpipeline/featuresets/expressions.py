"""Derived-feature expressions: arithmetic over raw columns and named constants.

A definition writes ``rooms_per_household = "total_rooms / households"`` once; the
same compiled expression then computes that feature in training, monitoring and
serving. Expressions are parsed with :mod:`ast` and only arithmetic survives: numbers,
names, ``+ - * / **``, unary minus, a few element-wise functions and one comparison
(``minutes > late_after``: 1, 0, or missing when a side is missing; a derived binary target).
Anything else (attribute access, other calls, chained comparisons, subscripts) is rejected
when the definition is loaded, never evaluated. The evaluator itself lives in
:mod:`mlpipeline.featuresets.portable`, which ships inside every model; this module adds
definition-level error reporting.
"""

from __future__ import annotations

from mlpipeline.errors import ExpressionError
from mlpipeline.featuresets.portable import FUNCTIONS, Arithmetic, compile_arithmetic

__all__ = ["FUNCTIONS", "CompiledExpression", "compile_expression"]

CompiledExpression = Arithmetic


def compile_expression(source: str, *, where: str) -> Arithmetic:
    """Parse and validate ``source``; ``where`` names the definition key for error messages."""
    try:
        return compile_arithmetic(source)
    except ValueError as exc:
        raise ExpressionError(f"{where}: {exc}") from exc
