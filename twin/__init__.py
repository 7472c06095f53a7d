"""The simulated system: topology, workload, faults, engine and telemetry (DESIGN.md)."""

from twin.jit_cache import key_numba_cache

key_numba_cache()
