"""Reproducible benchmarks: each case prints ours, its anchor and the ratio in one run."""
