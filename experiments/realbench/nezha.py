"""Nezha Train Ticket (FSE'23 data): 45 faults over two days, metrics + traces + logs.

Per day: pod metrics (one CSV per pod, 60 s), spans and logs of the fault minutes, and a
fault-free period in `construct_data` (its spans and logs are the baseline of the trace
and log modalities; its metric files repeat the day's). A case is one fault: the anomaly
time is the label's `inject_time` (UTC; `inject_timestamp` is often 8 h off and never
read); its pod and kind are the answer. 2023-01-29 is the development day.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import networkx as nx
import pandas as pd

from detectors.ingest.names import service_of_pod
from detectors.ingest.read import read_log_files, read_metrics, read_traces
from detectors.rca.base import IncidentTelemetry
from detectors.rca.span_graph import call_graph, call_tree
from experiments.realbench.cases import Answer, CaseInputs, RealCase

DEV_DAY = "2023-01-29"
WINDOW_S = 180.0  # the incident window the methods read (FRAMING in harness)


def is_nezha(root: Path) -> bool:
    return (root / "rca_data").is_dir() and (root / "construct_data").is_dir()


@dataclass
class NezhaDay:
    """One day's telemetry, read once and shared by its cases."""

    day: str
    table: pd.DataFrame
    spans: pd.DataFrame
    logs: pd.DataFrame
    normal_spans: pd.DataFrame
    normal_logs: pd.DataFrame
    notes: list[str]


def load_day(root: Path, day: str) -> NezhaDay:
    rca, normal = root / "rca_data" / day, root / "construct_data" / day
    metrics = read_metrics(rca / "metric")
    spans, n1 = read_traces(rca / "trace")
    logs, n2 = read_log_files(rca / "log")
    normal_spans, n3 = read_traces(normal / "trace")
    normal_logs, n4 = read_log_files(normal / "log")
    notes = list(dict.fromkeys([*metrics.notes, *n1, *n2, *n3, *n4]))
    return NezhaDay(
        day, metrics.wide(), call_tree(spans), logs, call_tree(normal_spans), normal_logs, notes
    )


def faults(root: Path, day: str) -> list[tuple[float, str, str]]:
    """(inject time in unix seconds, root service, kind) of a day's faults, in time order."""
    path = root / "rca_data" / day / f"{day}-fault_list.json"
    raw = json.loads(path.read_text())
    out = []
    for items in raw.values():
        for f in items:
            t = pd.Timestamp(f["inject_time"], tz="UTC").timestamp()
            out.append((float(t), service_of_pod(f["inject_pod"]), str(f["inject_type"])))
    return sorted(out)


def traced_graph(data: NezhaDay, until: float) -> nx.DiGraph:
    """The call graph the traces had shown by `until`: the normal period's calls and every
    call that started before then (what a trace-fed dependency graph would hold)."""
    seen = data.spans[data.spans["start"] < until]
    graph = nx.DiGraph()
    graph.add_edges_from(call_graph(data.normal_spans))
    graph.add_edges_from(call_graph(seen))
    return graph


def days_of(root: Path) -> tuple[str, ...]:
    """The days a copy of the dataset holds (those with a fault list)."""
    return tuple(
        d.name
        for d in sorted((root / "rca_data").iterdir())
        if (d / f"{d.name}-fault_list.json").is_file()
    )


def cases(
    root: Path, days: tuple[str, ...] | None = None, limit: int | None = None
) -> list[RealCase]:
    """Every fault of the given days (default: all present) as a case (the first `limit`
    per day when given)."""
    out = []
    for day in days or days_of(root):
        data = load_day(root, day)
        telemetry = IncidentTelemetry(
            spans=data.spans,
            logs=data.logs,
            normal_spans=data.normal_spans,
            normal_logs=data.normal_logs,
        )
        for i, (t, service, kind) in enumerate(faults(root, day)[:limit]):
            out.append(
                RealCase(
                    dataset="nezha-trainticket",
                    part=day,
                    dev=day == DEV_DAY,
                    name=f"{day} {pd.Timestamp(t, unit='s'):%H:%M:%S}",
                    inputs=CaseInputs(data.table, t, traced_graph(data, t + WINDOW_S), telemetry),
                    answer=Answer(service, kind),
                    meta={"case": i},
                )
            )
    return out
