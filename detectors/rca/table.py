"""RCA on a recorded wide table, so the methods run on real data and not only the twin's.

The table is RCAEval's: a time column (unix seconds or ISO timestamps) and one numeric
column per `<service>_<metric>`. The anomaly time is given in the same clock, as a number
or an ISO timestamp; the graph, when there is one, comes from a topology or scenario YAML.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import networkx as nx
import pandas as pd

from detectors.anomaly.table import read_table
from detectors.rca.base import Cause, RcaError, RcaMethod
from detectors.rca.randomwalk import RandomWalkRca
from detectors.rca.robust import RobustScoreRca
from twin.errors import FirebreakError

METHODS: dict[str, type] = {"robust": RobustScoreRca, "randomwalk": RandomWalkRca}


def make_method(name: str, **params: Any) -> RcaMethod:
    """A method by its name (`robust`, `randomwalk`), with its window settings."""
    if name not in METHODS:
        raise RcaError(f"unknown RCA method {name!r} (expected one of {', '.join(METHODS)})")
    return METHODS[name](**params)


def parse_time(text: str | float) -> float:
    """Unix seconds from a number or an ISO timestamp (a timestamp without zone is UTC)."""
    try:
        return float(text)
    except (TypeError, ValueError):
        pass
    stamp = pd.to_datetime(str(text), errors="coerce", utc=True)
    if pd.isna(stamp):
        raise RcaError(f"anomaly time {text!r}: neither seconds nor an ISO timestamp")
    return (stamp - pd.Timestamp(0, tz="UTC")).total_seconds()


def read_wide_table(path: str | Path, time_column: str | None = None) -> pd.DataFrame:
    """The table with its time as seconds in a `time` column, first."""
    times, signals = read_table(Path(path), time_column)
    signals = signals.drop(columns=[c for c in signals.columns if c == "time"])
    return pd.concat([pd.Series(times, name="time", index=signals.index), signals], axis=1)


def load_graph(path: str | Path) -> nx.DiGraph:
    """The call graph of a topology YAML, or of the topology a scenario YAML names."""
    from twin.scenario.loader import load_scenario, load_topology

    try:
        return load_topology(path).graph()
    except FirebreakError as as_topology:
        try:
            return load_scenario(path).topology.graph()
        except FirebreakError:
            raise as_topology from None


def rank_table(
    table: pd.DataFrame,
    anomaly_time: float,
    *,
    method: str = "robust",
    graph: nx.DiGraph | None = None,
    **params: Any,
) -> list[Cause]:
    """Every service of the table ranked by the named method."""
    return make_method(method, **params).rank(table, anomaly_time, graph)


def causes_to_dicts(causes: list[Cause], top: int | None = None) -> list[dict[str, Any]]:
    """JSON-ready causes, best first, with their rank."""
    return [
        {"rank": i + 1, "service": c.service, "score": c.score, "evidence": c.evidence}
        for i, c in enumerate(causes[:top] if top else causes)
    ]
