"""The RCA contract every method follows, so the suite and the CLI treat them alike.

Input is the table RCAEval uses: a `time` column (seconds) plus `<service>_<metric>`
columns, an anomaly time (when the incident opened, from the labels or from the detectors),
and optionally the service graph (callers → callees). Methods that can use more take an
`IncidentTelemetry` too: a separate normal-period table, spans and logs (with their own
normal period), and the symptom an operator saw (which service, latency or errors). Output
is every candidate service ranked, best first, each with a score and the evidence a human
needs: which signals moved, along which propagation path.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import networkx as nx
import numpy as np
import pandas as pd

from twin.errors import FirebreakError


class RcaError(FirebreakError):
    """An incident the RCA cannot analyse (no data before the anomaly, unknown columns)."""


@dataclass
class Cause:
    service: str
    score: float
    evidence: dict[str, Any] = field(default_factory=dict)


@dataclass
class IncidentTelemetry:
    """What an incident offers beyond its wide table; every part is optional.

    `normal`: a wide table of a normal period recorded apart (another session, another
    day); `spans`/`logs`: the ingested span and log frames around the incident, with
    `normal_spans`/`normal_logs` from a fault-free period (when absent, what precedes the
    anomaly time is the baseline); `target`/`target_kind`: where the symptom was seen
    (a service, and "latency" or "errors"), as an SLO alert names it.
    """

    normal: pd.DataFrame | None = None
    spans: pd.DataFrame | None = None
    logs: pd.DataFrame | None = None
    normal_spans: pd.DataFrame | None = None
    normal_logs: pd.DataFrame | None = None
    target: str | None = None
    target_kind: str | None = None


@runtime_checkable
class RcaMethod(Protocol):
    name: str

    def rank(
        self, table: pd.DataFrame, anomaly_time: float, graph: nx.DiGraph | None = None
    ) -> list[Cause]: ...


def services_of(table: pd.DataFrame) -> list[str]:
    """Service names from `<service>_<metric>` columns, in first-seen order."""
    seen: dict[str, None] = {}
    for col in table.columns:
        if col == "time":
            continue
        service, sep, _ = str(col).rpartition("_")
        if sep and service:
            seen.setdefault(service, None)
    return list(seen)


def signal_columns(table: pd.DataFrame) -> list[tuple[str, str, str]]:
    """(column, service, metric) of every numeric `<service>_<metric>` column."""
    out = []
    for col in table.columns:
        if col == "time" or not pd.api.types.is_numeric_dtype(table[col]):
            continue
        service, sep, metric = str(col).rpartition("_")
        if sep and service:
            out.append((str(col), service, metric))
    return out


def join_normal(normal: pd.DataFrame, table: pd.DataFrame) -> pd.DataFrame:
    """A separate normal period joined in front of an incident table: re-timed so its last
    row sits one step before the incident's first, restricted to the incident's columns
    (a signal the normal period lacks is missing there, not invented)."""
    if "time" not in normal.columns or "time" not in table.columns:
        raise RcaError("both the normal and the incident table need a 'time' column")
    if normal.empty:
        return table
    t = table["time"].to_numpy(dtype=float)
    n = normal["time"].to_numpy(dtype=float)
    steps = np.diff(t) if t.size > 1 else np.diff(n)
    step = float(np.median(steps)) if steps.size else 1.0
    moved = normal.reindex(columns=table.columns).copy()
    moved["time"] = n - n.max() + (t.min() - step)
    return pd.concat([moved, table], ignore_index=True)
