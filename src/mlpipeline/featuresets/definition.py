"""Feature-set definitions: one TOML file per use case drives every stage.

The definition names the table, the entity key, the event and label-arrival times,
the target, the typed features with their missing-value policy and ranges, derived
features (arithmetic expressions over raw columns and named constants) and the model
settings. Training, monitoring and serving all read the same object, so a feature is
defined once. Loading validates everything and reports each problem with its key and
the fix; SQL identifiers are only ever taken from a validated definition.

A minimal file::

    name = "example"
    table = "example"
    [entity_key]
    column = "id"
    [target]
    column = "y"
    [features.x]
    type = "float"
"""

from __future__ import annotations

import hashlib
import json
import re
import tomllib
from collections.abc import Mapping
from datetime import UTC, date, datetime
from functools import cached_property
from importlib import resources
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from mlpipeline.errors import ConfigError, DefinitionError, ExpressionError, NotFoundError
from mlpipeline.featuresets.expressions import CompiledExpression, compile_expression
from mlpipeline.settings import parse_duration

__all__ = [
    "INTERNAL_COLUMNS",
    "MAX_TEXT_LENGTH",
    "Definition",
    "DerivedFeature",
    "Feature",
    "ParamRange",
    "TuneWhen",
    "Tuning",
    "available_featuresets",
    "load_definition",
    "no_default_space",
    "parse_definition",
]

#: Identifiers are lower-case ASCII so they need no quoting in SQLite, PostgreSQL or IRIS.
IDENTIFIER = re.compile(r"^[a-z][a-z0-9_]{0,62}\Z")  # \Z: "$" would accept a final newline
#: Columns the feature store adds to every feature-set table.
INTERNAL_COLUMNS = ("_batch_id", "_ingested_at", "_labelled_batch", "_row_hash")
#: Longest categorical value or string key (in characters) a feature set accepts.
MAX_TEXT_LENGTH = 255

FeatureType = Literal["float", "integer", "categorical"]
MissingPolicy = Literal["error", "native", "constant"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Feature(_Strict):
    """One raw input column of the model."""

    type: FeatureType = Field(description="float, integer or categorical")
    description: str = ""
    source: str | None = Field(
        default=None, description="the column's name in the source files, e.g. 'mean radius'"
    )
    min: float | None = Field(default=None, description="smallest allowed value (numeric only)")
    max: float | None = Field(default=None, description="largest allowed value (numeric only)")
    values: tuple[str, ...] | None = Field(
        default=None, description="allowed categories (categorical only); others are rejected"
    )
    missing: MissingPolicy = Field(
        default="error",
        description=(
            "error: a missing value rejects the row; native: kept missing and handled by the "
            "model; constant: replaced by fill_value before training and prediction"
        ),
    )
    fill_value: float | str | None = None
    drift: bool = Field(
        default=True,
        description=(
            "watch this feature's distribution for the drift trigger; turn off for features "
            "that move by design, such as the hour or weekday of a daily batch"
        ),
    )

    @model_validator(mode="after")
    def _consistent(self) -> Feature:
        if self.type == "categorical":
            if self.min is not None or self.max is not None:
                raise ValueError("min/max apply to numeric features only; remove them or use type float")
            if self.values is not None and len(self.values) == 0:
                raise ValueError("values is empty; list the allowed categories or remove the key")
            if self.values is not None and len(set(self.values)) != len(self.values):
                raise ValueError("values lists a category twice")
        elif self.values is not None:
            raise ValueError("values applies to categorical features only; remove it or use type categorical")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"min ({self.min}) is greater than max ({self.max})")
        if self.missing == "constant":
            if self.fill_value is None:
                raise ValueError("missing = 'constant' needs fill_value")
            if self.type == "categorical" and not isinstance(self.fill_value, str):
                raise ValueError("fill_value of a categorical feature must be a string")
            if self.type != "categorical" and not isinstance(self.fill_value, (int, float)):
                raise ValueError("fill_value of a numeric feature must be a number")
        elif self.fill_value is not None:
            raise ValueError("fill_value is only used with missing = 'constant'")
        return self

    @property
    def numeric(self) -> bool:
        return self.type != "categorical"


KeyType = Literal["integer", "string"]


class EntityKey(_Strict):
    """The column (or columns, for panel data such as one row per person and year) naming a row."""

    column: str | None = Field(default=None, description="column that identifies a row")
    columns: tuple[str, ...] | None = Field(
        default=None, description="columns that together identify a row, e.g. ['id', 'year']"
    )
    type: KeyType = "integer"
    types: dict[str, KeyType] = Field(
        default_factory=dict, description="type of each key column where it differs from 'type'"
    )
    source: str | None = Field(default=None, description="the key column's name in the source files")
    sources: dict[str, str] = Field(
        default_factory=dict, description="each key column's name in the source files (composite keys)"
    )
    generate: bool = Field(
        default=False,
        description="the source has no key: assign increasing integers at ingest",
    )

    @model_validator(mode="after")
    def _one_form(self) -> EntityKey:
        if (self.column is None) == (self.columns is None):
            raise ValueError("give either column = 'id' or columns = ['id', 'year'], not both or neither")
        names = self.names
        if not names:
            raise ValueError("columns is empty; list the key columns")
        if len(set(names)) != len(names):
            raise ValueError("columns lists a column twice")
        if self.generate and self.type != "integer":
            raise ValueError("a generated key is an integer; set type = 'integer' or generate = false")
        if self.generate and len(names) > 1:
            raise ValueError("a generated key is one column; use column = '…' with generate = true")
        unknown = sorted(set(self.types) - set(names))
        if unknown:
            raise ValueError(f"types names {', '.join(unknown)}, which is not a key column")
        unknown = sorted(set(self.sources) - set(names))
        if unknown:
            raise ValueError(f"sources names {', '.join(unknown)}, which is not a key column")
        if self.source is not None and self.column is None:
            raise ValueError(
                "source goes with column = '…'; for columns = […] use sources = {column = 'name'}"
            )
        return self

    def source_of(self, name: str) -> str | None:
        return self.source if name == self.column else self.sources.get(name)

    @property
    def names(self) -> tuple[str, ...]:
        """The key columns in order (one for a simple key)."""
        return (self.column,) if self.column is not None else tuple(self.columns or ())

    @property
    def composite(self) -> bool:
        return len(self.names) > 1

    def type_of(self, name: str) -> KeyType:
        return self.types.get(name, self.type)


Task = Literal["regression", "binary", "multiclass"]


class Target(_Strict):
    """What the model predicts: a number (regression) or one of declared classes.

    ``type = "categorical"`` with ``values`` (text or whole numbers) makes a classifier: two
    values are binary (``positive`` names the class whose probability is scored, default the
    last value), more are multiclass. The store keeps a class as its position in ``values``,
    so values may be added at the end but never reordered. ``derived`` computes the target at
    ingest from columns of the file and constants; a comparison (``minutes > late_after``) is
    a binary target with values 0 and 1.
    """

    column: str
    description: str = ""
    source: str | None = Field(default=None, description="the column's name in the source files")
    min: float | None = None
    max: float | None = None
    type: Literal["numeric", "categorical"] = "numeric"
    values: tuple[str, ...] | tuple[int, ...] | None = Field(
        default=None, description="the classes of a categorical target, in a fixed order"
    )
    positive: str | int | None = Field(default=None, description="the positive class of a binary target")
    derived: str | None = Field(
        default=None, description="an expression over file columns and constants, e.g. 'minutes > late_after'"
    )

    @model_validator(mode="before")
    @classmethod
    def _derived_comparison_is_binary(cls, data: Any) -> Any:
        if isinstance(data, Mapping) and data.get("derived") and "type" not in data and "values" not in data:
            try:
                comparison = compile_expression(str(data["derived"]), where="target.derived").is_comparison
            except ExpressionError:
                return data  # reported by the semantic checks with the key
            if comparison:
                return {**data, "type": "categorical", "values": [0, 1]}
        return data

    @model_validator(mode="after")
    def _classes(self) -> Target:
        if self.type == "numeric":
            if self.values is not None or self.positive is not None:
                raise ValueError(
                    "values and positive describe classes: add type = 'categorical' to the target, "
                    "or remove them"
                )
            return self
        if self.values is None or len(self.values) < 2:
            raise ValueError(
                "a categorical target needs values = [...] with at least two classes, e.g. ['no', 'yes']"
            )
        if len({str(v) for v in self.values}) != len(self.values):
            raise ValueError("target.values: a class is listed twice; list each once")
        if self.min is not None or self.max is not None:
            raise ValueError("min and max are for numeric targets; a categorical target lists its values")
        if self.positive is not None:
            if len(self.values) != 2:
                raise ValueError("positive is for binary targets (two values); a multiclass target has none")
            if str(self.positive) not in {str(v) for v in self.values}:
                shown = ", ".join(repr(v) for v in self.values)
                raise ValueError(f"positive = {self.positive!r} is not one of the values ({shown})")
        return self

    @property
    def task(self) -> Task:
        if self.type == "numeric" or self.values is None:
            return "regression"
        return "binary" if len(self.values) == 2 else "multiclass"

    @property
    def classes(self) -> tuple[str, ...]:
        """The class labels as text, in ``values`` order (the stored codes index this tuple)."""
        return tuple(str(v) for v in self.values or ())

    @property
    def positive_index(self) -> int:
        """Position of the positive class of a binary target (default: the last value)."""
        if self.positive is None:
            return len(self.classes) - 1
        return self.classes.index(str(self.positive))

    @cached_property
    def compiled(self) -> CompiledExpression | None:
        return None if self.derived is None else compile_expression(self.derived, where="target.derived")


class Holdout(_Strict):
    fraction: float = Field(default=0.2, gt=0, lt=1, description="share of labelled rows held out")
    min_rows: int = Field(default=50, ge=1, description="smallest holdout that gives a verdict")


TuneWhen = Literal["never", "first", "gate_failed", "drift", "every_retrain"]


class ParamRange(_Strict):
    """One hyperparameter's search range: ``{low, high}`` (whole numbers give an integer range,
    ``log = true`` samples on a log scale) or ``{choices = [...]}``."""

    low: int | float | None = None
    high: int | float | None = None
    log: bool = False
    choices: list[int | float | str | bool] | None = None

    @model_validator(mode="after")
    def _one_form(self) -> ParamRange:
        if self.choices is not None:
            if self.low is not None or self.high is not None or self.log:
                raise ValueError("give either choices = [...] or low/high (and log), not both")
            if not self.choices:
                raise ValueError("choices is empty; list the values to try")
            if len({json.dumps(c) for c in self.choices}) != len(self.choices):
                raise ValueError("choices lists a value twice; list each once")
            return self
        if self.low is None or self.high is None:
            raise ValueError("a range needs low and high, e.g. {low = 0.01, high = 0.3}, or choices = [...]")
        if isinstance(self.low, bool) or isinstance(self.high, bool):
            raise ValueError("low and high must be numbers")
        if not self.low < self.high:
            raise ValueError(
                f"the range {self.low}..{self.high} is empty: low must be below high "
                "(to fix a value, put it in model.params instead)"
            )
        if self.log and self.low <= 0:
            raise ValueError(f"log = true needs low > 0 (got {self.low}); raise low, e.g. to 1e-8")
        return self

    @property
    def integer(self) -> bool:
        return isinstance(self.low, int) and isinstance(self.high, int)


class Tuning(_Strict):
    """``[model.tuning]``: how ``mlpipeline tune`` searches hyperparameters, and when the loop does."""

    trials: int = Field(default=30, ge=1, description="complete trials a study ends with")
    timeout: str | None = Field(default=None, description="longest a study runs, e.g. '10m'")
    when: TuneWhen = Field(
        default="never",
        description="when a retrain tunes: never, first, gate_failed, drift or every_retrain",
    )
    cv: int = Field(default=3, ge=2, le=20, description="cross-validation folds inside the training part")
    space: dict[str, ParamRange] | None = Field(
        default=None, description="the ranges searched; default: LightGBM's main parameters"
    )

    @model_validator(mode="before")
    @classmethod
    def _keys_below_the_space(cls, data: Any) -> Any:
        """``trials = 5`` written under ``[model.tuning.space]`` in the file lands in the space."""
        space = data.get("space") if isinstance(data, Mapping) else None
        if isinstance(space, Mapping):
            stray = [
                k
                for k in ("trials", "timeout", "when", "cv")
                if k in space and not isinstance(space[k], Mapping)
            ]
            if stray:
                raise ValueError(
                    f"{', '.join(stray)} ended up in [model.tuning.space] (a TOML key belongs to the table "
                    "above it): put them under [model.tuning], before the [model.tuning.space] table"
                )
        return data

    @model_validator(mode="after")
    def _budget(self) -> Tuning:
        if self.timeout is not None:
            try:
                if parse_duration(self.timeout).total_seconds() <= 0:
                    raise ValueError(f"timeout: '{self.timeout}' is not a positive duration, e.g. '10m'")
            except ConfigError as exc:
                raise ValueError(f"timeout: {exc}") from exc
        if self.space is not None and not self.space:
            raise ValueError("space is empty; name at least one parameter, or remove [model.tuning.space]")
        return self


class ModelSpec(_Strict):
    estimator: str = Field(
        default="lightgbm",
        description=(
            "'lightgbm', or a scikit-learn estimator by name, e.g. 'sklearn.ensemble.RandomForestRegressor' "
            "(a classifier for a categorical target)"
        ),
    )
    seed: int = 42
    params: dict[str, int | float | str | bool] = Field(default_factory=dict)
    min_training_rows: int = Field(default=200, ge=10)
    holdout: Holdout = Field(default_factory=Holdout)
    class_weight: Literal["balanced"] | None = Field(
        default=None, description="'balanced': weigh each class by its rarity (classifiers)"
    )
    threshold: float | None = Field(
        default=None,
        gt=0,
        lt=1,
        description="a binary model's score from which a row is positive; default: chosen for F1",
    )
    tuning: Tuning | None = Field(default=None, description="[model.tuning]: hyperparameter search")
    group: str | None = Field(
        default=None,
        description=(
            "a column whose rows stay together (a panel's person id): the holdout and tuning's folds "
            "never split a group, so no one is judged on rows of someone the model learnt from"
        ),
    )


class Quality(_Strict):
    """What "good" means for this feature set; each key overrides its MLPIPELINE_* default."""

    floor: float | None = Field(default=None, description="the R² a first model must reach (r2_floor)")
    min_improvement: float | None = Field(
        default=None, ge=0, description="by how much a challenger must beat the champion"
    )
    threshold: float | None = Field(default=None, description="retrain when the champion's R² falls below")
    psi_threshold: float | None = Field(
        default=None, gt=0, description="retrain when a feature's PSI exceeds"
    )
    min_samples: int | None = Field(default=None, ge=1, description="fewest new rows for a verdict")
    max_window_age: str | None = Field(default=None, description="judge a small window once it is this old")
    cooldown: str | None = Field(default=None, description="shortest time between two retrains")
    max_model_age: str | None = Field(default=None, description="retrain a champion older than this")
    out_of_range_share: float | None = Field(
        default=None, ge=0, le=1, description="retrain when more rows fall outside the training ranges"
    )
    metric: str | None = Field(
        default=None,
        description="what 'good' means: r2, rmse, mae; roc_auc, f1, …; f1_macro, … (see the README)",
    )
    min_class_recall: float | None = Field(
        default=None, gt=0, le=1, description="a classifier's recall floor for every class"
    )
    decide_on: Literal["upper_bound", "point"] | None = Field(
        default=None,
        description="the performance trigger judges the interval's favourable end (default) or the point",
    )

    @model_validator(mode="after")
    def _durations(self) -> Quality:
        for name in ("max_window_age", "cooldown", "max_model_age"):
            value = getattr(self, name)
            if value is not None:
                try:
                    parse_duration(value)
                except ConfigError as exc:
                    raise ValueError(f"{name}: {exc}") from exc
        return self


class DerivedFeature(_Strict):
    """A feature computed from raw columns and constants by one expression."""

    name: str
    expression: str

    @cached_property
    def compiled(self) -> CompiledExpression:
        return compile_expression(self.expression, where=f"derived.{self.name}")


class Definition(_Strict):
    """A validated feature set. Build it with :func:`parse_definition` or :func:`load_definition`."""

    name: str
    description: str = ""
    table: str
    entity_key: EntityKey
    event_time: str | None = Field(default=None, description="column with the event timestamp")
    label_time: str | None = Field(default=None, description="column with the label-arrival timestamp")
    event_time_source: str | None = Field(
        default=None, description="the event time's name in the files (from event_time = {column, source})"
    )
    label_time_source: str | None = Field(
        default=None, description="the label time's name in the files (from label_time = {column, source})"
    )
    target: Target
    features: dict[str, Feature]
    constants: dict[str, float | datetime | date] = Field(
        default_factory=dict,
        description="named numbers, or dates (TOML 2020-01-01) for days_since(event_time, start)",
    )
    derived: tuple[DerivedFeature, ...] = ()
    model: ModelSpec = Field(default_factory=ModelSpec)
    quality: Quality = Field(default_factory=Quality)
    extra_columns: Literal["error", "ignore"] = Field(
        default="error",
        description=(
            "columns of a batch or request that the feature set does not know: 'error' refuses them "
            "(a typo is caught), 'ignore' drops them and says which; ingest, predict and the API alike"
        ),
    )

    @model_validator(mode="before")
    @classmethod
    def _times_with_source(cls, data: Any) -> Any:
        """``event_time = {column = "recorded_at", source = "Recorded At"}``: a time column whose
        files name it otherwise, like a feature's ``source``."""
        if not isinstance(data, Mapping):
            return data
        out = dict(data)
        for key in ("event_time", "label_time"):
            value = out.get(key)
            if isinstance(value, Mapping):
                unknown = sorted(set(value) - {"column", "source"})
                if unknown or "column" not in value:
                    raise ValueError(
                        f"{key}: a table takes column = 'name' and optionally source = 'name in the files'"
                        + (f"; unknown key(s): {', '.join(unknown)}" if unknown else "")
                    )
                out[key] = value["column"]
                if value.get("source") is not None:
                    out[f"{key}_source"] = value["source"]
        return out

    @property
    def time_inputs(self) -> tuple[str, ...]:
        """Timestamp columns derived features read (the event time, through the time functions)."""
        if not self.event_time:
            return ()
        return (self.event_time,) if any(self.event_time in x.compiled.names for x in self.derived) else ()

    def constant_values(self) -> dict[str, float]:
        """Constants as numbers: a date or datetime becomes seconds since 1970-01-01 UTC."""
        return {name: _as_number(value) for name, value in self.constants.items()}

    @property
    def sources(self) -> dict[str, str]:
        """Source column name -> the feature set's column name, for every renamed column."""
        pairs = [(self.entity_key.source_of(k), k) for k in self.key_columns]
        pairs += [(f.source, name) for name, f in self.features.items()]
        pairs.append((self.target.source, self.target.column))
        if self.event_time and self.event_time not in self.key_columns:
            pairs.append((self.event_time_source, self.event_time))
        if self.label_time:
            pairs.append((self.label_time_source, self.label_time))
        return {source: name for source, name in pairs if source is not None and source != name}

    def input_name(self, column: str) -> str:
        """The name ``column`` has in source files (its ``source``, or itself)."""
        return {v: k for k, v in self.sources.items()}.get(column, column)

    @property
    def key_columns(self) -> tuple[str, ...]:
        """The entity key's columns in order."""
        return self.entity_key.names

    @property
    def raw_columns(self) -> tuple[str, ...]:
        """Columns of the feature-set table in order (key, times, features, target)."""
        cols = list(self.key_columns)
        cols += [c for c in (self.event_time, self.label_time) if c and c not in cols]
        cols += list(self.features)
        cols.append(self.target.column)
        return tuple(cols)

    @property
    def model_features(self) -> tuple[str, ...]:
        """The model's input columns in order: raw features, then derived features."""
        return tuple(self.features) + tuple(d.name for d in self.derived)

    @property
    def content_hash(self) -> str:
        """sha256 of the canonical definition: a model is tied to the exact definition it used."""
        payload = json.dumps(self.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(payload.encode()).hexdigest()


def _as_number(value: float | datetime | date) -> float:
    if isinstance(value, datetime):
        moment = value if value.tzinfo is not None else value.replace(tzinfo=UTC)
        return moment.timestamp()
    if isinstance(value, date):
        return datetime(value.year, value.month, value.day, tzinfo=UTC).timestamp()
    return float(value)


def parse_definition(data: Mapping[str, Any], *, source: str = "definition") -> Definition:
    """Validate a parsed TOML mapping; every problem names its key and how to fix it."""
    data = dict(data)
    derived_raw = data.pop("derived", {})
    if not isinstance(derived_raw, Mapping):
        raise DefinitionError(f'{source}: [derived] must be a table of name = "expression" pairs')
    data["derived"] = [{"name": k, "expression": v} for k, v in derived_raw.items()]
    try:
        definition = Definition.model_validate(data)
    except ValidationError as exc:
        raise DefinitionError(f"{source}: " + "; ".join(_describe(e) for e in exc.errors())) from exc
    _check_semantics(definition, source)
    return definition


def _describe(err: Mapping[str, Any]) -> str:
    loc = list(err["loc"])
    if loc[:1] == ["derived"] and len(loc) > 1 and isinstance(loc[1], int):
        loc = loc[:1] + loc[2:]
    key = ".".join(str(p) for p in loc) or "(top level)"
    kind = err.get("type", "")
    if kind == "missing":
        return f"{key}: required key is missing; add it"
    if kind == "extra_forbidden":
        return f"{key}: unknown key; remove it or check its spelling"
    msg = str(err["msg"]).removeprefix("Value error, ")
    return f"{key}: {msg}"


def _check_semantics(d: Definition, source: str) -> None:
    problems: list[str] = []

    def ident(value: str, key: str) -> None:
        if not IDENTIFIER.match(value):
            problems.append(
                f"{key}: '{value}' is not a valid name; use lower-case letters, digits and "
                "underscores, starting with a letter (at most 63 characters)"
            )

    ident(d.name, "name")
    ident(d.table, "table")
    if d.table.startswith("mlp_"):
        problems.append(f"table: '{d.table}' uses the reserved prefix 'mlp_'; choose another name")
    named: list[tuple[str, str | None]] = [
        ("entity_key.column" if d.entity_key.column else f"entity_key.columns[{i}]", name)
        for i, name in enumerate(d.key_columns)
    ]
    # The event time may also be (part of) the key: one row per day, or per person and day.
    event_is_key = d.event_time is not None and d.event_time in d.key_columns
    if event_is_key and d.entity_key.generate:
        problems.append("event_time: a generated key cannot be the event time; use generate = false")
    named += [
        ("event_time", None if event_is_key else d.event_time),
        ("label_time", d.label_time),
        ("target.column", d.target.column),
    ]
    seen: dict[str, str] = {}
    for key, value in named + [(f"features.{f}", f) for f in d.features]:
        if value is None:
            continue
        ident(value, key)
        if value in seen:
            problems.append(f"{key}: column '{value}' is already used by {seen[value]}; give it another name")
        seen[value] = key
    if not d.features:
        problems.append("features: define at least one feature, e.g. [features.x] type = 'float'")
    given = [(d.entity_key.source_of(k), k) for k in d.key_columns]
    given += [(f.source, name) for name, f in d.features.items()] + [(d.target.source, d.target.column)]
    for origin, column in ((d.event_time_source, d.event_time), (d.label_time_source, d.label_time)):
        if column is not None:
            given.append((origin, column))
    if d.event_time_source and d.event_time in d.key_columns:
        problems.append("event_time: it is also the key; give its source on the key instead")
    taken: dict[str, str] = {}
    for origin, name in given:
        if origin is None:
            continue
        if not origin.strip():
            problems.append(f"{name}: source is empty; give the column's name in the files or remove it")
        elif origin in taken:
            problems.append(f"{name}: source '{origin}' is already the source of {taken[origin]}")
        elif origin != name and origin in seen:
            problems.append(f"{name}: source '{origin}' is the name of another column; rename one of them")
        taken[origin] = name
    if d.label_time and not d.event_time:
        problems.append("label_time: a label-arrival time needs an event_time column too")
    for name in d.constants:
        ident(name, f"constants.{name}")
        if name in seen:
            problems.append(f"constants.{name}: clashes with a column of the same name; rename it")
    available = {f for f, spec in d.features.items() if spec.numeric} | set(d.constants)
    if d.event_time:
        available.add(d.event_time)  # seconds since 1970, for hour(), weekday(), days_since(), …
    for item in d.derived:
        key = f"derived.{item.name}"
        ident(item.name, key)
        if item.name in seen or item.name in d.constants:
            problems.append(f"{key}: clashes with a column or constant of the same name; rename it")
        try:
            compiled = item.compiled
        except ExpressionError as exc:
            problems.append(str(exc))
            continue
        for name in sorted(compiled.names - available):
            if name in d.features:
                hint = "categorical features cannot be used in arithmetic"
            elif name == d.label_time:
                hint = "the label time is not known when a prediction is made; use the event time"
            else:
                hint = "use a numeric feature, the event time, an earlier derived feature or a constant"
            problems.append(f"{key}: unknown name '{name}' in '{item.expression}'; {hint}")
        available.add(item.name)
        seen[item.name] = key
    problems += _target_problems(d, seen)
    if problems:
        raise DefinitionError(f"{source}: " + "; ".join(problems))


def _target_problems(d: Definition, columns: Mapping[str, str]) -> list[str]:
    """The target's expression and the quality metric, checked against the task."""
    from mlpipeline.featuresets.metrics import metric_problem

    problems: list[str] = []
    if d.target.derived is not None:
        try:
            compiled = d.target.compiled
        except ExpressionError as exc:
            problems.append(str(exc))
        else:
            assert compiled is not None
            for name in sorted(compiled.names - set(d.constants)):
                if not IDENTIFIER.match(name):
                    problems.append(f"target.derived: '{name}' is not a valid column name")
                elif name == d.target.column:
                    problems.append("target.derived: the target cannot be computed from itself")
    problem = metric_problem(d.quality.metric, d.target.task)
    if problem:
        problems.append(f"quality.metric: {problem}")
    if d.quality.min_class_recall is not None and d.target.task == "regression":
        problems.append("quality.min_class_recall: a regression target has no classes; remove it")
    estimator = d.model.estimator
    if estimator != "lightgbm" and not (estimator.startswith("sklearn.") and estimator.count(".") >= 2):
        problems.append(
            f"model.estimator: '{estimator}' is not allowed; use 'lightgbm' or a scikit-learn estimator by "
            "its full name, e.g. 'sklearn.ensemble.HistGradientBoostingRegressor'"
        )
    elif estimator != "lightgbm":
        problems += _estimator_kind_problems(estimator, d.target.task)
    if d.model.class_weight is not None and d.target.task == "regression":
        problems.append("model.class_weight: a regression target has no classes; remove it")
    if d.model.threshold is not None and d.target.task != "binary":
        problems.append("model.threshold: only a binary target has a decision threshold; remove it")
    return problems + _tuning_problems(d) + _group_problems(d)


def no_default_space(estimator: str) -> str:
    """Why a scikit-learn estimator cannot be tuned without ``[model.tuning.space]``."""
    return (
        f"model.tuning: {estimator} has no default search space (only LightGBM has one); "
        "add [model.tuning.space] with the ranges to search, e.g. max_depth = {low = 2, high = 12}"
    )


def _group_problems(d: Definition) -> list[str]:
    group = d.model.group
    if group is None:
        return []
    if d.event_time:
        return [
            f"model.group: the feature set has an event time ('{d.event_time}'), so the holdout is the "
            "newest rows and tuning's folds are time-ordered (later rows are judged by what came before); "
            "a group is not used then: remove group, or the event time if the rows have no order"
        ]
    if group not in (*d.key_columns, *d.features):
        return [
            f"model.group: '{group}' is not a key column or feature of the feature set; name the column "
            "whose rows must stay together (a panel's person id, say)"
        ]
    return []


def _tuning_problems(d: Definition) -> list[str]:
    """``[model.tuning]`` against the rest of the definition (parameter names are checked
    against the estimator itself when a study starts: see ``mlpipeline.training.tuning``)."""
    tuning = d.model.tuning
    if tuning is None:
        return []
    problems = []
    if d.model.estimator != "lightgbm" and not tuning.space:
        problems.append(no_default_space(d.model.estimator))
    return problems


def _estimator_kind_problems(name: str, task: str) -> list[str]:
    """A scikit-learn estimator of the wrong kind for the target, found when the file loads
    (not after the data is in): a classifier for a number, or a regressor for classes."""
    import importlib

    module, _, cls_name = name.rpartition(".")
    try:
        from sklearn.base import BaseEstimator, is_classifier, is_regressor

        found = getattr(importlib.import_module(module), cls_name)
    except Exception:  # a missing name is reported, with its fix, when training builds it
        return []
    if not (isinstance(found, type) and issubclass(found, BaseEstimator)):
        # Never call what is not an estimator class (sklearn.datasets.clear_data_home, …).
        return [f"model.estimator: '{name}' is not a scikit-learn estimator class"]
    try:
        estimator = found()
    except Exception:  # needs arguments: training reports it with the definition's params
        return []
    if task == "regression" and is_classifier(estimator):
        return [
            f"model.estimator: '{name}' is a classifier, and the target is a number: use a regressor "
            "such as 'sklearn.ensemble.HistGradientBoostingRegressor', or declare the target categorical"
        ]
    if task != "regression" and is_regressor(estimator):
        return [
            f"model.estimator: '{name}' is a regressor, and the target is {task}: use a classifier such "
            "as 'sklearn.ensemble.HistGradientBoostingClassifier'"
        ]
    return []


def load_definition(name_or_path: str | Path, featuresets_dir: Path | None = None) -> Definition:
    """Load a definition by name (user folder first, then the shipped ones) or by file path."""
    path = _locate(name_or_path, featuresets_dir)
    try:
        text = path.read_text(encoding="utf-8") if isinstance(path, Path) else path.read_text("utf-8")
    except UnicodeDecodeError as exc:
        raise DefinitionError(f"{path}: not UTF-8 text ({exc.reason}); save the file as UTF-8") from exc
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise DefinitionError(f"{path}: invalid TOML: {exc}") from exc
    except RecursionError as exc:
        raise DefinitionError(f"{path}: invalid TOML: arrays or tables nested too deeply") from exc
    definition = parse_definition(data, source=str(path))
    stem = Path(str(path)).stem
    if definition.name != stem:
        raise DefinitionError(f"{path}: name = '{definition.name}' must match the file name '{stem}'")
    return definition


def _locate(name_or_path: str | Path, featuresets_dir: Path | None) -> Any:
    candidate = Path(name_or_path)
    if candidate.suffix == ".toml" or len(candidate.parts) > 1:
        if not candidate.is_file():
            raise NotFoundError(f"feature-set file '{candidate}' does not exist")
        return candidate
    name = str(name_or_path)
    if featuresets_dir is not None:
        user = featuresets_dir / f"{name}.toml"
        if user.is_file():
            return user
    shipped = resources.files("mlpipeline.featuresets").joinpath(f"{name}.toml")
    if shipped.is_file():
        return shipped
    known = ", ".join(available_featuresets(featuresets_dir)) or "none"
    raise NotFoundError(
        f"feature set '{name}' not found (known: {known}); add {name}.toml to "
        f"{featuresets_dir or 'the featuresets folder'} or check the spelling"
    )


def available_featuresets(featuresets_dir: Path | None = None) -> list[str]:
    """Names of every definition the user folder and the package provide."""
    names = {
        Path(str(p)).stem
        for p in resources.files("mlpipeline.featuresets").iterdir()
        if str(p).endswith(".toml")
    }
    if featuresets_dir is not None and featuresets_dir.is_dir():
        names |= {p.stem for p in featuresets_dir.glob("*.toml")}
    return sorted(names)
