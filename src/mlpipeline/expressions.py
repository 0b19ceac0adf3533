"""Derived-feature expressions: arithmetic over raw columns and named constants.

A definition writes ``rooms_per_household = "total_rooms / households"`` once; the
same compiled expression then computes that feature in training, monitoring and
serving, so there is no train/serve skew. Expressions are parsed with :mod:`ast` and
only arithmetic survives: numbers, names, ``+ - * / **``, unary minus and a handful of
element-wise functions. Anything else (attribute access, calls to other functions,
comparisons, subscripts) is rejected when the definition is loaded, never evaluated.

Evaluation is vectorised over numpy arrays; a division by zero or a log of a negative
number gives NaN (a missing value the model handles), never an exception or an inf.
"""

from __future__ import annotations

import ast
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from mlpipeline.errors import ExpressionError

__all__ = ["FUNCTIONS", "CompiledExpression", "compile_expression"]

FloatArray = npt.NDArray[np.float64]
Evaluator = Callable[[Mapping[str, FloatArray | float]], FloatArray | float]

#: Element-wise functions an expression may call, with their arity.
FUNCTIONS: dict[str, tuple[int, Callable[..., FloatArray]]] = {
    "abs": (1, np.abs),
    "sqrt": (1, np.sqrt),
    "log": (1, np.log),
    "log1p": (1, np.log1p),
    "exp": (1, np.exp),
    "min": (2, np.minimum),
    "max": (2, np.maximum),
}

_BINARY: dict[type[ast.operator], Callable[[FloatArray | float, FloatArray | float], FloatArray]] = {
    ast.Add: np.add,
    ast.Sub: np.subtract,
    ast.Mult: np.multiply,
    ast.Div: np.true_divide,
    ast.Pow: np.power,
}
_SYMBOL = {ast.Add: "+", ast.Sub: "-", ast.Mult: "*", ast.Div: "/", ast.Pow: "**"}


@dataclass(frozen=True)
class CompiledExpression:
    """A validated expression: its source, the names it reads, and a vectorised evaluator."""

    source: str
    names: frozenset[str]
    evaluate_raw: Evaluator
    canonical: str

    def evaluate(self, env: Mapping[str, FloatArray | float], rows: int) -> FloatArray:
        """Evaluate over ``rows`` rows; non-finite results (x/0, log(-1)) become NaN."""
        with np.errstate(all="ignore"):
            value = self.evaluate_raw(env)
        out = np.asarray(value, dtype=np.float64)
        if out.ndim == 0:
            out = np.full(rows, float(out))
        else:
            out = out.astype(np.float64, copy=True)
        out[~np.isfinite(out)] = np.nan
        return out


def compile_expression(source: str, *, where: str) -> CompiledExpression:
    """Parse and validate ``source``; ``where`` names the definition key for error messages."""
    if not isinstance(source, str) or not source.strip():
        raise ExpressionError(f"{where}: expected an arithmetic expression as a string, e.g. 'a / b'")
    try:
        tree = ast.parse(source.strip(), mode="eval")
    except SyntaxError as exc:
        raise ExpressionError(
            f"{where}: '{source}' is not a valid expression ({exc.msg}); "
            "write arithmetic such as 'total_rooms / households'"
        ) from exc
    names: set[str] = set()
    evaluator = _compile(tree.body, where, source, names)
    return CompiledExpression(
        source=source.strip(),
        names=frozenset(names),
        evaluate_raw=evaluator,
        canonical=_canonical(tree.body),
    )


def _compile(node: ast.expr, where: str, source: str, names: set[str]) -> Evaluator:
    if (
        isinstance(node, ast.Constant)
        and isinstance(node.value, (int, float))
        and not isinstance(node.value, bool)
    ):
        value = float(node.value)
        return lambda env: value
    if isinstance(node, ast.Name):
        name = node.id
        names.add(name)
        return lambda env: env[name]
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
        operand = _compile(node.operand, where, source, names)
        if isinstance(node.op, ast.USub):
            return lambda env: np.negative(operand(env))
        return operand
    if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
        func = _BINARY[type(node.op)]
        left = _compile(node.left, where, source, names)
        right = _compile(node.right, where, source, names)
        return lambda env: func(left(env), right(env))
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and not node.keywords:
        spec = FUNCTIONS.get(node.func.id)
        if spec is None:
            raise ExpressionError(
                f"{where}: function '{node.func.id}' is not allowed in '{source}'; "
                f"use one of {', '.join(sorted(FUNCTIONS))}"
            )
        arity, fn = spec
        if len(node.args) != arity:
            raise ExpressionError(
                f"{where}: {node.func.id}() takes {arity} argument(s), got {len(node.args)} in '{source}'"
            )
        args = [_compile(a, where, source, names) for a in node.args]
        return lambda env: fn(*(a(env) for a in args))
    raise ExpressionError(
        f"{where}: '{ast.unparse(node)}' is not allowed in '{source}'; only numbers, column or "
        f"constant names, + - * / **, parentheses and {', '.join(sorted(FUNCTIONS))}() may be used"
    )


def _canonical(node: ast.expr) -> str:
    """A fully parenthesised form, used to compare expressions written differently."""
    if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)):
        return repr(float(node.value))
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.UnaryOp):
        inner = _canonical(node.operand)
        return f"(-{inner})" if isinstance(node.op, ast.USub) else inner
    if isinstance(node, ast.BinOp):
        return f"({_canonical(node.left)} {_SYMBOL[type(node.op)]} {_canonical(node.right)})"
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
        return f"{node.func.id}({', '.join(_canonical(a) for a in node.args)})"
    raise AssertionError(f"unvalidated node {ast.dump(node)}")  # pragma: no cover
