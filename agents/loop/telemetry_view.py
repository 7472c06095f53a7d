"""The operator's window on the live system: recent frames, health, and an RCA table.

Everything here comes from the telemetry stream (frames) that any monitoring stack would
scrape: per-service rates, errors, latency quantiles, replica counts; with infrastructure,
node metrics (node-exporter, the node's conditions) and where each pod runs (the scheduler's
events, as kube-state-metrics reports them). Nothing reads the twin's internals or its
fault schedule. Health is what an SRE's SLO dashboard shows: the
share of the last minute's requests at the entries that succeeded within the latency SLO.
"""

from __future__ import annotations

from collections import deque

import numpy as np
import pandas as pd

from twin.fields import NODE_METRICS, SERVICE_METRICS, M
from twin.scenario.schema import Scenario
from twin.telemetry.frame import Frame
from twin.telemetry.widecsv import rcaeval_service_name, wide_from_cube

NODE_M = {name: i for i, name in enumerate(NODE_METRICS)}

HEALTH_WINDOW_S = 60.0
# SLO burn is judged on two windows, as multiwindow burn-rate alerts do (the Google SRE
# workbook's "Alerting on SLOs": a long window that says the burn is real, a short one that
# says it is still going on), at the scale of a rehearsal: the last minute and 5 minutes
SLO_LONG_WINDOW_S = 300.0
# a burn worth an alert of its own: 14.4x the sustainable rate spends 2% of a 30-day budget
# in an hour, the workbook's page threshold (slower burns: the health check, the detectors)
SLO_ALERT_BURN = 14.4
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
        self._memory_limit = {n: s.memory_limit_mb for n, s in scenario.topology.services.items()}
        classes = {c.name: c for c in scenario.workload.classes}
        slos = list(scenario.slos)
        self._targets: list[tuple[int, float]] = []  # (entry index, latency SLO ms)
        self._objectives: list[tuple[int, float, float, float]] = []  # + availability, pct
        for slo in slos:
            chosen = [classes[slo.request_class]] if slo.request_class else list(classes.values())
            for c in chosen:
                self._targets.append((services.index(c.entry), float(slo.latency_ms)))
                self._objectives.append(
                    (
                        services.index(c.entry),
                        float(slo.latency_ms),
                        float(slo.availability),
                        float(slo.percentile) / 100.0,
                    )
                )
        if not self._targets:
            entries = sorted({services.index(c.entry) for c in classes.values()})
            self._targets = [(i, 1000.0) for i in entries]
        self._frames: deque[Frame] = deque(maxlen=max(1, int(round(history_s / dt))))
        n = max(1, int(round(HEALTH_WINDOW_S / dt)))
        self._good: deque[float] = deque(maxlen=n)
        self._total: deque[float] = deque(maxlen=n)
        # per objective, the long window's (requests, failed, served, fast) rates per frame,
        # in a ring (slo_violated runs every frame: one array sum, not a deque's conversion)
        self._slo_short = n
        long_n = max(n, int(round(SLO_LONG_WINDOW_S / dt)))
        self._slo_ring = np.zeros((long_n, len(self._objectives), 4))
        self._slo_frames = 0
        self._now = 0.0
        self.deploys: dict[str, float] = {}  # service -> time of its last rollout
        infra = scenario.infrastructure
        # the cluster's inventory (node names and their zone labels): not hidden truth
        self.node_zone: dict[str, str] = (
            {n.name: n.zone for n in infra.node_list()} if infra is not None else {}
        )
        self.pod_node: dict[str, tuple[str, str]] = {}  # pod -> (service, node)

    # -- SystemView ---------------------------------------------------------------------
    @property
    def now(self) -> float:
        return self._now

    def services(self) -> tuple[str, ...]:
        return self.names

    def latest(self, service: str, metric: str) -> float:
        """The service's latest value of one metric (0 before the first frame)."""
        return self._latest(service, metric)

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
        self.note_events(frame.events)
        self._now = frame.time + self.dt
        good, total = self.tick_health(frame.values)
        self._good.append(good)
        self._total.append(total)
        if self._objectives:
            self._slo_ring[self._slo_frames % len(self._slo_ring)] = self._slo_tick(frame.values)
            self._slo_frames += 1

    def note_events(self, events: list[dict]) -> None:
        """Rollouts and pod placements (the cluster's event stream, not scraped metrics)."""
        for event in events:
            kind = event.get("kind")
            if kind in CHANGE_EVENTS and event.get("service"):
                self.deploys[event["service"]] = float(event["time"])
            elif kind == "pod_scheduled":
                self.pod_node[event["pod"]] = (event["service"], event["node"])
            elif kind in ("pod_evicted", "pod_restart"):
                self.pod_node.pop(event["pod"], None)

    def clock(self, now: float) -> None:
        """The time now, when frames arrive behind it (production telemetry's steps)."""
        self._now = max(self._now, now)

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

    def _slo_tick(self, v: np.ndarray) -> np.ndarray:
        out = np.zeros((len(self._objectives), 4))
        for k, (s, latency_ms, _, _) in enumerate(self._objectives):
            rate = float(v[s, M["arrival_rate"]])
            err = float(v[s, M["error_ratio"]])
            fast = share_within(
                latency_ms,
                float(v[s, M["latency_p50_ms"]]),
                float(v[s, M["latency_p95_ms"]]),
                float(v[s, M["latency_p99_ms"]]),
            )
            out[k] = (rate, rate * err, rate * (1.0 - err), rate * (1.0 - err) * fast)
        return out

    def slo_violated(self, burn: float = SLO_ALERT_BURN) -> bool:
        """Whether an objective's error budget burns at `burn` times its sustainable rate or
        faster over both the last minute and the last 5 minutes (its availability, or its
        share of requests under the latency target): users are hit. `burn=1` is any breach."""
        count = min(self._slo_frames, len(self._slo_ring))
        if count == 0:
            return False
        long = self._slo_ring[:count].sum(axis=0)
        last = self._slo_frames - 1 - np.arange(min(self._slo_short, count))
        short = self._slo_ring[last % len(self._slo_ring)].sum(axis=0)
        return any(
            self._burning(short[k], target, burn) and self._burning(long[k], target, burn)
            for k, target in enumerate(self._objectives)
        )

    @staticmethod
    def _burning(window: np.ndarray, objective: tuple, burn: float) -> bool:
        requests, failed, served, fast = window
        _, _, availability, pct = objective
        if requests > 0 and failed / requests > burn * (1.0 - availability):
            return True
        return bool(served > 0 and 1.0 - fast / served > burn * (1.0 - pct))

    def users_hit(self, healthy: float, burn: float = SLO_ALERT_BURN) -> bool:
        """Health below `healthy`, or an objective's budget burning at `burn`x or faster."""
        return self.health() < healthy or self.slo_violated(burn)

    def replica_map(self) -> dict[str, int]:
        return {name: self.replicas(name) for name in self.names}

    def table(self, since: float | None = None) -> pd.DataFrame:
        """The RCAEval wide table of the kept frames (unix seconds, services renamed), with
        a block per node when the frames carry node metrics."""
        frames = [f for f in self._frames if since is None or f.time >= since]
        times = np.array([f.time for f in frames])
        cube = np.stack([f.values for f in frames])
        nodes = None
        if frames and frames[-1].node_values is not None and frames[-1].nodes:
            node_cube = np.stack([f.node_values for f in frames])
            nodes = (frames[-1].nodes, NODE_METRICS, node_cube)
        return wide_from_cube(times, self.names, SERVICE_METRICS, cube, nodes=nodes)

    def arrival_growth(self, service: str, split: float, recent_s: float = 120.0) -> float:
        """Requests arriving at `service` over the last `recent_s` against the 10 minutes
        before `split` (1.0 when there is nothing to compare)."""
        s = self.names.index(service)
        before = [
            f.values[s, M["arrival_rate"]] for f in self._frames if split - 600.0 <= f.time < split
        ]
        after = [
            f.values[s, M["arrival_rate"]] for f in self._frames if f.time >= self._now - recent_s
        ]
        if not before or not after or np.mean(before) <= 0:
            return 1.0
        return float(np.mean(after) / np.mean(before))

    def memory_share(self, service: str) -> float:
        """The service's memory per pod now, as a share of its limit (the OOM killer's line)."""
        limit = self._memory_limit.get(service, 0.0)
        return self._latest(service, "memory_mb") / limit if limit > 0 else 0.0

    def pods_missing(self, service: str, split: float, span_s: float = 60.0) -> int:
        """Pods the service has been short of (desired minus ready, as kube-state-metrics
        reports them) in every frame of the last `span_s`, counted only as far as fewer are
        ready than at any time in the 10 minutes before `split`: new pods of a scale-out
        starting up are no loss. 0 when none, or too little history to say."""
        s = self.names.index(service)
        ready, desired = M["ready_replicas"], M["desired_replicas"]
        recent = [f.values[s] for f in self._frames if f.time >= self._now - span_s]
        before = [f.values[s, ready] for f in self._frames if split - 600.0 <= f.time < split]
        if len(recent) < 2 or not before:
            return 0
        short = min(float(v[desired] - v[ready]) for v in recent)
        lost = max(before) - max(float(v[ready]) for v in recent)
        return int(max(0, round(min(short, lost))))

    def entry_rise(self, recent_s: float = 120.0) -> float:
        """Requests arriving at the entries over the last `recent_s` against their median
        over the kept history (an hour): how far user demand stands above its usual."""
        entries = sorted({i for i, _ in self._targets})
        load = np.array([f.values[entries, M["arrival_rate"]].sum() for f in self._frames])
        times = np.array([f.time for f in self._frames])
        if load.size == 0 or np.median(load) <= 0:
            return 1.0
        return float(load[times >= self._now - recent_s].mean() / np.median(load))

    def entry_growth(self, split: float, recent_s: float = 120.0) -> float:
        """Requests arriving at the entries over the last `recent_s`, against the 10
        minutes before `split` (1.0 when there is nothing to compare)."""
        entries = sorted({i for i, _ in self._targets})

        def mean(frames: list[Frame]) -> float:
            if not frames:
                return float("nan")
            return float(np.mean([f.values[entries, M["arrival_rate"]].sum() for f in frames]))

        before = mean([f for f in self._frames if split - 600.0 <= f.time < split])
        after = mean([f for f in self._frames if f.time >= self._now - recent_s])
        if not (before > 0 and np.isfinite(after)):
            return 1.0
        return after / before

    def call_amplification(self, service: str, split: float, recent_s: float = 120.0) -> float:
        """How much the calls into `service` per request arriving at its callers grew:
        (calls / caller arrivals) over the last `recent_s` over the same before `split`.
        Client retries multiply attempts (Envoy's upstream_rq_retry shows the same); 1.0
        when there is nothing to compare."""
        if not self._frames:
            return 1.0
        edges = self._frames[-1].edges
        into = [i for i, (a, b) in enumerate(edges) if b == service]
        if not into:
            return 1.0
        callers = [self.names.index(edges[i][0]) for i in into]

        def ratio(frames: list[Frame]) -> float:
            if not frames:
                return float("nan")
            calls = sum(float(f.edge_values[into, 0].sum()) for f in frames)
            arrivals = sum(float(f.values[callers, M["arrival_rate"]].sum()) for f in frames)
            return calls / arrivals if arrivals > 0 else float("nan")

        before = ratio([f for f in self._frames if split - 600.0 <= f.time < split])
        after = ratio([f for f in self._frames if f.time >= self._now - recent_s])
        if not (before > 0 and np.isfinite(after)):
            return 1.0
        return after / before

    # -- infrastructure -------------------------------------------------------------------
    def placements(self) -> dict[str, set[str]]:
        """service -> the nodes its pods run on now."""
        out: dict[str, set[str]] = {}
        for service, node in self.pod_node.values():
            out.setdefault(service, set()).add(node)
        return out

    def node_metric(self, node: str, metric: str) -> float:
        """A node's latest value of one NODE_METRICS entry (NaN when unknown)."""
        if not self._frames or self._frames[-1].node_values is None:
            return float("nan")
        frame = self._frames[-1]
        if node not in frame.nodes:
            return float("nan")
        return float(frame.node_values[frame.nodes.index(node), NODE_M[metric]])

    def node_symptoms(self, node: str, since: float) -> list[str]:
        """What a node shows of its own (not an echo of its pods) now, against `since`:
        down (not answering, or NotReady), CPU or memory taken outside the topology's pods,
        I/O wait, dropped packets, OOM kills since `since`."""
        frames = [f for f in self._frames if f.node_values is not None and node in f.nodes]
        if not frames:
            return []
        k = frames[-1].nodes.index(node)
        now = frames[-1].node_values[k]
        base = next((f.node_values[k] for f in frames if f.time >= since), frames[0].node_values[k])
        out = []
        if min(now[NODE_M["up"]], now[NODE_M["ready"]]) < 0.5:
            out.append("down")
        if now[NODE_M["cpu_other_cores"]] > base[NODE_M["cpu_other_cores"]] + 0.25:
            out.append("cpu_other")
        if now[NODE_M["memory_other_mb"]] > base[NODE_M["memory_other_mb"]] + 512.0:
            out.append("memory_other")
        if now[NODE_M["io_wait_ms"]] > base[NODE_M["io_wait_ms"]] + 5.0:
            out.append("io_wait")
        if now[NODE_M["network_drop_ratio"]] > base[NODE_M["network_drop_ratio"]] + 0.01:
            out.append("network_drops")
        if now[NODE_M["oom_kills"]] > base[NODE_M["oom_kills"]]:
            out.append("oom_kills")
        return out

    def zone_down(self, zone: str) -> bool:
        """Every node of the zone is NotReady or has stopped answering scrapes (what a zone
        outage looks like)."""
        nodes = [n for n, z in self.node_zone.items() if z == zone]
        return bool(nodes) and all(
            min(self.node_metric(n, "ready"), self.node_metric(n, "up")) < 0.5 for n in nodes
        )

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
