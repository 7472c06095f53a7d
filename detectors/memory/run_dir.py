"""A twin run directory's telemetry on one clock, as signatures read it.

Its metrics are stamped in seconds since the run's start and its spans and logs in unix
seconds from the twin's epoch: the metrics move onto the unix clock so the modalities
line up; `at` given in the run's own seconds moves with them.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from detectors.ingest.errors import IngestError
from detectors.ingest.long_csv import read_long_frame
from detectors.ingest.read import read_log_files, read_traces
from detectors.ingest.table import SignalTable
from detectors.memory.signature import prepare_spans
from detectors.rca.base import IncidentTelemetry
from twin.telemetry.spans import EPOCH_UNIX_S


def is_run_dir(path: Path) -> bool:
    return path.is_dir() and (path / "metrics.parquet").exists()


def run_metrics(path: Path) -> SignalTable:
    """A run directory's long metrics.parquet (a folder of part files) as a SignalTable."""
    try:
        frame = pd.read_parquet(path)
    except Exception as exc:  # pyarrow raises several types for a bad file
        raise IngestError(f"{path}: not a readable parquet table ({exc})") from None
    return read_long_frame(frame, path)


def read_run(
    run: Path, at: float, traces: list | None = None, logs: list | None = None
) -> tuple[pd.DataFrame, float, IncidentTelemetry, list[str]]:
    """(wide table, at, telemetry, notes) of a run directory; `at` in the run's seconds
    comes back on the unix clock when the metrics were moved onto it."""
    signals = run_metrics(run / "metrics.parquet")
    table = signals.wide()
    notes = list(signals.notes)
    if len(table) and float(table["time"].max()) < EPOCH_UNIX_S:
        table["time"] += EPOCH_UNIX_S
        at += EPOCH_UNIX_S
    if traces is None and (run / "traces.json").is_file():
        traces = [run / "traces.json"]
    if logs is None and (run / "logs.jsonl").is_file():
        logs = [run / "logs.jsonl"]
    tel = IncidentTelemetry()
    if traces:
        spans, more = read_traces(traces)
        tel.spans = prepare_spans(spans)
        notes += more
    if logs:
        tel.logs, more = read_log_files(logs)
        notes += more
    return table, at, tel, notes
