"""Feature building that travels with every model: numpy and the standard library only.

This module is the one implementation of derived features, missing-value fills and
category encoding. mlpipeline uses it for training, monitoring and serving, and a copy
of this very file is shipped inside every logged MLflow model (as
``mlpipeline_portable.py``), so ``mlflow.pyfunc.load_model`` computes features exactly as
mlpipeline does without importing mlpipeline. It must therefore import nothing from
mlpipeline and nothing beyond numpy.

The feature spec is plain JSON (format ``mlpipeline-features/1``)::

    {"format": "mlpipeline-features/1",
     "key": "id",
     "features": [{"name": "x", "type": "float|integer|categorical",
                   "missing": "error|native|constant", "fill_value": null,
                   "min": null, "max": null,                  (numeric)
                   "categories": ["a", "b"], "strict": true}], (categorical)
     "constants": {"k": 1.0},
     "derived": [{"name": "x_per_k", "expression": "x / k"}],
     "order": ["x", ..., "x_per_k"]}

Categories are encoded as their position in ``categories`` (unknown or missing: NaN).
``key``, ``min``, ``max`` and ``strict`` describe the input contract that serving checks
(:mod:`mlpipeline.serving.scoring`); building the matrix ignores them.
"""

from __future__ import annotations

import ast
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

__all__ = [
    "FORMAT",
    "FUNCTIONS",
    "Arithmetic",
    "assemble",
    "build_matrix",
    "compile_arithmetic",
    "encode_categorical",
    "encode_columns",
]

FORMAT = "mlpipeline-features/1"
FloatArray = npt.NDArray[np.float64]
Value = FloatArray | float
Evaluator = Callable[[Mapping[str, Value]], Value]

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
_BINARY: dict[type[ast.operator], tuple[str, Callable[[Value, Value], FloatArray]]] = {
    ast.Add: ("+", np.add),
    ast.Sub: ("-", np.subtract),
    ast.Mult: ("*", np.multiply),
    ast.Div: ("/", np.true_divide),
    ast.Pow: ("**", np.power),
}


class Arithmetic:
    """A validated arithmetic expression: the names it reads and a vectorised evaluator."""

    def __init__(self, source: str, names: frozenset[str], evaluator: Evaluator, canonical: str) -> None:
        self.source = source
        self.names = names
        self.canonical = canonical
        self._evaluator = evaluator

    def evaluate(self, env: Mapping[str, Value], rows: int) -> FloatArray:
        """Evaluate over ``rows`` rows; non-finite results (x/0, log(-1)) become NaN."""
        with np.errstate(all="ignore"):
            return self.evaluate_quietly(env, rows)

    def evaluate_quietly(self, env: Mapping[str, Value], rows: int) -> FloatArray:
        """:meth:`evaluate` for callers that already silence numpy's floating-point warnings."""
        value = self._evaluator(env)
        out = np.asarray(value, dtype=np.float64)
        if out.ndim == 0:
            out = np.full(rows, float(out))
        else:
            out = out.astype(np.float64, copy=True)
        out[~np.isfinite(out)] = np.nan
        return out


def compile_arithmetic(source: str) -> Arithmetic:
    """Parse ``source``; raise ``ValueError`` naming the first construct that is not arithmetic."""
    if not isinstance(source, str) or not source.strip():
        raise ValueError("expected an arithmetic expression as a string, e.g. 'a / b'")
    try:
        tree = ast.parse(source.strip(), mode="eval")
    except SyntaxError as exc:
        raise ValueError(
            f"'{source}' is not a valid expression ({exc.msg}); write arithmetic such as "
            "'total_rooms / households'"
        ) from exc
    names: set[str] = set()
    evaluator, canonical = _compile(tree.body, source, names)
    return Arithmetic(source.strip(), frozenset(names), evaluator, canonical)


def _compile(node: ast.expr, source: str, names: set[str]) -> tuple[Evaluator, str]:
    if (
        isinstance(node, ast.Constant)
        and isinstance(node.value, (int, float))
        and not isinstance(node.value, bool)
    ):
        value = float(node.value)
        return (lambda env: value), repr(value)
    if isinstance(node, ast.Name):
        name = node.id
        names.add(name)
        return (lambda env: env[name]), name
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
        operand, text = _compile(node.operand, source, names)
        if isinstance(node.op, ast.USub):
            return (lambda env: np.negative(operand(env))), f"(-{text})"
        return operand, text
    if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
        symbol, func = _BINARY[type(node.op)]
        left, ltext = _compile(node.left, source, names)
        right, rtext = _compile(node.right, source, names)
        return (lambda env: func(left(env), right(env))), f"({ltext} {symbol} {rtext})"
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and not node.keywords:
        spec = FUNCTIONS.get(node.func.id)
        if spec is None:
            raise ValueError(
                f"function '{node.func.id}' is not allowed in '{source}'; "
                f"use one of {', '.join(sorted(FUNCTIONS))}"
            )
        arity, fn = spec
        if len(node.args) != arity:
            raise ValueError(
                f"{node.func.id}() takes {arity} argument(s), got {len(node.args)} in '{source}'"
            )
        parts = [_compile(a, source, names) for a in node.args]
        args = [p[0] for p in parts]
        text = f"{node.func.id}({', '.join(p[1] for p in parts)})"
        return (lambda env: fn(*(a(env) for a in args))), text
    raise ValueError(
        f"'{ast.unparse(node)}' is not allowed in '{source}'; only numbers, column or constant names, "
        f"+ - * / **, parentheses and {', '.join(sorted(FUNCTIONS))}() may be used"
    )


def encode_categorical(values: Sequence[object] | np.ndarray, categories: Sequence[str]) -> FloatArray:
    """Codes 0..k-1 as floats in ``categories`` order; missing or unknown values become NaN."""
    lookup = {c: float(i) for i, c in enumerate(categories)}
    return np.fromiter(
        (lookup.get(v, np.nan) if isinstance(v, str) else np.nan for v in values), dtype=np.float64
    )


def _is_missing(value: object) -> bool:
    # An empty string is missing, as validation treats it at ingest and at serving time.
    return (
        value is None or value == "" or (isinstance(value, float) and np.isnan(value)) or str(value) == "<NA>"
    )


class _Compiled:
    """A spec with its expressions compiled once (a cache keyed by the spec object)."""

    def __init__(self, spec: Mapping[str, Any]) -> None:
        if spec.get("format") != FORMAT:
            raise ValueError(f"unsupported feature spec format {spec.get('format')!r}; expected {FORMAT!r}")
        self.features: list[Mapping[str, Any]] = list(spec["features"])
        self.constants: dict[str, float] = {k: float(v) for k, v in spec.get("constants", {}).items()}
        self.derived = [(d["name"], compile_arithmetic(d["expression"])) for d in spec.get("derived", [])]
        self.order: list[str] = list(spec["order"])
        self.numeric_fills = [
            (f["name"], float(f["fill_value"]))
            for f in self.features
            if f["type"] != "categorical" and f.get("missing") == "constant"
        ]


_CACHE: dict[int, tuple[Mapping[str, Any], _Compiled]] = {}


def _compiled(spec: Mapping[str, Any]) -> _Compiled:
    hit = _CACHE.get(id(spec))
    if hit is not None and hit[0] is spec:
        return hit[1]
    compiled = _Compiled(spec)
    if len(_CACHE) > 64:
        _CACHE.clear()
    _CACHE[id(spec)] = (spec, compiled)
    return compiled


def encode_columns(spec: Mapping[str, Any], columns: Mapping[str, Any]) -> dict[str, FloatArray]:
    """Raw columns to float arrays: category codes (after the categorical fill) and numbers."""
    c = _compiled(spec)
    values: dict[str, FloatArray] = {}
    for feature in c.features:
        name = feature["name"]
        raw = columns[name]
        if feature["type"] == "categorical":
            items = list(raw)
            if feature.get("missing") == "constant":
                fill = feature["fill_value"]
                items = [fill if _is_missing(v) else v for v in items]
            values[name] = encode_categorical(items, feature.get("categories") or ())
        else:
            values[name] = np.asarray(raw, dtype=np.float64)
    return values


def assemble(spec: Mapping[str, Any], values: Mapping[str, FloatArray], rows: int) -> FloatArray:
    """The model matrix from encoded raw values: numeric fills, constants, derived features, order.

    Constant fills are applied before derived features are computed, so a derived feature
    sees the value the model sees.
    """
    c = _compiled(spec)
    env: dict[str, Value] = dict(values)
    for name, fill in c.numeric_fills:
        arr = values[name]
        env[name] = np.where(np.isnan(arr), fill, arr)
    env.update(c.constants)
    if c.derived:
        with np.errstate(all="ignore"):
            for name, expr in c.derived:
                env[name] = expr.evaluate_quietly(env, rows)
    matrix = np.empty((rows, len(c.order)), dtype=np.float64)
    for j, name in enumerate(c.order):
        matrix[:, j] = env[name]
    return matrix


def build_matrix(spec: Mapping[str, Any], columns: Mapping[str, Any]) -> FloatArray:
    """The (rows x features) float64 matrix for the model, in ``spec["order"]``.

    ``columns`` maps each raw feature name to an array-like of equal length; missing values
    may be NaN or None.
    """
    values = encode_columns(spec, columns)
    rows = len(next(iter(values.values()))) if values else 0
    return assemble(spec, values, rows)
