"""Wide CSV metrics: a time column plus one column per signal.

Three layouts real tools write:
- RCAEval / RCD: `time` + `<service>_<metric>` columns (`carts_lat_50`, `adservice_cpu`);
  the service is matched against the known services when there are some (longest prefix,
  so `carts-db_cpu` is not `carts`), else it is the text before the first `_`;
- one row per entity and time: `time` + an entity column (`PodName`, `service`, ...) + one
  column per metric (Nezha's pod files); pods map to their services;
- a single series (`timestamp,value`, NAB): signals with no service.
Ground-truth columns are set aside (never scored); text columns are noted and skipped.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from detectors.ingest.clean import ground_truth_columns, parse_numeric
from detectors.ingest.clock import find_time_column, time_candidates, to_seconds
from detectors.ingest.entities import entity_table
from detectors.ingest.errors import IngestError, fail, require_file
from detectors.ingest.names import split_column
from detectors.ingest.table import SignalTable, assemble, make_signal

ENTITY_COLUMNS = (
    "pod", "podname", "pod_name", "service", "servicename", "service_name", "instance",
    "container", "job", "app", "host",
)  # fmt: skip


def read_csv_frame(path: Path, **kwargs) -> pd.DataFrame:
    """pandas' CSV reader with its failures turned into clear errors."""
    try:
        frame = pd.read_csv(path, **kwargs)
    except pd.errors.EmptyDataError:
        raise IngestError(f"{path}: empty file") from None
    except (pd.errors.ParserError, UnicodeDecodeError, ValueError, OSError, EOFError) as exc:
        raise IngestError(f"{path}: not a readable CSV ({str(exc).strip()})") from None
    if frame.empty:
        raise IngestError(f"{path}: no data rows")
    return frame


def _entity_column(frame: pd.DataFrame, skip: set[str]) -> str | None:
    for col in frame.columns:
        if str(col).strip().lower() in ENTITY_COLUMNS and str(col) not in skip:
            raw = frame[col]
            if not pd.api.types.is_numeric_dtype(raw):
                return str(col)
    return None


def _read_one(
    path: Path, time_column: str | None, known: list[str] | None, exclude: Sequence[str]
) -> SignalTable | tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, list[str], list[str]]:
    """A plain wide file's table, or an entity file's long rows (time, entity, metric, value)
    with its notes and excluded columns."""
    path = require_file(path)
    frame = read_csv_frame(path, low_memory=False)
    frame.columns = [str(c) for c in frame.columns]
    tcol = find_time_column(frame, path, time_column)
    times, clock_note = to_seconds(frame[tcol], path, tcol)
    truth = ground_truth_columns(frame.columns, exclude)
    notes = [clock_note]
    if truth:
        notes.append(f"not scored (ground truth or --exclude): {', '.join(truth)}")
    skip = {tcol, *truth, *time_candidates(list(frame.columns))}  # a second clock is no signal
    entity = _entity_column(frame, skip)
    if entity is not None:
        skip.add(entity)
    candidates = [c for c in frame.columns if c not in skip]
    values, numeric, parse_notes = parse_numeric(frame, path, candidates)
    notes.extend(parse_notes)
    if not numeric:
        fail(path, "no numeric signal columns")
    if entity is None:
        signals = []
        for col in numeric:
            split = split_column(col, known)
            signals.append(make_signal(col, *split) if split else make_signal(col, None, col))
        return assemble(str(path), times, values, signals, notes, truth)
    ents = frame[entity].astype("string").fillna("").to_numpy(dtype=str)
    if (ents == "").any():
        fail(path, "empty entity name", entity, int(np.argmax(ents == "")) + 1)
    n = len(numeric)
    return (
        np.repeat(times, n),
        np.repeat(ents, n),
        np.tile(np.array(numeric, dtype=object), len(times)),
        values.reshape(-1),
        notes,
        truth,
    )


def read_wide_csv(
    path: str | Path | Sequence[str | Path],
    *,
    time_column: str | None = None,
    services: Iterable[str] | None = None,
    exclude: Sequence[str] = (),
) -> SignalTable:
    """A SignalTable from one wide CSV, or from several files of one entity each (a
    directory of per-pod files); see the module doc for the layouts."""
    paths = [Path(p) for p in ([path] if isinstance(path, (str, Path)) else path)]
    if not paths:
        raise IngestError("no metric files given")
    known = list(services) if services else None
    parts = [_read_one(p, time_column, known, exclude) for p in paths]
    if len(parts) == 1 and isinstance(parts[0], SignalTable):
        return parts[0]
    if any(isinstance(p, SignalTable) for p in parts):
        raise IngestError(
            f"{paths[0].parent}: several wide files can only be read together when each "
            "holds one entity per row (a pod or service column)"
        )
    cols = list(zip(*parts, strict=True))
    notes = list(dict.fromkeys(n for ns in cols[4] for n in ns))
    excluded = list(dict.fromkeys(c for cs in cols[5] for c in cs))
    source = str(paths[0]) if len(paths) == 1 else f"{paths[0].parent} ({len(paths)} files)"
    return entity_table(
        source,
        np.concatenate(cols[0]),
        np.concatenate(cols[1]),
        np.concatenate(cols[2]),
        np.concatenate(cols[3]),
        known=known,
        notes=notes,
        excluded=excluded,
    )
