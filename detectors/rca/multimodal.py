"""Multimodal RCA: metrics, traces and logs, each heard where it speaks, summed as evidence.

On real systems most faults leave the faulty pod's own metrics alone: an exception or a
wrong return value shows only in the log lines its operations write, a network delay only
in how long its callers wait. Each modality scores every service on its own scale:

- `metrics`: how far the service's saturation signals (CPU, memory: the kinds a resource
  fault moves) rose in the window, in robust units of the preceding normal stretch;
- `latency` (`trace_latency`): how far its spans' exclusive time, and the calls into it,
  moved against the baseline spans;
- `logs` (`log_events`): how far the log lines inside its operations shifted.

Fusion: each modality's score s is turned into evidence log(1 + s/τ), τ being that
modality's noise level (the largest score it gave a service that was not the cause, on the
development day): a score at the noise level is worth log 2, a silent modality adds about
nothing, and modalities that agree add up. The service with the most evidence ranks first.

The baseline of spans and logs is the incident's normal period when one is given (a
fault-free stretch of the same deployment), else what precedes the anomaly time.
"""

from __future__ import annotations

from collections.abc import Iterator

import networkx as nx
import numpy as np
import pandas as pd

from detectors.ingest.kinds import kind_of
from detectors.rca.base import Cause, IncidentTelemetry, RcaError, services_of, signal_columns
from detectors.rca.log_events import EventSettings, shifts, span_events, top_shifts
from detectors.rca.span_graph import call_tree
from detectors.rca.trace_latency import LatencySettings, family_scores

MODALITIES = ("metrics", "latency", "logs")
SATURATION_KINDS = ("cpu", "memory")


def signal_windows(
    table: pd.DataFrame, at: float, before_s: float, after_s: float
) -> Iterator[tuple[str, str, str, np.ndarray, np.ndarray]]:
    """Each signal column with finite values on both sides of `at`: (column, service, metric,
    its values in the normal period before, its values in the window after)."""
    time = table["time"].to_numpy(float)
    base = (time >= at - before_s) & (time < at)
    win = (time >= at) & (time < at + after_s)
    if not base.any() or not win.any():
        return
    for col, service, metric in signal_columns(table):
        x = table[col].to_numpy(float)
        b, w = x[base][np.isfinite(x[base])], x[win][np.isfinite(x[win])]
        if b.size and w.size:
            yield col, service, metric, b, w


def robust_baseline(normal: np.ndarray, rel_floor: float) -> tuple[float, float]:
    """The normal period's median and spread: its IQR, floored at `rel_floor` of the median
    (a flat series still has a scale) and at 1e-3."""
    q25, med, q75 = np.quantile(normal, [0.25, 0.5, 0.75])
    return float(med), float(max(q75 - q25, rel_floor * abs(med), 1e-3))


def saturation_scores(
    table: pd.DataFrame,
    anomaly_time: float,
    before_s: float,
    window_s: float,
    kinds: tuple[str, ...] = SATURATION_KINDS,
    rel_floor: float = 0.05,
) -> tuple[pd.Series, dict[str, str]]:
    """Per service: the largest rise of its own saturation signals (window max against the
    normal median, in IQR units floored at `rel_floor` of the median; a node's signals are
    the node's, not the pod's), and which signal it was."""
    scores: dict[str, float] = {}
    top: dict[str, str] = {}
    for col, service, metric, b, w in signal_windows(table, anomaly_time, before_s, window_s):
        kind = kind_of(metric)
        if kind.kind not in kinds or kind.host:
            continue
        med, scale = robust_baseline(b, rel_floor)
        z = (w.max() - med) / scale if kind.bad >= 0 else (med - w.min()) / scale
        if z > scores.get(service, -np.inf):
            scores[service], top[service] = float(z), col
    return pd.Series(scores, dtype=float).clip(lower=0.0), top


class MultimodalRca:
    """Metrics + trace latency + log events, fused as evidence (see the module doc).

    The noise levels `tau_*` were set on Nezha's 2023-01-29 by the rule above
    (`python -m experiments.realbench.tune_nezha`); the window and baselines likewise.
    """

    name = "multimodal"

    def __init__(
        self,
        before_s: float = 600.0,
        after_s: float = 180.0,
        *,
        tau_metrics: float = 68.9,
        tau_latency: float = 68.0,
        tau_logs: float = 4.5,
        latency: LatencySettings | None = None,
        events: EventSettings | None = None,
        modalities: tuple[str, ...] = MODALITIES,
        log_slack_s: float = 60.0,
    ) -> None:
        self.before_s = before_s
        self.after_s = after_s
        self.tau_metrics = tau_metrics
        self.tau_latency = tau_latency
        self.tau_logs = tau_logs
        self.latency = latency
        self.events = events
        self.modalities = modalities
        self.log_slack_s = log_slack_s

    def scores(
        self,
        table: pd.DataFrame | None,
        anomaly_time: float,
        telemetry: IncidentTelemetry | None = None,
    ) -> tuple[pd.DataFrame, dict[str, dict]]:
        """Services × modalities raw scores, and per-service evidence."""
        t = telemetry or IncidentTelemetry()
        cols: dict[str, pd.Series] = {}
        evidence: dict[str, dict] = {}
        if "metrics" in self.modalities and table is not None:
            sat, top = saturation_scores(table, anomaly_time, self.before_s, self.after_s)
            cols["metrics"] = sat
            for svc, col in top.items():
                if sat[svc] > 0:
                    evidence.setdefault(svc, {})["metric"] = f"{col} z {sat[svc]:.3g}"
        spans_in, base_spans = self._spans(t, anomaly_time)
        if spans_in is not None and "latency" in self.modalities:
            fam = family_scores(spans_in, base_spans, self.latency)
            cols["latency"] = fam.max(axis=1).clip(lower=0.0)
            for svc, row in fam.iterrows():
                if row.max() > 0:
                    evidence.setdefault(svc, {})["latency"] = {
                        k: round(float(v), 3) for k, v in row.items()
                    }
        if spans_in is not None and "logs" in self.modalities and t.logs is not None:
            logs_in, base_logs = self._logs(t, anomaly_time)
            d = shifts(
                span_events(spans_in, logs_in),
                span_events(base_spans, base_logs),
                self.events or EventSettings(),
            )
            cols["logs"] = d.groupby("service")["score"].max() if len(d) else pd.Series(dtype=float)
            for svc in cols["logs"][cols["logs"] > 0].index:
                evidence.setdefault(svc, {})["logs"] = top_shifts(d, svc)
        frame = pd.concat(cols, axis=1).fillna(0.0) if cols else pd.DataFrame()
        return frame, evidence

    def _spans(
        self, t: IncidentTelemetry, at: float
    ) -> tuple[pd.DataFrame | None, pd.DataFrame | None]:
        if t.spans is None or not len(t.spans):
            return None, None
        spans = t.spans if "self_ms" in t.spans.columns else call_tree(t.spans)
        window = spans[(spans["start"] >= at) & (spans["start"] < at + self.after_s)]
        if t.normal_spans is not None and len(t.normal_spans):
            base = t.normal_spans
            base = base if "self_ms" in base.columns else call_tree(base)
        else:
            base = spans[(spans["start"] >= at - self.before_s) & (spans["start"] < at)]
        if not len(window) or not len(base):
            return None, None
        return window, base

    def _logs(self, t: IncidentTelemetry, at: float) -> tuple[pd.DataFrame, pd.DataFrame | None]:
        logs = t.logs
        slack = self.log_slack_s
        window = logs[(logs["time"] >= at - slack) & (logs["time"] < at + self.after_s + slack)]
        if t.normal_logs is not None:
            return window, t.normal_logs
        return window, logs[(logs["time"] >= at - self.before_s) & (logs["time"] < at)]

    def fuse(self, scores: pd.DataFrame) -> pd.Series:
        """Evidence per service: Σ log(1 + score/τ) over the modalities present."""
        taus = {"metrics": self.tau_metrics, "latency": self.tau_latency, "logs": self.tau_logs}
        total = pd.Series(0.0, index=scores.index)
        for m in scores.columns:
            total += np.log1p(scores[m].clip(lower=0.0) / taus[m])
        return total

    def rank(
        self,
        table: pd.DataFrame | None,
        anomaly_time: float,
        graph: nx.DiGraph | None = None,
        telemetry: IncidentTelemetry | None = None,
    ) -> list[Cause]:
        """Every service seen in any modality, most evidence first; the graph is not used."""
        if table is not None and "time" not in table.columns:
            raise RcaError("table has no 'time' column")
        scores, evidence = self.scores(table, anomaly_time, telemetry)
        services = list(services_of(table)) if table is not None else []
        services += [s for s in scores.index if s not in services]
        if not services:
            raise RcaError("no service in the metrics, spans or logs given")
        fused = self.fuse(scores).reindex(services).fillna(0.0)
        order = sorted(services, key=lambda s: (-fused[s], s))
        out = []
        for s in order:
            row = scores.loc[s] if s in scores.index else pd.Series(dtype=float)
            ev = {"modalities": {k: round(float(v), 3) for k, v in row.items()}}
            ev.update(evidence.get(s, {}))
            out.append(Cause(s, float(fused[s]), ev))
        return out
