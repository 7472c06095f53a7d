"""Scenario distributions for the gymnasium environments: one short scenario per episode.

An episode is a scenario like any other (a topology, a workload, faults, an SLO), drawn
from a generator, so what a policy learns on is exactly what `firebreak run` simulates.
Topologies are the shipped ones (`scenarios/topologies/`), loaded once per process; the
base load at each entry is the one each topology file documents in its header.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np

from twin.errors import FirebreakError
from twin.scenario.infrastructure import Infrastructure
from twin.scenario.loader import check_scenario, load_topology
from twin.scenario.schema import (
    FAULT_KINDS,
    INFRA_FAULT_KINDS,
    NODE_FAULT_KINDS,
    BadDeployFault,
    BadResponseFault,
    CalendarEvent,
    CpuHogFault,
    CrashFault,
    DependencyOutageFault,
    DiskPressureFault,
    ErrorFault,
    FlashCrowd,
    LatencyFault,
    MemoryLeakFault,
    MemoryPressureFault,
    MisconfigurationFault,
    NetworkPartitionFault,
    NicLossFault,
    NodeDownFault,
    NoisyNeighbourFault,
    PacketLossFault,
    RequestClass,
    RetryStormFault,
    Scenario,
    Slo,
    Telemetry,
    Workload,
    ZoneOutageFault,
)
from twin.scenario.topology import Topology

TOPOLOGY_DIR = Path(__file__).resolve().parents[2] / "scenarios" / "topologies"

# entry -> base requests/s, as each topology file's header documents it
BASE_LOAD: dict[str, tuple[tuple[str, float], ...]] = {
    "online-boutique": (("frontend", 100.0),),
    "sock-shop": (("front-end", 60.0), ("queue-master", 3.0)),
    "social-network": (("nginx-thrift", 200.0), ("media-frontend", 20.0)),
    "hotel-reservation": (("frontend", 200.0),),
    "train-ticket": (("ts-ui-dashboard", 50.0),),
}
TOPOLOGIES = tuple(BASE_LOAD)
# the faults a remediation episode draws from; retry_storm is left out by default because a
# storm needs a separate trigger to start (see scenarios/retry-storm.yaml)
# the env's observation is metrics: a fault that shows only in logs (bad_response) would be
# noise to a policy, so it is drawn only when asked for
REMEDIATION_FAULTS = tuple(k for k in FAULT_KINDS if k not in ("retry_storm", "bad_response"))
# episodes with a node or zone fault run on this cluster (as the impact study's): 3 zones of
# 2 nodes, so a zone's pods fit in the other two once it is drained
EPISODE_INFRA = Infrastructure(zones=3, nodes_per_zone=2, node_cpu=4.0, node_memory_mb=16384.0)
QUIET_TELEMETRY = Telemetry(plot=False, traces=False, logs=False)


class EnvConfigError(FirebreakError):
    """An environment setting is invalid: the message names the setting and its value."""


@cache
def topology(name: str) -> Topology:
    """A shipped topology by name, loaded once per process (topologies are frozen)."""
    if name not in BASE_LOAD:
        raise EnvConfigError(f"topology: unknown {name!r} (topologies: {', '.join(TOPOLOGIES)})")
    return load_topology(TOPOLOGY_DIR / f"{name}.yaml")


@cache
def without_hpa(name: str) -> Topology:
    """The topology with its HPAs removed: an autoscaling agent takes their place."""
    topo = topology(name)
    services = {k: s.model_copy(update={"hpa": None}) for k, s in topo.services.items()}
    return topo.model_copy(update={"services": services})


@cache
def _edges(name: str) -> tuple[tuple[str, str], ...]:
    return tuple((c.source, c.target) for c in topology(name).calls)


def check_topologies(names: tuple[str, ...], setting: str = "topologies") -> None:
    if not names:
        raise EnvConfigError(f"{setting}: needs at least one topology")
    for name in names:
        if name not in BASE_LOAD:
            raise EnvConfigError(
                f"{setting}: unknown topology {name!r} (topologies: {', '.join(TOPOLOGIES)})"
            )


def _uniform(rng: np.random.Generator, bounds: tuple[float, float]) -> float:
    low, high = bounds
    return float(low if high <= low else rng.uniform(low, high))


def _draw_infra_fault(rng: np.random.Generator, kind: str, infra: Infrastructure, common: dict):
    """A node fault on a random node, or a zone outage on a random zone."""
    if kind not in NODE_FAULT_KINDS:
        zones = infra.zone_names()
        return ZoneOutageFault(
            kind="zone_outage", **{**common, "target": zones[int(rng.integers(len(zones)))]}
        )
    nodes = [n.name for n in infra.node_list()]
    common = {**common, "target": nodes[int(rng.integers(len(nodes)))]}
    if kind == "node_down":
        return NodeDownFault(kind="node_down", **common)
    if kind == "noisy_neighbour":
        return NoisyNeighbourFault(
            kind="noisy_neighbour", steal=_uniform(rng, (0.5, 0.8)), **common
        )
    if kind == "disk_pressure":
        return DiskPressureFault(kind="disk_pressure", io_ms=_uniform(rng, (60.0, 250.0)), **common)
    if kind == "memory_pressure":
        interval = _uniform(rng, (45.0, 120.0))
        return MemoryPressureFault(kind="memory_pressure", oom_interval_s=interval, **common)
    return NicLossFault(kind="nic_loss", loss=_uniform(rng, (0.1, 0.3)), **common)


def draw_fault(
    rng: np.random.Generator,
    kind: str,
    topo_name: str,
    start: float,
    duration: float | None,
    infra: Infrastructure | None = None,
):
    """One fault of `kind` on a random target, sized so it usually breaks the SLO (a node or
    zone fault on `infra`'s nodes and zones)."""
    topo = topology(topo_name)
    names = list(topo.services)
    target = names[int(rng.integers(len(names)))]
    common = {"target": target, "start": start, "duration": duration}
    if kind in INFRA_FAULT_KINDS:
        if infra is None:
            raise EnvConfigError(f"fault_kinds: {kind!r} needs infrastructure (nodes and zones)")
        return _draw_infra_fault(rng, kind, infra, common)
    if kind == "crash":
        return CrashFault(kind="crash", share=float(rng.choice([0.67, 1.0])), **common)
    if kind == "latency":
        return LatencyFault(kind="latency", factor=_uniform(rng, (4.0, 12.0)), **common)
    if kind == "errors":
        return ErrorFault(kind="errors", rate=_uniform(rng, (0.05, 0.3)), **common)
    if kind == "cpu_hog":
        cores = topo.services[target].cpu_limit * _uniform(rng, (0.6, 1.0))
        return CpuHogFault(kind="cpu_hog", cores=cores, **common)
    if kind == "memory_leak":
        svc = topo.services[target]
        room = max(svc.memory_limit_mb - svc.memory_base_mb, 1.0)
        per_min = room / _uniform(rng, (1.5, 4.0))  # OOM kills within a few minutes
        return MemoryLeakFault(kind="memory_leak", mb_per_min=per_min, **common)
    if kind == "bad_deploy":
        return BadDeployFault(
            kind="bad_deploy",
            latency_factor=_uniform(rng, (2.0, 6.0)),
            error_rate=_uniform(rng, (0.02, 0.2)),
            **common,
        )
    if kind == "dependency_outage":
        stores = [n for n, s in topo.services.items() if s.kind == "store"]
        pool = stores or names
        common["target"] = pool[int(rng.integers(len(pool)))]
        return DependencyOutageFault(kind="dependency_outage", **common)
    if kind in ("network_partition", "packet_loss"):
        edges = _edges(topo_name)
        src, dst = edges[int(rng.integers(len(edges)))]
        common["target"] = src
        if kind == "network_partition":
            return NetworkPartitionFault(kind="network_partition", peer=dst, **common)
        return PacketLossFault(
            kind="packet_loss", peer=dst, loss=_uniform(rng, (0.1, 0.4)), **common
        )
    if kind == "misconfiguration":
        callers = {s for s, _ in _edges(topo_name)}
        if target in callers and rng.random() < 0.5:
            return MisconfigurationFault(
                kind="misconfiguration", timeout_ms=_uniform(rng, (5.0, 30.0)), **common
            )
        return MisconfigurationFault(kind="misconfiguration", workers=1, **common)
    if kind == "retry_storm":
        return RetryStormFault(kind="retry_storm", retries=int(rng.integers(3, 9)), **common)
    if kind == "bad_response":
        exception = bool(rng.random() < 0.5)
        share = _uniform(rng, (0.2, 1.0))
        return BadResponseFault(kind="bad_response", share=share, exception=exception, **common)
    raise EnvConfigError(f"fault_kinds: unknown fault kind {kind!r} (kinds: {FAULT_KINDS})")


def _classes(topo_name: str, load: float) -> list[RequestClass]:
    return [
        RequestClass(name=f"{entry}-requests", entry=entry, rate=round(rate * load, 3))
        for entry, rate in BASE_LOAD[topo_name]
    ]


def _episode_slo(dist: RemediationDistribution | AutoscaleDistribution) -> Slo:
    """The one SLO an episode is judged by, from its distribution's settings."""
    return Slo(
        availability=dist.slo_availability,
        latency_ms=dist.slo_latency_ms,
        percentile=dist.slo_percentile,
    )


@dataclass(frozen=True)
class RemediationDistribution:
    """Episodes of one fault on one topology under steady load.

    The fault starts after `warmup_s` (the alert baselines need a fault-free stretch) and
    lasts `fault_duration_s` (None: until the episode ends, so only a remedy ends it).
    """

    topologies: tuple[str, ...] = ("online-boutique",)
    fault_kinds: tuple[str, ...] = REMEDIATION_FAULTS
    episode_s: float = 1200.0
    tick_s: float = 2.0
    fault_start_s: tuple[float, float] = (120.0, 240.0)
    fault_duration_s: float | None = None
    load: tuple[float, float] = (0.7, 1.2)
    noise: float = 0.05
    slo_availability: float = 0.999
    slo_latency_ms: float = 500.0
    slo_percentile: float = 99.0
    infrastructure: bool = True

    def __post_init__(self) -> None:
        check_topologies(self.topologies)
        for kind in self.fault_kinds:
            if kind not in FAULT_KINDS:
                raise EnvConfigError(
                    f"fault_kinds: unknown fault kind {kind!r} (kinds: {', '.join(FAULT_KINDS)})"
                )
        if not self.fault_kinds:
            raise EnvConfigError("fault_kinds: needs at least one fault kind")
        infra_kinds = [k for k in self.fault_kinds if k in INFRA_FAULT_KINDS]
        if infra_kinds and not self.infrastructure:
            raise EnvConfigError(
                f"fault_kinds: {infra_kinds[0]!r} needs infrastructure (set infrastructure=True)"
            )
        lo, hi = self.fault_start_s
        if not 0 <= lo <= hi < self.episode_s:
            raise EnvConfigError(
                f"fault_start_s: must be 0 <= low <= high < episode_s, got {self.fault_start_s}"
            )
        if self.load[0] <= 0 or self.load[1] < self.load[0]:
            raise EnvConfigError(f"load: must be 0 < low <= high, got {self.load}")

    def draw(self, rng: np.random.Generator) -> Scenario:
        """One episode's scenario; everything random comes from `rng`."""
        name = self.topologies[int(rng.integers(len(self.topologies)))]
        kind = self.fault_kinds[int(rng.integers(len(self.fault_kinds)))]
        start = float(round(_uniform(rng, self.fault_start_s) / self.tick_s) * self.tick_s)
        duration = self.fault_duration_s
        if duration is not None:
            duration = min(duration, self.episode_s - start)
        infra = EPISODE_INFRA if self.infrastructure else None
        fault = draw_fault(rng, kind, name, start, duration, infra)
        load = _uniform(rng, self.load)
        scenario = Scenario(
            name=f"rl-{name}-{kind}",
            topology=topology(name),
            duration=self.episode_s,
            tick=self.tick_s,
            seed=int(rng.integers(2**31 - 1)),
            workload=Workload(classes=_classes(name, load), noise=self.noise),
            faults=[fault],
            slos=[_episode_slo(self)],
            telemetry=QUIET_TELEMETRY,
            infrastructure=infra,
        )
        check_scenario(scenario, "<remediation episode>")
        return scenario


@dataclass(frozen=True)
class AutoscaleDistribution:
    """Episodes of a daily load cycle with, at random, a calendar sale and a surge.

    The topology's HPAs are removed: the agent decides capacity. The episode starts at a
    random hour so that rises, peaks and falls of the day all appear in training.
    """

    topologies: tuple[str, ...] = ("online-boutique",)
    episode_s: float = 6 * 3600.0
    tick_s: float = 10.0
    load: tuple[float, float] = (0.8, 1.3)
    daily_amplitude: tuple[float, float] = (0.3, 0.6)
    sale_probability: float = 0.5
    sale_lift: tuple[float, float] = (1.5, 2.5)
    surge_probability: float = 0.5
    surge_multiplier: tuple[float, float] = (1.5, 3.0)
    noise: float = 0.05
    slo_availability: float = 0.999
    slo_latency_ms: float = 500.0
    slo_percentile: float = 99.0

    def __post_init__(self) -> None:
        check_topologies(self.topologies)
        if self.load[0] <= 0 or self.load[1] < self.load[0]:
            raise EnvConfigError(f"load: must be 0 < low <= high, got {self.load}")

    def draw(self, rng: np.random.Generator) -> Scenario:
        name = self.topologies[int(rng.integers(len(self.topologies)))]
        span = self.episode_s
        calendar, crowds = [], []
        if rng.random() < self.sale_probability:
            length = _uniform(rng, (0.1 * span, 0.3 * span))
            calendar.append(
                CalendarEvent(
                    name="sale",
                    kind="campaign",
                    start=_uniform(rng, (0.1 * span, max(0.1 * span, span - length))),
                    duration=length,
                    lift=_uniform(rng, self.sale_lift),
                )
            )
        if rng.random() < self.surge_probability:
            length = _uniform(rng, (600.0, 1800.0))
            crowds.append(
                FlashCrowd(
                    start=_uniform(rng, (0.1 * span, max(0.1 * span, span - length))),
                    duration=length,
                    multiplier=_uniform(rng, self.surge_multiplier),
                    ramp_s=120.0,
                )
            )
        workload = Workload(
            classes=_classes(name, _uniform(rng, self.load)),
            daily_amplitude=_uniform(rng, self.daily_amplitude),
            peak_hour=20.0,
            start_hour=float(math.floor(_uniform(rng, (0.0, 23.99)))),
            noise=self.noise,
            flash_crowds=crowds,
            calendar=calendar,
        )
        scenario = Scenario(
            name=f"rl-autoscale-{name}",
            topology=without_hpa(name),
            duration=span,
            tick=self.tick_s,
            seed=int(rng.integers(2**31 - 1)),
            workload=workload,
            slos=[_episode_slo(self)],
            telemetry=QUIET_TELEMETRY,
        )
        check_scenario(scenario, "<autoscale episode>")
        return scenario
