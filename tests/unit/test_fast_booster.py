"""LightGBM's single-row fast path gives exactly what Booster.predict gives."""

from __future__ import annotations

import gc
import threading

import lightgbm as lgb
import numpy as np
import numpy.typing as npt
import pytest

from mlpipeline.serving.fast_booster import SingleRowPredictor

NCOL = 6
CATEGORICAL = 5  # column index of a categorical feature (codes 0..4, as the feature spec encodes them)


def _training_data(
    rng: np.random.Generator, n: int
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    x = rng.normal(size=(n, NCOL))
    x[:, CATEGORICAL] = rng.integers(0, 5, n)
    x[rng.random((n, NCOL)) < 0.1] = np.nan  # missing values, so the trees learn where NaN goes
    y = (
        np.nan_to_num(x[:, 0]) * 3
        + np.sin(np.nan_to_num(x[:, 1]))
        + np.where(np.isnan(x[:, 2]), 4.0, x[:, 2] ** 2)
        + np.nan_to_num(x[:, CATEGORICAL]) * 0.7
        + rng.normal(0, 0.1, n)
    )
    return x, y


@pytest.fixture(scope="module")
def booster() -> lgb.Booster:
    x, y = _training_data(np.random.default_rng(5), 600)
    params = {
        "objective": "regression",
        "num_leaves": 15,
        "min_data_in_leaf": 5,
        "learning_rate": 0.2,
        "verbose": -1,
        "seed": 1,
        "num_threads": 1,
    }
    data = lgb.Dataset(x, label=y, categorical_feature=[CATEGORICAL], free_raw_data=True)
    return lgb.train(params, data, num_boost_round=40)


@pytest.fixture(scope="module")
def rows() -> npt.NDArray[np.float64]:
    """Random rows with NaN cells, unseen and negative category codes, extremes and signed zeros."""
    rng = np.random.default_rng(99)
    m = rng.normal(scale=2.0, size=(400, NCOL))
    m[:, CATEGORICAL] = rng.integers(-1, 8, 400)  # -1 is missing to LightGBM, 5..7 never seen
    m[rng.random(m.shape) < 0.2] = np.nan
    m[0] = np.nan
    m[1] = 0.0
    m[2] = -0.0
    m[3] = 1e300
    m[4] = -1e300
    m[5, :] = np.finfo(np.float64).tiny
    return np.ascontiguousarray(m)


def reference(booster: lgb.Booster, rows: npt.NDArray[np.float64]) -> list[float]:
    return [float(booster.predict(row[None, :])[0]) for row in rows]


def test_the_booster_uses_nan_and_categories(booster: lgb.Booster, rows: npt.NDArray[np.float64]) -> None:
    """The comparison is only meaningful when the inputs reach different leaves."""
    values = reference(booster, rows)
    assert len(set(values)) > 100
    assert values[0] != values[1]  # an all-NaN row is not treated as zeros
    assert booster.num_trees() == 40
    assert booster.num_feature() == NCOL


def test_single_row_equals_booster_predict_exactly(
    booster: lgb.Booster, rows: npt.NDArray[np.float64]
) -> None:
    fast = SingleRowPredictor(booster)
    assert fast.ncol == NCOL
    want = reference(booster, rows)
    got = [fast.predict(row) for row in rows]
    assert all(type(v) is float for v in got)
    assert got == want  # exact, no tolerance


def test_each_row_is_predicted_on_its_own(booster: lgb.Booster, rows: npt.NDArray[np.float64]) -> None:
    """A fresh copy of each row (new memory each call) gives the same value: no stale pointer."""
    fast = SingleRowPredictor(booster)
    want = booster.predict(rows)
    for i in range(0, len(rows), 7):
        assert fast.predict(rows[i].copy()) == want[i]


def test_the_row_is_not_modified(booster: lgb.Booster, rows: npt.NDArray[np.float64]) -> None:
    fast = SingleRowPredictor(booster)
    row = rows[10].copy()
    before = row.copy()
    fast.predict(row)
    np.testing.assert_array_equal(row, before)


def test_a_reloaded_booster(booster: lgb.Booster, rows: npt.NDArray[np.float64]) -> None:
    """Serving loads the model from its text form: the fast path agrees with that booster too."""
    loaded = lgb.Booster(model_str=booster.model_to_string())
    fast = SingleRowPredictor(loaded)
    assert [fast.predict(r) for r in rows] == reference(loaded, rows)
    assert [fast.predict(r) for r in rows] == reference(booster, rows)


def test_a_one_by_ncol_matrix_is_a_row(booster: lgb.Booster, rows: npt.NDArray[np.float64]) -> None:
    fast = SingleRowPredictor(booster)
    assert fast.predict(rows[20:21]) == booster.predict(rows[20:21])[0]


@pytest.mark.parametrize(
    "bad",
    [
        pytest.param(np.zeros(NCOL, dtype=np.float32), id="float32"),
        pytest.param(np.zeros(NCOL, dtype=np.int64), id="int64"),
        pytest.param(np.zeros(NCOL, dtype=object), id="object"),
        pytest.param(np.zeros(NCOL - 1), id="too-short"),
        pytest.param(np.zeros(NCOL + 1), id="too-long"),
        pytest.param(np.zeros(0), id="empty"),
        pytest.param(np.zeros(2 * NCOL)[::2], id="strided"),
        pytest.param(np.zeros((NCOL, 3))[:, 1], id="column-of-a-matrix"),
    ],
)
def test_bad_rows_raise_value_error(booster: lgb.Booster, bad: np.ndarray) -> None:
    fast = SingleRowPredictor(booster)
    with pytest.raises(ValueError, match=f"expected {NCOL} contiguous float64 values"):
        fast.predict(bad)


def test_a_bad_row_does_not_spoil_the_next_call(booster: lgb.Booster, rows: npt.NDArray[np.float64]) -> None:
    fast = SingleRowPredictor(booster)
    with pytest.raises(ValueError, match="float32"):
        fast.predict(rows[0].astype(np.float32))
    assert fast.predict(rows[30]) == booster.predict(rows[30:31])[0]


def test_concurrent_threads_get_the_right_results(
    booster: lgb.Booster, rows: npt.NDArray[np.float64]
) -> None:
    fast = SingleRowPredictor(booster)
    want = np.asarray(booster.predict(rows)).tolist()
    threads = 6
    start = threading.Barrier(threads)
    results: dict[int, list[float]] = {}
    errors: list[BaseException] = []
    orders = [np.random.default_rng(t).permutation(len(rows)) for t in range(threads)]

    def work(t: int) -> None:
        try:
            start.wait()
            out = [0.0] * len(rows)
            for _ in range(3):
                for i in orders[t]:
                    out[i] = fast.predict(rows[i])
                    assert out[i] == want[i]
            results[t] = out
        except BaseException as exc:  # reported to the main thread below
            errors.append(exc)

    pool = [threading.Thread(target=work, args=(t,)) for t in range(threads)]
    for th in pool:
        th.start()
    for th in pool:
        th.join(timeout=30)
    assert not errors, errors[0]
    assert sorted(results) == list(range(threads))
    for out in results.values():
        assert out == want
    assert len(fast._handles) == threads  # each thread set up its own fast configuration


def test_one_configuration_per_thread_is_reused(booster: lgb.Booster, rows: npt.NDArray[np.float64]) -> None:
    fast = SingleRowPredictor(booster)
    for row in rows[:50]:
        fast.predict(row)
    assert len(fast._handles) == 1


def test_freeing_the_predictor_frees_its_configurations(
    booster: lgb.Booster, rows: npt.NDArray[np.float64]
) -> None:
    fast = SingleRowPredictor(booster)
    fast.predict(rows[0])
    handles = fast._handles
    assert len(handles) == 1
    del fast
    gc.collect()
    assert handles == []
    # the booster is untouched and still predicts
    assert booster.predict(rows[:1])[0] == reference(booster, rows[:1])[0]
    assert SingleRowPredictor(booster).predict(rows[0]) == booster.predict(rows[:1])[0]
