"""A real incident as the benchmark hands it to a method, and the answer kept apart.

`RealCase.inputs` is everything a method may see; `RealCase.answer` is read only when the
case is scored. The split keeps the answer out of reach by construction.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import networkx as nx
import pandas as pd

from detectors.rca.base import IncidentTelemetry


@dataclass
class CaseInputs:
    """What a method sees: the wide table, the anomaly time, the graph, the rest."""

    table: pd.DataFrame
    anomaly_time: float
    graph: nx.DiGraph | None = None
    telemetry: IncidentTelemetry = field(default_factory=IncidentTelemetry)


@dataclass(frozen=True)
class Answer:
    """Scoring only: the root-cause service and what kind of fault it was."""

    root: str
    kind: str


@dataclass
class RealCase:
    dataset: str
    part: str  # a day or a split
    dev: bool  # settings were chosen on this part
    name: str
    inputs: CaseInputs
    answer: Answer
    meta: dict = field(default_factory=dict)  # shown in tables (regime, target metric)
