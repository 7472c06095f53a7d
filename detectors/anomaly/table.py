"""Detection on any recorded table: a time column plus one column per signal.

So the stack runs on real data (a Prometheus export, an RCAEval CSV), not only on the
twin's frames. Every column is a signal scored two-sided by the tier-1 detectors (the
rolling median/MAD, the EWMA and, once a day of history exists, the time-of-day baseline),
which must agree; a signal above `z` for `persist` rows raises an alert. A column named
`<service>_<metric>` is attributed to its service.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from detectors.anomaly.tier1 import Ewma, RobustZ, Seasonal
from detectors.base import Alert
from twin.errors import FirebreakError

TIME_COLUMNS = ("time", "timestamp", "ts")


class TableError(FirebreakError):
    """A table the detectors cannot read."""


@dataclass
class TableResult:
    times: np.ndarray  # seconds
    columns: list[str]
    scores: np.ndarray  # rows × columns, agreed |z|
    alerts: list[Alert]


def read_table(path: Path, time_column: str | None = None) -> tuple[np.ndarray, pd.DataFrame]:
    """(times in seconds, numeric signal columns) from a CSV, with clear errors."""
    path = Path(path)
    if not path.exists():
        raise TableError(f"{path}: no such file")
    try:
        df = pd.read_csv(path)
    except (pd.errors.ParserError, UnicodeDecodeError, pd.errors.EmptyDataError) as exc:
        raise TableError(f"{path}: not a readable CSV ({exc})") from None
    if time_column is None:
        found = [c for c in df.columns if c.lower() in TIME_COLUMNS]
        if not found:
            raise TableError(
                f"{path}: no time column (expected one of {', '.join(TIME_COLUMNS)}; "
                f"columns: {', '.join(map(str, df.columns[:8]))})"
            )
        time_column = found[0]
    elif time_column not in df.columns:
        raise TableError(f"{path}: no column {time_column!r}")
    raw = df.pop(time_column)
    if pd.api.types.is_numeric_dtype(raw):
        times = raw.to_numpy(dtype=float)
    else:
        parsed = pd.to_datetime(raw, errors="coerce", utc=True)
        if parsed.isna().any():
            bad = int(parsed.isna().to_numpy().argmax())
            raise TableError(f"{path}: row {bad + 2}: unreadable time {raw.iloc[bad]!r}")
        times = (parsed - pd.Timestamp(0, tz="UTC")).dt.total_seconds().to_numpy()
    finite = np.isfinite(times)
    if not finite.all():
        bad = int(np.argmin(finite))
        raise TableError(
            f"{path}: row {bad + 2}: column {time_column!r}: time {raw.iloc[bad]!r} is not a "
            "finite number"
        )
    if len(times) > 1 and np.any(np.diff(times) < 0):
        raise TableError(f"{path}: times are not in order")
    numeric = df.select_dtypes(include="number")
    if numeric.shape[1] == 0:
        raise TableError(f"{path}: no numeric signal columns")
    return times, numeric


def detect_table(
    times: np.ndarray,
    signals: pd.DataFrame,
    *,
    z: float = 6.0,
    persist: int = 3,
    window: int = 720,
) -> TableResult:
    """Stream the rows through tier 1 and collect scores and alerts."""
    columns = [str(c) for c in signals.columns]
    X = signals.to_numpy(dtype=float)
    X = np.where(np.isfinite(X), X, np.nan)
    n = X.shape[1]
    scale = np.nanmedian(np.abs(X), axis=0)
    floor = np.maximum(0.01 * np.nan_to_num(scale, nan=1.0), 1e-9)
    robust = RobustZ(n, window=window, refresh=10, floor=floor)
    ewma = Ewma(n, half_life=window / 3.0, floor=floor)
    seasonal = Seasonal(n, floor=floor)
    scores = np.zeros_like(X)
    streak = np.zeros(n, dtype=int)
    alerts: list[Alert] = []
    last = np.nan_to_num(X[0], nan=0.0) if len(X) else np.zeros(n)
    for r, (t, row) in enumerate(zip(times, X, strict=True)):
        x = np.where(np.isnan(row), last, row)
        last = x
        if robust.ready and ewma.ready:
            sr, se = np.abs(robust.score_one(x)), np.abs(ewma.score_one(x))
            zs = seasonal.score_one(x, t, noise=robust.spread)
            agreed = np.minimum(sr, se)
            if zs is not None:
                agreed = np.maximum(agreed, np.minimum(np.maximum(sr, se), np.abs(zs)))
            scores[r] = agreed
            streak = np.where(agreed >= z, streak + 1, 0)
            for j in np.flatnonzero(streak == persist):
                service, _, metric = columns[j].partition("_")
                alerts.append(
                    Alert(float(t), service, metric or columns[j], round(float(agreed[j]), 3),
                          "critical" if agreed[j] >= 2 * z else "warning", "table.tier1")
                )  # fmt: skip
        robust.learn_one(x)
        ewma.learn_one(x)
        seasonal.learn_one(x, t)
    return TableResult(times=times, columns=columns, scores=scores, alerts=alerts)
