"""``mlpipeline score --engine spark``: the same job as :mod:`mlpipeline.serving.batch_score`,
run by Spark with MLflow's own ``spark_udf``.

Spark does what it is for (reading, partitioning, running the model on executors, writing);
mlpipeline keeps its guarantees around it:

- **Verified bytes, one version.** The champion is resolved once and its folder comes from the
  verified cache (its digest checked against the registry's record); ``spark_udf`` loads that
  folder, pinned for the whole job, with ``env_manager="local"`` (the executors use the
  driver's environment: on a cluster, the model's requirements and mlpipeline must be
  installed there).
- **The same input contract.** Before anything is scored, each partition's rows go through
  the model's input contract in ``mapInPandas``, exactly as the pandas engine's chunks do. Bad
  rows are found by their Spark row id, numbered in the whole input, and checked once more
  together in the driver, so the job stops with the same message the pandas engine gives
  (or, with ``reject_to``, sets them aside with their problem).
- **Nothing half-written.** Spark writes under a hidden name beside the target; the result is
  renamed into place at the end (a single ``.csv``/``.parquet`` file is Spark's one part
  file, moved out of its folder); the reject file is renamed into place after it.

Row numbers in messages count the rows in Spark's order of the input: for one file, the file's
order; for a folder, Spark may read its files in another order than the pandas engine's name
order. At most 10,000 bad rows are set aside; more stop the job.
"""

from __future__ import annotations

import logging
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from mlpipeline.errors import ConfigError, DataValidationError, EngineError, MlpipelineError
from mlpipeline.featuresets import portable
from mlpipeline.registry.model_cache import ModelRef
from mlpipeline.serving.batch_io import frame_columns
from mlpipeline.serving.batch_score import ROW_COLUMN, ScoreOutcome, check_keep, output_kind, remove_path
from mlpipeline.serving.predictor import Predictor
from mlpipeline.serving.scoring import InputContract

__all__ = ["score_with_spark"]

log = logging.getLogger(__name__)

ROW_ID = "_mlpipeline_row_id"
#: Bad rows looked at in the driver: enough for any message, few enough to collect.
MAX_BAD_ROWS = 10_000


def score_with_spark(
    predictor: Predictor,
    files: Sequence[tuple[Path, str]],
    output: Path,
    *,
    keep: Sequence[str] = (),
    reject_to: Path | None = None,
    master: str = "local[*]",
) -> ScoreOutcome:
    """Score ``files`` into ``output`` on Spark (see the module doc)."""
    try:
        from pyspark.sql import SparkSession
    except ImportError as exc:
        raise EngineError(f"--engine spark needs pyspark: pip install 'mlpipeline[spark]' ({exc})") from exc

    started = time.perf_counter()
    serving = predictor.current()
    p = serving.pointer
    model_dir = predictor.cache.ensure(ModelRef(p.featureset, p.model_name, p.version, p.run_id, p.sha256))
    # Python workers run this interpreter (its environment has the model's requirements),
    # unless the user chose another.
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    try:
        spark = (
            SparkSession.builder.master(master)
            .appName(f"mlpipeline score {p.model_name} v{p.version}")
            .config("spark.ui.enabled", "false")
            .config("spark.ui.showConsoleProgress", "false")
            .config("spark.sql.execution.arrow.pyspark.enabled", "true")
            .getOrCreate()
        )
    except Exception as exc:  # Java missing, a master that does not answer
        raise EngineError(
            f"Spark did not start on {master}: {_first_line(exc)}; it needs a Java runtime "
            "(e.g. apt-get install openjdk-17-jre-headless) and a master that answers"
        ) from exc
    spark.sparkContext.setLogLevel("ERROR")
    try:
        frame = _read(spark, files)
        check_keep(keep, [c for c in frame.columns if c != ROW_ID], files[0][0].name)
        read = frame.count()
        bad = _bad_rows(spark, frame, serving.model.spec, predictor.known_columns)
        rejected = 0
        staged: Path | None = None
        if bad is not None:
            name = files[0][0].name if len(files) == 1 else files[0][0].parent.name
            rows, problems = _problems(bad, serving.model.spec, predictor.known_columns, name)
            if reject_to is None:
                raise problems
            if len(bad) >= MAX_BAD_ROWS:
                raise ConfigError(
                    f"{MAX_BAD_ROWS:,} or more bad rows: more than the Spark engine sets aside; "
                    "fix the input, or score it with --engine pandas --reject-to"
                )
            rejected = len(rows)
            staged = _write_pandas(rows, reject_to)
            frame = frame.join(spark.createDataFrame(bad[[ROW_ID]]), ROW_ID, "left_anti")
        scored = _predict(frame, str(model_dir), serving.model.spec, keep, p.version)
        _write(scored, output)
        if staged is not None and reject_to is not None:
            os.replace(staged, reject_to)  # the bad rows appear with the output, never without it
    except MlpipelineError:
        _remove_rejects(reject_to, output)
        raise
    except Exception as exc:  # Py4J and PySpark errors: one line, the job's own first
        _remove_rejects(reject_to, output)
        raise EngineError(f"the Spark job failed: {_first_line(exc)}") from exc
    except BaseException:
        _remove_rejects(reject_to, output)
        raise
    finally:
        spark.stop()
    return ScoreOutcome(
        read, read - rejected, rejected, p.model_name, p.version, time.perf_counter() - started, output
    )


def _remove_rejects(reject_to: Path | None, output: Path) -> None:
    """A failed job leaves no staged reject file behind."""
    if reject_to is not None:
        remove_path(reject_to.with_name(f".{reject_to.name}.partial"))


def _first_line(exc: BaseException) -> str:
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    useful = (
        [line for line in lines if "Error" in line or "Exception" in line] or lines or [type(exc).__name__]
    )
    return useful[-1][:400]


def _read(spark: Any, files: Sequence[tuple[Path, str]]) -> Any:
    from pyspark.sql import functions as sf

    paths = [str(path) for path, _ in files]
    if files[0][1] == "csv":
        # Every column as text, as the pandas engine reads categories and keys: the contract
        # converts numbers and names what is not one.
        frame = spark.read.option("header", True).option("inferSchema", False).csv(paths)
    else:
        frame = spark.read.parquet(*paths)
    return frame.withColumn(ROW_ID, sf.monotonically_increasing_id())


def _bad_rows(spark: Any, frame: Any, spec: dict[str, Any], known: frozenset[str]) -> pd.DataFrame | None:
    """The rows the input contract refuses (at most MAX_BAD_ROWS), with their global position."""
    from pyspark.sql import functions as sf

    schema = "_mlpipeline_row_id long"

    def check(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        contract = InputContract(spec, known=known)
        for batch in batches:
            ids = batch.pop(ROW_ID)
            for index in _refused(contract, spec, batch):
                yield pd.DataFrame({ROW_ID: [int(ids.iloc[index])]})

    refused = frame.mapInPandas(check, schema).limit(MAX_BAD_ROWS).collect()
    if not refused:
        return None
    ids = [int(r[0]) for r in refused]
    rows = frame.filter(sf.col(ROW_ID).isin(ids)).toPandas()
    # A row's position in the whole input: rows before it in earlier partitions, then its own.
    # monotonically_increasing_id puts the partition in the upper 31 bits, the row below.
    sizes = frame.groupBy(sf.spark_partition_id().alias("p")).count().collect()
    counts = {int(r["p"]): int(r["count"]) for r in sizes}
    before, total = {}, 0
    for part in sorted(counts):
        before[part], total = total, total + counts[part]
    rows["_position"] = [before.get(i >> 33, 0) + (i & ((1 << 33) - 1)) + 1 for i in rows[ROW_ID]]
    ordered: pd.DataFrame = rows.sort_values("_position").reset_index(drop=True)
    return ordered


def _refused(contract: InputContract, spec: dict[str, Any], batch: pd.DataFrame) -> list[int]:
    """Positions of the rows of ``batch`` the contract refuses (halving: cost grows with bad rows)."""
    if batch.empty:
        return []
    try:
        contract.from_columns(frame_columns(batch, spec), source="spark")
        return []
    except DataValidationError:
        if len(batch) == 1:
            return [0]
    half = len(batch) // 2
    left = _refused(contract, spec, batch.iloc[:half].reset_index(drop=True))
    right = _refused(contract, spec, batch.iloc[half:].reset_index(drop=True))
    return left + [half + i for i in right]


def _problems(
    bad: pd.DataFrame, spec: dict[str, Any], known: frozenset[str], source: str
) -> tuple[pd.DataFrame, DataValidationError]:
    """The bad rows (with their problem) and the error the pandas engine would raise for them."""
    contract = InputContract(spec, known=known)
    positions = bad.pop("_position").tolist()
    data = bad.drop(columns=[ROW_ID])
    try:
        contract.from_columns(frame_columns(data, spec), source=source)
    except DataValidationError as exc:
        from mlpipeline.errors import Problem

        renumbered = [
            Problem(p.column, p.rule, p.detail, tuple(positions[r - 1] for r in p.rows), p.count)
            for p in exc.problems
        ]
        error = DataValidationError(renumbered, source=source, outcome="nothing written")
    else:  # refused in a partition, accepted here: cannot happen with one contract
        raise AssertionError("rows refused by the contract on Spark were accepted in the driver")
    problem = []
    for i in range(len(data)):
        try:
            contract.from_columns(frame_columns(data.iloc[[i]].reset_index(drop=True), spec), source=source)
            problem.append("")
        except DataValidationError as one:
            problem.append("; ".join(f"{p.column}: {p.detail}" for p in one.problems))
    data = data.assign(problem=problem)
    data.insert(0, ROW_COLUMN if ROW_COLUMN not in data.columns else f"_{ROW_COLUMN}", positions)
    return data, error


def _predict(frame: Any, model_dir: str, spec: dict[str, Any], keep: Sequence[str], version: str) -> Any:
    import mlflow.pyfunc
    from pyspark.sql import functions as sf
    from pyspark.sql.types import DoubleType, LongType, StringType, StructField, StructType

    spark = frame.sparkSession
    typed = _signature_types(model_dir)
    names = [n for n in portable.input_names(spec) if n in frame.columns]
    # Columns read as text (CSV) take the types the model's signature records, which MLflow
    # enforces; the contract has already refused any value that does not convert.
    inputs = sf.struct(*[sf.col(n).cast(typed[n]).alias(n) if n in typed else sf.col(n) for n in names])
    key = spec.get("key")
    keys = [key] if isinstance(key, str) else list(key or [])
    sources = dict(spec.get("sources") or {})
    out = [sf.col(sources.get(k, k)).alias(k) for k in keys if sources.get(k, k) in frame.columns]
    out += [sf.col(k) for k in keep]
    task = portable.task_of(spec)
    if task == "regression":
        udf = mlflow.pyfunc.spark_udf(spark, model_dir, result_type=DoubleType(), env_manager="local")
        out.append(udf(inputs).alias("prediction"))
    else:
        classes = list(spec.get("classes") or ())
        label_type = LongType() if all(isinstance(c, int) for c in classes) else StringType()
        labels = mlflow.pyfunc.spark_udf(spark, model_dir, result_type=label_type, env_manager="local")
        out.append(labels(inputs).alias("prediction"))
        shape = StructType([StructField(str(c), DoubleType()) for c in classes])
        proba = mlflow.pyfunc.spark_udf(
            spark, model_dir, result_type=shape, env_manager="local", params={"output": "probabilities"}
        )
        column = proba(inputs)
        out += [column[str(c)].alias(f"proba_{c}") for c in classes]
    out.append(sf.lit(version).alias("model_version"))
    return frame.orderBy(ROW_ID).select(*out)


def _signature_types(model_dir: str) -> dict[str, str]:
    """Spark SQL types of the model's signature inputs (what MLflow enforces on the udf's input)."""
    from mlflow.models import Model

    signature = Model.load(model_dir).signature
    spark_types = {
        "double": "double", "float": "float", "long": "bigint", "integer": "int",
        "boolean": "boolean", "string": "string", "datetime": "timestamp",
    }  # fmt: skip
    out: dict[str, str] = {}
    for spec in signature.inputs.inputs if signature is not None else ():
        kind = getattr(getattr(spec, "type", None), "name", None)
        if spec.name and kind in spark_types:
            out[spec.name] = spark_types[kind]
    return out


def _write(frame: Any, output: Path) -> None:
    kind = output_kind(output)
    staging = Path(tempfile.mkdtemp(prefix=f".{output.name}.", dir=output.parent))
    try:
        target = staging / "out"
        if kind == "folder":
            frame.write.parquet(str(target))
            result = target
        else:
            writer = frame.coalesce(1).write
            (writer.option("header", True).csv if kind == "csv" else writer.parquet)(str(target))
            parts = sorted(target.glob("part-*"))
            if len(parts) != 1:
                raise ConfigError(f"Spark wrote {len(parts)} part files where one was expected")
            result = parts[0]
        if output.is_dir():
            shutil.rmtree(output)
        os.replace(result, output)  # readers never see half an output
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _write_pandas(frame: pd.DataFrame, target: Path) -> Path:
    """``frame`` beside ``target`` under a hidden name; the caller renames it into place."""
    partial = target.with_name(f".{target.name}.partial")
    if output_kind(target) == "csv":
        frame.to_csv(partial, index=False)
    else:
        frame.astype("string").to_parquet(partial, index=False)
    return partial
