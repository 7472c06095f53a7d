"""What a flow run derives from its scenario alone: the compiled topology and the drawn
workload. Read-only, so the forks of one run share it instead of recomputing it."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from twin.flow.compiled import CompiledTopology, compile_topology
from twin.rng import stream
from twin.scenario.schema import Scenario
from twin.scenario.workload import rate_curves, sample_intensity_and_arrivals


@dataclass(frozen=True)
class RunInputs:
    """What a run derives from its scenario alone (topology arrays, traffic): read-only, so
    forks of one run share it instead of recomputing it."""

    scenario: Scenario
    topo: CompiledTopology
    class_rates: np.ndarray  # n_ticks × classes, expected external rate
    class_arrivals: np.ndarray  # n_ticks × classes, sampled arrivals per tick
    class_entry: np.ndarray  # classes × services, 1 where a class enters
    class_intensity: np.ndarray  # n_ticks × classes, the Poisson mean behind each count


def prepare_inputs(scenario: Scenario, topo: CompiledTopology | None = None) -> RunInputs:
    """Compile the topology (unless `topo`, compiled from this scenario's topology, tick and
    entry services, is given: it is read-only, so runs may share it) and draw the workload
    (from the seed's `workload` stream)."""
    dt = float(scenario.tick)
    n_ticks = int(math.ceil(scenario.duration / dt - 1e-9))
    if topo is None:
        topo = compile_topology(scenario)
    else:
        _check_compiled_for(topo, scenario)
    workload = scenario.workload
    rates = rate_curves(workload, n_ticks, dt)
    intensity, arrivals = sample_intensity_and_arrivals(
        rates, workload.noise, dt, stream(scenario.seed, "workload")
    )
    entry = np.zeros((len(workload.classes), topo.n_services))
    for i, cls in enumerate(workload.classes):
        entry[i, topo.service_index(cls.entry)] = 1.0
    for array in (*topo.arrays(), rates, arrivals, entry, intensity):
        array.setflags(write=False)
    return RunInputs(scenario, topo, rates, arrivals, entry, intensity)


def _check_compiled_for(topo: CompiledTopology, scenario: Scenario) -> None:
    """ValueError unless `topo` was compiled from this scenario's services, calls, tick and
    entry services (what compile_topology reads; the parameters behind the same names are
    the caller's to keep the same: the env compiles each frozen topology object once)."""
    calls = tuple((c.source, c.target) for c in scenario.topology.calls)
    entries = tuple(c.entry for c in scenario.workload.classes)
    for what, have, want in (
        ("services", topo.names, tuple(scenario.topology.services)),
        ("calls", topo.edges, calls),
        ("tick", topo.tick, float(scenario.tick)),
        ("entry services", topo.entries, entries),
    ):
        if have != want:
            raise ValueError(f"topo was compiled for other {what} than the scenario's")
