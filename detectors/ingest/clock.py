"""Time columns as real files write them, to seconds: epoch seconds, milliseconds,
microseconds or nanoseconds (told apart by magnitude, and said so), ISO timestamps, and Go's
`time.Time` strings (`2023-01-29 08:41:09.71 +0000 UTC m=+0.78`)."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd

from detectors.ingest.errors import fail

TIME_COLUMNS = ("time", "timestamp", "ts", "datetime", "date", "unix_timestamp", "timeunixnano")
# (unit, seconds per unit, smallest and largest magnitude read as an epoch in that unit):
# an epoch in seconds is ~1.7e9 today, in ms ~1.7e12, in µs ~1.7e15, in ns ~1.7e18
EPOCH_UNITS = (
    ("s", 1.0, 1e8, 1e11),
    ("ms", 1e-3, 1e11, 1e14),
    ("us", 1e-6, 1e14, 1e17),
    ("ns", 1e-9, 1e17, 1e20),
)
_GO_SUFFIX = re.compile(r"\s+m=[+-][0-9.]+$")
_ZONE_NAME = re.compile(r"(\s[+-]\d{4})\s+[A-Z]{2,5}$")


def time_candidates(columns: list[str]) -> list[str]:
    """Columns whose name says they hold time."""
    return [c for c in columns if str(c).strip().lower() in TIME_COLUMNS]


def find_time_column(frame: pd.DataFrame, path: str | Path, given: str | None = None) -> str:
    """The time column: the one given, else the first numeric one with a usual name (an
    epoch beats a formatted copy of it), else the first with a usual name."""
    columns = [str(c) for c in frame.columns]
    if given is not None:
        if given not in columns:
            fail(path, f"no column {given!r} (columns: {', '.join(columns[:8])})")
        return given
    found = time_candidates(columns)
    if not found:
        fail(
            path,
            f"no time column (expected one of {', '.join(TIME_COLUMNS)}; "
            f"columns: {', '.join(columns[:8])})",
        )
    numeric = [c for c in found if pd.api.types.is_numeric_dtype(frame[c])]
    return (numeric or found)[0]


def epoch_unit(values: np.ndarray) -> tuple[str, float]:
    """(unit, seconds per unit) of numeric times; ("s", 1) for small relative clocks."""
    finite = np.abs(values[np.isfinite(values)])
    if finite.size == 0:
        return "s", 1.0
    typical = float(np.median(finite))
    for unit, scale, lo, hi in EPOCH_UNITS:
        if lo <= typical < hi:
            return unit, scale
    return "s", 1.0


def to_seconds(
    raw: pd.Series, path: str | Path, column: str, row_offset: int = 1
) -> tuple[np.ndarray, str]:
    """(seconds, a note on how they were read). Unreadable cells fail naming their row
    (`row_offset` is the data row number of the series' first element)."""
    if pd.api.types.is_numeric_dtype(raw):
        values = raw.to_numpy(dtype=float)
        bad = ~np.isfinite(values)
        if bad.any():
            i = int(np.argmax(bad))
            fail(path, f"missing or unreadable time {raw.iloc[i]!r}", column, i + row_offset)
        unit, scale = epoch_unit(values)
        typical = float(np.median(np.abs(values)))
        if unit == "s" and typical < EPOCH_UNITS[0][2]:
            note = f"time column {column!r}: relative seconds (not an epoch)"
        else:
            names = {"s": "seconds", "ms": "milliseconds", "us": "microseconds"}
            note = f"time column {column!r}: epoch {names.get(unit, 'nanoseconds')}"
        return values * scale, note
    text = raw.astype("string").str.strip()
    numeric = pd.to_numeric(text, errors="coerce")
    if numeric.notna().all():
        return to_seconds(numeric.astype(float), path, column, row_offset)
    cleaned = text.str.replace(_GO_SUFFIX, "", regex=True).str.replace(
        _ZONE_NAME, r"\1", regex=True
    )
    parsed = pd.to_datetime(cleaned, errors="coerce", utc=True, format="ISO8601")
    if parsed.isna().any():
        parsed = pd.to_datetime(cleaned, errors="coerce", utc=True, format="mixed")
    if parsed.isna().any():
        i = int(np.argmax(parsed.isna().to_numpy()))
        fail(path, f"unreadable time {raw.iloc[i]!r}", column, i + row_offset)
    seconds = (parsed - pd.Timestamp(0, tz="UTC")).dt.total_seconds().to_numpy(dtype=float)
    return seconds, f"time column {column!r}: timestamps (UTC where no zone is given)"
