"""Calibrating a scenario from a real system's telemetry, and checking it on held-out periods."""
