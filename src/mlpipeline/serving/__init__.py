"""Serving: the production model answers requests and hot-swaps when the pointer moves.

Entry points:

- :func:`mlpipeline.serving.predictor.open_predictor`: the in-process
  :class:`~mlpipeline.serving.predictor.Predictor` used by the CLI, the HTTP API and the IRIS
  classes; it validates input against the model's contract (:mod:`mlpipeline.serving.scoring`),
  predicts on the raw booster (:mod:`mlpipeline.serving.fast_booster` for single rows) and logs
  predictions (:mod:`mlpipeline.serving.prediction_log`);
- :func:`mlpipeline.serving.api.create_app`: the HTTP API (FastAPI);
- :mod:`mlpipeline.serving.batch_io`: request files and bodies in, predictions out.

Serving never imports training: a server needs only the registry and the feature store.
"""
