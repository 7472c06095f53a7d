"""Prometheus / OpenMetrics exposition of the twin's telemetry, as real exporters name it.

The twin's frames are per-tick rates and gauges; a scraper expects cumulative counters,
histograms with buckets and gauges under the names its dashboards and alerts already use.
`MetricsState` accumulates frames (or chunks) tick by tick into exactly that, and a
prometheus_client custom collector turns a consistent snapshot of it into metric families,
so the text is written by prometheus_client itself (classic text or OpenMetrics).

Metric mapping (twin metric -> exposed family; labels; source convention):

=========================================  ===========================================  ==========
twin                                       exposed                                      convention
=========================================  ===========================================  ==========
throughput, error_rate, shed_rate (× dt)   http_server_requests_total{service,code}     promhttp
                                           code 200 completed, 500 failed, 503 shed
tick residence-time distribution           http_server_request_duration_seconds         OTel http
  (shift + lognormal) × served requests      {service}: histogram, OTel default buckets  semconv
in_flight                                  http_server_active_requests{service}         OTel
queue                                      firebreak_service_queue_requests{service}    twin-only
worker_utilization                         firebreak_service_worker_utilization_ratio   twin-only
cpu_utilization (of the CPU request)       firebreak_service_cpu_utilization_ratio      twin-only
cpu_cores (× dt)                           container_cpu_usage_seconds_total            cAdvisor
                                             {namespace,container}
memory_mb × ready replicas × 2**20         container_memory_working_set_bytes           cAdvisor
                                             {namespace,container}
ready_replicas                             kube_deployment_status_replicas_ready        kube-state-
                                             {namespace,deployment}                     metrics
desired_replicas                           kube_deployment_spec_replicas                ditto
edge call_rate (× dt): attempts            http_client_requests_total                   twin/OTel
                                             {service,peer_service}
edge failure_rate (× dt): calls failed     http_client_request_failures_total           twin
  after retries or rejected by a breaker     {service,peer_service}
edge latency_ms × attempts                 http_client_request_duration_seconds         OTel name,
                                             {service,peer_service}: _sum, _count only   summary
edge breaker_state                         resilience4j_circuitbreaker_state            resilience4j
                                             {name,service,peer_service,state}: one-hot  Micrometer
                                             over closed/open/half_open/disabled/forced_open
simulated clock                            firebreak_simulation_time_seconds            twin-only
=========================================  ===========================================  ==========

Why these choices: `code` follows client_golang's promhttp; the duration histogram uses the
OpenTelemetry name and its default bucket boundaries, in seconds; container and deployment
metrics keep cAdvisor's and kube-state-metrics' names and labels so existing queries work.
The histogram counts the *served* requests (codes 200 and 500): shed requests are refused
before any residence time, so `_count` equals the 200 and 500 counters together. Request
counts (server and client counters, buckets, the summary's count) are whole requests: the
floor of the flow model's fractional cumulative count (OpenMetrics wants integers). Memory is
summed over the ready pods, as `sum by (namespace, container)` over cAdvisor's per-pod
series would be; the twin's MB are the manifests' Mi, hence × 2**20. A breaker forced
closed by an operator is resilience4j's `disabled`, forced open its `forced_open`. Every
edge carries a breaker series; edges without a breaker simply stay `closed`.
"""

from __future__ import annotations

import itertools
import math
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
from prometheus_client import Histogram
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
    SummaryMetricFamily,
)
from prometheus_client.exposition import choose_encoder, generate_latest
from prometheus_client.openmetrics.exposition import generate_latest as generate_openmetrics
from prometheus_client.registry import Collector, CollectorRegistry
from prometheus_client.utils import floatToGoString

from twin.fields import EDGE_METRICS, SERVICE_METRICS, M
from twin.telemetry.frame import Chunk, Frame

# the client library's default buckets, seconds (+Inf implicit); OpenTelemetry's default
# explicit buckets for http.server.request.duration are the same
DEFAULT_BUCKETS: tuple[float, ...] = tuple(b for b in Histogram.DEFAULT_BUCKETS if math.isfinite(b))
MIB = 1 << 20
Z95 = 1.6448536269514722
Z99 = 2.3263478740408408
BREAKER_STATE_NAMES = ("closed", "open", "half_open", "disabled", "forced_open")
_EM = {name: i for i, name in enumerate(EDGE_METRICS)}


# --- latency distributions ---------------------------------------------------------------
def normal_cdf(z: np.ndarray) -> np.ndarray:
    """Φ(z) to ~1e-7 without scipy (Abramowitz & Stegun 7.1.26 for erf); ±inf allowed."""
    x = np.abs(np.asarray(z, dtype=float)) / math.sqrt(2.0)
    t = 1.0 / (1.0 + 0.3275911 * x)
    poly = t * (
        0.254829592 + t * (-0.284496736 + t * (1.421413741 + t * (-1.453152027 + t * 1.061405429)))
    )
    erf = 1.0 - poly * np.exp(-x * x)
    return np.clip(0.5 * (1.0 + np.copysign(erf, z)), 0.0, 1.0)


def share_below(dist: np.ndarray, bounds: Sequence[float]) -> np.ndarray:
    """P(residence ≤ b) for each (mu, sigma, shift) row of `dist` (… × 3) and bound b."""
    mu, sigma, shift = dist[..., 0:1], dist[..., 1:2], dist[..., 2:3]
    x = np.asarray(bounds, dtype=float) - shift
    with np.errstate(divide="ignore", invalid="ignore"):
        z = (np.log(np.maximum(x, 1e-300)) - mu) / np.maximum(sigma, 1e-12)
    share = np.where(x > 0.0, normal_cdf(np.nan_to_num(z, nan=0.0)), 0.0)
    return np.maximum.accumulate(share, axis=-1)


def dist_from_quantiles(p50: np.ndarray, p95: np.ndarray, p99: np.ndarray) -> np.ndarray:
    """(mu, sigma, shift) of shift + lognormal from its 50th, 95th and 99th percentiles.

    The twin writes exactly these three percentiles of that family, so the long table alone
    recovers each tick's distribution (for histograms and p90) without the engine.
    """
    p50, p95, p99 = (np.asarray(a, dtype=float) for a in (p50, p95, p99))
    d1, d2 = p95 - p50, p99 - p50
    spread = d1 > 1e-12 * np.maximum(np.abs(p50), 1.0)
    ratio = np.where(spread, d2 / np.where(spread, d1, 1.0), Z99 / Z95)
    lo, hi = np.full(p50.shape, 1e-9), np.full(p50.shape, 40.0)
    for _ in range(80):  # (e^{z99 s} - 1) / (e^{z95 s} - 1) grows with s: bisect
        mid = 0.5 * (lo + hi)
        above = np.expm1(Z99 * mid) / np.expm1(Z95 * mid) > ratio
        hi, lo = np.where(above, mid, hi), np.where(above, lo, mid)
    sigma = np.where(spread, 0.5 * (lo + hi), 0.0)
    scale = np.where(spread, d1 / np.expm1(Z95 * np.maximum(sigma, 1e-9)), np.maximum(p50, 0.0))
    shift = np.where(spread, np.maximum(p50 - scale, 0.0), 0.0)
    mu = np.log(np.maximum(scale, 1e-300))
    return np.stack([mu, sigma, shift], axis=-1)


def dist_from_values(values: np.ndarray) -> np.ndarray:
    """Distributions from telemetry rows (… × SERVICE_METRICS), latencies in ms."""
    q = [values[..., M[f"latency_p{p}_ms"]] / 1000.0 for p in (50, 95, 99)]
    return dist_from_quantiles(*q)


def tick_dist(sim) -> np.ndarray:
    """The last simulated tick's (mu, sigma, shift) per service, read from the engine.

    `Simulation.frames()` yields no distribution; its tick buffer holds one, at the row of
    the tick just run, until the next chunk flush (which only happens at a later tick).
    """
    row = sim.tick_index - 1 - sim._chunk_start
    if row < 0:
        raise ValueError("no tick simulated yet")
    return sim._dist[row].copy()


# --- accumulation ------------------------------------------------------------------------
@dataclass(frozen=True)
class Snapshot:
    """A consistent copy of the accumulated state, rendered without holding the lock."""

    time: float
    services: tuple[str, ...]
    edges: tuple[tuple[str, str], ...]
    namespace: str
    buckets: tuple[float, ...]
    requests: np.ndarray  # services × (200, 500, 503)
    bucket_counts: np.ndarray  # services × buckets (cumulative, +Inf excluded)
    duration_sum: np.ndarray
    cpu_seconds: np.ndarray
    gauges: np.ndarray  # services × SERVICE_METRICS, last tick
    edge_attempts: np.ndarray
    edge_failures: np.ndarray
    edge_latency_sum: np.ndarray
    edge_state: np.ndarray


class MetricsState:
    """Cumulative counters, histogram buckets and last gauges of one run, thread-safe.

    Fed by frames (serve) or chunks (a sink, or a run read back); read by snapshots.
    """

    def __init__(
        self,
        services: Sequence[str],
        edges: Sequence[tuple[str, str]],
        dt: float,
        *,
        namespace: str = "default",
        buckets: Sequence[float] = DEFAULT_BUCKETS,
    ) -> None:
        if dt <= 0:
            raise ValueError(f"tick must be positive, got {dt}")
        b = tuple(float(x) for x in buckets)
        if not b or any(x >= y for x, y in itertools.pairwise(b)) or b[0] <= 0:
            raise ValueError(f"buckets must be positive and increasing, got {b}")
        self.services, self.edges = tuple(services), tuple((a, z) for a, z in edges)
        self.dt, self.namespace, self.buckets = float(dt), namespace, b
        n, m = len(self.services), len(self.edges)
        self.time = 0.0
        self.ticks = 0
        self.requests = np.zeros((n, 3))
        self.bucket_counts = np.zeros((n, len(b)))
        self.duration_sum = np.zeros(n)
        self.cpu_seconds = np.zeros(n)
        self.gauges = np.zeros((n, len(SERVICE_METRICS)))
        self.edge_attempts = np.zeros(m)
        self.edge_failures = np.zeros(m)
        self.edge_latency_sum = np.zeros(m)
        self.edge_state = np.zeros(m)
        self._lock = threading.Lock()

    def update(
        self,
        times: np.ndarray,
        values: np.ndarray,
        edge_values: np.ndarray,
        dist: np.ndarray | None = None,
    ) -> None:
        """Add T ticks: values T × services × metrics, edges T × edges × edge metrics."""
        values = np.asarray(values, dtype=float)
        if values.ndim != 3 or values.shape[1:] != self.gauges.shape:
            raise ValueError(f"values must be T × {self.gauges.shape}, got {values.shape}")
        if len(values) == 0:
            return
        dist = dist_from_values(values) if dist is None else np.asarray(dist, dtype=float)
        dt = self.dt
        per_tick = np.maximum(values[:, :, [M["throughput"], M["error_rate"], M["shed_rate"]]], 0)
        counts = per_tick * dt
        served = counts[:, :, 0] + counts[:, :, 1]
        below = share_below(dist, self.buckets)  # T × S × B
        mean_s = np.maximum(values[:, :, M["latency_mean_ms"]], 0.0) / 1000.0
        cpu = np.maximum(values[:, :, M["cpu_cores"]], 0.0) * dt
        ev = np.asarray(edge_values, dtype=float)
        attempts = np.maximum(ev[:, :, _EM["call_rate"]], 0.0) * dt if ev.size else None
        with self._lock:
            self.requests += counts.sum(axis=0)
            self.bucket_counts += np.einsum("ts,tsb->sb", served, below)
            self.duration_sum += (served * mean_s).sum(axis=0)
            self.cpu_seconds += cpu.sum(axis=0)
            self.gauges = values[-1].copy()
            if attempts is not None:
                self.edge_attempts += attempts.sum(axis=0)
                failures = np.maximum(ev[:, :, _EM["failure_rate"]], 0.0) * dt
                self.edge_failures += failures.sum(axis=0)
                latency = attempts * np.maximum(ev[:, :, _EM["latency_ms"]], 0.0) / 1000.0
                self.edge_latency_sum += latency.sum(axis=0)
                self.edge_state = ev[-1, :, _EM["breaker_state"]].copy()
            self.time = float(times[-1]) + dt
            self.ticks += len(values)

    def update_frame(self, frame: Frame, dist: np.ndarray | None = None) -> None:
        """One streamed tick; without `dist`, it is recovered from the frame's percentiles."""
        self.update(
            np.array([frame.time]),
            frame.values[None],
            frame.edge_values[None],
            None if dist is None else np.asarray(dist)[None],
        )

    # Sink protocol, so a MetricsState can ride along any run
    def on_chunk(self, chunk: Chunk) -> None:
        self.update(chunk.times, chunk.values, chunk.edge_values, chunk.dist)

    def close(self) -> None:
        pass

    def snapshot(self) -> Snapshot:
        with self._lock:
            return Snapshot(
                time=self.time,
                services=self.services,
                edges=self.edges,
                namespace=self.namespace,
                buckets=self.buckets,
                requests=self.requests.copy(),
                bucket_counts=np.maximum.accumulate(self.bucket_counts, axis=1),
                duration_sum=self.duration_sum.copy(),
                cpu_seconds=self.cpu_seconds.copy(),
                gauges=self.gauges.copy(),
                edge_attempts=self.edge_attempts.copy(),
                edge_failures=self.edge_failures.copy(),
                edge_latency_sum=self.edge_latency_sum.copy(),
                edge_state=self.edge_state.copy(),
            )


# --- metric families ---------------------------------------------------------------------
def whole(counts: np.ndarray) -> np.ndarray:
    """Whole requests finished so far: the flow model's counts are fractional, OpenMetrics
    wants integer histogram counts, and a floor of a growing count still only grows."""
    return np.floor(counts + 1e-9).astype(np.int64)


def _service_families(s: Snapshot) -> Iterator[Metric]:
    requests = CounterMetricFamily(
        "http_server_requests_total",
        "Requests finished by the service, by status code (503: shed before service).",
        labels=["service", "code"],
    )
    duration = HistogramMetricFamily(
        "http_server_request_duration_seconds",
        "Residence time of served requests (queueing, own work and downstream calls).",
        labels=["service"],
        unit="seconds",
    )
    bounds = [floatToGoString(b) for b in s.buckets] + ["+Inf"]
    requests_whole, buckets_whole = whole(s.requests), whole(s.bucket_counts)
    for i, name in enumerate(s.services):
        for j, code in enumerate(("200", "500", "503")):
            requests.add_metric([name, code], int(requests_whole[i, j]))
        served = int(requests_whole[i, 0] + requests_whole[i, 1])
        cum = [min(int(c), served) for c in buckets_whole[i]] + [served]
        duration.add_metric([name], list(zip(bounds, cum, strict=True)), float(s.duration_sum[i]))
    yield requests
    yield duration
    gauges = (
        ("http_server_active_requests", "Requests queued or in service.", "in_flight"),
        ("firebreak_service_queue_requests", "Requests waiting for a worker.", "queue"),
        (
            "firebreak_service_worker_utilization_ratio",
            "Busy share of the worker pool.",
            "worker_utilization",
        ),
        (
            "firebreak_service_cpu_utilization_ratio",
            "CPU used over the CPU requested, as the autoscaler sees it.",
            "cpu_utilization",
        ),
    )
    for metric_name, doc, field in gauges:
        fam = GaugeMetricFamily(metric_name, doc, labels=["service"])
        for i, name in enumerate(s.services):
            fam.add_metric([name], float(s.gauges[i, M[field]]))
        yield fam


def _workload_families(s: Snapshot) -> Iterator[Metric]:
    ns = s.namespace
    cpu = CounterMetricFamily(
        "container_cpu_usage_seconds_total",
        "Cumulative CPU time consumed by the service's containers.",
        labels=["namespace", "container"],
        unit="seconds",
    )
    mem = GaugeMetricFamily(
        "container_memory_working_set_bytes",
        "Working set of the service's containers, summed over ready pods.",
        labels=["namespace", "container"],
        unit="bytes",
    )
    ready = GaugeMetricFamily(
        "kube_deployment_status_replicas_ready",
        "Ready replicas of the deployment.",
        labels=["namespace", "deployment"],
    )
    spec = GaugeMetricFamily(
        "kube_deployment_spec_replicas",
        "Desired replicas of the deployment (the autoscaler's decision).",
        labels=["namespace", "deployment"],
    )
    for i, name in enumerate(s.services):
        g = s.gauges[i]
        cpu.add_metric([ns, name], float(s.cpu_seconds[i]))
        mem.add_metric([ns, name], float(g[M["memory_mb"]] * g[M["ready_replicas"]] * MIB))
        ready.add_metric([ns, name], float(g[M["ready_replicas"]]))
        spec.add_metric([ns, name], float(g[M["desired_replicas"]]))
    yield from (cpu, mem, ready, spec)


def _edge_families(s: Snapshot) -> Iterator[Metric]:
    labels = ["service", "peer_service"]
    attempts = CounterMetricFamily(
        "http_client_requests_total",
        "Call attempts to a dependency, retries included.",
        labels=labels,
    )
    failures = CounterMetricFamily(
        "http_client_request_failures_total",
        "Calls that failed after their retries, or were rejected by an open breaker.",
        labels=labels,
    )
    latency = SummaryMetricFamily(
        "http_client_request_duration_seconds",
        "Duration of call attempts to a dependency.",
        labels=labels,
        unit="seconds",
    )
    state = GaugeMetricFamily(
        "resilience4j_circuitbreaker_state",
        "Circuit breaker state of the calls from service to peer_service (1: current).",
        labels=["name", "service", "peer_service", "state"],
    )
    n_attempts, n_failures = whole(s.edge_attempts), whole(s.edge_failures)
    for k, (src, dst) in enumerate(s.edges):
        pair = [src, dst]
        attempts.add_metric(pair, int(n_attempts[k]))
        failures.add_metric(pair, int(n_failures[k]))
        latency.add_metric(pair, int(n_attempts[k]), float(s.edge_latency_sum[k]))
        current = int(round(s.edge_state[k]))
        for j, state_name in enumerate(BREAKER_STATE_NAMES):
            state.add_metric([f"{src}->{dst}", src, dst, state_name], float(j == current))
    yield from (attempts, failures, latency, state)


class TwinCollector(Collector):
    """prometheus_client collector over a MetricsState: one snapshot per scrape."""

    def __init__(self, state: MetricsState) -> None:
        self.state = state

    def collect(self) -> Iterator[Metric]:
        snap = self.state.snapshot()
        yield GaugeMetricFamily(
            "firebreak_simulation_time_seconds",
            "Simulated seconds since the scenario started.",
            value=snap.time,
            unit="seconds",
        )
        yield from _service_families(snap)
        yield from _workload_families(snap)
        if snap.edges:
            yield from _edge_families(snap)


def registry_for(state: MetricsState) -> CollectorRegistry:
    """A registry holding only the twin (no process or GC metrics of this Python process)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(TwinCollector(state))
    return registry


def render(state: MetricsState, *, openmetrics_format: bool = False) -> bytes:
    """The exposition text of the state now: classic Prometheus text or OpenMetrics."""
    registry = registry_for(state)
    if openmetrics_format:
        return generate_openmetrics(registry)
    return generate_latest(registry)


def render_for(registry: CollectorRegistry, accept: str | None) -> tuple[bytes, str]:
    """(body, content type) negotiated from a scraper's Accept header."""
    encoder, content_type = choose_encoder(accept or "")
    return encoder(registry), content_type


def state_from_run(
    times: np.ndarray,
    cube: np.ndarray,
    services: Sequence[str],
    dt: float,
    edges: Sequence[tuple[str, str]] = (),
    edge_cube: np.ndarray | None = None,
) -> MetricsState:
    """The state at a run's end from its telemetry read back (T × services × metrics)."""
    state = MetricsState(services, edges, dt)
    if edge_cube is None:
        edge_cube = np.zeros((len(times), len(state.edges), len(EDGE_METRICS)))
    step = 4096
    for start in range(0, len(times), step):
        sl = slice(start, start + step)
        state.update(times[sl], cube[sl], edge_cube[sl])
    return state
