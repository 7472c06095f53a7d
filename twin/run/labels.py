"""Causal ground truth: which services each fault affected, and from when.

For every fault, the scenario is replayed with the same seed but without that fault (all
other faults kept), and each service's signals are compared tick by tick. Both runs draw
identical workload, so every difference is caused by the fault ("but-for" causation), not
guessed from thresholds on one run.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from twin.control.faults import fault_label
from twin.control.mechanisms import oracle
from twin.flow.engine import Simulation
from twin.scenario.schema import INFRA_FAULT_KINDS, ZONE_FAULT_KINDS, Scenario
from twin.telemetry.recorders import SIGNALS, SignalRecorder

LATENCY_REL, LATENCY_ABS_MS = 0.25, 10.0
ERROR_ABS = 0.02
LOAD_REL, LOAD_ABS = 0.25, 1.0
PERSIST_TICKS = 3

THRESHOLDS = {
    "latency_p99": f"> {LATENCY_REL:.0%} and > {LATENCY_ABS_MS:g} ms apart",
    "error_ratio": f"> {ERROR_ABS:g} apart",
    "arrival_rate": f"> {LOAD_REL:.0%} and > {LOAD_ABS:g} rps apart",
    "ready_replicas": "differ",
    "persistence_ticks": PERSIST_TICKS,
}


def record_signals(scenario: Scenario, exclude: tuple[int, ...] = ()) -> np.ndarray:
    """Run the scenario (minus some faults) and keep only the compared signals."""
    sim = Simulation(scenario, exclude_faults=exclude)
    recorder = SignalRecorder(sim.n_ticks, sim.topo.n_services)
    sim.sinks.append(recorder)
    sim.run()
    return recorder.data


def deviation(faulted: np.ndarray, baseline: np.ndarray) -> np.ndarray:
    """Per tick × service × signal: does the faulted run differ meaningfully?"""
    f64, b64 = faulted.astype(np.float64), baseline.astype(np.float64)
    diff = np.abs(f64 - b64)
    out = np.zeros(faulted.shape, dtype=bool)
    out[..., 0] = (diff[..., 0] > LATENCY_REL * b64[..., 0]) & (diff[..., 0] > LATENCY_ABS_MS)
    out[..., 1] = diff[..., 1] > ERROR_ABS
    out[..., 2] = (diff[..., 2] > LOAD_REL * b64[..., 2]) & (diff[..., 2] > LOAD_ABS)
    out[..., 3] = diff[..., 3] > 0.5
    return out


def _persistent(flags: np.ndarray, run: int) -> np.ndarray:
    """Ticks that start a run of at least `run` consecutive True values (per column)."""
    if run <= 1 or len(flags) < run:
        return flags
    counts = np.cumsum(np.vstack([np.zeros((1, flags.shape[1]), int), flags.astype(int)]), 0)
    window = counts[run:] - counts[:-run]
    starts = np.zeros_like(flags)
    starts[: len(window)] = window == run
    return starts


def affected_services(
    faulted: np.ndarray, baseline: np.ndarray, names: tuple[str, ...], start: float, dt: float
) -> list[dict]:
    """Services whose signals left the fault-free replay at or after the fault's start."""
    first = int(math.floor(start / dt + 1e-9))
    dev = deviation(faulted[first:], baseline[first:])
    any_dev = dev.any(axis=2)
    starts = _persistent(any_dev, PERSIST_TICKS)
    out = []
    for s, name in enumerate(names):
        hits = np.flatnonzero(starts[:, s])
        if not len(hits):
            continue
        onset = hits[0]
        last = np.flatnonzero(any_dev[:, s])[-1]
        signals = [SIGNALS[k] for k in range(len(SIGNALS)) if dev[onset : last + 1, s, k].any()]
        out.append(
            {
                "service": name,
                "onset": round((first + onset) * dt, 6),
                "until": round((first + last + 1) * dt, 6),
                "signals": signals,
            }
        )
    out.sort(key=lambda a: (a["onset"], a["service"]))
    return out


def fault_roots(scenario: Scenario, fault: object) -> tuple[list[str], str | None]:
    """Names whose identification counts as finding the fault (its target, a link's other
    end, a node's zone, a zone's nodes), and a node fault's zone."""
    target, kind = fault.target, fault.kind  # type: ignore[attr-defined]
    peer = getattr(fault, "peer", None)
    if kind not in INFRA_FAULT_KINDS:
        return [target] + ([peer] if peer else []), None
    nodes = scenario.infrastructure.node_list()  # type: ignore[union-attr]
    if kind in ZONE_FAULT_KINDS:
        return [target] + [n.name for n in nodes if n.zone == target], None
    zone = next(n.zone for n in nodes if n.name == target)
    return [target, zone], zone


def mitigation_oracle(scenario: Scenario, fault: object) -> dict:
    """labels.json's `remedies` of one fault: what ends it, what only mitigates it."""
    _, zone = fault_roots(scenario, fault)
    return oracle(
        fault.kind,  # type: ignore[attr-defined]
        fault.target,  # type: ignore[attr-defined]
        getattr(fault, "peer", None),
        zone,
    )


def ground_truth(
    scenario: Scenario,
    faulted: np.ndarray,
    names: tuple[str, ...],
    end_time: float,
    progress: Callable[[int, int], None] | None = None,
) -> dict:
    """labels.json content: every fault, its interval and parameters, what it affected, and
    the mitigation oracle (`remedies`: the actions that end it and those that only mitigate
    it, from twin.control.mechanisms). `end` is the scheduled end (the run's end for a
    fault with none): the labels describe the faults, not what an operator did about them.
    """
    faults = []
    total = len(scenario.faults)
    for i, fault in enumerate(scenario.faults):
        baseline = record_signals(scenario, exclude=(i,))[: len(faulted)]
        params = fault.model_dump(
            exclude={"kind", "target", "start", "duration", "name"}, by_alias=True
        )
        end = fault.start + fault.duration if fault.duration is not None else scenario.duration
        faults.append(
            {
                "id": fault_label(i, fault),
                "kind": fault.kind,
                "target": fault.target,
                "start": fault.start,
                "end": min(end, end_time),
                "open_ended": fault.duration is None,
                "until_remedied": fault.duration is None,
                "roots": fault_roots(scenario, fault)[0],
                "remedies": mitigation_oracle(scenario, fault),
                "params": params,
                "affected": affected_services(faulted, baseline, names, fault.start, scenario.tick)
                if fault.start < end_time
                else [],
            }
        )
        if progress is not None:
            progress(i + 1, total)
    return {
        "scenario": scenario.name,
        "seed": scenario.seed,
        "method": "but-for replay: same seed without the fault, signals compared per tick",
        "thresholds": THRESHOLDS,
        "faults": faults,
    }
