"""Monitoring: measure the champion on newly labelled rows, watch drift, decide to retrain.

Entry points:

- :func:`mlpipeline.monitoring.check.run_check`: one check (metrics, drift, trigger decision,
  retrain when a trigger fires);
- :func:`mlpipeline.monitoring.triggers.decide_retrain`: the pure trigger policy;
- :func:`mlpipeline.monitoring.drift.drift_report`: PSI against the model's reference histograms;
- :func:`mlpipeline.monitoring.watch.watch_loop`: ``check`` on a schedule;
- :func:`mlpipeline.monitoring.reports.draw_timeline`: the monitoring picture.
"""
