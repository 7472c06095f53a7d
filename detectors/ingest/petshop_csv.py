"""The PetShop dataset's metrics CSV (amazon-science/petshop-root-cause-analysis): four
header rows (`microservice`, `metric`, `statistic`, `unix_timestamp`), the last naming only
the index. A signal per (node, metric, statistic); its wide metric is
`<metric>-<statistic>` (`latency-Average`, `requests-Sum`, `availability-Average`). Node
names hold `_`, `::`, `/` and spaces and are kept as they are: the wide column splits at
its last `_`, which the metric part never holds."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from detectors.ingest.clock import to_seconds
from detectors.ingest.errors import IngestError, fail, require_file
from detectors.ingest.table import SignalTable, assemble, make_signal

HEADER = ("microservice", "metric", "statistic")


def looks_like_petshop(first_lines: list[str]) -> bool:
    heads = [line.split(",", 1)[0].strip().lower() for line in first_lines[:4]]
    return heads[:3] == list(HEADER)


def read_petshop_csv(path: str | Path) -> SignalTable:
    """A SignalTable from one PetShop metrics.csv (issue or noissue)."""
    path = require_file(path)
    try:
        frame = pd.read_csv(path, header=[0, 1, 2], index_col=0)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, ValueError, UnicodeDecodeError) as exc:
        raise IngestError(f"{path}: not a PetShop metrics CSV ({str(exc).strip()})") from None
    names = [str(n).strip().lower() for n in frame.columns.names]
    if names != list(HEADER):
        fail(path, f"expected header rows {', '.join(HEADER)}, got {', '.join(names)}")
    if (
        str(frame.index.name).strip().lower() == "unix_timestamp"
        and len(frame)
        and pd.isna(frame.iloc[0]).all()
    ):
        frame = frame.iloc[1:]
    index = pd.Series(frame.index, dtype="string")
    if len(index) and index.iloc[0] == "unix_timestamp":
        frame, index = frame.iloc[1:], index.iloc[1:]
    times, note = to_seconds(index.reset_index(drop=True), path, "unix_timestamp", row_offset=1)
    if frame.columns.duplicated().any():
        dup = frame.columns[frame.columns.duplicated()][0]
        fail(path, f"repeated column {'/'.join(dup)}")
    values = np.empty(frame.shape)
    for j, col in enumerate(frame.columns):
        if pd.api.types.is_numeric_dtype(frame[col]):
            values[:, j] = frame[col].to_numpy(dtype=float)
            continue
        raw = pd.to_numeric(frame[col], errors="coerce")
        bad = raw.isna() & frame[col].notna() & (frame[col].astype("string").str.strip() != "")
        if bad.any():
            i = int(np.argmax(bad.to_numpy()))
            fail(path, f"not a number: {frame[col].iloc[i]!r}", "/".join(col), i + 1)
        values[:, j] = raw.to_numpy(dtype=float)
    signals = [
        make_signal("/".join(map(str, c)), str(c[0]), f"{c[1]}-{c[2]}") for c in frame.columns
    ]
    return assemble(str(path), times, values, signals, [note])
