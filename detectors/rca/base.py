"""The RCA contract every method follows, so the suite and the CLI treat them alike.

Input is the table RCAEval uses: a `time` column (seconds) plus `<service>_<metric>`
columns, an anomaly time (when the incident opened, from the labels or from the detectors),
and optionally the service graph (callers → callees). Output is every candidate service
ranked, best first, each with a score and the evidence a human needs: which signals moved,
along which propagation path.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import networkx as nx
import pandas as pd

from twin.errors import FirebreakError


class RcaError(FirebreakError):
    """An incident the RCA cannot analyse (no data before the anomaly, unknown columns)."""


@dataclass
class Cause:
    service: str
    score: float
    evidence: dict[str, Any] = field(default_factory=dict)


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
