"""The IRIS side of mlpipeline, in Python: the only package that imports ``iris``.

- :mod:`mlpipeline.iris.bridge`: the functions the ObjectScript classes in
  ``iris/src/MLpipeline/`` call (plain strings in, one JSON reply out);
- :mod:`mlpipeline.iris.pointer_store`: the production pointer in the global
  ``^MLpipeline("Production", featureset, …)``;
- :mod:`mlpipeline.iris.globals`: that global through ``iris.gref`` inside IRIS or the
  Native API outside, and IRIS locks;
- :mod:`mlpipeline.iris.console_log`: log events to messages.log with severity 0/1/2;
- :mod:`mlpipeline.iris.projection`: the ``MLpipeline.FeatureStore`` copy of ``housing``.

Importing this package imports nothing from IRIS; ``iris`` is imported inside functions.
"""
