"""The stack's own span frame: one row per span, whatever format it came from.

Columns: `trace`, `span`, `parent` ("" for a root), `service` (a pod mapped to its workload),
`pod`, `op`, `start` and `end` (epoch seconds), `dur_ms`, `kind` (client, server, internal,
producer, consumer or ""), `error` (True/False, NaN when the format does not say) and `peer`
(the callee a client span names, "" when none). Spans repeated across files are kept once.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

SPAN_COLUMNS = (
    "trace", "span", "parent", "service", "pod", "op", "start", "end", "dur_ms", "kind",
    "error", "peer",
)  # fmt: skip


def finish_spans(frame: pd.DataFrame) -> tuple[pd.DataFrame, list[str]]:
    """Spans de-duplicated on (trace, span) and sorted by start, with notes."""
    notes = []
    before = len(frame)
    frame = frame.drop_duplicates(["trace", "span"])
    if len(frame) < before:
        notes.append(f"{before - len(frame)} repeated span(s) kept once")
    if len(frame) and (np.diff(frame["start"].to_numpy()) < 0).any():
        notes.append("spans were not in time order; sorted by start")
    frame = frame.sort_values("start", kind="stable").reset_index(drop=True)
    return frame[list(SPAN_COLUMNS)], notes
