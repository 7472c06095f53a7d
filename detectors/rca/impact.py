"""Impact RCA: which service can account for the symptom, in the symptom's own units.

An operator's alert names a symptom: the entry is slow, or failing. A service can explain
it only if it produced that much extra time or that many extra failures, so each service
is scored on its *impact*, its own traffic times its own trouble:

- latency impact: requests × latency, the seconds callers spent waiting in it;
- error impact: requests × error share (or the failed requests themselves when the
  signal is a count), the failures it handed back.

A load-balancer alias failing 16% of 56 requests cannot explain what a service failing 3%
of 800 does. Each impact series is compared with the incident's own last stretch before
the anomaly (anchoring on the incident's recording session: a normal period recorded on
another day may sit at another level), in units of how much that series changes from one
step to the next in normal operation (robust spread of lag-1..`max_lag` differences, from
the separate normal period when there is one); only increases count. The spread is floored
at `rel_floor` of the level and at `abs_floor` in the data's own units. Without a row of
its own before the anomaly, a series is anchored on the normal period's median instead.

Candidates: the symptom's service and everything it calls, directly or not (only a callee
can pass a symptom up to its caller); the rest follow, by score. Without a named symptom
every service is a candidate and both impacts count.
"""

from __future__ import annotations

import networkx as nx
import numpy as np
import pandas as pd

from detectors.ingest.kinds import kind_of, words
from detectors.rca.base import Cause, IncidentTelemetry, RcaError, services_of, signal_columns

LATENCY_PREFERENCE = ("average", "avg", "mean", "50", "p50", "median")
SYMPTOM_KINDS = ("latency", "errors")


def _pick(columns: list[tuple[str, str]], prefer: tuple[str, ...] = ()) -> str | None:
    """The column whose metric words best match the preference order (first one else)."""
    if not columns:
        return None
    for word in prefer:
        for col, metric in columns:
            if word in words(metric):
                return col
    return columns[0][0]


def impact_series(table: pd.DataFrame) -> dict[str, dict[str, np.ndarray]]:
    """Per service: its latency and error impact series (those its signals allow)."""
    by_service: dict[str, dict[str, list[tuple[str, str]]]] = {}
    for col, service, metric in signal_columns(table):
        kind = kind_of(metric)
        if kind.host:
            continue
        by_service.setdefault(service, {}).setdefault(kind.kind, []).append((col, metric))
    out: dict[str, dict[str, np.ndarray]] = {}
    for service, kinds in by_service.items():
        load_col = _pick(kinds.get("load", []), ("sum", "count", "requests", "workload", "rate"))
        load = table[load_col].to_numpy(float) if load_col else None
        series: dict[str, np.ndarray] = {}
        lat_col = _pick(kinds.get("latency", []), LATENCY_PREFERENCE)
        if lat_col is not None:
            lat = table[lat_col].to_numpy(float)
            series["latency"] = _weighted(lat, load)
        err = _failures(table, kinds.get("errors", []), load)
        if err is not None:
            series["errors"] = err
        if series:
            out[service] = series
    return out


def _weighted(x: np.ndarray, load: np.ndarray | None) -> np.ndarray:
    """x × load, zero where nothing was served (no traffic: no latency, no impact)."""
    if load is None:
        return x
    out = x * load
    return np.where(load == 0, 0.0, out)


def _failures(
    table: pd.DataFrame, columns: list[tuple[str, str]], load: np.ndarray | None
) -> np.ndarray | None:
    """Failed requests per step from the first usable error signal."""
    for col, metric in columns:
        kind = kind_of(metric)
        x = table[col].to_numpy(float)
        ws = set(words(metric))
        percent = (kind.unit == "%") or "percent" in ws or np.nanmax(np.abs(x), initial=0) > 1.5
        if kind.bad < 0:  # success or availability
            share = (100.0 - x) / 100.0 if percent else 1.0 - x
            return _weighted(share, load)
        if ws & {"ratio", "share", "fraction", "percent", "%"} or kind.unit in ("%", "ratio"):
            share = x / 100.0 if percent else x
            return _weighted(share, load)
        return x  # a count or a rate of failures already
    return None


def _diff_spread(x: np.ndarray, max_lag: int) -> float:
    """Robust spread (IQR / 1.349) of lag-1..max_lag differences, NaN-aware."""
    x = x[np.isfinite(x)]
    if x.size < 3:
        return 0.0
    diffs = np.concatenate([x[k:] - x[:-k] for k in range(1, min(max_lag, x.size - 1) + 1)])
    q25, q75 = np.quantile(diffs, [0.25, 0.75])
    return float(q75 - q25) / 1.349


class ImpactRca:
    """Symptom-anchored, traffic-weighted ranking (see the module doc)."""

    name = "impact"

    def __init__(
        self,
        before_s: float = 1800.0,
        after_s: float = 300.0,
        *,
        rel_floor: float = 0.05,
        abs_floor: float = 1.0,
        max_lag: int = 4,
        callees_only: bool = True,
    ) -> None:
        self.before_s = before_s
        self.after_s = after_s
        self.rel_floor = rel_floor
        self.abs_floor = abs_floor
        self.max_lag = max_lag
        self.callees_only = callees_only

    def scores(
        self, table: pd.DataFrame, anomaly_time: float, telemetry: IncidentTelemetry | None
    ) -> tuple[dict[str, float], dict[str, dict]]:
        """Per service: its largest impact z, and the evidence for it."""
        if "time" not in table.columns:
            raise RcaError("table has no 'time' column")
        t = telemetry or IncidentTelemetry()
        kinds = (t.target_kind,) if t.target_kind in SYMPTOM_KINDS else SYMPTOM_KINDS
        time = table["time"].to_numpy(float)
        step = float(np.median(np.diff(time))) if time.size > 1 else 0.0
        pre = (time + step <= anomaly_time) & (time >= anomaly_time - self.before_s)
        post = (time >= anomaly_time) & (time <= anomaly_time + self.after_s)
        if not pre.any() and t.normal is None:
            raise RcaError(
                f"no complete row before the anomaly time {anomaly_time:.10g} and no normal period"
            )
        if not post.any():
            raise RcaError(f"no rows at or after the anomaly time {anomaly_time:.10g}")
        series = impact_series(table)
        normal = impact_series(t.normal) if t.normal is not None else {}
        scores: dict[str, float] = {}
        evidence: dict[str, dict] = {}
        for service, by_kind in series.items():
            for kind in kinds:
                x = by_kind.get(kind)
                if x is None:
                    continue
                base = float(np.nanmedian(x[pre])) if np.isfinite(x[pre]).any() else np.nan
                # no pre-incident row of its own: the normal period's level stands in
                ref = normal.get(service, {}).get(kind)
                if not np.isfinite(base) and ref is not None and np.isfinite(ref).any():
                    base = float(np.nanmedian(ref))
                if not np.isfinite(base) or not np.isfinite(x[post]).any():
                    continue
                noise = ref if ref is not None else x[pre]
                spread = _diff_spread(noise, self.max_lag) if noise.size else 0.0
                scale = max(spread, self.rel_floor * abs(base), self.abs_floor)
                z = (float(np.nanmax(x[post])) - base) / scale
                if z > scores.get(service, -np.inf):
                    scores[service] = z
                    evidence[service] = {
                        "impact": kind,
                        "baseline": round(base, 6),
                        "peak": round(float(np.nanmax(x[post])), 6),
                        "z": round(z, 3),
                    }
        return scores, evidence

    def rank(
        self,
        table: pd.DataFrame,
        anomaly_time: float,
        graph: nx.DiGraph | None = None,
        telemetry: IncidentTelemetry | None = None,
    ) -> list[Cause]:
        scores, evidence = self.scores(table, anomaly_time, telemetry)
        services = list(dict.fromkeys([*services_of(table), *(graph.nodes if graph else [])]))
        target = telemetry.target if telemetry else None
        if self.callees_only and graph is not None and target in graph:
            head = {target} | nx.descendants(graph, target)
        else:
            head = set(services)

        def order(s: str) -> tuple:
            value = scores.get(s, -np.inf)
            return (s not in head, -value, s)

        out = []
        for s in sorted(services, key=order):
            ev = dict(evidence.get(s, {}))
            if s not in head:
                ev["note"] = f"not called by {target}"
            out.append(Cause(s, float(scores.get(s, 0.0)), ev))
        return out
