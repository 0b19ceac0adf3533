"""A 64-bit fingerprint of each row's stored values, to skip rows that are already stored.

A feature set with a generated key has nothing that names a row, so two exports that overlap
would store their common rows twice. Each row is fingerprinted over every stored column
(times, features, target) and a row whose fingerprint an earlier batch already holds is
skipped. Values are put in one canonical form first (times as whole microseconds, integers as
nullable 64-bit, floats as float64, text as Python strings), so a row hashes alike whether it
comes from a CSV, a Parquet file or back from the database. Pure: pandas and numpy only.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pandas as pd

from mlpipeline.featuresets.definition import Definition

__all__ = ["hashed_columns", "row_hashes"]


def hashed_columns(d: Definition) -> list[str]:
    """The stored columns a fingerprint covers: everything but the generated key."""
    return [c for c in d.raw_columns if c not in d.key_columns]


def row_hashes(d: Definition, frame: pd.DataFrame) -> npt.NDArray[np.int64]:
    """One signed 64-bit fingerprint per row (signed: it is stored in a BIGINT column)."""
    kinds: dict[str, str] = {name: spec.type for name, spec in d.features.items()}
    kinds[d.target.column] = "float"
    for col in (d.event_time, d.label_time):
        if col:
            kinds[col] = "time"
    canonical: dict[str, pd.Series] = {}
    for name in hashed_columns(d):
        canonical[name] = _canonical(frame[name].reset_index(drop=True), kinds.get(name, "categorical"))
    hashed = pd.util.hash_pandas_object(pd.DataFrame(canonical), index=False)
    return hashed.to_numpy(dtype=np.uint64).view(np.int64)


def _canonical(series: pd.Series, kind: str) -> pd.Series:
    if kind == "time":
        micros = pd.to_datetime(series).astype("datetime64[us]")
        return pd.Series(micros.to_numpy().view(np.int64), dtype="Int64").mask(micros.isna())
    if kind == "integer":
        return pd.to_numeric(series, errors="coerce").astype("Int64")
    if kind == "float":
        return pd.to_numeric(series, errors="coerce").astype(np.float64)
    return series.astype(object).where(series.notna(), None).map(lambda v: v if v is None else str(v))
