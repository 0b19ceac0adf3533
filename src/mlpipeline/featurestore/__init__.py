"""Feature store: where rows land, are validated and are read back for training and monitoring.

One SQL code path (SQLAlchemy 2) serves SQLite, PostgreSQL and IRIS. Entry points:

- :func:`mlpipeline.featurestore.sql.open_store`: the store named by the settings;
  :class:`~mlpipeline.featurestore.sql.SqlFeatureStore` implements the
  :class:`~mlpipeline.featurestore.base.FeatureStore` protocol (tables, transactional batches,
  training window, rows labelled since a watermark);
- :func:`mlpipeline.featurestore.ingest.ingest_file`: validate a file and write it as one batch;
- :mod:`mlpipeline.featurestore.validation`: pure checks of a batch against its definition;
- :mod:`mlpipeline.featurestore.lease` and :mod:`mlpipeline.featurestore.checks`: the retrain
  lease and the records of monitoring checks and trainings;
- :mod:`mlpipeline.featurestore.synthetic`: the demo's synthetic delivery stream.

Importing this package imports nothing; each module is imported where it is used.
"""
