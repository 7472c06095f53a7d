"""The RCA suite's fault cases: seeded, short flow-fidelity runs with one fault each.

A case is plain data (topology, fault kind, target, timing, parameters, run seed), drawn
deterministically from a suite seed, so the same seed gives the same cases on any machine
and generation needs no simulation. Topologies and fault kinds are dealt round-robin so
every pairing appears; the target is drawn among the services that carry traffic at the
topology's documented base load (expected call rates propagated from the entry services
through the declared call graph), never an entry service itself: a fault on the entry
is visible to any method and says little about ranking.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from functools import cache
from typing import Any

import numpy as np

from experiments.detection.suite import BASE_LOAD, load_topology_dict
from twin.scenario.schema import Scenario
from twin.scenario.topology import Topology

TOPOLOGIES = tuple(BASE_LOAD)
KINDS = (
    "latency",
    "errors",
    "cpu_hog",
    "memory_leak",
    "bad_deploy",
    "dependency_outage",
    "crash",
    "packet_loss",
    "network_partition",
)
RUN_S = 2880.0  # 48 minutes: 30 of history, the fault (ends by 46 min), 2 min after
FAULT_AT_S = 1800.0
START_JITTER_S = 120.0
DURATION_S = (600.0, 840.0)
MIN_RATE = 1.0  # requests/s a target must carry at base load
_LINK_KINDS = ("packet_loss", "network_partition")


@dataclass(frozen=True)
class CaseSpec:
    """One fault case; `root` (the fault's target) is for scoring only."""

    case: str
    topology: str
    kind: str
    target: str
    start: float
    duration: float
    seed: int
    run_s: float = RUN_S
    params: dict[str, Any] = field(default_factory=dict)

    @property
    def root(self) -> str:
        return self.target

    @property
    def roots(self) -> tuple[str, ...]:
        """Services a correct answer may name. A link fault (packet loss, partition) breaks
        the path between two services and either end is its place at service level."""
        if self.kind in _LINK_KINDS and "peer" in self.params:
            return (self.target, str(self.params["peer"]))
        return (self.target,)

    @property
    def end(self) -> float:
        return self.start + self.duration

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@cache
def expected_rates(topology: str) -> dict[str, float]:
    """Requests/s each service receives at base load, from the declared call graph.

    Fixed-point iteration r = external + Wᵀ r handles cycles (Train Ticket, social network);
    a cycle that amplifies is capped after a fixed number of rounds."""
    spec = load_topology_dict(topology)
    names = list(spec["services"])
    index = {n: i for i, n in enumerate(names)}
    W = np.zeros((len(names), len(names)))
    for call in spec.get("calls", []):
        weight = float(call.get("per_request", 1.0)) * float(call.get("probability", 1.0))
        W[index[call["from"]], index[call["to"]]] += weight
    external = np.zeros(len(names))
    for entry, rate in BASE_LOAD[topology].items():
        external[index[entry]] = rate
    rates = external.copy()
    for _ in range(200):
        rates = external + W.T @ rates
    return {n: float(rates[i]) for n, i in index.items()}


@cache
def callers(topology: str) -> dict[str, tuple[str, ...]]:
    """Each service's callers in the declared graph."""
    out: dict[str, list[str]] = {}
    for call in load_topology_dict(topology).get("calls", []):
        out.setdefault(call["to"], []).append(call["from"])
    return {k: tuple(dict.fromkeys(v)) for k, v in out.items()}


def candidate_targets(topology: str, kind: str) -> list[str]:
    """Services with traffic that a fault of `kind` can sit on (not an entry)."""
    rates = expected_rates(topology)
    entries = set(BASE_LOAD[topology])
    out = [s for s, r in rates.items() if r >= MIN_RATE and s not in entries]
    if kind in _LINK_KINDS:
        callers_of = callers(topology)
        out = [s for s in out if any(rates[c] >= MIN_RATE for c in callers_of.get(s, ()))]
    return out


@cache
def _topology(name: str) -> Topology:
    return Topology.model_validate(load_topology_dict(name))


def _params(kind: str, topology: str, target: str, rng: np.random.Generator) -> dict[str, Any]:
    """Fault parameters strong enough to hurt the target (its own limits set the scale)."""
    svc = _topology(topology).services[target]
    if kind == "latency":
        return {"factor": round(float(rng.uniform(4.0, 10.0)), 2)}
    if kind == "errors":
        return {"rate": round(float(rng.uniform(0.2, 0.6)), 3)}
    if kind == "cpu_hog":
        limit = svc.cpu_limit
        return {"cores": round(limit * float(rng.uniform(0.85, 0.97)), 4)}
    if kind == "memory_leak":
        room = svc.memory_limit_mb - svc.memory_base_mb
        return {"mb_per_min": round(max(room, 10.0) / float(rng.uniform(3.0, 6.0)), 2)}
    if kind == "bad_deploy":
        return {
            "latency_factor": round(float(rng.uniform(2.0, 5.0)), 2),
            "error_rate": round(float(rng.uniform(0.02, 0.15)), 3),
            "cpu_factor": round(float(rng.uniform(1.0, 2.0)), 2),
        }
    if kind == "crash":
        return {"share": float(rng.choice([0.5, 1.0]))}
    if kind in _LINK_KINDS:
        rates = expected_rates(topology)
        peers = [c for c in callers(topology).get(target, ()) if rates[c] >= MIN_RATE]
        params: dict[str, Any] = {"peer": str(rng.choice(peers))}
        if kind == "packet_loss":
            params["loss"] = round(float(rng.uniform(0.2, 0.5)), 3)
        return params
    return {}


def generate_cases(
    n: int, seed: int = 0, topologies: Sequence[str] = TOPOLOGIES, kinds: Sequence[str] = KINDS
) -> list[CaseSpec]:
    """`n` cases, topologies and kinds dealt round-robin, the rest drawn from `seed`."""
    unknown = [t for t in topologies if t not in BASE_LOAD]
    if unknown:
        raise ValueError(f"unknown topology {unknown}; known: {', '.join(BASE_LOAD)}")
    bad = [k for k in kinds if k not in KINDS]
    if bad:
        raise ValueError(f"unknown fault kind {bad}; known: {', '.join(KINDS)}")
    cases = []
    for i in range(n):
        rng = np.random.default_rng(np.random.SeedSequence([seed, i]))
        topology = topologies[i % len(topologies)]
        kind = kinds[(i // len(topologies)) % len(kinds)]
        targets = candidate_targets(topology, kind)
        target = str(rng.choice(targets))
        start = FAULT_AT_S + float(rng.integers(0, int(START_JITTER_S) + 1))
        duration = float(rng.integers(int(DURATION_S[0]), int(DURATION_S[1]) + 1))
        cases.append(
            CaseSpec(
                case=f"{i:04d}-{topology}-{kind}",
                topology=topology,
                kind=kind,
                target=target,
                start=start,
                duration=duration,
                seed=int(rng.integers(0, 2**31 - 1)),
                params=_params(kind, topology, target, rng),
            )
        )
    return cases


def scenario_for(spec: CaseSpec) -> Scenario:
    """The case's scenario: base load with noise, one fault, the default SLO."""
    classes = [
        {"name": f"{entry}-requests", "entry": entry, "rate": rate}
        for entry, rate in BASE_LOAD[spec.topology].items()
    ]
    fault = {
        "kind": spec.kind,
        "target": spec.target,
        "start": spec.start,
        "duration": spec.duration,
        **spec.params,
    }
    return Scenario.model_validate(
        {
            "name": spec.case,
            "topology": load_topology_dict(spec.topology),
            "duration": spec.run_s,
            "seed": spec.seed,
            "workload": {"classes": classes, "noise": 0.05},
            "faults": [fault],
        }
    )
