"""Span CSV traces (the Nezha layout): `TraceID, SpanID, ParentID, PodName, OperationName,
StartTimeUnixNano, EndTimeUnixNano, Duration`, with the usual aliases accepted.

Start and end are epoch times whose unit is told by magnitude (Nezha: nanoseconds); the
duration is end − start (a duration column, Nezha's in microseconds, is only needed when a
file has no end). A parent of `root`, `0` or empty is a root.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from detectors.ingest.clock import epoch_unit
from detectors.ingest.errors import IngestError, fail, require_file
from detectors.ingest.names import service_of_pod
from detectors.ingest.spans import finish_spans
from detectors.ingest.wide_csv import read_csv_frame

ALIASES = {
    "trace": ("traceid", "trace_id", "trace"),
    "span": ("spanid", "span_id", "span"),
    "parent": ("parentid", "parent_id", "parentspanid", "parent_span_id", "parent"),
    "pod": ("podname", "pod_name", "pod", "servicename", "service_name", "service"),
    "op": ("operationname", "operation_name", "operation", "name", "span_name"),
    "start": ("starttimeunixnano", "start_time", "starttime", "start", "timestamp"),
    "end": ("endtimeunixnano", "end_time", "endtime", "end"),
    "duration": ("duration", "duration_us", "duration_ms", "dur"),
    "kind": ("kind", "spankind", "span_kind"),
    "error": ("error", "status", "statuscode", "status_code"),
    "peer": ("peer", "peer_service", "peer.service"),
}
ROOT_PARENTS = {"", "root", "0", "none", "null", "nan", "0000000000000000"}
DURATION_UNITS = (("ns", 1e-9), ("us", 1e-6), ("ms", 1e-3), ("s", 1.0))


def _column(frame: pd.DataFrame, role: str) -> str | None:
    lowered = {str(c).strip().lower(): str(c) for c in frame.columns}
    return next((lowered[a] for a in ALIASES[role] if a in lowered), None)


def looks_like_span_csv(columns: Sequence[str]) -> bool:
    lowered = {str(c).strip().lower() for c in columns}
    return any(a in lowered for a in ALIASES["span"]) and any(
        a in lowered for a in ALIASES["trace"]
    )


def _times(frame: pd.DataFrame, col: str, path: Path) -> tuple[np.ndarray, str]:
    raw = pd.to_numeric(frame[col], errors="coerce")
    if raw.isna().any():
        i = int(np.argmax(raw.isna().to_numpy()))
        fail(path, f"not a time: {frame[col].iloc[i]!r}", col, i + 1)
    values = raw.to_numpy(dtype=float)
    unit, scale = epoch_unit(values)
    return values * scale, unit


def read_span_csv(paths: str | Path | Sequence[str | Path]) -> tuple[pd.DataFrame, list[str]]:
    """(span frame, notes) from one or several span CSV files."""
    paths = [Path(p) for p in ([paths] if isinstance(paths, (str, Path)) else paths)]
    frames, notes = [], []
    for path in paths:
        frame = read_csv_frame(require_file(path), dtype=str, keep_default_na=False)
        frames.append(_one(frame, path, notes))
    if not frames:
        raise IngestError("no span files given")
    spans, more = finish_spans(pd.concat(frames, ignore_index=True))
    return spans, list(dict.fromkeys(notes + more))


def _one(frame: pd.DataFrame, path: Path, notes: list[str]) -> pd.DataFrame:
    cols = {role: _column(frame, role) for role in ALIASES}
    for role in ("trace", "span", "pod", "start"):
        if cols[role] is None:
            fail(
                path,
                f"span CSV needs a {role} column "
                f"(columns: {', '.join(map(str, frame.columns[:8]))})",
            )
    start, unit = _times(frame, cols["start"], path)
    notes.append(f"span times: epoch {unit}")
    if cols["end"] is not None:
        end, _ = _times(frame, cols["end"], path)
    elif cols["duration"] is not None:
        end = start + _duration_seconds(frame, cols["duration"], path)
    else:
        fail(path, "span CSV needs an end time or a duration column")
    bad = end < start
    if bad.any():
        fail(path, "span ends before it starts", cols["end"], int(np.argmax(bad)) + 1)
    pods = frame[cols["pod"]].astype(str).str.strip().to_numpy()
    parent = (
        frame[cols["parent"]].astype(str).str.strip()
        if cols["parent"]
        else pd.Series([""] * len(frame))
    )
    parent = parent.where(~parent.str.lower().isin(ROOT_PARENTS), "")
    kind = (
        frame[cols["kind"]].astype(str).str.lower().str.replace("span_kind_", "")
        if cols["kind"]
        else ""
    )
    error = _errors(frame, cols["error"])
    return pd.DataFrame(
        {
            "trace": frame[cols["trace"]].astype(str).to_numpy(),
            "span": frame[cols["span"]].astype(str).to_numpy(),
            "parent": parent.to_numpy(),
            "service": [service_of_pod(p) for p in pods],
            "pod": pods,
            "op": frame[cols["op"]].astype(str).to_numpy() if cols["op"] else "",
            "start": start,
            "end": end,
            "dur_ms": (end - start) * 1e3,
            "kind": kind,
            "error": error,
            "peer": frame[cols["peer"]].astype(str).to_numpy() if cols["peer"] else "",
        }
    )


def _duration_seconds(frame: pd.DataFrame, col: str, path: Path) -> np.ndarray:
    """A duration column in seconds, its unit from its name (`_ms`), else microseconds as
    OpenTelemetry span CSVs write it (only used when there is no end time)."""
    raw = pd.to_numeric(frame[col], errors="coerce")
    if raw.isna().any():
        i = int(np.argmax(raw.isna().to_numpy()))
        fail(path, f"not a duration: {frame[col].iloc[i]!r}", col, i + 1)
    unit = next((u for u, _ in DURATION_UNITS if col.lower().endswith(f"_{u}")), "us")
    return raw.to_numpy(dtype=float) * dict(DURATION_UNITS)[unit]


def _errors(frame: pd.DataFrame, col: str | None) -> np.ndarray:
    if col is None:
        return np.full(len(frame), np.nan)
    text = frame[col].astype(str).str.strip().str.lower()
    return text.isin({"true", "1", "error", "2", "status_code_error"}).to_numpy(dtype=float)
