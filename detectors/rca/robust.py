"""Robust-scoring RCA in the manner of BARO (Pham et al., FSE'24).

The service whose signals moved furthest, measured in units of their own normal spread,
is the likeliest cause. Per signal: the normal window's median and inter-quartile range
(robust to spikes and to the slow drift a mean and standard deviation would absorb), then
how far the incident window sits from that median in IQR units. A service scores its
largest signal score.

A flat normal window (IQR 0, common in a simulator and for error counters) would divide
by zero, so the spread is floored twice: at `rel_floor` of the normal median (a 1 % move of
a level counts as one unit, so the service whose level changed by the largest factor leads)
and at a floor shared by every column of the same metric (`<metric>` after the last `_`):
`metric_floor` of that metric's largest normal level across services, or, for a metric
that sat near zero everywhere before the incident (errors), `zero_floor` of its largest
value anywhere. Sharing the floor per metric keeps scores comparable across services
(14 new errors/s outrank 0.5/s) and keeps a new error count from swamping every latency.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import networkx as nx
import numpy as np
import pandas as pd

from detectors.rca.base import Cause, RcaError, services_of


@dataclass(frozen=True)
class Windows:
    """The incident's two windows: rows × signals, with the signal names and their services."""

    columns: list[str]
    services: list[str]  # the service of each column
    metrics: list[str]  # the metric of each column
    normal: np.ndarray
    incident: np.ndarray
    normal_times: np.ndarray
    incident_times: np.ndarray


def split_windows(
    table: pd.DataFrame, anomaly_time: float, before_s: float, after_s: float
) -> Windows:
    """The normal window [T - before_s, T) and the incident window [T, T + after_s].

    Raises RcaError for what no method can analyse: no time column, no `<service>_<metric>`
    columns, T outside the table, no rows before T.
    """
    if "time" not in table.columns:
        raise RcaError("table has no 'time' column")
    columns = [
        str(c)
        for c in table.columns
        if c != "time" and str(c).rpartition("_")[0] and pd.api.types.is_numeric_dtype(table[c])
    ]
    if not columns:
        raise RcaError(
            "table has no numeric <service>_<metric> columns "
            f"(columns: {', '.join(map(str, table.columns[:8]))})"
        )
    times = table["time"].to_numpy(dtype=float)
    if len(times) == 0:
        raise RcaError("table has no rows")
    t0, t1 = float(np.nanmin(times)), float(np.nanmax(times))
    t = float(anomaly_time)
    if not (t0 <= t <= t1):
        raise RcaError(
            f"anomaly time {t:.10g} is outside the table ({t0:.10g} to {t1:.10g}); "
            "give it in the table's clock"
        )
    before = (times < t) & (times >= t - before_s)
    if not before.any():
        raise RcaError(f"no rows before the anomaly time {t:.10g}: nothing to call normal")
    during = (times >= t) & (times <= t + after_s)
    values = table[columns].to_numpy(dtype=float)
    return Windows(
        columns=columns,
        services=[c.rpartition("_")[0] for c in columns],
        metrics=[c.rpartition("_")[2] for c in columns],
        normal=values[before],
        incident=values[during],
        normal_times=times[before],
        incident_times=times[during],
    )


def _quantiles(x: np.ndarray, q: list[float]) -> np.ndarray:
    """Per-column quantiles (q × columns), NaN-aware only when NaNs are present."""
    if x.shape[0] == 0:
        return np.full((len(q), x.shape[1]), np.nan)
    if np.isnan(x).any():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # an all-NaN column is NaN
            return np.nanquantile(x, q, axis=0)
    return np.quantile(x, q, axis=0)


def signal_scores(
    w: Windows,
    *,
    rel_floor: float = 0.01,
    metric_floor: float = 1e-4,
    zero_floor: float = 0.01,
    peak: float = 0.9,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(score, signed deviation, normal median, incident median) per column.

    The deviation is taken at the incident window's `peak` quantile on the side the signal
    moved (its 1 - peak quantile when it fell): an incident covering only part of the
    window still shows, one stray spike does not.
    """
    q25, med, q75 = _quantiles(w.normal, [0.25, 0.5, 0.75])
    lo, mid, hi = _quantiles(w.incident, [1.0 - peak, 0.5, peak])
    iqr = np.nan_to_num(q75 - q25)
    scale = np.maximum(iqr, rel_floor * np.abs(np.nan_to_num(med)))
    metrics = np.array(w.metrics)
    level = np.abs(np.nan_to_num(med))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        overall = np.nan_to_num(np.nanmax(np.abs(np.vstack([w.normal, w.incident])), axis=0))
    for metric in set(w.metrics):
        cols = metrics == metric
        level_max, overall_max = level[cols].max(), overall[cols].max()
        if level_max <= zero_floor * overall_max:  # flat near zero in normal times
            floor = zero_floor * overall_max
        else:
            floor = metric_floor * level_max
        scale[cols] = np.maximum(scale[cols], max(floor, 1e-12))
    up = np.nan_to_num(hi - med)
    down = np.nan_to_num(med - lo)
    deviation = np.where(up >= down, up, -down)
    score = np.abs(deviation) / scale
    return score, deviation / scale, med, mid


class RobustScoreRca:
    """BARO-style ranking: each service's largest robust deviation, biggest first."""

    name = "robust"

    def __init__(
        self,
        before_s: float = 1800.0,
        after_s: float = 300.0,
        *,
        rel_floor: float = 0.01,
        metric_floor: float = 1e-4,
        zero_floor: float = 0.01,
        peak: float = 0.9,
        evidence_signals: int = 3,
    ) -> None:
        self.before_s = before_s
        self.after_s = after_s
        self.rel_floor = rel_floor
        self.metric_floor = metric_floor
        self.zero_floor = zero_floor
        self.peak = peak
        self.evidence_signals = evidence_signals

    def service_scores(
        self, table: pd.DataFrame, anomaly_time: float
    ) -> tuple[dict[str, float], dict[str, list[dict]], Windows]:
        """Per service: its score, its top signals as evidence, and the windows used."""
        w = split_windows(table, anomaly_time, self.before_s, self.after_s)
        if w.incident.shape[0] == 0:
            raise RcaError(f"no rows at or after the anomaly time {anomaly_time:.10g}")
        score, signed, normal_med, incident_med = signal_scores(
            w,
            rel_floor=self.rel_floor,
            metric_floor=self.metric_floor,
            zero_floor=self.zero_floor,
            peak=self.peak,
        )
        scores: dict[str, float] = {s: 0.0 for s in services_of(table)}
        by_service: dict[str, list[int]] = {}
        for i, svc in enumerate(w.services):
            by_service.setdefault(svc, []).append(i)
        evidence: dict[str, list[dict]] = {}
        for svc, idx in by_service.items():
            order = sorted(idx, key=lambda i: -score[i])
            scores[svc] = float(score[order[0]])
            evidence[svc] = [
                {
                    "signal": w.columns[i],
                    "score": round(float(score[i]), 3),
                    "direction": "up" if signed[i] >= 0 else "down",
                    "normal_median": float(normal_med[i]),
                    "incident_median": float(incident_med[i]),
                }
                for i in order[: self.evidence_signals]
            ]
        return scores, evidence, w

    def rank(
        self, table: pd.DataFrame, anomaly_time: float, graph: nx.DiGraph | None = None
    ) -> list[Cause]:
        """Every service, most deviant first; the graph is not used."""
        scores, evidence, _ = self.service_scores(table, anomaly_time)
        order = sorted(scores, key=lambda s: -scores[s])
        return [Cause(s, scores[s], {"signals": evidence.get(s, [])}) for s in order]
