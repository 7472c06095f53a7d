"""SLO adherence per request class: the share of SLO windows in which both objectives held.

Availability is the share of a window's finished requests that succeeded at the class's
entry; latency is the share of served requests under the threshold, from the tick's
residence-time distribution, which must reach the objective's percentile.
"""

from __future__ import annotations

import math

import numpy as np

from twin.fields import M
from twin.scenario.schema import Scenario, Slo
from twin.telemetry.frame import Chunk


def _latency_share_below(dist: np.ndarray, threshold_s: float) -> np.ndarray:
    """P(residence ≤ threshold) for each tick's shift + lognormal(mu, sigma)."""
    mu, sigma, shift = dist[:, 0], dist[:, 1], dist[:, 2]
    x = threshold_s - shift
    with np.errstate(divide="ignore", invalid="ignore"):
        z = (np.log(np.maximum(x, 1e-300)) - mu) / np.maximum(sigma, 1e-12)
    below = 0.5 * (1.0 + _erf(z / math.sqrt(2.0)))
    return np.where(x > 0, below, 0.0)


def _erf(x: np.ndarray) -> np.ndarray:
    """Vectorised erf via math.erf (numpy has none); small arrays per chunk."""
    return np.frompyfunc(math.erf, 1, 1)(x).astype(float)


class SloTracker:
    """A sink that accumulates per-window good/bad request counts for every SLO."""

    def __init__(self, scenario: Scenario, service_names: tuple[str, ...]) -> None:
        self.scenario = scenario
        classes = {c.name: c for c in scenario.workload.classes}
        slos = list(scenario.slos) or [Slo()]
        self.slos = slos
        self.entries: list[list[int]] = []
        for slo in slos:
            chosen = [classes[slo.request_class]] if slo.request_class else list(classes.values())
            self.entries.append(sorted({service_names.index(c.entry) for c in chosen}))
        n_windows = [math.ceil(scenario.duration / slo.window_s) for slo in slos]
        self.total = [np.zeros(k) for k in n_windows]
        self.failed = [np.zeros(k) for k in n_windows]
        self.slow = [np.zeros(k) for k in n_windows]
        self.served = [np.zeros(k) for k in n_windows]
        self.last_time = 0.0

    def on_chunk(self, chunk: Chunk) -> None:
        dt = self.scenario.tick
        for k, slo in enumerate(self.slos):
            window = np.minimum(
                (chunk.times // slo.window_s).astype(np.int64), len(self.total[k]) - 1
            )
            for s in self.entries[k]:
                vals = chunk.values[:, s]
                ok = vals[:, M["throughput"]] * dt
                bad = (vals[:, M["error_rate"]] + vals[:, M["shed_rate"]]) * dt
                served = ok + vals[:, M["error_rate"]] * dt
                below = _latency_share_below(chunk.dist[:, s], slo.latency_ms / 1000.0)
                np.add.at(self.total[k], window, ok + bad)
                np.add.at(self.failed[k], window, bad)
                np.add.at(self.served[k], window, served)
                np.add.at(self.slow[k], window, served * (1.0 - below))
        if len(chunk.times):
            self.last_time = float(chunk.times[-1]) + dt

    def close(self) -> None:
        pass

    def report(self) -> dict:
        """Adherence per SLO and overall (the mean over SLOs)."""
        per_slo = []
        for k, slo in enumerate(self.slos):
            done = int(min(len(self.total[k]), math.ceil(self.last_time / slo.window_s - 1e-9)))
            total, failed = self.total[k][:done], self.failed[k][:done]
            served, slow = self.served[k][:done], self.slow[k][:done]
            has = total > 0
            avail = np.where(has, 1.0 - failed / np.where(has, total, 1.0), 1.0)
            fast = np.where(served > 0, 1.0 - slow / np.where(served > 0, served, 1.0), 1.0)
            good = (avail >= slo.availability) & (fast >= slo.percentile / 100.0)
            per_slo.append(
                {
                    "name": slo.name or slo.request_class or "all",
                    "class": slo.request_class,
                    "availability_target": slo.availability,
                    "latency_ms": slo.latency_ms,
                    "percentile": slo.percentile,
                    "windows": done,
                    "good_windows": int(good.sum()),
                    "adherence": float(good.mean()) if done else None,
                    "availability": float(1.0 - failed.sum() / total.sum())
                    if total.sum()
                    else None,
                    "violating_minutes": float((~good).sum() * slo.window_s / 60.0),
                }
            )
        values = [p["adherence"] for p in per_slo if p["adherence"] is not None]
        return {"slo_adherence": float(np.mean(values)) if values else None, "slos": per_slo}
