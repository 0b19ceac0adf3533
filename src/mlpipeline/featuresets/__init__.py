"""Feature sets: one declarative definition per use case, and the feature matrix it implies.

A definition (a TOML file; ``demo.toml`` and ``housing.toml`` ship here) names the table, entity
key, event time, target and features; training, monitoring and serving all read it, so there is
no train/serve skew. Entry points:

- :func:`mlpipeline.featuresets.definition.load_definition`: a validated
  :class:`~mlpipeline.featuresets.definition.Definition` from a name or a path;
- :func:`mlpipeline.featuresets.features.feature_spec` and ``feature_matrix``: the portable JSON
  spec shipped with every model and the float matrix it builds;
- :mod:`mlpipeline.featuresets.portable`: the self-contained feature code copied into each model;
- :func:`mlpipeline.featuresets.expressions.compile_expression`: derived features;
- :mod:`mlpipeline.featuresets.reference`: the training-time histograms stored with each model.

Everything here is pure: no MLflow, database driver or IRIS.
"""
