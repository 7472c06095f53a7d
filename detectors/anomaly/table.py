"""Detection on any recorded table: the tiered pipeline on a real system's own signals.

The file is read by `detectors.ingest` (wide or long CSV, Prometheus JSON, PetShop CSV, a
directory of per-pod files): times sorted, repeated ones merged, counters turned into
rates, ground-truth columns (`label`, `is_anomaly`, ... and `exclude`) set aside, each
repair noted. Each signal's kind (from its name and unit) sets how it is watched
(`features.SignalLayout`); the rows then stream through `TieredPipeline`, tier 1 only
unless a tier-2 model fitted on kind-pooled z-scores is given. A missing value repeats the
signal's last one (a detector cannot wait for a scrape that never came).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from detectors.anomaly.features import signal_layout
from detectors.anomaly.pipeline import TieredPipeline
from detectors.base import Alert
from detectors.ingest.errors import IngestError
from detectors.ingest.read import read_metrics
from detectors.ingest.table import SignalTable

TableError = IngestError  # a table the detectors cannot read (kept name)


@dataclass
class TableResult:
    times: np.ndarray  # seconds
    columns: list[str]
    scores: np.ndarray  # rows × columns, agreed tier-1 score
    alerts: list[Alert]
    notes: list[str] = field(default_factory=list)
    excluded: list[str] = field(default_factory=list)


def read_table(
    path: str | Path,
    time_column: str | None = None,
    *,
    exclude: Sequence[str] = (),
    fmt: str = "auto",
) -> SignalTable:
    """A recorded metrics file, ingested; fails clearly when it has no signal to watch."""
    table = read_metrics(Path(path), fmt=fmt, time_column=time_column, exclude=exclude)
    if not table.signals:
        raise IngestError(f"{path}: no numeric signal columns")
    return table


def _carried(values: np.ndarray) -> np.ndarray:
    """Missing values replaced by the signal's last one (its first one before that)."""
    frame = pd.DataFrame(values).ffill().bfill()
    return frame.fillna(0.0).to_numpy(dtype=float)


def detect_table(
    table: SignalTable,
    *,
    z: float = 6.0,
    persist: int = 3,
    window: int = 720,
    tier2: object | None = None,
) -> TableResult:
    """Stream the rows through the tiered pipeline; per-signal scores and alerts."""
    layout = signal_layout(table)
    pipeline = TieredPipeline(
        layout.services,
        tier2=tier2,
        escalate_z=z,
        persist=persist,
        window=window,
        detector_name="table.tiered" if tier2 is not None else "table.tier1",
        layout=layout,
    )
    values = _carried(table.values)
    scores = np.zeros_like(values)
    alerts: list[Alert] = []
    for r, (t, row) in enumerate(zip(table.times, values, strict=True)):
        found = pipeline.process(float(t), row)
        if pipeline.robust.ready and pipeline.ewma.ready:
            scores[r] = pipeline.last_signal_scores
        alerts.extend(found)
    return TableResult(
        times=table.times,
        columns=table.columns,
        scores=scores,
        alerts=alerts,
        notes=list(table.notes),
        excluded=list(table.excluded),
    )
