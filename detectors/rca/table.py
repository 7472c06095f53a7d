"""RCA on recorded telemetry, so the methods run on real data and not only the twin's.

Metrics come in any format `detectors.ingest` reads (RCAEval wide CSV, long CSV,
Prometheus JSON, PetShop CSV, a directory of per-pod files) and become the wide table:
`time` plus `<service>_<metric>` columns. The anomaly time is given in the same clock, as
a number or an ISO timestamp; the graph, when there is one, comes from a topology or
scenario YAML, and its service names help split the columns.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import networkx as nx
import numpy as np
import pandas as pd

from detectors.ingest.read import read_metrics
from detectors.ingest.table import SignalTable
from detectors.rca.base import Cause, RcaError
from detectors.rca.registry import make_method
from twin.errors import FirebreakError


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


def read_signal_table(
    path: str | Path,
    time_column: str | None = None,
    services: Iterable[str] | None = None,
    exclude: Sequence[str] = (),
) -> SignalTable:
    """Any supported metrics file or directory, ingested (with its notes)."""
    return read_metrics(Path(path), time_column=time_column, services=services, exclude=exclude)


def read_wide_table(
    path: str | Path,
    time_column: str | None = None,
    services: Iterable[str] | None = None,
    exclude: Sequence[str] = (),
) -> pd.DataFrame:
    """The RCA table of a metrics file: `time` (seconds) first, then `<service>_<metric>`."""
    return read_signal_table(path, time_column, services, exclude).wide()


def read_adjacency(path: str | Path) -> nx.DiGraph:
    """A call graph saved as a square adjacency CSV, row calls column (PetShop's graph.csv)."""
    from detectors.ingest.errors import require_file
    from detectors.ingest.wide_csv import read_csv_frame

    adj = read_csv_frame(require_file(path), index_col=0)
    if [str(i) for i in adj.index] != [str(c) for c in adj.columns]:
        raise RcaError(f"{path}: not a square adjacency matrix (row and column names differ)")
    values = adj.apply(pd.to_numeric, errors="coerce")
    if values.isna().any().any():
        row, col = next(zip(*np.nonzero(values.isna().to_numpy()), strict=True))
        raise RcaError(
            f"{path}: column {adj.columns[col]!r}, row {row + 1}: not a number: "
            f"{adj.iloc[row, col]!r}"
        )
    graph = nx.DiGraph()
    graph.add_nodes_from(map(str, adj.index))
    rows, cols = np.nonzero(values.to_numpy() > 0)
    graph.add_edges_from(
        (str(adj.index[r]), str(adj.columns[c])) for r, c in zip(rows, cols, strict=True)
    )
    return graph


def load_graph(path: str | Path) -> nx.DiGraph:
    """The call graph of a topology YAML, of the topology a scenario YAML names, or of an
    adjacency CSV (row calls column)."""
    from twin.scenario.loader import load_scenario, load_topology

    if str(path).lower().endswith((".csv", ".csv.gz")):
        return read_adjacency(path)
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
