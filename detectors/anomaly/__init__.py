"""Anomaly detection: static thresholds, tier 1 and tier 2 detectors, logs, traces, the pipeline."""
