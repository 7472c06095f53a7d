"""The simulated system: topology, workload, faults, engine and telemetry (DESIGN.md)."""
