"""Bad input through the real command line: CSV and Parquet ingest, labels files, feature-set
files and their changes at ``init``, settings and arguments. Every case must fail with one line
naming the problem, the exact error code and exit code, and change nothing (rows, labels, batch
ledger, tables and their columns, production pointer, aliases).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from mlpipeline.featuresets.definition import load_definition
from mlpipeline.featurestore.ingest import ingest_frame
from mlpipeline.featurestore.sql import open_store
from mlpipeline.featurestore.synthetic import StreamConfig, generate_day
from mlpipeline.registry.tracking import Tracker
from tests.badinput.corpus import USAGE, CliCase, Ctx, copy_home, env_for, run_cli, snapshot
from tests.trained_home import Trained

pytestmark = pytest.mark.slow

#: Where a stored row's key comes from: day 0 of the template's stream is in the store.
STORED_KEY = 5
SQL = "'; DROP TABLE demo_deliveries; --"
#: The corpus's home also holds one unlabelled day (its labels are still to come), whose first key
#: is UNLABELLED_KEY, and five housing rows (generated keys), see :func:`seed_lifecycle`.
UNLABELLED_DAY = 12
UNLABELLED_KEY = 120_000_000
UNKNOWN_KEY = 990_000_001
HOUSING_STORED = 5


# -- producing inputs ------------------------------------------------------------------------


def ingest(path: Path) -> list[str]:
    return ["ingest", str(path), "--featureset", "demo"]


def with_cell(column: str, row: int, value: Any) -> Callable[[Ctx], list[str]]:
    """The good batch with one cell replaced (``row`` is 1-based, as in error messages)."""

    def make(ctx: Ctx) -> list[str]:
        frame = ctx.good.astype({column: object})
        frame.loc[row - 1, column] = value
        return ingest(ctx.write("bad.csv", ctx.csv_text(frame)))

    return make


def csv_lines(edit: Callable[[list[str]], list[str]], encoding: str = "utf-8") -> Callable[[Ctx], list[str]]:
    """The good batch as CSV lines, edited as text (header is line 0)."""

    def make(ctx: Ctx) -> list[str]:
        lines = ctx.csv_text().splitlines()
        return ingest(ctx.write("bad.csv", "\n".join(edit(lines)).encode(encoding)))

    return make


def csv_bytes(content: bytes | Callable[[Ctx], bytes], name: str = "bad.csv") -> Callable[[Ctx], list[str]]:
    def make(ctx: Ctx) -> list[str]:
        data = content(ctx) if callable(content) else content
        return ingest(ctx.write(name, data))

    return make


def rename_header(old: str, new: str) -> Callable[[list[str]], list[str]]:
    def edit(lines: list[str]) -> list[str]:
        header = lines[0].split(",")
        lines[0] = ",".join(new if h == old else h for h in header)
        return lines

    return edit


def parquet(build: Callable[[pd.DataFrame], pd.DataFrame | pa.Table]) -> Callable[[Ctx], list[str]]:
    def make(ctx: Ctx) -> list[str]:
        table = build(ctx.good.copy())
        path = ctx.folder / "bad.parquet"
        if isinstance(table, pa.Table):
            pq.write_table(table, path)
        else:
            table.to_parquet(path, index=False)
        return ingest(path)

    return make


def parquet_bytes(edit: Callable[[bytes], bytes]) -> Callable[[Ctx], list[str]]:
    def make(ctx: Ctx) -> list[str]:
        path = ctx.folder / "good.parquet"
        ctx.good.to_parquet(path, index=False)
        return ingest(ctx.write("bad.parquet", edit(path.read_bytes())))

    return make


def shipped_demo() -> str:
    return resources.files("mlpipeline.featuresets").joinpath("demo.toml").read_text("utf-8")


def definition(edit: Callable[[str], str | bytes]) -> Callable[[Ctx], list[str]]:
    """A user ``demo.toml`` (it overrides the shipped one), then ingest a good batch with it."""

    def make(ctx: Ctx) -> list[str]:
        text = edit(shipped_demo())
        path = ctx.featuresets / "demo.toml"
        if isinstance(text, bytes):
            path.write_bytes(text)
        else:
            path.write_text(text, encoding="utf-8")
        return ingest(ctx.good_csv())

    return make


def tune_with(section: str, *, estimator: str | None = None) -> Callable[[Ctx], list[str]]:
    """``mlpipeline tune`` with a user ``demo.toml`` that ends with ``section``."""

    def make(ctx: Ctx) -> list[str]:
        text = shipped_demo() + "\n" + section
        if estimator is not None:
            text = text.replace('estimator = "lightgbm"', f'estimator = "{estimator}"')
        (ctx.featuresets / "demo.toml").write_text(text, encoding="utf-8")
        return ["tune", "-f", "demo", "--trials", "2"]

    return make


def setting(name: str, value: str) -> Callable[[Ctx], list[str]]:
    def make(ctx: Ctx) -> list[str]:
        ctx.monkeypatch.setenv(name, value)
        return ingest(ctx.good_csv())

    return make


def command(*args: str) -> Callable[[Ctx], list[str]]:
    def make(ctx: Ctx) -> list[str]:
        return [a.replace("{good}", str(ctx.good_csv())).replace("{dir}", str(ctx.folder)) for a in args]

    return make


def dotenv(ctx: Ctx) -> list[str]:
    # The working directory's .env: a value saved as Latin-1 by an editor.
    Path(".env").write_bytes("MLPIPELINE_REGISTRY_PREFIX=modèle-\n".encode("latin-1"))
    return ingest(ctx.good_csv())


def jsonl(ctx: Ctx, extra: str) -> str:
    """Two JSON lines of requests; the second carries ``extra`` raw JSON text as its last field."""
    rows = ctx.good.drop(columns=["delivered_at", "delivery_minutes"]).head(2)
    lines = rows.to_json(orient="records", lines=True, date_format="iso").splitlines()
    lines[1] = lines[1][:-1] + ", " + extra + "}"
    return "\n".join(lines) + "\n"


def truncated_last_row(lines: list[str]) -> list[str]:
    """The file ends in the middle of its last row, right after the delivered_at field."""
    lines[-1] = ",".join(lines[-1].split(",")[:3]) + ","
    return lines


def deep_toml(text: str) -> str:
    return text.replace("num_leaves = 31", "num_leaves = " + "[" * 5_000 + "]" * 5_000)


def duplicate_key(ctx: Ctx) -> list[str]:
    frame = ctx.good.copy()
    frame.loc[1, "order_id"] = frame.loc[0, "order_id"]
    return ingest(ctx.write("bad.csv", ctx.csv_text(frame)))


# -- labels, re-sent rows, evolving definitions ------------------------------------------------


def unlabelled_rows() -> pd.DataFrame:
    """A day whose orders are stored without their delivery: the labels arrive later."""
    day = generate_day(StreamConfig(rows_per_day=20, seed=11), UNLABELLED_DAY)
    return day.assign(delivery_minutes=np.nan, delivered_at=pd.NaT)


def housing_rows(first: int, n: int) -> pd.DataFrame:
    """Housing rows ``first`` .. ``first + n - 1``; equal numbers give identical rows."""
    i = np.arange(first, first + n)
    return pd.DataFrame(
        {
            "longitude": -122.0 + i / 100,
            "latitude": 37.5,
            "housing_median_age": 10.0 + i,
            "total_rooms": 800.0 + i,
            "total_bedrooms": 150.0,
            "population": 400.0 + i,
            "households": 120.0,
            "median_income": 3.5,
            "median_house_value": 150_000.0 + 1_000 * i,
            "ocean_proximity": "INLAND",
        }
    )


def seed_lifecycle(trained: Trained) -> None:
    """Unlabelled demo rows and stored housing rows, for the labels and re-sent-rows cases."""
    demo, housing = load_definition("demo"), load_definition("housing")
    store = open_store(trained.settings)
    try:
        store.create_schema([demo, housing])
        rows = unlabelled_rows()
        assert int(rows["order_id"].iloc[0]) == UNLABELLED_KEY
        ingest_frame(store, demo, rows, source="unlabelled day")
        ingest_frame(store, housing, housing_rows(0, HOUSING_STORED), source="housing seed")
    finally:
        store.dispose()


def label(path: Path, *flags: str) -> list[str]:
    return ["label", str(path), "--featureset", "demo", *flags]


def labels_csv(
    *lines: str, flags: tuple[str, ...] = (), name: str = "labels.csv"
) -> Callable[[Ctx], list[str]]:
    """A labels file written as text; {new} is a stored key without a label, {unknown} no stored key."""
    keys = {"new": UNLABELLED_KEY, "stored": STORED_KEY, "unknown": UNKNOWN_KEY, "unknown2": UNKNOWN_KEY + 1}

    def make(ctx: Ctx) -> list[str]:
        return label(ctx.write(name, "\n".join(line.format(**keys) for line in lines) + "\n"), *flags)

    return make


def labels_frame(frame: pd.DataFrame, name: str) -> Callable[[Ctx], list[str]]:
    """A labels file as Parquet or JSON lines (by ``name``'s suffix)."""

    def make(ctx: Ctx) -> list[str]:
        path = ctx.folder / name
        if path.suffix == ".parquet":
            frame.to_parquet(path, index=False)
        else:
            path.write_text(frame.to_json(orient="records", lines=True, date_format="iso"), encoding="utf-8")
        return label(path)

    return make


def resent_housing(order: list[int], suffix: str = ".csv") -> Callable[[Ctx], list[str]]:
    """Housing rows by number (those below HOUSING_STORED are stored already), ingested --strict."""

    def make(ctx: Ctx) -> list[str]:
        frame = pd.concat([housing_rows(i, 1) for i in order], ignore_index=True)
        path = ctx.folder / f"housing{suffix}"
        if suffix == ".parquet":
            frame.to_parquet(path, index=False)
        else:
            frame.to_csv(path, index=False)
        return ["ingest", str(path), "--featureset", "housing", "--strict"]

    return make


def shipped(name: str) -> str:
    return resources.files("mlpipeline.featuresets").joinpath(f"{name}.toml").read_text("utf-8")


def changed(edit: Callable[[str], str], name: str = "demo") -> Callable[[Ctx], str]:
    """The shipped definition ``name`` with ``edit`` applied, written to the user folder."""

    def write(ctx: Ctx) -> str:
        original = shipped(name)
        text = edit(original)
        assert text != original, "the edit must change the definition"
        (ctx.featuresets / f"{name}.toml").write_text(text, encoding="utf-8")
        return name

    return write


def init_after(edit: Callable[[str], str], *flags: str, name: str = "demo") -> Callable[[Ctx], list[str]]:
    """Change the definition, then run ``init`` (which must refuse and change no table)."""

    def make(ctx: Ctx) -> list[str]:
        changed(edit, name)(ctx)
        return ["init", *flags]

    return make


def sourced(edit: Callable[[str], str], renamed: dict[str, str]) -> Callable[[Ctx], list[str]]:
    """A definition that maps source columns, and the good batch with columns ``renamed``."""

    def make(ctx: Ctx) -> list[str]:
        changed(edit)(ctx)
        return ingest(ctx.write("sourced.csv", ctx.csv_text(ctx.good.rename(columns=renamed))))

    return make


def sourced_labels(edit: Callable[[str], str], *lines: str) -> Callable[[Ctx], list[str]]:
    def make(ctx: Ctx) -> list[str]:
        changed(edit)(ctx)
        return labels_csv(*lines)(ctx)

    return make


REMOVE_HOUR = (
    '[features.hour]\ntype = "integer"\nmin = 0\nmax = 23\n'
    "drift = false  # a day's batch covers every hour; the distribution moves by design\n"
)
NEW_FLOOR = '\n[features.floor]\ntype = "integer"\nmin = 0\nmax = 200\n'
DISTANCE_SOURCE = ("[features.distance_km]\n", '[features.distance_km]\nsource = "Distance (km)"\n')
TARGET_SOURCE = ('column = "delivery_minutes"\n', 'column = "delivery_minutes"\nsource = "Minutes"\n')


# -- the corpus ----------------------------------------------------------------------------

CSV = [
    CliCase("csv-empty-file", "csv", csv_bytes(b""), ("no data rows",), "MLP-201", 3),
    CliCase(
        "csv-header-only",
        "csv",
        csv_lines(lambda lines: lines[:1]),
        ("no data rows", "check the file"),
        "MLP-201",
        3,
    ),
    CliCase(
        "csv-truncated-last-row",
        "csv",
        csv_lines(truncated_last_row),
        ("distance_km", "missing value", "rows 40"),
        "MLP-200",
        3,
    ),
    CliCase(
        "csv-unterminated-quote",
        "csv",
        csv_lines(lambda lines: [*lines[:5], lines[5] + ',"north']),
        ("not well-formed CSV", "quoting"),
        "MLP-200",
        3,
    ),
    CliCase(
        "csv-extra-field",
        "csv",
        csv_lines(lambda lines: [*lines[:5], lines[5] + ",surplus", *lines[6:]]),
        ("not well-formed CSV", "line 6", "field count"),
        "MLP-200",
        3,
    ),
    CliCase(
        "csv-latin1-encoding",
        "csv",
        csv_lines(lambda lines: [line.replace("north", "nörth") for line in lines], encoding="latin-1"),
        ("not UTF-8", "save the file as UTF-8"),
        "MLP-200",
        3,
    ),
    CliCase(
        "csv-utf16-encoding",
        "csv",
        csv_bytes(lambda ctx: ctx.csv_text().encode("utf-16")),
        ("not UTF-8", "save the file as UTF-8"),
        "MLP-200",
        3,
    ),
    CliCase(
        "csv-semicolon-delimiter",
        "csv",
        csv_lines(lambda lines: [line.replace(",", ";") for line in lines]),
        ("';'-separated", "must be comma-separated", "missing from the batch"),
        "MLP-200",
        3,
    ),
    CliCase(
        "csv-tab-delimiter",
        "csv",
        csv_lines(lambda lines: [line.replace(",", "\t") for line in lines]),
        ("tab-separated", "must be comma-separated"),
        "MLP-200",
        3,
    ),
    CliCase(
        "csv-huge-text-field",
        "csv",
        with_cell("region", 7, "n" * 2_000_000),
        ("region", "longer than 255 characters", "rows 7"),
        "MLP-200",
        3,
    ),
    CliCase(
        "csv-huge-number-in-key",
        "csv",
        with_cell("order_id", 4, "9" * 40),
        ("order_id", "beyond the 64-bit integer range", "rows 4"),
        "MLP-200",
        3,
        absent=("missing key",),
    ),
    CliCase(
        "csv-nan-in-required",
        "csv",
        with_cell("distance_km", 3, "NaN"),
        ("distance_km", "missing value", "rows 3"),
        "MLP-200",
        3,
    ),
    CliCase(
        "csv-infinity",
        "csv",
        with_cell("distance_km", 9, "inf"),
        ("distance_km", "infinite value", "rows 9"),
        "MLP-200",
        3,
    ),
    CliCase(
        "csv-duplicate-key-in-batch",
        "csv",
        duplicate_key,
        ("order_id", "duplicate key within the batch", "rows 1, 2"),
        "MLP-200",
        3,
    ),
    CliCase(
        "csv-key-already-stored",
        "csv",
        with_cell("order_id", 12, STORED_KEY),
        ("order_id", "already stored", "5"),
        "MLP-200",
        3,
    ),
    CliCase(
        "csv-strict-resent-rows",
        "csv",
        resent_housing([3, 4, 5, 6, 7]),
        ("2 row(s) are identical to rows an earlier batch stored", "without --strict", "rows 1, 2"),
        "MLP-200",
        3,
    ),
    CliCase(
        "csv-strict-one-resent-row-among-new",
        "csv",
        resent_housing([5, 6, 0, 7]),
        ("1 row(s) are identical to rows an earlier batch stored", "rows 3"),
        "MLP-200",
        3,
    ),
    CliCase(
        "csv-duplicate-column",
        "csv",
        csv_lines(rename_header("hour", "region")),
        ("region", "more than once"),
        "MLP-200",
        3,
    ),
    CliCase(
        "csv-unknown-category",
        "csv",
        with_cell("region", 11, "atlantis"),
        ("region", "unknown category", "'atlantis'", "allowed", "rows 11"),
        "MLP-200",
        3,
    ),
    CliCase(
        "csv-sql-in-value",
        "csv",
        with_cell("region", 2, "north" + SQL),
        ("region", "unknown category", "DROP TABLE", "rows 2"),
        "MLP-200",
        3,
    ),
    CliCase(
        "csv-sql-in-column-name",
        "csv",
        csv_lines(rename_header("distance_km", '"distance_km; DROP TABLE demo_deliveries; --"')),
        ("distance_km", "missing from the batch", "unexpected column", "DROP TABLE"),
        "MLP-200",
        3,
    ),
    CliCase(
        "csv-bad-timestamp",
        "csv",
        with_cell("ordered_at", 5, "yesterday"),
        ("ordered_at", "not an ISO-8601 timestamp", "'yesterday'", "rows 5"),
        "MLP-200",
        3,
        absent=("missing timestamp",),
    ),
    CliCase(
        "csv-label-before-event",
        "csv",
        with_cell("delivered_at", 6, "2020-01-01T00:00:00"),
        ("delivered_at", "label arrives before ordered_at", "rows 6"),
        "MLP-200",
        3,
    ),
    CliCase(
        "csv-binary-garbage",
        "csv",
        csv_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x10" + bytes(range(256))),
        ("not UTF-8",),
        "MLP-200",
        3,
    ),
]

PARQUET = [
    CliCase("parquet-empty-file", "parquet", csv_bytes(b"", "bad.parquet"), ("no data rows",), "MLP-201", 3),
    CliCase("parquet-no-rows", "parquet", parquet(lambda f: f.head(0)), ("no data rows",), "MLP-201", 3),
    CliCase(
        "parquet-truncated",
        "parquet",
        parquet_bytes(lambda data: data[: len(data) // 2]),
        ("not a readable Parquet file",),
        "MLP-200",
        3,
    ),
    CliCase(
        "parquet-csv-content",
        "parquet",
        csv_bytes(lambda ctx: ctx.csv_text().encode(), "bad.parquet"),
        ("not a readable Parquet file",),
        "MLP-200",
        3,
    ),
    CliCase(
        "parquet-text-in-number",
        "parquet",
        parquet(
            lambda f: f.astype({"distance_km": str}).assign(
                distance_km=lambda g: g["distance_km"].where(g.index != 7, "far")
            )
        ),
        ("distance_km", "not a number", "'far'", "rows 8"),
        "MLP-200",
        3,
    ),
    CliCase(
        "parquet-nan-and-inf",
        "parquet",
        parquet(
            lambda f: f.assign(
                distance_km=np.where(f.index == 1, np.nan, np.where(f.index == 3, np.inf, f["distance_km"]))
            )
        ),
        ("distance_km", "missing value", "rows 2", "infinite value", "rows 4"),
        "MLP-200",
        3,
    ),
    CliCase(
        "parquet-duplicate-keys",
        "parquet",
        parquet(lambda f: f.assign(order_id=f["order_id"].where(f.index != 9, f["order_id"][3]))),
        ("order_id", "duplicate key within the batch", "rows 4, 10"),
        "MLP-200",
        3,
    ),
    CliCase(
        "parquet-strict-resent-rows",
        "parquet",
        resent_housing([9, 1, 8, 2], suffix=".parquet"),
        ("2 row(s) are identical to rows an earlier batch stored", "rows 2, 4"),
        "MLP-200",
        3,
    ),
    CliCase(
        "parquet-unknown-category",
        "parquet",
        parquet(lambda f: f.assign(region=pd.Categorical(f["region"].where(f.index != 0, "mars")))),
        ("region", "unknown category", "'mars'", "rows 1"),
        "MLP-200",
        3,
    ),
    CliCase(
        "parquet-sql-in-column-name",
        "parquet",
        parquet(lambda f: f.rename(columns={"items": "items); DROP TABLE demo_deliveries; --"})),
        ("items", "missing from the batch", "unexpected column"),
        "MLP-200",
        3,
    ),
    CliCase(
        "parquet-key-beyond-int64",
        "parquet",
        parquet(
            lambda f: f.assign(
                order_id=f["order_id"].astype("uint64").where(f.index != 2, np.uint64(2**64 - 1))
            )
        ),
        ("order_id", "beyond the 64-bit integer range", "rows 3"),
        "MLP-200",
        3,
        absent=("missing key",),
    ),
    CliCase(
        "parquet-nested-column",
        "parquet",
        parquet(
            lambda f: pa.Table.from_pandas(f, preserve_index=False).set_column(
                3, "distance_km", pa.array([[v] for v in f["distance_km"]])
            )
        ),
        ("distance_km", "not a number"),
        "MLP-200",
        3,
    ),
]

FEATURESETS = [
    CliCase(
        "featureset-toml-syntax",
        "featureset",
        definition(lambda t: t.replace('table = "demo_deliveries"', 'table = "demo_deliveries')),
        ("demo.toml", "invalid TOML", "line 5"),
        "MLP-101",
        2,
    ),
    CliCase(
        "featureset-positive-class-not-in-values",
        "featureset",
        definition(
            lambda t: t.replace(
                "min = 0\nmax = 1440\n",
                'type = "categorical"\nvalues = ["on time", "late"]\npositive = "slow"\n',
            )
        ),
        ("target", "positive = 'slow' is not one of the values ('on time', 'late')"),
        "MLP-101",
        2,
    ),
    CliCase(
        "featureset-metric-does-not-fit-the-task",
        "featureset",
        definition(lambda t: t + '\n[quality]\nmetric = "roc_auc"\n'),
        ("quality.metric", "'roc_auc' does not judge a regression target", "r2, rmse, mae"),
        "MLP-101",
        2,
    ),
    CliCase(
        "featureset-classifier-for-a-number",
        "featureset",
        definition(
            lambda t: t.replace(
                'estimator = "lightgbm"', 'estimator = "sklearn.ensemble.RandomForestClassifier"'
            )
        ),
        ("model.estimator", "is a classifier, and the target is a number"),
        "MLP-101",
        2,
    ),
    CliCase(
        "featureset-unknown-key",
        "featureset",
        definition(lambda t: t.replace("[features.items]\n", "[features.items]\nmaximum = 100\n")),
        ("features.items.maximum", "unknown key", "check its spelling"),
        "MLP-101",
        2,
    ),
    CliCase(
        "featureset-sql-table-name",
        "featureset",
        definition(lambda t: t.replace('"demo_deliveries"', '"x; DROP TABLE demo_deliveries"')),
        ("table", "'x; DROP TABLE demo_deliveries' is not a valid name", "lower-case letters"),
        "MLP-101",
        2,
    ),
    CliCase(
        "featureset-sql-column-name",
        "featureset",
        definition(lambda t: t.replace("[features.items]", '[features."items; DROP TABLE mlp_batches"]')),
        ("items; DROP TABLE mlp_batches", "is not a valid name"),
        "MLP-101",
        2,
    ),
    CliCase(
        "featureset-duplicate-feature-table",
        "featureset",
        definition(lambda t: t + '\n[features.items]\ntype = "float"\n'),
        ("demo.toml", "invalid TOML", "items"),
        "MLP-101",
        2,
    ),
    CliCase(
        "featureset-feature-reuses-target",
        "featureset",
        definition(lambda t: t.replace("[features.items]", "[features.delivery_minutes]")),
        ("features.delivery_minutes", "already used by target.column"),
        "MLP-101",
        2,
    ),
    CliCase(
        "featureset-code-in-expression",
        "featureset",
        definition(lambda t: t.replace('"free_flow_minutes / items"', "\"__import__('os').system('true')\"")),
        ("derived.minutes_per_item",),
        "MLP-101",
        2,
    ),
    CliCase(
        "featureset-unknown-name-in-expression",
        "featureset",
        definition(lambda t: t.replace('"free_flow_minutes / items"', '"free_flow_minutes / itmes"')),
        ("derived.minutes_per_item", "unknown name 'itmes'"),
        "MLP-101",
        2,
    ),
    CliCase(
        "featureset-min-above-max",
        "featureset",
        definition(lambda t: t.replace("min = 0\nmax = 100", "min = 100\nmax = 0", 1)),
        ("features.distance_km", "greater than max"),
        "MLP-101",
        2,
    ),
    CliCase(
        "featureset-latin1-file",
        "featureset",
        definition(lambda t: t.replace("Minutes from order", "Minutes après order").encode("latin-1")),
        ("demo.toml", "not UTF-8"),
        "MLP-101",
        2,
    ),
    CliCase(
        "featureset-source-missing-from-file",
        "featureset",
        sourced(lambda t: t.replace(*DISTANCE_SOURCE), {"distance_km": "distance"}),
        ("Distance (km) (as distance_km)", "missing from the batch", "'distance'", "unexpected column"),
        "MLP-200",
        3,
    ),
    CliCase(
        "featureset-key-source-missing-from-file",
        "featureset",
        sourced(
            lambda t: t.replace('column = "order_id"\n', 'column = "order_id"\nsource = "Order ID"\n'),
            {"order_id": "order"},
        ),
        ("Order ID (as order_id)", "missing from the batch"),
        "MLP-200",
        3,
    ),
    CliCase(
        "featureset-source-and-name-both-in-file",
        "featureset",
        sourced(lambda t: t.replace(*DISTANCE_SOURCE), {"items": "Distance (km)"}),
        ("Distance (km) and distance_km", "under its source name and under its own name; keep one"),
        "MLP-200",
        3,
    ),
    CliCase(
        "featureset-deeply-nested",
        "featureset",
        definition(deep_toml),
        ("demo.toml", "nested"),
        "MLP-101",
        2,
    ),
]

SETTINGS = [
    CliCase(
        "settings-port-not-a-number",
        "settings",
        setting("MLPIPELINE_SERVE_PORT", "eighty"),
        ("MLPIPELINE_SERVE_PORT", "valid integer", "'eighty'"),
        "MLP-100",
        2,
    ),
    CliCase(
        "settings-negative-psi-threshold",
        "settings",
        setting("MLPIPELINE_PSI_THRESHOLD", "-0.25"),
        ("MLPIPELINE_PSI_THRESHOLD", "greater than 0"),
        "MLP-100",
        2,
    ),
    CliCase(
        "settings-negative-min-improvement",
        "settings",
        setting("MLPIPELINE_MIN_IMPROVEMENT", "-0.1"),
        ("MLPIPELINE_MIN_IMPROVEMENT", "greater than or equal to 0"),
        "MLP-100",
        2,
    ),
    CliCase(
        "settings-nan-threshold",
        "settings",
        setting("MLPIPELINE_R2_THRESHOLD", "nan"),
        ("MLPIPELINE_R2_THRESHOLD", "finite"),
        "MLP-100",
        2,
    ),
    CliCase(
        "settings-infinite-poll",
        "settings",
        setting("MLPIPELINE_SERVE_POLL_S", "inf"),
        ("MLPIPELINE_SERVE_POLL_S", "finite"),
        "MLP-100",
        2,
    ),
    CliCase(
        "settings-bad-duration",
        "settings",
        setting("MLPIPELINE_MAX_MODEL_AGE", "5 parsecs"),
        ("MLPIPELINE_MAX_MODEL_AGE", "invalid duration '5 parsecs'"),
        "MLP-100",
        2,
    ),
    CliCase(
        "settings-unknown-store-backend",
        "settings",
        setting("MLPIPELINE_FEATURESTORE_URL", "nosuchdb://user:pw@host/db"),
        ("no database driver for 'nosuchdb'", "install the matching extra"),
        "MLP-100",
        2,
        absent=("user:pw",),
    ),
    CliCase(
        "settings-unknown-policy",
        "settings",
        setting("MLPIPELINE_PROMOTION_POLICY", "sometimes"),
        ("MLPIPELINE_PROMOTION_POLICY", "'auto' or 'manual'"),
        "MLP-100",
        2,
    ),
    CliCase(
        "settings-sql-in-prefix",
        "settings",
        setting("MLPIPELINE_LOG_LEVEL", "INFO'; DROP TABLE mlp_batches; --"),
        ("MLPIPELINE_LOG_LEVEL", "'DEBUG', 'INFO', 'WARNING' or 'ERROR'"),
        "MLP-100",
        2,
    ),
    CliCase("settings-dotenv-not-utf8", "settings", dotenv, (".env", "not UTF-8"), "MLP-100", 2),
]

ARGUMENTS = [
    CliCase(
        "cli-unknown-featureset",
        "cli",
        command("ingest", "{good}", "-f", "nosuch"),
        ("feature set 'nosuch' not found", "known: demo, demo_late, housing"),
        "MLP-400",
        2,
    ),
    CliCase(
        "cli-sql-featureset-name",
        "cli",
        command("ingest", "{good}", "-f", "demo; DROP TABLE demo_deliveries"),
        ("feature set 'demo; DROP TABLE demo_deliveries' not found",),
        "MLP-400",
        2,
    ),
    CliCase(
        "cli-missing-file",
        "cli",
        command("ingest", "{dir}/nothing-here.csv", "-f", "demo"),
        ("nothing-here.csv", "does not exist"),
        "MLP-400",
        2,
    ),
    CliCase(
        "cli-directory-as-file",
        "cli",
        command("ingest", "{dir}", "-f", "demo"),
        ("is not a file",),
        "MLP-400",
        2,
    ),
    CliCase(
        "cli-unknown-file-type",
        "cli",
        lambda ctx: ingest(ctx.write("batch.xlsx", ctx.csv_text())),
        ("unknown file type '.xlsx'", "give a .csv, .parquet or .jsonl file"),
        "MLP-200",
        3,
    ),
    CliCase(
        "cli-promote-missing-version",
        "cli",
        command("promote", "99", "-f", "demo", "-r", "corpus"),
        ("version 99", "does not exist", "mlpipeline models"),
        "MLP-400",
        2,
    ),
    CliCase(
        "cli-promote-non-numeric-version",
        "cli",
        command("promote", "latest", "-f", "demo", "-r", "corpus"),
        ("version 'latest'", "mlpipeline models"),
        "MLP-400",
        2,
    ),
    CliCase(
        "cli-promote-current-champion",
        "cli",
        command("promote", "1", "-f", "demo", "-r", "corpus"),
        ("version 1 is already the champion",),
        "MLP-700",
        2,
    ),
    CliCase(
        "cli-approve-without-challenger",
        "cli",
        command("approve", "2", "-f", "demo"),
        ("version 2 is not awaiting approval", "no version awaits approval"),
        "MLP-700",
        2,
    ),
    CliCase(
        "cli-predict-missing-file",
        "cli",
        command("predict", "{dir}/rows.csv", "-f", "demo"),
        ("rows.csv", "does not exist"),
        "MLP-400",
        2,
    ),
    CliCase(
        "cli-predict-duplicate-json-keys",
        "cli",
        lambda ctx: [
            "predict",
            str(ctx.write("rows.jsonl", jsonl(ctx, '"distance_km": 99.5'))),
            "-f",
            "demo",
        ],
        ("rows.jsonl", "line 2", "duplicate key 'distance_km'"),
        "MLP-200",
        3,
    ),
    CliCase(
        "cli-predict-number-with-5000-digits",
        "cli",
        lambda ctx: [
            "predict",
            str(ctx.write("rows.jsonl", jsonl(ctx, '"items": ' + "7" * 5_000))),
            "-f",
            "demo",
        ],
        ("rows.jsonl", "line 2", "number", "too long"),
        "MLP-200",
        3,
    ),
    CliCase(
        "cli-predict-unknown-format",
        "cli",
        command("predict", "{good}", "-f", "demo", "--format", "xml"),
        ("--format", "use csv or json"),
        USAGE,
        2,
    ),
    CliCase(
        "cli-as-of-not-a-time",
        "cli",
        command("check", "-f", "demo", "--as-of", "yesterday"),
        ("not an ISO-8601 time", "--as-of"),
        USAGE,
        2,
    ),
    CliCase(
        "cli-tune-zero-trials",
        "cli",
        command("tune", "-f", "demo", "--trials", "0"),
        ("--trials", "greater than or equal to 1"),
        USAGE,
        2,
    ),
    CliCase(
        "cli-tune-non-positive-timeout",
        "cli",
        command("tune", "-f", "demo", "--timeout", "0s"),
        ("--timeout", "'0s' is not a positive duration"),
        "MLP-100",
        2,
    ),
    CliCase(
        "cli-tune-unknown-parameter",
        "cli",
        tune_with("[model.tuning.space]\nlearning_rat = {low = 0.01, high = 0.2}\n"),
        (
            "model.tuning.space",
            "'learning_rat' is not a parameter of LightGBM",
            "did you mean 'learning_rate'",
        ),
        "MLP-100",
        2,
    ),
    CliCase(
        "cli-tune-empty-range",
        "cli",
        tune_with("[model.tuning.space]\nnum_leaves = {low = 64, high = 8}\n"),
        ("model.tuning.space.num_leaves", "the range 64..8 is empty"),
        "MLP-101",
        2,
    ),
    CliCase(
        "cli-tune-scikit-learn-without-space",
        "cli",
        tune_with("", estimator="sklearn.ensemble.HistGradientBoostingRegressor"),
        ("has no default search space", "add [model.tuning.space]"),
        "MLP-100",
        2,
    ),
    CliCase(
        "cli-watch-bad-interval",
        "cli",
        command("watch", "-f", "demo", "--interval", "5 parsecs", "--iterations", "1"),
        ("invalid duration '5 parsecs'",),
        "MLP-100",
        2,
    ),
    CliCase(
        "cli-serve-port-out-of-range",
        "cli",
        command("serve", "-f", "demo", "--port", "70000"),
        ("--port", "less than or equal to 65535"),
        USAGE,
        2,
    ),
    CliCase(
        "cli-demo-every-unknown-period",
        "cli",
        command("demo", "-f", "housing", "--csv", "{dir}/rows.csv", "--every", "fortnight"),
        ("--every", "must be one of day, week, month, quarter, year", "'fortnight'"),
        USAGE,
        2,
    ),
    CliCase(
        "cli-demo-every-without-event-time",
        "cli",
        command("demo", "-f", "housing", "--csv", "{dir}/rows.csv", "--every", "year"),
        ("--every cuts the replay by event time", "'housing' has no event_time", "use --batches"),
        "MLP-100",
        2,
    ),
    CliCase(
        "cli-generate-zero-days",
        "cli",
        command("generate", "{dir}/out.csv", "--days", "0"),
        ("--days", "greater than or equal to 1"),
        USAGE,
        2,
    ),
]

LABELS = [
    CliCase(
        "labels-unknown-keys",
        "labels",
        labels_csv("order_id,delivery_minutes", "{new},30", "{unknown},31", "{unknown2},32"),
        ("2 key(s) are not stored", "990000001, 990000002", "ingest those rows first", "rows 2, 3"),
        "MLP-200",
        3,
    ),
    CliCase(
        "labels-unknown-key-jsonl",
        "labels",
        labels_frame(
            pd.DataFrame({"order_id": [UNLABELLED_KEY, UNKNOWN_KEY], "delivery_minutes": [30.0, 31.0]}),
            "labels.jsonl",
        ),
        ("1 key(s) are not stored (990000001)", "rows 2"),
        "MLP-200",
        3,
    ),
    CliCase(
        "labels-unknown-key-parquet",
        "labels",
        labels_frame(
            pd.DataFrame({"order_id": [UNKNOWN_KEY, UNLABELLED_KEY], "delivery_minutes": [30.0, 31.0]}),
            "labels.parquet",
        ),
        ("1 key(s) are not stored (990000001)", "rows 1"),
        "MLP-200",
        3,
    ),
    CliCase(
        "labels-conflict-without-relabel",
        "labels",
        labels_csv("order_id,delivery_minutes", "{new},30", "{stored},999"),
        (
            "delivery_minutes",
            "1 key(s) already have another label",
            "5: stored ",
            "file 999",
            "pass --relabel",
        ),
        "MLP-200",
        3,
    ),
    CliCase(
        "labels-relabel-with-an-unknown-key",
        "labels",
        labels_csv("order_id,delivery_minutes", "{stored},999", "{unknown},31", flags=("--relabel",)),
        ("1 key(s) are not stored (990000001)", "rows 2"),
        "MLP-200",
        3,
    ),
    CliCase(
        "labels-with-feature-columns",
        "labels",
        labels_csv("order_id,delivery_minutes,distance_km,items", "{new},30,3.5,2"),
        (
            "distance_km, items",
            "unexpected column",
            "a labels file holds only order_id, delivery_minutes and delivered_at",
            "ingest rows with their features with 'mlpipeline ingest'",
        ),
        "MLP-200",
        3,
    ),
    CliCase(
        "labels-key-with-nulls",
        "labels",
        labels_csv("order_id,delivery_minutes", "{new},30", ",31", "{unknown},32"),
        ("order_id", "missing key", "rows 2"),
        "MLP-200",
        3,
    ),
    CliCase(
        "labels-row-without-label",
        "labels",
        labels_csv("order_id,delivery_minutes", "{new},30", "{unknown},"),
        ("delivery_minutes", "no label; give every row of a labels file its label", "rows 2"),
        "MLP-200",
        3,
    ),
    CliCase(
        "labels-duplicate-key-in-file",
        "labels",
        labels_csv("order_id,delivery_minutes", "{new},30", "{new},31"),
        ("order_id", "duplicate key within the batch", "rows 1, 2"),
        "MLP-200",
        3,
    ),
    CliCase(
        "labels-without-target-column",
        "labels",
        labels_csv("order_id,delivered_at", "{new},2026-01-14T10:00:00"),
        ("delivery_minutes", "a labels file needs the key (order_id) and the target (delivery_minutes)"),
        "MLP-200",
        3,
    ),
    CliCase(
        "labels-label-time-before-event",
        "labels",
        labels_csv("order_id,delivery_minutes,delivered_at", "{new},30,2020-01-01T00:00:00"),
        ("delivered_at", "1 label(s) arrive before their row's ordered_at", "rows 1"),
        "MLP-200",
        3,
    ),
    CliCase(
        "labels-out-of-range",
        "labels",
        labels_csv("order_id,delivery_minutes", "{new},-5"),
        ("delivery_minutes", "below the minimum 0", "rows 1"),
        "MLP-200",
        3,
    ),
    CliCase(
        "labels-header-only",
        "labels",
        labels_csv("order_id,delivery_minutes"),
        ("no data rows",),
        "MLP-201",
        3,
    ),
    CliCase(
        "labels-target-source-missing",
        "labels",
        sourced_labels(lambda t: t.replace(*TARGET_SOURCE), "order_id,minutes", "{new},30"),
        ("required column", "column 'minutes': unexpected column"),
        "MLP-200",
        3,
    ),
]

EVOLVE = [
    CliCase(
        "evolve-type-changed",
        "evolve",
        init_after(
            lambda t: t.replace('[features.items]\ntype = "integer"', '[features.items]\ntype = "float"')
        ),
        (
            "column 'items' of table 'demo_deliveries'",
            "is stored as integer but the definition now says float",
            'table = "demo_deliveries_v2"',
            "nothing was changed",
        ),
        "MLP-103",
        2,
    ),
    CliCase(
        "evolve-type-changed-dry-run",
        "evolve",
        init_after(
            lambda t: t.replace(
                '[features.temperature_c]\ntype = "float"', '[features.temperature_c]\ntype = "integer"'
            ),
            "--dry-run",
        ),
        (
            "column 'temperature_c'",
            "stored as float but the definition now says integer",
            "nothing was changed",
        ),
        "MLP-103",
        2,
    ),
    CliCase(
        "evolve-feature-removed",
        "evolve",
        init_after(lambda t: t.replace(REMOVE_HOUR, "")),
        (
            "holds column 'hour' that the definition no longer has (removed or renamed)",
            "ALTER TABLE demo_deliveries DROP COLUMN hour",
            "nothing was changed",
        ),
        "MLP-103",
        2,
    ),
    CliCase(
        "evolve-feature-renamed",
        "evolve",
        init_after(lambda t: t.replace("[features.hour]", "[features.order_hour]")),
        ("column 'hour'", "removed or renamed", "feature 'order_hour' is new but may not be missing"),
        "MLP-103",
        2,
    ),
    CliCase(
        "evolve-new-feature-not-missing",
        "evolve",
        init_after(lambda t: t + NEW_FLOOR),
        (
            "feature 'floor' is new but may not be missing (missing = 'error')",
            "set missing = 'native'",
            "[features.floor]",
            "nothing was changed",
        ),
        "MLP-103",
        2,
    ),
    CliCase(
        "evolve-new-key",
        "evolve",
        init_after(
            lambda t: t.replace(
                'column = "order_id"\ntype = "integer"', 'column = "order_ref"\ntype = "string"'
            )
        ),
        ("the key column is now 'order_ref'", "a key cannot change in place", "nothing was changed"),
        "MLP-103",
        2,
    ),
    CliCase(
        "evolve-housing-type-changed",
        "evolve",
        init_after(
            lambda t: t.replace(
                '[features.total_rooms]\ntype = "float"', '[features.total_rooms]\ntype = "integer"'
            ),
            name="housing",
        ),
        ("housing: column 'total_rooms'", "stored as float but the definition now says integer"),
        "MLP-103",
        2,
    ),
]

CASES = CSV + PARQUET + FEATURESETS + SETTINGS + ARGUMENTS + LABELS + EVOLVE


# -- fixtures ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def home(_trained_template: Trained, tmp_path_factory: pytest.TempPathFactory) -> Trained:
    """One private copy of the trained home for the whole corpus (no case may change it), with
    an unlabelled day and stored housing rows (see :func:`seed_lifecycle`)."""
    home = copy_home(_trained_template, tmp_path_factory.mktemp("badinput-cli"))
    seed_lifecycle(home)
    return home


@pytest.fixture(scope="module")
def tracker(home: Trained) -> Tracker:
    return Tracker(home.settings)


@pytest.fixture(scope="module")
def good() -> pd.DataFrame:
    """A day the store has not seen: ingesting it as is would write 40 rows."""
    return generate_day(StreamConfig(rows_per_day=40, seed=7), 9)


@pytest.fixture
def ctx(home: Trained, good: pd.DataFrame, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Ctx]:
    env_for(home.settings, monkeypatch)
    folder = tmp_path / "inputs"
    folder.mkdir()
    yield Ctx(home, folder, good, monkeypatch)
    for leftover in home.settings.featuresets_dir.glob("*"):  # a case's definition file
        leftover.unlink()


# -- the tests -----------------------------------------------------------------------------


def test_the_corpus_covers_every_surface() -> None:
    surfaces = {c.surface for c in CASES}
    assert surfaces == {"csv", "parquet", "featureset", "settings", "cli", "labels", "evolve"}
    assert len({c.id for c in CASES}) == len(CASES)
    assert all(sum(c.surface == s for c in CASES) >= 5 for s in surfaces)


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input_is_refused_clearly_and_changes_nothing(
    case: CliCase, ctx: Ctx, tracker: Tracker, capsys: pytest.CaptureFixture[str]
) -> None:
    before = snapshot(ctx.trained.settings, tracker)
    args = case.make(ctx)
    code, out, err = run_cli(capsys, args)

    assert code == case.exit, (code, out, err)
    assert "Traceback" not in err, err
    assert len(err) < 4_000, f"the message must stay short, got {len(err)} characters"
    if case.code == USAGE:
        assert "Usage" in err, err
        text = " ".join(err.replace("│", " ").split())
    else:
        assert out == "", out
        lines = err.strip().splitlines()
        assert len(lines) == 1, err  # one line, nothing else
        assert lines[0].startswith(f"error {case.code}: "), err
        assert "unexpected" not in lines[0].split(":")[1], err  # not the catch-all for bugs
        text = lines[0]
    for word in case.words:
        assert word in text, (word, text)
    for word in case.absent:
        assert word not in text, (word, text)
    assert "pw@" not in text, "credentials are never echoed"

    # Nothing changed: rows, batch ledger, tables, pointer and its history, aliases.
    assert snapshot(ctx.trained.settings, tracker) == before


def test_the_good_batch_and_definition_do_ingest(
    trained: Trained,
    good: pd.DataFrame,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The control: every case above is the good batch plus one fault, so without the fault
    it is written (on a private copy, so the corpus's home stays as it was)."""
    env_for(trained.settings, monkeypatch)
    ctx = Ctx(trained, tmp_path, good, monkeypatch)
    trained.settings.featuresets_dir.mkdir(parents=True, exist_ok=True)
    definition(lambda t: t)(ctx)  # the shipped definition, copied to the user folder
    tracker = Tracker(trained.settings)
    before = snapshot(trained.settings, tracker)
    code, out, err = run_cli(capsys, ingest(ctx.good_csv()))
    assert code == 0, err
    assert "ingested 40 rows" in out
    path = tmp_path / "good.parquet"
    good.to_parquet(path, index=False)
    code, out, err = run_cli(capsys, ingest(path))
    assert code == 0, err
    assert "same content was ingested" in out
    after = snapshot(trained.settings, tracker)
    assert after["rows"] == before["rows"] + 40
    assert len(after["batches"]) == len(before["batches"]) + 1


def test_the_lifecycle_inputs_work_without_their_fault(
    trained: Trained,
    good: pd.DataFrame,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The control of the labels, re-sent-rows, source and init cases: without the fault each
    input is accepted and written (on a private copy, so the corpus's home stays as it was)."""
    env_for(trained.settings, monkeypatch)
    trained.settings.featuresets_dir.mkdir(parents=True, exist_ok=True)
    seed_lifecycle(trained)
    ctx = Ctx(trained, tmp_path, good, monkeypatch)

    code, out, err = run_cli(capsys, labels_csv("order_id,delivery_minutes", "{new},30")(ctx))
    assert (code, err) == (0, ""), err
    assert "labelled 1 rows" in out
    code, out, err = run_cli(
        capsys, labels_csv("order_id,delivery_minutes", "{stored},999", flags=("--relabel",))(ctx)
    )
    assert (code, err) == (0, ""), err
    assert "relabelled 1 (each audited)" in out

    args = resent_housing([3, 4, 5, 6, 7])(ctx)
    code, out, err = run_cli(capsys, args[:-1])  # without --strict: skipped and counted
    assert (code, err) == (0, ""), err
    assert "ingested 3 rows" in out
    assert "skipped 2 rows already stored" in out

    code, out, err = run_cli(
        capsys, sourced(lambda t: t.replace(*DISTANCE_SOURCE), {"distance_km": "Distance (km)"})(ctx)
    )
    assert (code, err) == (0, ""), err
    assert "ingested 40 rows" in out

    code, out, err = run_cli(
        capsys, init_after(lambda t: t + NEW_FLOOR.replace("max = 200", "max = 200\nmissing = 'native'"))(ctx)
    )
    assert (code, err) == (0, ""), err
    assert "add column floor" in out
