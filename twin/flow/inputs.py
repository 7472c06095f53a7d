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
    elif topo.names != tuple(scenario.topology.services):
        raise ValueError("topo was compiled from another topology than the scenario's")
    workload = scenario.workload
    rates = rate_curves(workload, n_ticks, dt)
    intensity, arrivals = sample_intensity_and_arrivals(
        rates, workload.noise, dt, stream(scenario.seed, "workload")
    )
    entry = np.zeros((len(workload.classes), topo.n_services))
    for i, cls in enumerate(workload.classes):
        entry[i, topo.service_index(cls.entry)] = 1.0
    for array in (topo.base_services, topo.base_edges, rates, arrivals, entry, intensity):
        array.setflags(write=False)
    return RunInputs(scenario, topo, rates, arrivals, entry, intensity)
