"""What real telemetry files get wrong, put right and said out loud.

- rows out of time order are sorted, repeated timestamps merged (their mean), and both are
  reported with where they happened (a NAB file goes back one hour once);
- gaps (steps over three times the usual) are reported, never filled: a detector carries
  the last value, an RCA window simply has fewer rows;
- cumulative counters (`_total`, `_count`, `_sum`, as Prometheus names them) become
  per-second rates, a drop being a restart from zero (Prometheus's own reset rule);
- ground-truth columns (`label`, `is_anomaly`, ...) and whatever `--exclude` names are set
  aside before anything is scored.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable, Sequence

import numpy as np

GROUND_TRUTH = frozenset(
    {
        "label", "labels", "is_anomaly", "isanomaly", "anomaly", "anomalies", "is_anomalous",
        "anomaly_label", "attack", "is_attack", "ground_truth", "groundtruth", "truth", "fault",
        "faults", "root_cause", "rootcause", "outlier", "is_outlier", "changepoint", "y_true",
    }
)  # fmt: skip
COUNTER_SUFFIXES = ("_total", "_count", "_sum")
GAP_FACTOR = 3.0


def ground_truth_columns(columns: Iterable[str], exclude: Sequence[str] = ()) -> list[str]:
    """Columns never scored: known ground-truth names, and any matching an `exclude` pattern."""
    out = []
    for col in columns:
        name = str(col).strip().lower()
        if name in GROUND_TRUTH or any(fnmatch.fnmatch(str(col), p) for p in exclude):
            out.append(str(col))
    return out


def order_rows(times: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Rows sorted by time (stable) with repeated timestamps merged into their mean."""
    notes: list[str] = []
    steps = np.diff(times)
    back = np.flatnonzero(steps < 0)
    if back.size:
        notes.append(
            f"{back.size} time step(s) go backwards (first at row {back[0] + 2}); rows sorted"
        )
        order = np.argsort(times, kind="stable")
        times, values = times[order], values[order]
    unique, counts = np.unique(times, return_counts=True)
    if unique.size < times.size:
        repeated = int((counts > 1).sum())
        notes.append(
            f"{times.size - unique.size} repeated timestamp row(s) at {repeated} time(s) "
            "merged into their mean"
        )
        group = np.repeat(np.arange(unique.size), counts)
        sums = np.zeros((unique.size, values.shape[1]))
        seen = np.zeros((unique.size, values.shape[1]))
        finite = np.isfinite(values)
        np.add.at(sums, group, np.where(finite, values, 0.0))
        np.add.at(seen, group, finite.astype(float))
        with np.errstate(invalid="ignore", divide="ignore"):
            values = np.where(seen > 0, sums / np.maximum(seen, 1), np.nan)
        times = unique
    return times, values, notes


def gap_note(times: np.ndarray) -> str | None:
    """A note when some steps are much longer than the usual one."""
    if times.size < 3:
        return None
    steps = np.diff(times)
    usual = float(np.median(steps))
    if usual <= 0:
        return None
    long = steps > GAP_FACTOR * usual
    if not long.any():
        return None
    return (
        f"{int(long.sum())} gap(s) longer than {GAP_FACTOR:g}x the usual {usual:g} s step "
        f"(longest {float(steps.max()):g} s); left as gaps"
    )


def is_counter(name: str) -> bool:
    """A cumulative counter by its name (labels `{...}` and a pod `@...` set aside)."""
    base = str(name).split("{", 1)[0].split("@", 1)[0]
    return base.lower().endswith(COUNTER_SUFFIXES)


def counter_rate(times: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, int]:
    """(per-second rate, resets) of a cumulative counter; the first row is NaN."""
    rate = np.full(values.shape, np.nan)
    if values.size < 2:
        return rate, 0
    delta = np.diff(values)
    resets = delta < 0
    delta = np.where(resets, values[1:], delta)  # restarted from zero
    dt = np.diff(times)
    with np.errstate(invalid="ignore", divide="ignore"):
        rate[1:] = np.where(dt > 0, delta / dt, np.nan)
    return rate, int(np.nansum(resets))


def missing_note(values: np.ndarray, columns: Sequence[str]) -> str | None:
    """A note on how much is missing, naming the emptiest column."""
    if values.size == 0:
        return None
    share = np.isnan(values).mean(axis=0)
    if not share.any():
        return None
    worst = int(np.argmax(share))
    return (
        f"{float(np.isnan(values).mean()):.1%} of values missing "
        f"(most in {columns[worst]!r}: {share[worst]:.0%}); left missing, never invented"
    )


_MISSING_WORDS = frozenset({"", "nan", "null", "none", "na", "n/a", "-", "inf", "+inf", "-inf"})


def parse_numeric(frame, path, columns: Sequence[str], row_offset: int = 1):
    """(rows × columns floats, the numeric columns, notes). A text column is set aside with a
    note; a numeric column with a stray word fails naming its row."""
    import pandas as pd

    from detectors.ingest.errors import fail

    kept: list[str] = []
    arrays: list[np.ndarray] = []
    notes: list[str] = []
    text_columns: list[str] = []
    for col in columns:
        raw = frame[col]
        if pd.api.types.is_bool_dtype(raw):
            text_columns.append(str(col))
            continue
        if pd.api.types.is_numeric_dtype(raw):
            values = raw.to_numpy(dtype=float)
        else:
            text = raw.astype("string").str.strip()
            values = pd.to_numeric(text, errors="coerce").to_numpy(dtype=float)
            missing_word = text.isna() | text.str.lower().isin(_MISSING_WORDS)
            bad = np.isnan(values) & ~missing_word.to_numpy(dtype=bool)
            if bad.all() or (bad.mean() > 0.5):
                text_columns.append(str(col))
                continue
            if bad.any():
                i = int(np.argmax(bad))
                fail(path, f"not a number: {raw.iloc[i]!r}", str(col), i + row_offset)
        values = np.where(np.isfinite(values), values, np.nan)
        kept.append(str(col))
        arrays.append(values)
    if text_columns:
        notes.append(f"text column(s) not scored: {', '.join(text_columns[:6])}")
    matrix = np.column_stack(arrays) if arrays else np.zeros((len(frame), 0))
    return matrix, kept, notes
