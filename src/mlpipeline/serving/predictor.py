"""The in-process predictor: the champion from the verified cache, hot-swapped on promotion.

One implementation behind the CLI, the HTTP API and the IRIS classes. The production
pointer is read at most every ``poll_s`` seconds (a one-row query); when it names a new
version, the new model is loaded and verified *beside* the old one and then swapped in
with a single reference assignment, so a request sees either the old model or the new
one, never half of either. A request takes one snapshot of the serving model and uses it
throughout. If the new version cannot be loaded, the old one keeps serving and the
failure is reported by :meth:`Predictor.status` and the log.

The hot path is numpy only: request values are validated and encoded by the model's
:class:`~mlpipeline.serving.scoring.InputContract`, derived features are added by
:func:`mlpipeline.featuresets.portable.assemble`, and the raw LightGBM booster predicts on the
matrix (no DataFrame, no scikit-learn wrapper); a single row goes through LightGBM's
single-row fast path (:mod:`mlpipeline.serving.fast_booster`).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from mlpipeline.errors import MlpipelineError, NotFoundError, UnsupportedError
from mlpipeline.featuresets import portable
from mlpipeline.featuresets.envelope import Envelope
from mlpipeline.registry.model_cache import LoadedModel, ModelCache
from mlpipeline.registry.pointer import Pointer, PointerStore, SqlPointerStore
from mlpipeline.serving.fast_booster import SingleRowPredictor
from mlpipeline.serving.prediction_log import PredictionLog
from mlpipeline.serving.scoring import MAX_ROWS_SHOWN, InputContract, Inputs
from mlpipeline.settings import Settings

if TYPE_CHECKING:
    from mlpipeline.registry.tracking import Tracker
from mlpipeline.featurestore.sql import utcnow

__all__ = ["Prediction", "Predictor", "Serving", "open_predictor"]

log = logging.getLogger(__name__)

FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True)
class Serving:
    """The model being served and where it came from (immutable: swapped as a whole)."""

    pointer: Pointer
    model: LoadedModel
    contract: InputContract
    loaded_at: datetime
    load_seconds: float
    feature_names: tuple[str, ...]
    single_row: SingleRowPredictor | None


@dataclass(slots=True)
class Prediction:
    """Predictions for one request, with the version that made them."""

    values: FloatArray
    model_name: str
    version: str
    keys: list[str | None] | None = None
    contributions: FloatArray | None = None  # rows x (features + 1); the last column is the base value
    feature_names: tuple[str, ...] = ()
    ignored_columns: tuple[str, ...] = ()  # unknown request columns dropped (extra_columns = "ignore")
    # Rows whose inputs lie outside the model's training envelope, per column that has any.
    outside: dict[str, npt.NDArray[np.bool_]] = field(default_factory=dict)
    envelope: Envelope | None = None
    # A classifier's answer: each row's class (the target's own value) and class probabilities.
    labels: list[Any] | None = None
    probabilities: FloatArray | None = None  # rows x classes, in ``classes`` order
    classes: list[Any] = field(default_factory=list)

    @property
    def answers(self) -> list[Any]:
        """What the model predicts per row: the class for a classifier, else the number."""
        return self.labels if self.labels is not None else self.values.tolist()

    def probability_records(self) -> list[dict[str, float]]:
        """Each row's class probabilities keyed by class (text keys, as JSON needs)."""
        if self.probabilities is None:
            return []
        names = [str(c) for c in self.classes]
        return [dict(zip(names, row, strict=True)) for row in self.probabilities.tolist()]

    def warnings(self) -> list[dict[str, Any]]:
        """One warning per column with inputs outside the training envelope: the column, how
        many rows, the first rows (1-based) and what the model saw."""
        out = []
        for name, mask in self.outside.items():
            rows = np.flatnonzero(mask)
            item: dict[str, Any] = {
                "column": name,
                "rule": "outside training",
                "count": int(rows.size),
                "rows": [int(i) + 1 for i in rows[:MAX_ROWS_SHOWN]],
            }
            if self.envelope is not None:
                seen = self.envelope.describe(name)
                item["message"] = f"{rows.size} row(s) {seen}: the prediction extrapolates"
            out.append(item)
        return out

    def outside_by_row(self) -> list[str]:
        """Per row, the columns outside the training envelope joined by '|' ('' when none)."""
        rows = len(self.values)
        if not self.outside:
            return [""] * rows
        names = list(self.outside)
        stacked = np.stack([self.outside[n] for n in names], axis=1)
        return ["|".join(n for n, hit in zip(names, row, strict=True) if hit) for row in stacked]


class Predictor:
    """Serves the production model of one feature set."""

    def __init__(
        self,
        featureset: str,
        pointers: PointerStore,
        cache: ModelCache,
        *,
        poll_s: float = 5.0,
        prediction_log: PredictionLog | None = None,
        known_columns: Iterable[str] = (),
    ) -> None:
        self.featureset = featureset
        # Columns of the feature set's current definition: never "extra" in a request, even for
        # a champion trained before the definition gained them.
        self.known_columns = frozenset(known_columns)
        self.pointers = pointers
        self.cache = cache
        self.poll_s = poll_s
        self.prediction_log = prediction_log
        self.last_error: str | None = None
        self.last_poll: datetime | None = None
        self.swaps = 0
        self._serving: Serving | None = None
        self._next_check = 0.0
        self._refresh_lock = threading.Lock()
        self._poller: threading.Thread | None = None
        self._stop = threading.Event()

    # -- which model -------------------------------------------------------------------------

    def refresh(self) -> bool:
        """Read the pointer now; load and swap in a new champion. Returns True on a swap."""
        with self._refresh_lock:
            self._next_check = time.monotonic() + self.poll_s
            pointer = self.pointers.get(self.featureset)
            self.last_poll = utcnow()
            current = self._serving
            if pointer is None:
                if current is not None:
                    log.warning(
                        "the production pointer disappeared; still serving the last champion",
                        extra={"featureset": self.featureset, "model_version": current.pointer.version},
                    )
                return False
            if current is not None and (current.pointer.version, current.pointer.sha256) == (
                pointer.version,
                pointer.sha256,
            ):
                self.last_error = None
                return False
            started = time.perf_counter()
            model = self.cache.load(pointer.ref)
            serving = Serving(
                pointer,
                model,
                InputContract(model.spec, known=self.known_columns),
                utcnow(),
                time.perf_counter() - started,
                tuple(model.spec["order"]),
                # LightGBM's one-row fast path writes one number: a regression or binary score.
                SingleRowPredictor(model.model)
                if model.is_lightgbm and portable.task_of(model.spec) != "multiclass"
                else None,
            )
            # Build the compiled feature spec before the swap, so the first request is not slower.
            portable.build_matrix(model.spec, _probe(model.spec))
            self._serving = serving  # one reference assignment: the swap is atomic
            self.swaps += 1
            self.last_error = None
            log.info(
                "serving model version",
                extra={
                    "featureset": self.featureset,
                    "model_version": pointer.version,
                    "from_version": current.pointer.version if current else None,
                    "load_ms": round(serving.load_seconds * 1000, 2),
                },
            )
            return True

    def current(self) -> Serving:
        """The serving model; loads it on first use. Raises NotFoundError without a champion."""
        serving = self._serving
        if serving is None:
            self.refresh()
            serving = self._serving
        if serving is None:
            raise NotFoundError(
                f"'{self.featureset}' has no production model yet: train one "
                f"(mlpipeline train --featureset {self.featureset}) and promote it"
            )
        return serving

    def _maybe_refresh(self) -> None:
        if self._poller is not None or time.monotonic() < self._next_check or self._serving is None:
            return
        try:
            self.refresh()
        except MlpipelineError as exc:
            self._note_failure(exc)

    def _note_failure(self, exc: BaseException) -> None:
        self.last_error = f"{getattr(exc, 'code', 'MLP-000')}: {exc}"
        log.error(
            "could not switch to the new production model; still serving the previous one",
            extra={"featureset": self.featureset, "detail": str(exc)[:500]},
        )

    def start_polling(self) -> None:
        """Check the pointer every ``poll_s`` seconds on a background thread (servers)."""
        if self._poller is not None:
            return
        self._stop.clear()
        self._poller = threading.Thread(target=self._poll, name="mlpipeline-pointer-poll", daemon=True)
        self._poller.start()

    def _poll(self) -> None:
        while not self._stop.wait(self.poll_s):
            try:
                self.refresh()
            except MlpipelineError as exc:
                self._note_failure(exc)
            except Exception as exc:  # a poller that dies silently would freeze the model
                self._note_failure(exc)
                log.exception("pointer poll failed unexpectedly")

    def close(self) -> None:
        self._stop.set()
        if self._poller is not None:
            self._poller.join(timeout=10)
            self._poller = None
        if self.prediction_log is not None:
            self.prediction_log.close()

    # -- predictions -------------------------------------------------------------------------

    def predict_records(self, records: object, *, explain: bool = False) -> Prediction:
        """JSON records (a list of objects, or one object)."""
        self._maybe_refresh()
        serving = self.current()
        return self._predict(serving, serving.contract.from_records(records), explain)

    def predict_split(self, payload: object, *, explain: bool = False) -> Prediction:
        """MLflow's ``dataframe_split`` payload."""
        self._maybe_refresh()
        serving = self.current()
        return self._predict(serving, serving.contract.from_split(payload), explain)

    def predict_columns(self, columns: Any, *, explain: bool = False, source: str = "request") -> Prediction:
        """Columns of equal length (lists or numpy arrays)."""
        self._maybe_refresh()
        serving = self.current()
        return self._predict(serving, serving.contract.from_columns(columns, source=source), explain)

    def score_pinned(self, serving: Serving, columns: Any, *, source: str = "batch") -> Prediction:
        """Predict with ``serving`` (a version resolved once by :meth:`current`), whatever the
        pointer says meanwhile: a batch job scores with one version from start to end."""
        return self._predict(serving, serving.contract.from_columns(columns, source=source), False)

    def _predict(self, serving: Serving, inputs: Inputs, explain: bool) -> Prediction:
        matrix = portable.assemble(serving.model.spec, inputs.values, inputs.rows)
        model = serving.model
        contributions = None
        if explain:
            if not model.is_lightgbm:
                raise UnsupportedError(
                    f"version {serving.pointer.version} is a scikit-learn model; per-feature "
                    "contributions are served for LightGBM models only"
                )
            contributions = model.model.predict(matrix, pred_contrib=True)
        if serving.single_row is not None and inputs.rows == 1:
            scores = np.array([serving.single_row.predict(matrix[0])])
        else:
            scores = model.predict_matrix(matrix)
        spec = model.spec
        task = portable.task_of(spec)
        labels = probabilities = None
        if task == "regression":
            values = scores
        else:
            codes = portable.predicted_codes(spec, scores)
            labels = portable.class_labels(spec, codes)
            probabilities = portable.class_probabilities(spec, scores)
            # The log keeps one number a prediction: the positive score, or the class's position.
            values = scores if task == "binary" else codes.astype(np.float64)
        if self.prediction_log is not None:
            self.prediction_log.add(inputs.keys, serving.pointer.version, values)
        return Prediction(
            values,
            serving.pointer.model_name,
            serving.pointer.version,
            inputs.keys,
            contributions,
            serving.feature_names,
            inputs.ignored,
            inputs.outside,
            serving.contract.envelope,
            labels,
            probabilities,
            list(spec.get("classes") or ()),
        )

    # -- status ------------------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        """What /health and /model report: the served version, the pointer's, the last error."""
        serving = self._serving
        out: dict[str, Any] = {
            "featureset": self.featureset,
            "serving_version": serving.pointer.version if serving else None,
            "model_name": serving.pointer.model_name if serving else None,
            "last_poll": self.last_poll.isoformat() if self.last_poll else None,
            "poll_seconds": self.poll_s,
            "swaps": self.swaps,
            "last_error": self.last_error,
            "process": os.getpid(),  # which replica answered, behind `serve --workers` or a proxy
        }
        if self.prediction_log is not None:
            out["prediction_log"] = {
                "pending": self.prediction_log.pending,
                "written": self.prediction_log.written,
                "dropped": self.prediction_log.dropped,
            }
        return out


def _probe(spec: dict[str, Any]) -> dict[str, list[Any]]:
    """A one-row input that passes the contract, used to warm up a freshly loaded model."""
    row: dict[str, list[Any]] = {}
    for f in spec["features"]:
        if f["type"] == "categorical":
            cats = f.get("categories") or ["x"]
            row[f["name"]] = [cats[0]]
        else:
            lo, hi = f.get("min"), f.get("max")
            value = lo if lo is not None else (hi if hi is not None else 0.0)
            row[f["name"]] = [float(value)]
    for name in spec.get("times") or ():
        row[str(name)] = [0.0]  # 1970-01-01T00:00:00Z
    return row


def _definition_columns(settings: Settings, featureset: str) -> tuple[str, ...]:
    """The current definition's columns and source names; none when it cannot be read (the
    model's own contract still applies)."""
    from mlpipeline.featuresets.definition import load_definition

    try:
        d = load_definition(featureset, settings.featuresets_dir)
    except MlpipelineError:
        return ()
    return (*d.raw_columns, *d.sources)


@contextmanager
def open_predictor(
    settings: Settings,
    featureset: str,
    *,
    log_predictions: bool | None = None,
    background_log: bool = True,
) -> Iterator[Predictor]:
    """A predictor over the configured store, cache and tracking server, closed afterwards.

    MLflow is only contacted when the cache lacks the champion. Predictions go to the
    prediction log unless ``log_predictions`` (default: the ``prediction_log`` setting) is off.
    """
    from mlpipeline.featurestore.sql import open_store

    def tracker() -> Tracker:
        from mlpipeline.registry.tracking import Tracker  # imports MLflow: only when a download is needed

        return Tracker(settings)

    store = open_store(settings)
    plog = None
    if settings.prediction_log if log_predictions is None else log_predictions:
        plog = PredictionLog(store, featureset, background=background_log)
    predictor = Predictor(
        featureset,
        SqlPointerStore(store),
        ModelCache(settings.home / "models", tracker),
        poll_s=settings.serve_poll_s,
        prediction_log=plog,
        known_columns=_definition_columns(settings, featureset),
    )
    try:
        yield predictor
    finally:
        predictor.close()
        store.dispose()
