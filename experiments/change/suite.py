"""The chaos suite a change is validated on, and one run of it scored against the SLOs.

A suite is steady state, a flash crowd, and each fault kind on each critical service, all
on the base's workload and SLOs, in flow fidelity, short: a warm-up that is not scored, a
"before" probe, the trigger (a fault or a crowd), a recovery grace and an "after" probe.
The steady-state hypothesis (as in Chaos Toolkit) is the SLOs: it held when every SLO window
of the before probe and of the after probe was good. A trigger the system has not recovered
from once the grace is over, when it was fine before, is a metastable failure.

Critical services: the entry services and every service a request reaches through
synchronous, required calls with a probability of at least `MIN_REACH` (its failure fails
that share of requests); a change's own services join them, since its blast radius starts
there.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from twin.fields import M
from twin.flow.engine import Simulation
from twin.run.slo import SloTracker
from twin.scenario.loader import check_scenario
from twin.scenario.schema import FAULT_KINDS, Scenario
from twin.scenario.topology import Topology
from twin.telemetry.frame import Chunk

SUITES = ("smoke", "standard", "full")
SMOKE_KINDS = ("crash", "latency", "errors")
MIN_REACH = 0.5
STEADY = "steady-state"
FLASH = "flash-crowd"


@dataclass(frozen=True)
class SuiteTiming:
    """When things happen in every suite run (seconds); only [warmup_s, end) is scored."""

    warmup_s: float = 600.0
    before_s: float = 300.0  # the "before" probe, between warm-up and trigger
    trigger_s: float = 300.0  # how long a fault or a crowd lasts
    grace_s: float = 600.0  # recovery allowed after the trigger ends
    after_s: float = 600.0  # the "after" probe at the end of the run
    flash_multiplier: float = 2.5
    flash_ramp_s: float = 60.0

    @property
    def trigger_at(self) -> float:
        return self.warmup_s + self.before_s

    @property
    def trigger_end(self) -> float:
        return self.trigger_at + self.trigger_s

    @property
    def duration(self) -> float:
        return self.trigger_end + self.grace_s + self.after_s


@dataclass(frozen=True)
class SuiteCase:
    """One scenario of the suite: a name, what triggers it, and on which service."""

    name: str
    kind: str  # "steady", "flash_crowd" or a fault kind
    target: str | None = None
    fault: Mapping[str, Any] | None = None
    crowd: Mapping[str, Any] | None = None


def _reach(topo: Topology, entry: str) -> dict[str, float]:
    """Probability a request entering at `entry` reaches each service via sync required calls
    (the best path; calls per request beyond one count as certain)."""
    out_edges: dict[str, list] = {}
    for call in topo.calls:
        if call.sync and call.required:
            out_edges.setdefault(call.source, []).append(call)
    best = {entry: 1.0}
    frontier = [entry]
    while frontier:
        node = frontier.pop()
        for call in out_edges.get(node, []):
            p = best[node] * min(1.0, call.per_request * call.probability)
            if p > best.get(call.target, 0.0) + 1e-12:
                best[call.target] = p
                frontier.append(call.target)
    return best


def critical_services(
    topo: Topology, entries: Iterable[str], also: Iterable[str] = (), min_reach: float = MIN_REACH
) -> list[str]:
    """Entries, their sync required dependencies reached by >= min_reach of requests, and
    `also` (a change's services), in topology order."""
    chosen: set[str] = set()
    for entry in entries:
        chosen |= {s for s, p in _reach(topo, entry).items() if p >= min_reach}
    chosen |= {s for s in also if s in topo.services}
    return [s for s in topo.services if s in chosen]


def _peer(topo: Topology, target: str, critical: Sequence[str]) -> str | None:
    """The other end of a link to cut: a critical synchronous caller, else a sync callee."""
    callers = [c.source for c in topo.calls if c.target == target and c.sync]
    callees = [c.target for c in topo.calls if c.source == target and c.sync]
    for pool in ([c for c in callers if c in critical], callers, callees):
        if pool:
            return pool[0]
    return None


def fault_for(
    kind: str, target: str, topo: Topology, timing: SuiteTiming, critical: Sequence[str]
) -> dict | None:
    """A fault of `kind` on `target` at chaos-experiment strength (None: not applicable).

    Strengths are what one bad event does, not a total loss: half the pods crash-looping,
    5x latency, 5% errors, a neighbour eating half the CPU limit, a leak that OOM-kills
    within about two minutes, a 3x/2% bad deploy, a quarter of the worker pool left by a
    bad config, 20% packet loss, callers retrying five times without back-off.
    """
    svc = topo.services[target]
    fault: dict[str, Any] = {
        "kind": kind,
        "name": f"{kind}@{target}",
        "target": target,
        "start": timing.trigger_at,
        "duration": timing.trigger_s,
    }
    if kind == "crash":
        fault["share"] = 0.5
    elif kind == "latency":
        fault["factor"] = 5.0
    elif kind == "errors":
        fault["rate"] = 0.05
    elif kind == "cpu_hog":
        fault["cores"] = 0.5 * svc.cpu_limit
    elif kind == "memory_leak":
        fault["mb_per_min"] = max(svc.memory_limit_mb - svc.memory_base_mb, 1.0) / 2.0
    elif kind == "bad_deploy":
        fault.update(latency_factor=3.0, error_rate=0.02)
    elif kind in ("network_partition", "packet_loss"):
        peer = _peer(topo, target, critical)
        if peer is None:
            return None
        fault["peer"] = peer
        if kind == "packet_loss":
            fault["loss"] = 0.2
    elif kind == "misconfiguration":
        fault["workers"] = max(1, svc.workers // 4)
    elif kind == "retry_storm":
        if not any(c.target == target for c in topo.calls):
            return None
        fault.update(retries=5, backoff_ms=0.0)
    return fault


def build_suite(
    suite: str,
    topo: Topology,
    entries: Iterable[str],
    also: Iterable[str] = (),
    timing: SuiteTiming | None = None,
) -> list[SuiteCase]:
    """The suite's cases: steady state, a flash crowd, then faults on the chosen services."""
    if suite not in SUITES:
        raise ValueError(f"unknown suite {suite!r}; choose from {', '.join(SUITES)}")
    timing = timing or SuiteTiming()
    critical = critical_services(topo, entries, also)
    targets = list(topo.services) if suite == "full" else critical
    kinds = SMOKE_KINDS if suite == "smoke" else FAULT_KINDS
    crowd = {
        "start": timing.trigger_at,
        "duration": timing.trigger_s,
        "multiplier": timing.flash_multiplier,
        "ramp_s": timing.flash_ramp_s,
    }
    cases = [SuiteCase(STEADY, "steady"), SuiteCase(FLASH, "flash_crowd", crowd=crowd)]
    links: set[tuple[str, frozenset]] = set()  # a link is cut once, from whichever end
    for target in targets:
        for kind in kinds:
            fault = fault_for(kind, target, topo, timing, critical)
            if fault is None:
                continue
            if "peer" in fault:
                link = (kind, frozenset((target, fault["peer"])))
                if link in links:
                    continue
                links.add(link)
            cases.append(SuiteCase(f"{kind}@{target}", kind, target, fault=fault))
    return cases


def case_scenario(
    base: Scenario,
    topology: Topology,
    case: SuiteCase,
    seed: int,
    timing: SuiteTiming,
    extra_faults: Sequence[Mapping[str, Any]] = (),
) -> Scenario:
    """The base's workload (its own crowds, calendar and faults left out) and SLOs, on
    `topology`, with the case's trigger: identical traffic for base and change per seed.

    A fault on a service (or link) `topology` lacks is left out: a base without a new
    dependency is what a change adding one is compared with when that dependency fails."""
    raw = base.model_dump(by_alias=True)
    workload = dict(raw["workload"])
    workload["flash_crowds"] = [dict(case.crowd)] if case.crowd else []
    workload["calendar"] = []
    faults = [dict(f) for f in extra_faults]
    if case.fault and _applies(case.fault, topology):
        faults.append(dict(case.fault))
    raw.update(
        name=f"{base.name}:{case.name}",
        topology=topology.model_dump(by_alias=True),
        duration=timing.duration,
        seed=seed,
        workload=workload,
        faults=faults,
        telemetry={"plot": False, "traces": False, "logs": False},
    )
    scenario = Scenario.model_validate(raw)
    check_scenario(scenario, scenario.name)
    return scenario


def _applies(fault: Mapping[str, Any], topology: Topology) -> bool:
    ends = [fault["target"], *([fault["peer"]] if "peer" in fault else [])]
    if not all(e in topology.services for e in ends):
        return False
    if "peer" in fault:
        edges = {(c.source, c.target) for c in topology.calls}
        a, b = ends
        return (a, b) in edges or (b, a) in edges
    return True


class _Probe:
    """A sink keeping what scoring needs per tick: the entry's p99 and error ratio, ready
    replicas in all, and (optionally) every service's p99."""

    def __init__(self, entry: int, per_service: bool) -> None:
        self.entry = entry
        self.per_service = per_service
        self.times: list[np.ndarray] = []
        self.p99: list[np.ndarray] = []
        self.err: list[np.ndarray] = []
        self.ready: list[np.ndarray] = []
        self.svc_p99: list[np.ndarray] = []

    def on_chunk(self, chunk: Chunk) -> None:
        v = chunk.values
        self.times.append(chunk.times)
        self.p99.append(v[:, self.entry, M["latency_p99_ms"]].copy())
        self.err.append(v[:, self.entry, M["error_ratio"]].copy())
        self.ready.append(v[:, :, M["ready_replicas"]].sum(axis=1))
        if self.per_service:
            self.svc_p99.append(v[:, :, M["latency_p99_ms"]].copy())

    def close(self) -> None:
        pass


def _windows_good(slo: SloTracker, k: int) -> tuple[np.ndarray, np.ndarray, dict]:
    """Per window of SLO k: its start time, whether it held, and the raw counts."""
    objective = slo.slos[k]
    done = int(min(len(slo.total[k]), math.ceil(slo.last_time / objective.window_s - 1e-9)))
    total, failed = slo.total[k][:done], slo.failed[k][:done]
    served, slow = slo.served[k][:done], slo.slow[k][:done]
    avail = np.where(total > 0, 1.0 - failed / np.where(total > 0, total, 1.0), 1.0)
    fast = np.where(served > 0, 1.0 - slow / np.where(served > 0, served, 1.0), 1.0)
    good = (avail >= objective.availability) & (fast >= objective.percentile / 100.0)
    starts = np.arange(done) * objective.window_s
    counts = {"total": total, "failed": failed, "served": served, "slow": slow}
    return starts, good, counts


def score_slos(slo: SloTracker, start: float, end: float, probes: Sequence[tuple]) -> dict:
    """Adherence and error-budget burn over [start, end), and whether each probe interval
    [a, b) had only good windows. Burn 1.0 spends exactly the budget of [start, end)."""
    adherence, burns = [], []
    held = dict.fromkeys(name for name, _, _ in probes)
    for name in held:
        held[name] = True
    for k, objective in enumerate(slo.slos):
        starts, good, c = _windows_good(slo, k)
        ends = starts + objective.window_s
        scored = (starts >= start) & (ends <= end + 1e-9)
        if scored.any():
            adherence.append(float(good[scored].mean()))
        allowed_bad = (1.0 - objective.availability) * c["total"][scored].sum()
        allowed_slow = (1.0 - objective.percentile / 100.0) * c["served"][scored].sum()
        burn_a = c["failed"][scored].sum() / allowed_bad if allowed_bad > 0 else 0.0
        burn_l = c["slow"][scored].sum() / allowed_slow if allowed_slow > 0 else 0.0
        burns.append(max(burn_a, burn_l))
        for name, a, b in probes:
            inside = (starts >= a - 1e-9) & (ends <= b + 1e-9)
            if inside.any() and not good[inside].all():
                held[name] = False
    return {
        "adherence": float(np.mean(adherence)) if adherence else 1.0,
        "burn": float(max(burns)) if burns else 0.0,
        "held": held,
    }


def run_case(
    scenario: Scenario,
    timing: SuiteTiming,
    case: str,
    system: str,
    steady: bool,
    service_p99: bool = False,
) -> dict:
    """One suite run, scored: the job function sweeps call (module level, picklable).

    `steady`: no trigger, so the hypothesis must hold over the whole scored period.
    """
    sim = Simulation(scenario)
    names = sim.topo.names
    entry = names.index(scenario.workload.classes[0].entry)
    slo = SloTracker(scenario, names)
    probe = _Probe(entry, service_p99)
    sim.sinks.extend([slo, probe])
    sim.run()
    start, end = timing.warmup_s, timing.duration
    if steady:
        probes = [("before", start, end), ("after", start, end)]
    else:
        probes = [("before", start, timing.trigger_at), ("after", end - timing.after_s, end)]
    s = score_slos(slo, start, end, probes)
    times = np.concatenate(probe.times)
    p99 = np.concatenate(probe.p99)
    err = np.concatenate(probe.err)
    ready = np.concatenate(probe.ready)
    scored = times >= start
    answered = scored & (p99 > 0)
    dt = float(scenario.tick)
    minute = (times // 60.0).astype(np.int64)
    n_min = int(minute.max()) + 1 if len(minute) else 0
    count = np.bincount(minute, minlength=n_min)
    row = {
        "case": case,
        "system": system,
        "seed": scenario.seed,
        "held_before": s["held"]["before"],
        "held_after": s["held"]["after"],
        "held": s["held"]["before"] and s["held"]["after"],
        "metastable": (not steady) and s["held"]["before"] and not s["held"]["after"],
        "adherence": s["adherence"],
        "burn": s["burn"],
        "p99_ms": float(p99[answered].mean()) if answered.any() else float("nan"),
        "error_ratio": float(err[scored].mean()) if scored.any() else 0.0,
        "replica_hours": float(ready[scored].sum() * dt / 3600.0) + sim.standby_replica_hours(),
        "p99_by_minute": (np.bincount(minute, p99, n_min) / np.maximum(count, 1)).tolist(),
        "err_by_minute": (np.bincount(minute, err, n_min) / np.maximum(count, 1)).tolist(),
    }
    if service_p99:
        svc = np.concatenate(probe.svc_p99)[scored]
        row["service_p99_ms"] = {n: float(svc[:, i].mean()) for i, n in enumerate(names)}
    return row


@dataclass(frozen=True)
class ValidationConfig:
    """How to validate: which suite, how many paired seeds, where the runs go."""

    suite: str = "standard"
    seeds: int = 5
    timing: SuiteTiming = field(default_factory=SuiteTiming)
    backend: str = "process"
    jobs_n: int | None = None
    progress: bool = True
    search: str | None = "auto"  # a service, "auto" (a callee whose calls changed) or None
    search_seeds: int = 2
