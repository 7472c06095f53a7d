"""One run under one capacity policy (HPA, static peak, predictive), scored after warm-up."""

from __future__ import annotations

import math

import numpy as np

from agents.scaling.predictive import PredictiveScaler, replicas_for_rate
from twin.control.actions import ScaleTo
from twin.fields import M
from twin.flow.engine import Simulation
from twin.run.slo import SloTracker
from twin.scenario.schema import Scenario
from twin.telemetry.frame import Chunk

POLICIES = ("hpa", "static", "predictive")


class _Minutes:
    """A sink: per-minute under-provisioning, replica-hours and entry p99 after warm-up.

    Replica-hours count the autoscaled services only: the others are fixed under every policy.
    """

    def __init__(self, scenario: Scenario, names: tuple[str, ...], since: float) -> None:
        self.since = since
        self.entry = names.index(scenario.workload.classes[0].entry)
        self.latency_ms = scenario.slos[0].latency_ms
        n = int(math.ceil(scenario.duration / 60.0))
        self.bad = np.zeros(n, bool)
        self.p99 = np.zeros(n)
        self.count = np.zeros(n)
        self.replica_s = 0.0
        self.peak_rate = np.zeros(len(names))
        self.dt = float(scenario.tick)
        services = scenario.topology.services.values()
        self.scaled = [i for i, svc in enumerate(services) if svc.hpa is not None]
        self.floor = sum(svc.hpa.min_replicas for svc in services if svc.hpa is not None)
        self.floor_s = 0.0

    def on_chunk(self, chunk: Chunk) -> None:
        v = chunk.values
        minute = (chunk.times // 60.0).astype(np.int64)
        under = (v[:, :, M["shed_rate"]].max(axis=1) > 0) | (v[:, :, M["queue"]].max(axis=1) > 1)
        p99 = v[:, self.entry, M["latency_p99_ms"]]
        under |= p99 > self.latency_ms
        np.logical_or.at(self.bad, minute, under)
        np.add.at(self.p99, minute, p99)
        np.add.at(self.count, minute, 1)
        keep = chunk.times >= self.since
        ready = v[keep][:, self.scaled, M["ready_replicas"]]
        self.replica_s += float(ready.sum() * self.dt)
        self.floor_s += float(keep.sum() * self.floor * self.dt)
        if len(chunk.times):
            self.peak_rate = np.maximum(self.peak_rate, v[:, :, M["arrival_rate"]].max(axis=0))

    def close(self) -> None:
        pass

    def report(self) -> dict:
        first = int(self.since // 60)
        has = self.count[first:] > 0
        p99 = self.p99[first:][has] / self.count[first:][has]
        return {
            "replica_hours": self.replica_s / 3600.0,
            # what every policy keeps anyway: the HPAs' min replicas (availability floors)
            "floor_hours": self.floor_s / 3600.0,
            "underprovisioned_min": float(self.bad[first:][has].sum()),
            "p99_ms_mean": float(p99.mean()) if len(p99) else float("nan"),
            "p99_ms_worst_min": float(p99.max()) if len(p99) else float("nan"),
        }


def _slo_after(tracker: SloTracker, since: float) -> dict:
    """SLO adherence and violating minutes over the windows after warm-up (twin.run.slo's rule)."""
    slo = tracker.slos[0]
    first = int(since // slo.window_s)
    done = int(min(len(tracker.total[0]), math.ceil(tracker.last_time / slo.window_s - 1e-9)))
    total, failed = tracker.total[0][first:done], tracker.failed[0][first:done]
    served, slow = tracker.served[0][first:done], tracker.slow[0][first:done]
    avail = np.where(total > 0, 1.0 - failed / np.where(total > 0, total, 1.0), 1.0)
    fast = np.where(served > 0, 1.0 - slow / np.where(served > 0, served, 1.0), 1.0)
    good = (avail >= slo.availability) & (fast >= slo.percentile / 100.0)
    return {
        "slo_adherence": float(good.mean()) if len(good) else float("nan"),
        "slo_violating_min": float((~good).sum() * slo.window_s / 60.0),
    }


def static_replicas(scenario: Scenario, peak_rate: np.ndarray, target: float = 0.7) -> dict:
    """Replicas each HPA-managed service needs at its peak rate (capacity model, fixed)."""
    out = {}
    for i, (name, svc) in enumerate(scenario.topology.services.items()):
        if svc.hpa is None:
            continue
        need = replicas_for_rate(
            float(peak_rate[i]),
            cpu_per_request_ms=svc.cpu_per_request_ms,
            cpu_limit=svc.cpu_limit,
            workers=svc.workers,
            holding_s=svc.service_time.mean_ms / 1000.0 * 2.0,
            target=target,
        )
        out[name] = max(need, svc.hpa.min_replicas, svc.replicas)
    return out


def run_policy(
    scenario: Scenario,
    policy: str,
    warmup_s: float,
    static: dict | None = None,
    scaler: dict | None = None,
) -> tuple[dict, np.ndarray]:
    """One run under one policy; returns its metrics row and each service's peak rate.

    `scaler` passes settings to the PredictiveScaler (the predictive policy only).
    """
    actions = []
    if policy == "static":
        actions = [(0.0, ScaleTo(service=s, replicas=r)) for s, r in (static or {}).items()]
    sim = Simulation(scenario, actions=actions)
    names = sim.topo.names
    slo = SloTracker(scenario, names)
    minutes = _Minutes(scenario, names, warmup_s)
    sim.sinks.extend([slo, minutes])
    extra: dict = {}
    if policy == "static":
        for i, svc in enumerate(scenario.topology.services.values()):
            if svc.hpa is not None:
                sim.hpa_paused[i] = True
        sim.run()
    elif policy == "hpa":
        sim.run()
    elif policy == "predictive":
        agent = PredictiveScaler(sim, **(scaler or {}))
        agent.run()
        extra["take_overs"] = sum(e["what"] == "take_control" for e in agent.log)
        extra["fallbacks"] = sum(e["what"] == "fallback" for e in agent.log)
    else:
        raise ValueError(f"unknown policy {policy!r}")
    row = {"policy": policy}
    row.update(_slo_after(slo, warmup_s))
    row.update(minutes.report())
    row.update(extra)
    return row, minutes.peak_rate
