"""The operator's window on the live system: recent frames, health, and an RCA table.

Everything here comes from the telemetry stream (frames) that any monitoring stack would
scrape: per-service rates, errors, latency quantiles, replica counts. Nothing reads the
twin's internals or its fault schedule. Health is what an SRE's SLO dashboard shows: the
share of the last minute's requests at the entries that succeeded within the latency SLO.
"""

from __future__ import annotations

from collections import deque

import numpy as np
import pandas as pd

from twin.fields import SERVICE_METRICS, M
from twin.scenario.schema import Scenario
from twin.telemetry.frame import Frame
from twin.telemetry.widecsv import rcaeval_service_name, wide_from_cube

HEALTH_WINDOW_S = 60.0
# change events any cluster reports (rollouts), the only events the operator reads: fault
# start/end events are the twin's ground truth and never reach it
CHANGE_EVENTS = frozenset({"deploy"})
_QUANTS = np.array([0.0, 0.5, 0.95, 0.99])


def share_within(latency_ms: float, p50: float, p95: float, p99: float) -> float:
    """Share of requests faster than `latency_ms`, interpolated between reported quantiles
    in log latency (beyond p99 the last 1% is spread up to ten times p99)."""
    if latency_ms >= 10.0 * max(p99, 1e-9):
        return 1.0
    if latency_ms >= p99:
        return 0.99 + 0.01 * float(np.log(latency_ms / max(p99, 1e-9)) / np.log(10.0))
    knots = np.log(np.maximum([1e-3, p50, p95, p99], 1e-6))
    knots = np.maximum.accumulate(knots)
    return float(np.interp(np.log(max(latency_ms, 1e-6)), knots, _QUANTS))


class TelemetryView:
    """A `SystemView` fed frame by frame; keeps `history_s` of frames for RCA tables."""

    def __init__(
        self, scenario: Scenario, services: tuple[str, ...], dt: float, history_s: float = 3600.0
    ) -> None:
        self.names = services
        self.dt = dt
        classes = {c.name: c for c in scenario.workload.classes}
        slos = list(scenario.slos)
        self._targets: list[tuple[int, float]] = []  # (entry index, latency SLO ms)
        for slo in slos:
            chosen = [classes[slo.request_class]] if slo.request_class else list(classes.values())
            for c in chosen:
                self._targets.append((services.index(c.entry), float(slo.latency_ms)))
        if not self._targets:
            entries = sorted({services.index(c.entry) for c in classes.values()})
            self._targets = [(i, 1000.0) for i in entries]
        self._frames: deque[Frame] = deque(maxlen=max(1, int(round(history_s / dt))))
        n = max(1, int(round(HEALTH_WINDOW_S / dt)))
        self._good: deque[float] = deque(maxlen=n)
        self._total: deque[float] = deque(maxlen=n)
        self._now = 0.0
        self.deploys: dict[str, float] = {}  # service -> time of its last rollout

    # -- SystemView ---------------------------------------------------------------------
    @property
    def now(self) -> float:
        return self._now

    def services(self) -> tuple[str, ...]:
        return self.names

    def _latest(self, service: str, metric: str) -> float:
        if not self._frames:
            return 0.0
        return float(self._frames[-1].values[self.names.index(service), M[metric]])

    def replicas(self, service: str) -> int:
        return int(round(self._latest(service, "desired_replicas")))

    def ready(self, service: str) -> int:
        return int(round(self._latest(service, "ready_replicas")))

    def health(self) -> float:
        total = sum(self._total)
        return 1.0 if total <= 0 else float(sum(self._good) / total)

    # -- feeding --------------------------------------------------------------------------
    def observe(self, frame: Frame) -> None:
        self._frames.append(frame)
        for event in frame.events:
            if event.get("kind") in CHANGE_EVENTS and event.get("service"):
                self.deploys[event["service"]] = float(event["time"])
        self._now = frame.time + self.dt
        good, total = self.tick_health(frame.values)
        self._good.append(good)
        self._total.append(total)

    def tick_health(self, v: np.ndarray) -> tuple[float, float]:
        """(good, all) request rates at the entries in one tick's services × metrics."""
        good = total = 0.0
        for s, latency_ms in self._targets:
            rate = float(v[s, M["arrival_rate"]])
            ok = 1.0 - float(v[s, M["error_ratio"]])
            fast = share_within(
                latency_ms,
                float(v[s, M["latency_p50_ms"]]),
                float(v[s, M["latency_p95_ms"]]),
                float(v[s, M["latency_p99_ms"]]),
            )
            good += rate * ok * fast
            total += rate
        return good, total

    def replica_map(self) -> dict[str, int]:
        return {name: self.replicas(name) for name in self.names}

    def table(self, since: float | None = None) -> pd.DataFrame:
        """The RCAEval wide table of the kept frames (unix seconds, services renamed)."""
        frames = [f for f in self._frames if since is None or f.time >= since]
        times = np.array([f.time for f in frames])
        cube = np.stack([f.values for f in frames])
        return wide_from_cube(times, self.names, SERVICE_METRICS, cube)

    @staticmethod
    def table_name(service: str) -> str:
        return rcaeval_service_name(service)


class HealthProbe:
    """A sink for what-if forks: health (as `TelemetryView` defines it) over ticks ≥ since."""

    def __init__(self, view: TelemetryView, since: float) -> None:
        self.view = view
        self.since = since
        self.good = 0.0
        self.total = 0.0

    def on_chunk(self, chunk) -> None:
        for t, values in zip(chunk.times, chunk.values, strict=True):
            if t >= self.since:
                good, total = self.view.tick_health(values)
                self.good += good
                self.total += total

    def close(self) -> None:
        pass

    def health(self) -> float:
        return 1.0 if self.total <= 0 else self.good / self.total
