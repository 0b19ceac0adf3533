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
     "times": ["ordered_at"],                                 (optional)
     "derived": [{"name": "x_per_k", "expression": "x / k"},
                 {"name": "hour", "expression": "hour(ordered_at)"}],
     "order": ["x", ..., "x_per_k", "hour"]}

``times`` names raw timestamp columns that derived features read (through the time functions
``hour``, ``weekday`` (Monday 0), ``day``, ``month``, ``dayofyear`` and ``days_since(t, c)``).
A timestamp enters an expression as seconds since 1970-01-01 UTC, from a datetime64 array, a
``datetime`` (naive means UTC), an ISO-8601 text or a number of seconds; a date constant (TOML
``2020-01-01``) is stored the same way.

Categories are encoded as their position in ``categories`` (unknown or missing: NaN).
``key``, ``min``, ``max`` and ``strict`` describe the input contract that serving checks
(:mod:`mlpipeline.serving.scoring`); building the matrix ignores them.
"""

from __future__ import annotations

import ast
import datetime as _dt
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

__all__ = [
    "FORMAT",
    "FUNCTIONS",
    "TIME_FUNCTIONS",
    "Arithmetic",
    "assemble",
    "build_matrix",
    "class_labels",
    "class_probabilities",
    "compile_arithmetic",
    "encode_categorical",
    "encode_columns",
    "epoch_seconds",
    "input_names",
    "model_scores",
    "predicted_codes",
    "task_of",
]

FORMAT = "mlpipeline-features/1"
FloatArray = npt.NDArray[np.float64]
Value = FloatArray | float
Evaluator = Callable[[Mapping[str, Value]], Value]

_DAY = 86400.0


def _days(t: Value) -> Any:
    """Whole days since 1970-01-01 as datetime64[D] (NaN seconds become NaT)."""
    seconds = np.asarray(t, dtype=np.float64)
    days = np.floor(seconds / _DAY)
    out = np.where(np.isnan(days), np.iinfo(np.int64).min, days).astype(np.int64).astype("datetime64[D]")
    return out, np.isnan(days)


def _calendar(part: str) -> Callable[[Value], FloatArray]:
    def compute(t: Value) -> FloatArray:
        days, missing = _days(t)
        if part == "month":
            value = days.astype("datetime64[M]").astype(np.int64) % 12 + 1
        elif part == "day":
            value = (days - days.astype("datetime64[M]").astype("datetime64[D]")).astype(np.int64) + 1
        else:  # dayofyear
            value = (days - days.astype("datetime64[Y]").astype("datetime64[D]")).astype(np.int64) + 1
        return np.where(missing, np.nan, value.astype(np.float64))

    return compute


def _hour(t: Value) -> FloatArray:
    return np.asarray(np.floor(np.mod(np.asarray(t, dtype=np.float64), _DAY) / 3600.0), dtype=np.float64)


def _weekday(t: Value) -> FloatArray:
    # 1970-01-01 was a Thursday: Monday is 0, as in Python's datetime.weekday().
    return np.asarray(np.mod(np.floor(np.asarray(t, dtype=np.float64) / _DAY) + 3, 7), dtype=np.float64)


def _days_since(t: Value, since: Value) -> FloatArray:
    return np.asarray((np.asarray(t, dtype=np.float64) - np.asarray(since, dtype=np.float64)) / _DAY)


#: Functions over a timestamp (seconds since 1970 UTC) that an expression may call.
TIME_FUNCTIONS: dict[str, tuple[int, Callable[..., FloatArray]]] = {
    "hour": (1, _hour),
    "weekday": (1, _weekday),
    "day": (1, _calendar("day")),
    "month": (1, _calendar("month")),
    "dayofyear": (1, _calendar("dayofyear")),
    "days_since": (2, _days_since),
}

#: Element-wise functions an expression may call, with their arity.
FUNCTIONS: dict[str, tuple[int, Callable[..., FloatArray]]] = {
    "abs": (1, np.abs),
    "sqrt": (1, np.sqrt),
    "log": (1, np.log),
    "log1p": (1, np.log1p),
    "exp": (1, np.exp),
    "min": (2, np.minimum),
    "max": (2, np.maximum),
    **TIME_FUNCTIONS,
}
_BINARY: dict[type[ast.operator], tuple[str, Callable[[Value, Value], FloatArray]]] = {
    ast.Add: ("+", np.add),
    ast.Sub: ("-", np.subtract),
    ast.Mult: ("*", np.multiply),
    ast.Div: ("/", np.true_divide),
    ast.Pow: ("**", np.power),
}


_COMPARE: dict[type[ast.cmpop], tuple[str, Callable[[Value, Value], Any]]] = {
    ast.Gt: (">", np.greater),
    ast.GtE: (">=", np.greater_equal),
    ast.Lt: ("<", np.less),
    ast.LtE: ("<=", np.less_equal),
    ast.Eq: ("==", np.equal),
    ast.NotEq: ("!=", np.not_equal),
}


def _comparison(left: Value, right: Value, op: Callable[[Value, Value], Any]) -> FloatArray:
    """1.0 where the comparison holds, 0.0 where not, NaN where either side is missing."""
    a = np.asarray(left, dtype=np.float64)
    b = np.asarray(right, dtype=np.float64)
    out = np.where(op(a, b), 1.0, 0.0)
    return np.where(np.isnan(a) | np.isnan(b), np.nan, out)


class Arithmetic:
    """A validated arithmetic expression: the names it reads and a vectorised evaluator.

    ``is_comparison`` is true when the whole expression is a comparison (``a > b``): its
    values are 1, 0 or missing, e.g. a derived binary target.
    """

    def __init__(
        self,
        source: str,
        names: frozenset[str],
        evaluator: Evaluator,
        canonical: str,
        is_comparison: bool = False,
    ) -> None:
        self.source = source
        self.names = names
        self.canonical = canonical
        self.is_comparison = is_comparison
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
    return Arithmetic(
        source.strip(), frozenset(names), evaluator, canonical, isinstance(tree.body, ast.Compare)
    )


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
    if isinstance(node, (ast.Compare, ast.Call)):
        return _compile_compare_or_call(node, source, names)
    raise _not_allowed(node, source)


def _compile_compare_or_call(
    node: ast.Compare | ast.Call, source: str, names: set[str]
) -> tuple[Evaluator, str]:
    if isinstance(node, ast.Compare) and len(node.ops) == 1 and type(node.ops[0]) in _COMPARE:
        symbol, op = _COMPARE[type(node.ops[0])]
        left, ltext = _compile(node.left, source, names)
        right, rtext = _compile(node.comparators[0], source, names)
        return (lambda env: _comparison(left(env), right(env), op)), f"({ltext} {symbol} {rtext})"
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
    raise _not_allowed(node, source)


def _not_allowed(node: ast.expr, source: str) -> ValueError:
    return ValueError(
        f"'{ast.unparse(node)}' is not allowed in '{source}'; only numbers, column or constant names, "
        f"+ - * / **, one comparison (> >= < <= == !=), parentheses and "
        f"{', '.join(sorted(FUNCTIONS))}() may be used"
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
    for name in spec.get("times", ()):
        values[name] = epoch_seconds(columns[name])
    return values


def input_names(spec: Mapping[str, Any]) -> list[str]:
    """The raw columns the matrix is built from: the features, then any timestamps derived
    features read (``spec["times"]``)."""
    return [f["name"] for f in spec["features"]] + [t for t in spec.get("times", ()) if t]


def epoch_seconds(values: Any) -> FloatArray:
    """Timestamps as float seconds since 1970-01-01 UTC; missing or unreadable values are NaN.

    Accepts a datetime64 array (the fast path for whole columns), or any sequence of
    ``datetime`` (naive means UTC), ISO-8601 text (``Z`` and offsets understood) or numbers
    of seconds.
    """
    arr = np.asarray(values)
    if np.issubdtype(arr.dtype, np.datetime64):
        micros = arr.astype("datetime64[us]")
        out = micros.astype(np.int64).astype(np.float64) / 1e6
        out[np.isnat(micros)] = np.nan
        return out
    if np.issubdtype(arr.dtype, np.number) and arr.dtype != np.bool_:
        return arr.astype(np.float64)
    flat = arr.reshape(-1).tolist()
    return np.fromiter((_one_timestamp(v) for v in flat), dtype=np.float64, count=len(flat))


def _one_timestamp(value: Any) -> float:
    """One value as seconds since 1970 UTC, NaN when missing or unreadable."""
    if isinstance(value, str):
        try:
            value = _dt.datetime.fromisoformat(value.strip()) if value.strip() else None
        except ValueError:
            value = None
    elif hasattr(value, "to_pydatetime"):  # pandas' Timestamp
        value = value.to_pydatetime()
    elif isinstance(value, np.datetime64):
        value = None if np.isnat(value) else float(value.astype("datetime64[us]").astype(np.int64)) / 1e6
    seconds = float("nan")
    if isinstance(value, _dt.datetime):
        seconds = (value if value.tzinfo is not None else value.replace(tzinfo=_dt.UTC)).timestamp()
    elif isinstance(value, _dt.date):
        seconds = _dt.datetime(value.year, value.month, value.day, tzinfo=_dt.UTC).timestamp()
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        seconds = float(value)
    return seconds


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


# -- what a model's output means -------------------------------------------------------------
#
# A classifier's spec says so: "task" ("binary" or "multiclass"; absent: regression), "classes"
# (the target's values, in order), "positive" (the position of a binary target's positive
# class) and "threshold" (the score from which a binary row is positive).


def task_of(spec: Mapping[str, Any]) -> str:
    """``regression``, ``binary`` or ``multiclass``."""
    return str(spec.get("task") or "regression")


def model_scores(spec: Mapping[str, Any], model: Any, matrix: FloatArray) -> FloatArray:
    """What the model says for each row: a regression's prediction, a binary model's probability
    of the positive class, or a multiclass model's probability of each class (rows x classes).

    A LightGBM booster already returns these; a scikit-learn classifier's ``predict_proba`` has
    one column per class it saw in training, which are put back in the spec's class order.
    """
    task = task_of(spec)
    if task == "regression" or not hasattr(model, "predict_proba"):
        return np.asarray(model.predict(matrix), dtype=np.float64)
    proba = np.asarray(model.predict_proba(matrix), dtype=np.float64)
    seen = [int(c) for c in model.classes_]
    if task == "binary":
        return proba[:, seen.index(1)] if 1 in seen else np.zeros(len(matrix), dtype=np.float64)
    full = np.zeros((len(matrix), len(spec["classes"])), dtype=np.float64)
    full[:, seen] = proba
    return full


def class_probabilities(spec: Mapping[str, Any], scores: FloatArray) -> FloatArray:
    """Each class's probability (rows x classes, in the spec's class order)."""
    if task_of(spec) != "binary":
        return np.asarray(scores, dtype=np.float64)
    positive = int(spec["positive"])
    out = np.empty((len(scores), 2), dtype=np.float64)
    out[:, positive] = scores
    out[:, 1 - positive] = 1.0 - np.asarray(scores, dtype=np.float64)
    return out


def predicted_codes(spec: Mapping[str, Any], scores: FloatArray) -> npt.NDArray[np.int64]:
    """The predicted class's position: the positive class from the threshold on, else the other;
    a multiclass row's most probable class."""
    if task_of(spec) == "binary":
        positive = int(spec["positive"])
        hit = np.asarray(scores, dtype=np.float64) >= float(spec.get("threshold", 0.5))
        return np.where(hit, positive, 1 - positive).astype(np.int64)
    return np.asarray(np.argmax(scores, axis=1), dtype=np.int64)


def class_labels(spec: Mapping[str, Any], codes: npt.NDArray[np.int64]) -> list[Any]:
    """Class positions as the target's own values (text or whole numbers)."""
    classes = list(spec["classes"])
    return [classes[int(c)] for c in codes]
