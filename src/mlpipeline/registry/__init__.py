"""Registry: MLflow tracking and model versions, the production pointer and the verified cache.

Entry points:

- :class:`mlpipeline.registry.tracking.Tracker`: the explicit MLflow client (runs, versions,
  aliases, tags) built from settings;
- :class:`mlpipeline.registry.pointer.SqlPointerStore`: which version serves, with its audit
  history (the IRIS global variant lives in :mod:`mlpipeline.iris.pointer_store`);
- :class:`mlpipeline.registry.promotion.Promoter`: promote, roll back, approve, reject;
- :class:`mlpipeline.registry.model_cache.ModelCache`: model files downloaded once and loaded
  only when their digest (:mod:`mlpipeline.registry.digests`) matches the registry's record.
"""
