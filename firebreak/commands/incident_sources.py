"""What `firebreak incidents` reads: a twin run directory or recorded telemetry (a metrics
file or folder with optional traces and logs), as one incident's inputs.

A run directory is read by `detectors.memory.run_dir` (its metrics moved onto the unix
clock of its spans and logs); `--at` for a run directory is in the run's own seconds, as
labels.json and the scenario give times.
"""

from __future__ import annotations

import argparse
import json
import math
from dataclasses import dataclass
from pathlib import Path

import networkx as nx
import pandas as pd

from twin.errors import FirebreakError


@dataclass
class Source:
    """One incident's telemetry as the signature reads it."""

    name: str
    table: pd.DataFrame
    at: float  # the anomaly time, on the table's clock
    telemetry: object
    graph: nx.DiGraph | None
    notes: list[str]


def _time(text: str, flag: str = "--at") -> float:
    from detectors.rca.table import parse_time

    try:
        value = parse_time(text)
    except FirebreakError as exc:
        raise FirebreakError(f"{flag} {text!r}: {exc}") from None
    if not math.isfinite(value):
        raise FirebreakError(f"{flag} {text!r}: must be a finite time")
    return value


def labelled_fault(run_dir: Path, index: int) -> dict:
    """Fault `index` of a run directory's labels.json (kind, target, start)."""
    path = run_dir / "labels.json"
    if not path.is_file():
        raise FirebreakError(f"{path}: no such file (--from-labels needs a run directory)")
    try:
        faults = json.loads(path.read_text())["faults"]
        fault = faults[index]
        return {"kind": str(fault["kind"]), "root": str(fault["target"]), "at": fault["start"]}
    except (ValueError, KeyError, TypeError) as exc:
        raise FirebreakError(f"{path}: faults: not a readable label file ({exc})") from None
    except IndexError:
        raise FirebreakError(
            f"{path}: --fault {index}: the run has {len(faults)} fault(s)"
        ) from None


def load_source(args: argparse.Namespace, at_text: str | float | None) -> Source:
    """The incident the arguments name (see the module doc)."""
    from detectors.ingest.read import read_log_files, read_metrics, read_traces
    from detectors.memory.run_dir import is_run_dir, read_run
    from detectors.memory.signature import prepare_spans
    from detectors.rca.base import IncidentTelemetry
    from detectors.rca.table import load_graph

    source = Path(args.source)
    if not source.exists():
        raise FirebreakError(f"{source}: no such file or run directory")
    if at_text is None:
        raise FirebreakError("--at is required (or --from-labels with a run directory)")
    at = _time(str(at_text)) if isinstance(at_text, str) else float(at_text)
    notes: list[str] = []
    tel = IncidentTelemetry()
    if is_run_dir(source):
        table, at, tel, notes = read_run(source, at, args.traces, args.logs)
        services = [c for c in table.columns if c != "time"]
    else:
        signals = read_metrics(source, time_column=args.time_column)
        table, services = signals.wide(), signals.services()
        notes += list(signals.notes)
        for attr, files in (("spans", args.traces), ("logs", args.logs)):
            if files:
                reader = read_traces if attr == "spans" else read_log_files
                frame, more = reader(files)
                notes += more
                setattr(tel, attr, prepare_spans(frame) if attr == "spans" else frame)
    if not services:
        raise FirebreakError(f"{source}: no numeric <service>_<metric> signal")
    t0, t1 = float(table["time"].min()), float(table["time"].max())
    if not t0 <= at <= t1:
        raise FirebreakError(
            f"--at {at_text}: outside {source}'s time range ({t0:.10g} to {t1:.10g})"
        )
    for attr, files in (
        ("normal_spans", args.normal_traces),
        ("normal_logs", args.normal_logs),
    ):
        if files:
            reader = read_traces if attr == "normal_spans" else read_log_files
            frame, more = reader(files)
            notes += more
            setattr(tel, attr, prepare_spans(frame) if attr == "normal_spans" else frame)
    graph = load_graph(args.topology) if args.topology else None
    return Source(source.name, table, at, tel, graph, notes)


def add_source_args(p: argparse.ArgumentParser) -> None:
    """The arguments naming an incident's telemetry."""
    p.add_argument(
        "source",
        help="a twin run directory, or metrics: CSV (wide or long), Prometheus JSON, "
        "parquet, or a folder of pod CSVs",
    )
    p.add_argument("--library", required=True, help="the incident library (SQLite file)")
    p.add_argument(
        "--at",
        default=None,
        help="anomaly time: unix seconds or ISO (a run directory: seconds since its start)",
    )
    p.add_argument("--traces", nargs="+", default=None, help="span CSV or OTLP JSON files")
    p.add_argument("--logs", nargs="+", default=None, help="log CSV or JSON-lines files")
    p.add_argument("--normal-traces", nargs="+", default=None, help="traces of a normal period")
    p.add_argument("--normal-logs", nargs="+", default=None, help="logs of a normal period")
    p.add_argument("--topology", default=None, help="call graph: topology/scenario YAML or CSV")
    p.add_argument("--time-column", default=None, help="default: time, timestamp, ts, ...")
