"""Observations from telemetry: per-service features, alert and RCA-style scores, two layouts.

Everything here is computed from what a monitoring stack scrapes (the services × metrics
rows the twin streams), from the topology's declared settings (limits, replicas, the call
graph) and from what the agent itself did. Never from the fault schedule. The same
`ObservationEncoder` serves the environments and the policy runner that drives a live
simulation, so a trained policy sees the same numbers in both.

Layouts:
- ``services``: one row per service in topology order (the policy is tied to a topology).
- ``ranked``: the `top_k` services with the highest RCA score, then the maximum and mean
  of every feature over all services. Fixed size whatever the topology, so a policy
  trained on one topology runs on another; actions then target ranks, not names.

Scores are injectable (`Scorer`); the built-in `RobustZScorer` is a streaming z-score per
service and symptom family with a robust (mean-absolute-deviation) scale whose baseline
only learns from values that do not look anomalous, and an RCA score that discounts a
service whose callees are anomalous too (its symptoms are likely theirs).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from twin.envs import fast
from twin.fields import M
from twin.scenario.schema import Scenario

FAMILIES = ("latency", "errors", "saturation", "memory", "availability", "traffic")
SERVICE_FEATURES = (
    "traffic",
    "error_ratio",
    "latency",
    "cpu",
    "workers",
    "memory",
    "queue",
    "ready",
    "replicas",
    "failover",
    "shed",
    "recent_action",
    *(f"alert_{f}" for f in FAMILIES),
    "rca",
)
GLOBAL_FEATURES = (
    "health",
    "progress",
    "since_action",
    "escalated",
    "shedding",
    "actions",
    "incident",
    "node_worst",  # badness of the node that looks worst (twin.envs.nodes), 0 without nodes
    "zone_worst",  # of the zone whose healthiest node looks worst
)
SF = {name: i for i, name in enumerate(SERVICE_FEATURES)}
GF = {name: i for i, name in enumerate(GLOBAL_FEATURES)}
N_SF = len(SERVICE_FEATURES)
N_GF = len(GLOBAL_FEATURES)
# lower bound of each service feature (the upper is 1); the log ratios are signed
_SF_LOW = np.zeros(N_SF, np.float32)
_SF_LOW[[SF["traffic"], SF["latency"], SF["replicas"]]] = -1.0
_SF_LOW64 = _SF_LOW.astype(np.float64)
ALERT_SLICE = slice(SF["alert_latency"], SF["alert_traffic"] + 1)
ACTION_MEMORY_S = 120.0  # `recent_action` decays over this many seconds
LAYOUTS = ("services", "ranked")

_I_ARR, _I_ERR, _I_P99 = M["arrival_rate"], M["error_ratio"], M["latency_p99_ms"]
_I_CPU, _I_WORK, _I_MEM = M["cpu_cores"], M["worker_utilization"], M["memory_mb"]
_I_Q, _I_READY, _I_DES = M["queue"], M["ready_replicas"], M["desired_replicas"]
_I_P50, _I_P95 = M["latency_p50_ms"], M["latency_p95_ms"]


@dataclass(frozen=True)
class ServiceStatics:
    """What the topology declares, per service, in topology order."""

    names: tuple[str, ...]
    cpu_limit: np.ndarray
    memory_limit: np.ndarray
    queue_limit: np.ndarray
    replicas: np.ndarray
    children: np.ndarray  # services × services, 1 where row calls column
    entries: tuple[int, ...]
    entry_slo_ms: np.ndarray  # per entry: the latency objective

    @classmethod
    def of(cls, scenario: Scenario) -> ServiceStatics:
        services = scenario.topology.services
        names = tuple(services)
        index = {n: i for i, n in enumerate(names)}
        children = np.zeros((len(names), len(names)))
        for call in scenario.topology.calls:
            children[index[call.source], index[call.target]] = 1.0
        entries = tuple(sorted({index[c.entry] for c in scenario.workload.classes}))
        slo_ms = min((s.latency_ms for s in scenario.slos), default=1000.0)
        return cls(
            names=names,
            cpu_limit=np.array([s.cpu_limit for s in services.values()]),
            memory_limit=np.array([s.memory_limit_mb for s in services.values()]),
            queue_limit=np.array([max(s.queue_limit, 1) for s in services.values()], float),
            replicas=np.array([max(s.replicas, 1) for s in services.values()], float),
            children=children,
            entries=entries,
            entry_slo_ms=np.full(len(entries), slo_ms),
        )

    @property
    def n(self) -> int:
        return len(self.names)


class Scorer(Protocol):
    """Alert and RCA scores from per-service symptom signals, one update per decision."""

    def reset(self, statics: ServiceStatics) -> None: ...

    def update(self, signals: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """`signals` is services × FAMILIES (higher is worse; traffic two-sided).
        Returns (alerts services × FAMILIES in [0, 1], rca per service in [0, 1])."""
        ...


# scale floors per family, so a signal flat during the baseline does not alert on noise
_FLOORS = np.array([0.1, 0.01, 0.05, 0.03, 0.05, 0.05])
_TWO_SIDED = np.array([False, False, False, False, False, True])
# RCA: a change in a service's traffic is mostly its callers' doing (a caller crashing or
# timing out sends less, a retrying one more), so traffic counts half as evidence that the
# service is the cause, and a callee's traffic change never explains its caller's symptoms
_CAUSE_WEIGHTS = np.array([1.0, 1.0, 1.0, 1.0, 1.0, 0.5])
_EXPLAIN_WEIGHTS = np.array([1.0, 1.0, 1.0, 1.0, 1.0, 0.0])


class RobustZScorer:
    """Streaming z-scores with anomaly-gated baseline updates; RCA by callee discounting.

    The first `warmup` updates only learn the baseline (mean and mean absolute deviation);
    afterwards a value updates the baseline (rate `alpha`) only while |z| < `gate`, so a
    long incident does not become the new normal. An alert score is z clipped to [0, 10]
    and divided by 10 (|z| for traffic, which can fail both ways).
    """

    def __init__(self, warmup: int = 6, alpha: float = 0.05, gate: float = 3.0) -> None:
        self.warmup = warmup
        self.alpha = alpha
        self.gate = gate

    def reset(self, statics: ServiceStatics) -> None:
        n = statics.n
        self._children = statics.children
        self._mean = np.zeros((n, len(FAMILIES)))
        self._dev = np.zeros((n, len(FAMILIES)))
        self._alerts = np.zeros((n, len(FAMILIES)))
        self._rca = np.zeros(n)
        self._count = 0

    def update(self, signals: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        self._count += 1
        if self._count <= self.warmup:
            k = 1.0 / self._count
            delta = signals - self._mean
            self._mean += k * delta
            self._dev += k * (np.abs(signals - self._mean) - self._dev)
            self._alerts[:] = 0.0
            self._rca[:] = 0.0
            return self._alerts, self._rca
        alerts = self._alerts
        rca = self._rca
        fast.zscore_update(
            signals,
            self._mean,
            self._dev,
            _FLOORS,
            _TWO_SIDED,
            self.alpha,
            self.gate,
            self._children,
            _CAUSE_WEIGHTS,
            _EXPLAIN_WEIGHTS,
            alerts,
            rca,
        )
        return alerts, rca


def share_within(latency_ms: float, p50: float, p95: float, p99: float) -> float:
    """Share of requests faster than `latency_ms`, interpolated in log latency between the
    reported quantiles (past p99 the last 1% is spread up to ten times p99)."""
    if not (math.isfinite(p50) and math.isfinite(p95) and math.isfinite(p99)):
        return 1.0
    if latency_ms >= 10.0 * max(p99, 1e-9):
        return 1.0
    if latency_ms >= p99:
        return 0.99 + 0.01 * math.log(latency_ms / max(p99, 1e-9)) / math.log(10.0)
    x = math.log(max(latency_ms, 1e-6))
    prev_k, prev_q = math.log(1e-3), 0.0
    for value, q in ((p50, 0.5), (p95, 0.95), (p99, 0.99)):
        k = max(math.log(max(value, 1e-6)), prev_k)
        if x <= k:
            return prev_q if k <= prev_k else prev_q + (q - prev_q) * (x - prev_k) / (k - prev_k)
        prev_k, prev_q = k, q
    return 0.99


def telemetry_health(mean: np.ndarray, statics: ServiceStatics) -> float:
    """Share of the entries' requests that succeeded within the latency objective."""
    good = total = 0.0
    for k, s in enumerate(statics.entries):
        rate = float(mean[s, _I_ARR])
        fast = share_within(
            float(statics.entry_slo_ms[k]),
            float(mean[s, _I_P50]),
            float(mean[s, _I_P95]),
            float(mean[s, _I_P99]),
        )
        good += rate * (1.0 - float(mean[s, _I_ERR])) * fast
        total += rate
    return 1.0 if total <= 0.0 else good / total


class AgentMemory:
    """What the agent did, as the agent knows it (never read back from the twin's state)."""

    def __init__(self, n: int) -> None:
        self.failover = np.zeros(n)
        self.shed = np.zeros(n)
        self.last_action = np.full(n, -np.inf)
        self.last_any = -np.inf
        self.escalated = False
        self.actions = 0

    def note(self, services: tuple[int, ...], now: float) -> None:
        for s in services:
            self.last_action[s] = now
        self.last_any = now
        self.actions += 1


class ObservationEncoder:
    """Turns a decision interval's mean telemetry into a fixed-size float32 vector."""

    def __init__(self, layout: str = "ranked", top_k: int = 5, n_services: int | None = None):
        if layout not in LAYOUTS:
            raise ValueError(f"observation: unknown layout {layout!r} (layouts: {LAYOUTS})")
        if layout == "services" and n_services is None:
            raise ValueError("observation 'services' needs the topology's service count")
        self.layout = layout
        self.top_k = int(top_k)
        self.n_services = n_services
        if layout == "services":
            lows = [np.zeros(N_GF, np.float32), np.tile(_SF_LOW, n_services)]
        else:
            slot = np.append(_SF_LOW, 0.0).astype(np.float32)  # + "present"
            lows = [np.zeros(N_GF, np.float32), np.tile(slot, self.top_k), _SF_LOW, _SF_LOW]
        self.low = np.concatenate(lows).astype(np.float32)
        self.high = np.ones_like(self.low)
        self.size = len(self.low)
        self.ranking = np.zeros(0, np.int64)
        self._out = np.zeros(self.size, np.float32)
        self._ranking = np.zeros(self.top_k, np.int64)

    def reset(self, statics: ServiceStatics, scorer: Scorer, warmup: int) -> None:
        if self.layout == "services" and statics.n != self.n_services:
            raise ValueError(
                f"observation 'services' was built for {self.n_services} services; this "
                f"topology has {statics.n} (use the 'ranked' layout across topologies)"
            )
        self.statics = statics
        self.scorer = scorer
        scorer.reset(statics)
        self.warmup = max(int(warmup), 1)
        self._updates = 0
        self._ref = np.zeros((statics.n, 2))  # arrival, p99 over the baseline stretch
        self.features = np.zeros((statics.n, N_SF))
        self._signals = np.zeros((statics.n, len(FAMILIES)))
        self.globals = np.zeros(N_GF)
        self.ranking = np.arange(min(self.top_k, statics.n))
        self.last = None

    def update(
        self,
        mean: np.ndarray,
        last: np.ndarray,
        memory: AgentMemory,
        now: float,
        progress: float,
        nodes: tuple[float, float] = (0.0, 0.0),
    ) -> np.ndarray:
        """Encode one interval: `mean` over its ticks and `last` (its last tick's row);
        `nodes` is the worst node's and the worst zone's badness (`NodeWatch`)."""
        st = self.statics
        self.last = last
        self._updates += 1
        if self._updates <= self.warmup:
            k = 1.0 / self._updates
            self._ref[:, 0] += k * (mean[:, _I_ARR] - self._ref[:, 0])
            self._ref[:, 1] += k * (mean[:, _I_P99] - self._ref[:, 1])
        fast.symptom_signals(mean, st.cpu_limit, st.queue_limit, st.memory_limit, self._signals)
        alerts, rca = self.scorer.update(self._signals)
        F = self.features
        fast.service_features(
            mean,
            last,
            self._ref,
            st.cpu_limit,
            st.memory_limit,
            st.queue_limit,
            st.replicas,
            memory.failover,
            memory.shed,
            memory.last_action,
            float(now),
            ACTION_MEMORY_S,
            np.ascontiguousarray(alerts, dtype=np.float64),
            np.ascontiguousarray(rca, dtype=np.float64),
            _SF_LOW64,
            F,
        )
        G = self.globals
        G[0] = telemetry_health(mean, st)
        G[1] = progress
        G[2] = np.exp(-(now - memory.last_any) / ACTION_MEMORY_S)
        G[3] = float(memory.escalated)
        G[4] = memory.shed.max()
        G[5] = min(memory.actions / 10.0, 1.0)
        G[6] = F[:, ALERT_SLICE].max()
        G[7], G[8] = nodes
        np.clip(G, 0.0, 1.0, out=G)
        return self._vector()

    def _vector(self) -> np.ndarray:
        F, G, out = self.features, self.globals, self._out
        out[:N_GF] = G
        if self.layout == "services":
            out[N_GF:] = F.ravel()
            np.clip(out, self.low, self.high, out=out)
        else:
            k = fast.ranked_vector(
                F,
                G,
                SF["rca"],
                ALERT_SLICE.start,
                ALERT_SLICE.stop,
                self.top_k,
                self.low,
                self.high,
                out,
                self._ranking,
            )
            self.ranking = self._ranking[:k]
        return out.copy()

    def zeros(self) -> np.ndarray:
        return np.clip(np.zeros(self.size, np.float32), self.low, self.high)


@dataclass(frozen=True)
class ObservationLayout:
    """Where things are in an observation vector, for policies that read it by hand."""

    layout: str
    top_k: int
    n_services: int | None

    def globals(self, obs: np.ndarray) -> np.ndarray:
        return obs[..., :N_GF]

    def services(self, obs: np.ndarray) -> np.ndarray:
        """Per-slot (ranked) or per-service feature rows: (..., rows, N_SF)."""
        if self.layout == "services":
            body = obs[..., N_GF : N_GF + self.n_services * N_SF]
            return body.reshape(*obs.shape[:-1], self.n_services, N_SF)
        body = obs[..., N_GF : N_GF + self.top_k * (N_SF + 1)]
        return body.reshape(*obs.shape[:-1], self.top_k, N_SF + 1)[..., :N_SF]

    def present(self, obs: np.ndarray) -> np.ndarray:
        if self.layout == "services":
            return np.ones((*obs.shape[:-1], self.n_services), bool)
        body = obs[..., N_GF : N_GF + self.top_k * (N_SF + 1)]
        return body.reshape(*obs.shape[:-1], self.top_k, N_SF + 1)[..., N_SF] > 0.5
