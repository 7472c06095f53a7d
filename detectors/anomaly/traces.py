"""Per-edge trace anomalies: a call edge whose latency or error share leaves its baseline.

A slow or failing dependency shows first on the edges into it, caller by caller, before the
service's own aggregate moves much. Each sampled call becomes an `EdgeCall`: a CLIENT span
with its `peer.service` attribute (OpenTelemetry's convention, the twin's too), or, for a
SERVER span whose parent belongs to another service without a client span naming the peer,
the parent's service as caller. `TraceEdgeDetector` learns per edge a robust baseline
(median and MAD of log latency; error share) and tests tumbling windows:
- latency: the window's median log latency against the baseline median, as a z-score of a
  sample median (σ·1.2533/√n), and at least `min_ratio` times slower;
- errors: the window's error count against a binomial tail at the baseline share (floored),
  and at least `min_excess` above it.
Windows with fewer than `min_spans` calls on an edge are not judged (sampling is sparse).
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from detectors.anomaly.windows import TumblingWindows
from detectors.base import Alert
from twin.scenario.import_traces import read_spans
from twin.telemetry.spans import EPOCH_UNIX_S


@dataclass(frozen=True, slots=True)
class EdgeCall:
    """One observed call: when it ended, who called whom, how long it took, whether it failed."""

    time: float
    caller: str
    callee: str
    latency_s: float
    error: bool


def _attrs(span: Any) -> dict[str, Any]:
    return getattr(span, "attributes", None) or getattr(span, "attrs", None) or {}


def _parent(span: Any) -> str | None:
    return getattr(span, "parent_id", None) or getattr(span, "parent", None)


def edge_calls(
    spans: Sequence[Any], time_scale: float = 1.0, offset: float = 0.0
) -> list[EdgeCall]:
    """Edge calls of a batch of spans (twin `Span`s or imported `RawSpan`s), by end time.

    `time_scale` and `offset` turn span times into seconds (imported spans are in unix
    microseconds: 1e-6 and minus the epoch give the twin's simulated seconds).
    """
    by_id = {s.span_id: s for s in spans}
    named_peer = set()
    calls = []
    for s in spans:
        peer = _attrs(s).get("peer.service")
        if s.kind == "client" and peer:
            named_peer.add(s.span_id)
            end, dur = s.end * time_scale + offset, (s.end - s.start) * time_scale
            calls.append(EdgeCall(end, s.service, str(peer), dur, bool(s.error)))
    for s in spans:
        parent = by_id.get(_parent(s) or "")
        if s.kind != "server" or parent is None or parent.service == s.service:
            continue
        if parent.span_id in named_peer:
            continue
        end, dur = s.end * time_scale + offset, (s.end - s.start) * time_scale
        calls.append(EdgeCall(end, parent.service, s.service, dur, bool(s.error)))
    calls.sort(key=lambda c: c.time)
    return calls


def read_edge_calls(path: str | Path) -> list[EdgeCall]:
    """The edge calls of a run directory's `traces.json` (or any OTLP/Jaeger JSON file), in
    the twin's simulated seconds."""
    _, spans = read_spans(path)
    return edge_calls(spans, time_scale=1e-6, offset=-float(EPOCH_UNIX_S))


def binomial_tail(k: int, n: int, p: float) -> float:
    """P(K ≥ k) for K ~ Binomial(n, p), summed exactly in log space (n is a window's spans)."""
    if k <= 0:
        return 1.0
    if p <= 0.0:
        return 0.0
    if p >= 1.0:
        return 1.0
    lp, lq = math.log(p), math.log1p(-p)
    logs = [
        math.lgamma(n + 1) - math.lgamma(j + 1) - math.lgamma(n - j + 1) + j * lp + (n - j) * lq
        for j in range(k, n + 1)
    ]
    top = max(logs)
    return min(1.0, math.exp(top) * sum(math.exp(v - top) for v in logs))


@dataclass
class _Baseline:
    median: float  # of log latency
    sigma: float  # 1.4826·MAD of log latency, floored
    error_share: float
    n: int


class TraceEdgeDetector(TumblingWindows):
    """Latency and error deviation per call edge over tumbling windows of sampled spans."""

    def __init__(
        self,
        window_s: float = 60.0,
        min_spans: int = 5,
        z: float = 4.0,
        min_ratio: float = 1.5,
        alpha: float = 1e-4,
        min_excess: float = 0.05,
        sigma_floor: float = 0.05,
        error_floor: float = 0.005,
    ) -> None:
        self.window_s = window_s
        self.min_spans = min_spans
        self.z = z
        self.min_ratio = min_ratio
        self.alpha = alpha
        self.min_excess = min_excess
        self.sigma_floor = sigma_floor
        self.error_floor = error_floor
        self.baselines: dict[tuple[str, str], _Baseline] = {}
        self.window_start: float | None = None
        self.latencies: dict[tuple[str, str], list[float]] = defaultdict(list)
        self.errors: dict[tuple[str, str], int] = defaultdict(int)

    def get_params(self) -> dict[str, Any]:
        names = ("window_s", "min_spans", "z", "min_ratio", "alpha", "min_excess",
                 "sigma_floor", "error_floor")  # fmt: skip
        return {k: getattr(self, k) for k in names}

    def fit(self, calls: Iterable[EdgeCall]) -> TraceEdgeDetector:
        """Robust per-edge baselines from normal calls; edges with too few calls stay unjudged."""
        lat: dict[tuple[str, str], list[float]] = defaultdict(list)
        err: dict[tuple[str, str], int] = defaultdict(int)
        for c in calls:
            lat[(c.caller, c.callee)].append(math.log(max(c.latency_s, 1e-6)))
            err[(c.caller, c.callee)] += c.error
        for edge, values in lat.items():
            if len(values) < self.min_spans:
                continue
            v = np.asarray(values)
            med = float(np.median(v))
            sigma = max(1.4826 * float(np.median(np.abs(v - med))), self.sigma_floor)
            share = (err[edge] + 0.5) / (len(v) + 1.0)  # a pseudo-count: zero is never certain
            self.baselines[edge] = _Baseline(med, sigma, share, len(v))
        return self

    def update(self, call: EdgeCall) -> list[Alert]:
        """Add one call (time-ordered); returns the alerts of the windows it closes."""
        alerts = self._advance(call.time)
        edge = (call.caller, call.callee)
        self.latencies[edge].append(math.log(max(call.latency_s, 1e-6)))
        self.errors[edge] += call.error
        return alerts

    def _close(self) -> list[Alert]:
        assert self.window_start is not None
        end = self.window_start + self.window_s
        alerts = []
        for edge, values in sorted(self.latencies.items()):
            base = self.baselines.get(edge)
            if base is None or len(values) < self.min_spans:
                continue
            alerts.extend(self._judge(end, edge, base, values, self.errors[edge]))
        self.latencies.clear()
        self.errors.clear()
        self.window_start = end
        return alerts

    def _judge(
        self, t: float, edge: tuple[str, str], base: _Baseline, values: list[float], errors: int
    ) -> list[Alert]:
        n = len(values)
        caller, callee = edge
        out = []
        shift = float(np.median(values)) - base.median
        zscore = shift / (1.2533 * base.sigma / math.sqrt(n))
        if zscore >= self.z and shift >= math.log(self.min_ratio):
            sev = "critical" if zscore >= 2.0 * self.z else "warning"
            signal = f"edge:{caller}->{callee}:latency"
            out.append(Alert(t, callee, signal, zscore / self.z, sev, "traces.edge"))
        p0 = max(base.error_share, self.error_floor)
        p = binomial_tail(errors, n, p0)
        if p < self.alpha and errors / n - p0 >= self.min_excess:
            score = math.log10(max(p, 1e-300)) / math.log10(self.alpha)
            sev = "critical" if score >= 2.0 else "warning"
            signal = f"edge:{caller}->{callee}:errors"
            out.append(Alert(t, callee, signal, score, sev, "traces.edge"))
        return out

    def flush(self) -> list[Alert]:
        """Judge the open window."""
        return self._close() if self.window_start is not None else []

    def process(self, calls: Iterable[EdgeCall]) -> list[Alert]:
        """All alerts of a time-ordered stream of calls, the last window judged."""
        alerts: list[Alert] = []
        for c in calls:
            alerts.extend(self.update(c))
        return alerts + self.flush()
