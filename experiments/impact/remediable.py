"""The impact study's remediable suite: one family per fault kind that a remedy can end.

In the classic suite (experiments.impact.suite) every fault runs its scheduled length, so
restore time follows the fault more than the operators. Here each fault lasts until a
remedy ends it (`duration: until-remedied`, twin.control.mechanisms says which action ends
which kind and how surely), so MTTR measures who picks the right remedy and how fast: the
simulated engineer has every remedy the AI has (agents.oncall), and the right one is judged
from the mitigation oracle in labels.json, which neither stack reads.

Families: the five pod-state kinds (crash, latency, errors, cpu_hog, dependency_outage),
the two version kinds a rollback ends (bad_deploy, misconfiguration), a retry storm (a
client retry policy that multiplies a burst of errors; a retry cap ends it), the five node
kinds (node_down, noisy_neighbour, disk_pressure, memory_pressure, nic_loss) and a zone
outage; two controls no action ends (a memory leak, a network partition: only mitigation
helps) are reported apart. Every run has infrastructure (3 zones x 2 nodes), so node
metrics and node faults exist in every family.

Each seed draws the topology among the five (so every kind meets several systems), the
target (a service carrying at least a quarter of the entry traffic, a store for an outage,
any node, any zone), the magnitude from ranges scaled by the target's own limits, and the
start (40-55 min into a 2 h run: the RCA's normal history before, an hour to recover after).
None of this was tuned to a verdict: ranges were fixed before the study was run.
"""

from __future__ import annotations

import copy
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from experiments.detection.suite import BASE_LOAD
from experiments.impact.suite import (
    HOUR,
    MIN,
    _generated,
    _pick,
    _service,
    _topology,
    busiest_callee,
    busy_targets,
)
from twin.scenario.loader import check_scenario
from twin.scenario.schema import Scenario

TOPOLOGIES = tuple(BASE_LOAD)
INFRA = {"zones": 3, "nodes_per_zone": 2, "node_cpu": 4.0, "node_memory_mb": 16384.0}
NODES = [f"node-{z}{k}" for z in "abc" for k in (1, 2)]
ZONES = ["zone-a", "zone-b", "zone-c"]
RUN_S = 2 * HOUR


@dataclass(frozen=True)
class RemediableFamily:
    """One fault kind under until-remedied faults; `remediable` False marks a control."""

    name: str
    kind: str
    remediable: bool
    covers: str
    make: Callable[[np.random.Generator, str], list[dict[str, Any]]]
    topology: str = "drawn per seed"
    source: str = "generated"


def _start(rng: np.random.Generator) -> float:
    return 40 * MIN + float(rng.integers(0, 15 * MIN))


def _fault(kind: str, target: str, rng: np.random.Generator, **params: Any) -> dict:
    return {"kind": kind, "target": target, "start": _start(rng), **params}


def _stores(topology: str) -> list[str]:
    """The busy stores (any store, else any busy service: Train Ticket folds each store
    into the service that owns it)."""
    services = _topology(topology)["services"]
    busy = set(busy_targets(topology))
    stores = sorted(n for n, s in services.items() if s.get("kind") == "store")
    return sorted(set(stores) & busy) or stores or sorted(busy)


def _service_fault(kind: str, **ranges: tuple[float, float]):
    def make(rng: np.random.Generator, topo: str) -> list[dict]:
        target = _pick(rng, busy_targets(topo))
        params = {k: round(float(rng.uniform(*r)), 3) for k, r in ranges.items()}
        if kind == "cpu_hog":
            limit = float(_service(topo, target).get("cpu_limit", 0.2))
            params["cores"] = round(limit * float(rng.uniform(0.85, 0.97)), 4)
        if kind == "crash":
            params["share"] = float(rng.choice([0.5, 1.0]))
        return [_fault(kind, target, rng, **params)]

    return make


def _outage(rng: np.random.Generator, topo: str) -> list[dict]:
    return [_fault("dependency_outage", _pick(rng, _stores(topo)), rng)]


def _bad_deploy(rng: np.random.Generator, topo: str) -> list[dict]:
    target = _pick(rng, busy_targets(topo))
    return [
        _fault(
            "bad_deploy",
            target,
            rng,
            latency_factor=round(float(rng.uniform(2.0, 5.0)), 2),
            error_rate=round(float(rng.uniform(0.02, 0.15)), 3),
            cpu_factor=round(float(rng.uniform(1.0, 2.0)), 2),
        )
    ]


def _misconfig(rng: np.random.Generator, topo: str) -> list[dict]:
    target = _pick(rng, busy_targets(topo, with_callees=True) or busy_targets(topo))
    callee = busiest_callee(topo, target)
    typical = float(_service(topo, callee[0])["service_time"]["mean_ms"]) if callee else 20.0
    return [
        _fault(
            "misconfiguration",
            target,
            rng,
            timeout_ms=round(typical * float(rng.uniform(0.5, 1.0)), 3),
        )
    ]


def _retry_storm(rng: np.random.Generator, topo: str) -> list[dict]:
    """A client release retries a busy service 5x without back-off (until capped), while a
    10-minute error burst there gives the retries something to multiply."""
    target = _pick(rng, busy_targets(topo))
    storm = _fault("retry_storm", target, rng, retries=5)
    burst = {
        "kind": "errors",
        "target": target,
        "start": storm["start"] + 2 * MIN,
        "duration": 10 * MIN,
        "rate": round(float(rng.uniform(0.2, 0.5)), 3),
    }
    return [storm, burst]


def _node_fault(kind: str, **ranges: tuple[float, float]):
    def make(rng: np.random.Generator, topo: str) -> list[dict]:
        params = {k: round(float(rng.uniform(*r)), 3) for k, r in ranges.items()}
        return [_fault(kind, _pick(rng, NODES), rng, **params)]

    return make


def _zone(rng: np.random.Generator, topo: str) -> list[dict]:
    return [_fault("zone_outage", _pick(rng, ZONES), rng)]


def _partition(rng: np.random.Generator, topo: str) -> list[dict]:
    """A network partition between a busy service and its busiest callee, 20 min long."""
    pairs = [(s, c[0]) for s in busy_targets(topo) if (c := busiest_callee(topo, s))]
    source, callee = pairs[int(rng.integers(len(pairs)))]
    fault = _fault("network_partition", callee, rng, peer=source)
    fault["duration"] = 20 * MIN
    return [fault]


def _leak(rng: np.random.Generator, topo: str) -> list[dict]:
    target = _pick(rng, busy_targets(topo))
    svc = _service(topo, target)
    room = float(svc.get("memory_limit_mb", 256.0)) - float(svc.get("memory_base_mb", 50.0))
    rate = round(max(room, 10.0) / float(rng.uniform(10.0, 20.0)), 2)
    return [_fault("memory_leak", target, rng, mb_per_min=rate)]


FAMILIES: dict[str, RemediableFamily] = {
    f.name: f
    for f in (
        RemediableFamily(
            "crash", "crash", True, "pods crash-loop on pod state", _service_fault("crash")
        ),
        RemediableFamily(
            "latency",
            "latency",
            True,
            "a leaked pool slows a busy service",
            _service_fault("latency", factor=(4.0, 10.0)),
        ),
        RemediableFamily(
            "errors",
            "errors",
            True,
            "a stale credential fails a share of requests",
            _service_fault("errors", rate=(0.2, 0.5)),
        ),
        RemediableFamily(
            "cpu-hog", "cpu_hog", True, "a runaway thread burns CPU", _service_fault("cpu_hog")
        ),
        RemediableFamily(
            "dependency-outage",
            "dependency_outage",
            True,
            "a wedged store refuses connections",
            _outage,
        ),
        RemediableFamily(
            "bad-deploy", "bad_deploy", True, "a regressed release, until rolled back", _bad_deploy
        ),
        RemediableFamily(
            "misconfiguration",
            "misconfiguration",
            True,
            "a timeout pushed below the callee's typical latency",
            _misconfig,
        ),
        RemediableFamily(
            "retry-storm",
            "retry_storm",
            True,
            "5 retries without back-off multiply an error burst",
            _retry_storm,
        ),
        RemediableFamily("node-down", "node_down", True, "a node stops", _node_fault("node_down")),
        RemediableFamily(
            "noisy-neighbour",
            "noisy_neighbour",
            True,
            "another tenant's pod takes a node's CPU",
            _node_fault("noisy_neighbour", steal=(0.5, 0.8)),
        ),
        RemediableFamily(
            "disk-pressure",
            "disk_pressure",
            True,
            "a node's disk fills; writes block",
            _node_fault("disk_pressure", io_ms=(60.0, 250.0)),
        ),
        RemediableFamily(
            "memory-pressure",
            "memory_pressure",
            True,
            "a daemon eats a node's memory; containers OOM",
            _node_fault("memory_pressure", oom_interval_s=(45.0, 120.0)),
        ),
        RemediableFamily(
            "nic-loss",
            "nic_loss",
            True,
            "a node's NIC drops packets",
            _node_fault("nic_loss", loss=(0.1, 0.3)),
        ),
        RemediableFamily("zone-outage", "zone_outage", True, "a zone goes dark", _zone),
        RemediableFamily(
            "memory-leak",
            "memory_leak",
            False,
            "control: a leak no action ends (restarts buy time)",
            _leak,
        ),
        RemediableFamily(
            "network-partition",
            "network_partition",
            False,
            "control: a 20-minute partition no action ends (failover routes around it)",
            _partition,
        ),
    )
}
REMEDIABLE = tuple(n for n, f in FAMILIES.items() if f.remediable)
CONTROLS = tuple(n for n, f in FAMILIES.items() if not f.remediable)


def family_seed(family: str, seed: int) -> np.random.SeedSequence:
    return np.random.SeedSequence([zlib.crc32(f"remediable:{family}".encode()), seed])


def build(family: str, seed: int, time_scale: float = 1.0) -> Scenario:
    """The family's scenario for seed index `seed` (topology, target and magnitude drawn)."""
    if family not in FAMILIES:
        raise KeyError(family)
    spec = FAMILIES[family]
    rng = np.random.default_rng(family_seed(family, seed))
    run_seed = int(rng.integers(0, 2**31 - 1))
    topo = TOPOLOGIES[int(rng.integers(len(TOPOLOGIES)))]
    faults = spec.make(rng, topo)
    raw = _generated(topo, family, RUN_S, faults)
    raw["topology"] = copy.deepcopy(_topology(topo))
    raw["infrastructure"] = dict(INFRA)
    if time_scale != 1.0:
        raw["duration"] = float(raw["duration"]) * time_scale
        for fault in raw["faults"]:
            fault["start"] = float(fault["start"]) * time_scale
            if fault.get("duration") is not None:
                fault["duration"] = float(fault["duration"]) * time_scale
    raw["seed"] = run_seed
    raw["telemetry"] = {"plot": False, "traces": False, "logs": False}
    scenario = Scenario.model_validate(raw)
    check_scenario(scenario, f"remediable suite {family} (seed {seed})")
    return scenario
