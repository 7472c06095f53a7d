"""Logs fused into the RCA table: per-service WARN/ERROR log rates as extra signal columns.

A method that scores any `<service>_<metric>` column (the robust scorer, the random walk,
RCAEval's BARO) then weighs a burst of error logs like any other signal, and its evidence
names it. Traces enter through the dependency graph (`graph.DependencyGraph`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

LEVELS = ("WARN", "ERROR")
COLUMN = "logerror"


def log_error_columns(
    records: Iterable[Mapping[str, Any]],
    times: np.ndarray,
    services: Sequence[str],
    *,
    time_key: str = "t",
    offset: float = 0.0,
) -> pd.DataFrame:
    """WARN/ERROR records per second per service on the table's time grid.

    `times` are the table's row times (same clock as `record[time_key] + offset`); a record
    counts in the row whose interval [times[i], times[i+1]) holds it."""
    times = np.asarray(times, dtype=float)
    index = {name: j for j, name in enumerate(services)}
    counts = np.zeros((len(times), len(services)))
    if len(times) == 0:
        return pd.DataFrame(counts, columns=[f"{s}_{COLUMN}" for s in services])
    step = np.diff(times, append=times[-1] + (times[-1] - times[-2] if len(times) > 1 else 1.0))
    for rec in records:
        if rec.get("level") not in LEVELS:
            continue
        j = index.get(str(rec.get("service")))
        if j is None:
            continue
        row = int(np.searchsorted(times, float(rec[time_key]) + offset, side="right")) - 1
        if 0 <= row < len(times):
            counts[row, j] += 1.0
    return pd.DataFrame(counts / step[:, None], columns=[f"{s}_{COLUMN}" for s in services])


def with_log_columns(table: pd.DataFrame, logs: pd.DataFrame) -> pd.DataFrame:
    """The wide table with the log columns appended (rows aligned by position)."""
    if len(logs) != len(table):
        raise ValueError(f"log columns have {len(logs)} rows, the table {len(table)}")
    return pd.concat([table.reset_index(drop=True), logs.reset_index(drop=True)], axis=1)
