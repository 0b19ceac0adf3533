"""The real California housing file, ingested as the 'housing' feature set."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

from mlpipeline.featuresets.definition import Definition
from mlpipeline.featuresets.features import feature_matrix
from mlpipeline.featurestore.ingest import ingest_file
from mlpipeline.featurestore.sql import SqlFeatureStore

from ..conftest import HOUSING_CSV

pytestmark = [
    pytest.mark.realdata,
    pytest.mark.skipif(not HOUSING_CSV.is_file(), reason=f"shared data set absent: {HOUSING_CSV}"),
]


def test_file_is_the_documented_one() -> None:
    digest = hashlib.sha256(HOUSING_CSV.read_bytes()).hexdigest()
    assert digest == "8a3727f4cf54ac1a327f69b1d5b4db54c5834ea81c6e4efc0d163300022a685e"


def test_ingest_housing_with_missing_bedrooms(store: SqlFeatureStore, housing_def: Definition) -> None:
    first = ingest_file(store, housing_def, HOUSING_CSV)
    assert first.written == 20_640
    again = ingest_file(store, housing_def, HOUSING_CSV)
    assert again.skipped
    assert again.duplicate_of == first.batch
    assert store.count_rows(housing_def) == 20_640

    rows = store.training_window(housing_def)
    assert len(rows) == 20_640
    # Declared policy 'native': the 207 gaps are stored as NULL and reach the model as NaN.
    assert int(rows["total_bedrooms"].isna().sum()) == 207
    assert rows["block_id"].tolist() == list(range(1, 20_641))
    assert set(rows["ocean_proximity"]) == {"<1H OCEAN", "INLAND", "NEAR OCEAN", "NEAR BAY", "ISLAND"}
    matrix = feature_matrix(housing_def, {c: rows[c].to_numpy() for c in housing_def.features})
    names = list(housing_def.model_features)
    assert int(np.isnan(matrix[:, names.index("bedrooms_per_room")]).sum()) == 207
    assert not np.isnan(matrix[:, names.index("rooms_per_household")]).any()
