"""Production-like telemetry: the twin's exact per-tick telemetry observed the way a
Prometheus + cAdvisor + kube-state-metrics stack records a real system (scrapes, pods,
histograms, PromQL, benign confounders). `open_writer` picks the run directory's writer
for the scenario's `telemetry.mode`."""

from twin.telemetry.observe.writer import open_writer

__all__ = ["open_writer"]
