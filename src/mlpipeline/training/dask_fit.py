"""``train --engine dask``: the fit step on a Dask cluster with LightGBM's own Dask estimators.

Everything around the fit is the local pipeline's: the same validation, split, feature spec,
holdout evaluation and gate; the result is a plain ``lightgbm.Booster`` (the Dask model's
``to_local()``), so it is logged, hashed, verified, explained and served exactly like a local
one. The cluster is ``MLPIPELINE_DASK_SCHEDULER`` (``tcp://host:8786``) or, when that is
unset, a ``LocalCluster`` of two single-threaded worker processes started for the training
and closed after it.

The training matrix is shuffled (seeded) and split into row blocks that the workers hold;
LightGBM's distributed training (``tree_learner = data``) builds each tree from the workers'
histograms. A binary
model's decision threshold, when the definition sets none, is found as in a local training
(on a validation part, fitted in this process).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import numpy as np

from mlpipeline.errors import EngineError
from mlpipeline.featuresets.definition import Definition
from mlpipeline.training.steps import FittedModel, f1_threshold, training_matrix

__all__ = ["dask_client", "fit_on_dask"]

log = logging.getLogger(__name__)

#: Workers of the LocalCluster started when no scheduler is given.
LOCAL_WORKERS = 2


@contextmanager
def dask_client(scheduler: str) -> Iterator[Any]:
    """A client of the given scheduler, or of a LocalCluster started (and closed) here."""
    try:
        from distributed import Client, LocalCluster
    except ImportError as exc:
        raise EngineError(f"--engine dask needs dask and distributed installed: {exc}") from exc
    try:
        if scheduler:
            client = Client(scheduler, timeout="30s")
            cluster = None
        else:
            cluster = LocalCluster(
                n_workers=LOCAL_WORKERS, threads_per_worker=1, processes=True, dashboard_address=None
            )
            client = Client(cluster)
    except (OSError, TimeoutError) as exc:
        where = scheduler or "a LocalCluster"
        raise EngineError(f"Dask did not start on {where}: {exc}") from exc
    try:
        yield client
    finally:
        client.close()
        if cluster is not None:
            cluster.close()


def fit_on_dask(d: Definition, train: Any, params: Mapping[str, Any] | None, client: Any) -> FittedModel:
    """The definition's LightGBM model fitted on the cluster of ``client``."""
    import dask.array as da
    import lightgbm as lgb

    if d.model.estimator != "lightgbm":
        raise EngineError(
            f"--engine dask trains LightGBM models; '{d.name}' uses {d.model.estimator}: "
            "train it with --engine local"
        )
    params = dict(d.model.params if params is None else params)
    spec, x, y, categorical = training_matrix(d, train)
    if d.target.task == "binary":
        spec["threshold"] = d.model.threshold or f1_threshold(d, spec, x, y, categorical, params)
    # Rows in a seeded random order before they are cut into blocks: a block of time-ordered
    # rows could miss a class, and each worker would then learn other labels than the rest.
    order = np.random.default_rng(d.model.seed).permutation(len(y))
    x, y = x[order], y[order]
    workers = max(1, len(client.scheduler_info().get("workers", {})))
    rows = max(1, math.ceil(len(y) / workers))
    features = da.from_array(x, chunks=(rows, x.shape[1]))
    labels = da.from_array(y, chunks=(rows,))
    weights = None
    if d.model.class_weight == "balanced":
        from sklearn.utils.class_weight import compute_sample_weight

        weights = da.from_array(compute_sample_weight("balanced", y), chunks=(rows,))
    options: dict[str, Any] = {
        "verbosity": -1,
        "random_state": d.model.seed,
        "deterministic": True,
        "n_jobs": 1,
    }
    options.update(params)
    task = d.target.task
    model: Any
    if task == "regression":
        model = lgb.DaskLGBMRegressor(client=client, objective="regression", **options)
    else:
        model = lgb.DaskLGBMClassifier(client=client, **options)
    try:
        model.fit(
            features,
            labels,
            sample_weight=weights,
            feature_name=list(spec["order"]),
            categorical_feature=categorical,
        )
    except (OSError, RuntimeError, TimeoutError) as exc:  # a worker lost, a port refused
        raise EngineError(f"the Dask training failed: {str(exc).splitlines()[0][:300]}") from exc
    booster = model.to_local().booster_
    log.info("trained on Dask", extra={"workers": workers, "rows": len(y)})
    return FittedModel(d.model.estimator, spec, booster, categorical)
