"""Training: extract → validate → train → evaluate → gate → log → register → promote or hold.

Entry point: :func:`mlpipeline.training.pipeline.train`, which strings together the pure steps of
:mod:`mlpipeline.training.steps` (data checks, time-aware holdout, fit, metrics) and the gate of
:mod:`mlpipeline.training.gate` (challenger against champion on the same holdout), and logs the
run and the model with :mod:`mlpipeline.registry`. :mod:`mlpipeline.training.artifacts` writes
the model folder and its SHAP explainer; :mod:`mlpipeline.training.mlflow_model_code` is the
model-from-code file shipped inside every model.
"""
