"""Long (tidy) CSV metrics: one row per sample, `time, service, metric, value` (the twin's own
`metrics.parquet` layout, and what most exporters and SQL queries give). The entity column
may be a pod (mapped to its service) and the names may vary (`name`, `__name__`, `pod`)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from detectors.ingest.clean import ground_truth_columns, parse_numeric
from detectors.ingest.clock import find_time_column, to_seconds
from detectors.ingest.entities import entity_table
from detectors.ingest.errors import fail, require_file
from detectors.ingest.table import SignalTable
from detectors.ingest.wide_csv import ENTITY_COLUMNS, read_csv_frame

METRIC_COLUMNS = ("metric", "metric_name", "name", "__name__", "signal", "series")
VALUE_COLUMNS = ("value", "val", "y")


def _pick(columns: list[str], names: Sequence[str]) -> str | None:
    lowered = {c.strip().lower(): c for c in columns}
    for name in names:
        if name in lowered:
            return lowered[name]
    return None


def is_long(columns: list[str]) -> bool:
    """Whether a header reads as time, entity, metric, value."""
    return (
        all(_pick(columns, names) is not None for names in (METRIC_COLUMNS, VALUE_COLUMNS))
        and _pick(columns, ENTITY_COLUMNS) is not None
    )


def read_long_frame(
    frame: pd.DataFrame,
    path: str | Path,
    *,
    time_column: str | None = None,
    services: Iterable[str] | None = None,
    exclude: Sequence[str] = (),
) -> SignalTable:
    """A SignalTable from a long frame already in memory (CSV or parquet)."""
    frame.columns = [str(c) for c in frame.columns]
    columns = list(frame.columns)
    tcol = find_time_column(frame, path, time_column)
    entity = _pick(columns, ENTITY_COLUMNS)
    metric = _pick(columns, METRIC_COLUMNS)
    value = _pick(columns, VALUE_COLUMNS)
    for role, col in (("entity (service or pod)", entity), ("metric", metric), ("value", value)):
        if col is None:
            fail(path, f"long format needs a {role} column (columns: {', '.join(columns[:8])})")
    times, clock_note = to_seconds(frame[tcol], path, tcol)
    names = frame[metric].astype("string").fillna("")
    truth = ground_truth_columns(names.unique(), exclude)
    keep = ~names.isin(truth).to_numpy(dtype=bool)
    values, numeric, _ = parse_numeric(frame, path, [value])
    if not numeric:
        fail(path, "no numeric values", value)
    ents = frame[entity].astype("string").fillna("").to_numpy(dtype=str)
    if (ents == "").any():
        fail(path, "empty entity name", entity, int(np.argmax(ents == "")) + 1)
    notes = [clock_note]
    if truth:
        notes.append(f"not scored (ground truth or --exclude): {', '.join(truth)}")
    return entity_table(
        str(path),
        times[keep],
        ents[keep],
        names.to_numpy(dtype=str)[keep],
        values[keep, 0],
        known=services,
        notes=notes,
        excluded=truth,
    )


def read_long_csv(
    path: str | Path,
    *,
    time_column: str | None = None,
    services: Iterable[str] | None = None,
    exclude: Sequence[str] = (),
) -> SignalTable:
    """A SignalTable from a long CSV."""
    path = require_file(path)
    frame = read_csv_frame(path, low_memory=False)
    return read_long_frame(frame, path, time_column=time_column, services=services, exclude=exclude)
