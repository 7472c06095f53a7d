"""Root-cause analysis: incident (a wide telemetry table and an anomaly time) in, ranked
services with scores and evidence out."""
