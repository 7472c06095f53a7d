"""One door for every format: what a file is, told from its name and its first lines.

Metrics: a directory of per-entity CSVs, the PetShop CSV (four header rows), a long CSV
(time, service, metric, value), a wide CSV, Prometheus range-query JSON, or a parquet table
(the twin's long `metrics.parquet`, or a wide one). Traces: span CSV (Nezha) or OTLP JSON.
Logs: CSV or JSON lines with trace ids.
"""

from __future__ import annotations

import gzip
from collections.abc import Iterable, Sequence
from pathlib import Path

import pandas as pd

from detectors.ingest.errors import IngestError, require_file
from detectors.ingest.long_csv import is_long, read_long_csv, read_long_frame
from detectors.ingest.petshop_csv import looks_like_petshop, read_petshop_csv
from detectors.ingest.prometheus import read_prometheus_json
from detectors.ingest.table import SignalTable
from detectors.ingest.wide_csv import read_wide_csv

METRIC_FORMATS = ("auto", "wide", "long", "prometheus", "petshop", "parquet")


def _head(path: Path, lines: int = 4) -> list[str]:
    opener = gzip.open if path.name.endswith(".gz") else open
    try:
        with opener(path, "rt", encoding="utf-8", errors="replace") as fh:
            return [fh.readline() for _ in range(lines)]
    except (OSError, EOFError) as exc:
        raise IngestError(f"{path}: cannot read ({exc})") from None


def sniff_metrics(path: Path) -> str:
    """The metric format of a file or directory."""
    if path.is_dir():
        return "wide"
    name = path.name.lower()
    if name.endswith(".parquet"):
        return "parquet"
    head = _head(path)
    first = head[0].lstrip()
    if name.endswith((".json", ".jsonl", ".json.gz")) or first.startswith(("{", "[")):
        return "prometheus"
    if looks_like_petshop(head):
        return "petshop"
    header = [c.strip().strip('"') for c in first.rstrip("\n").split(",")]
    return "long" if is_long(header) else "wide"


def metric_files(path: Path) -> list[Path]:
    """The CSV files of a metrics directory (sorted)."""
    files = sorted(p for p in path.iterdir() if p.name.endswith((".csv", ".csv.gz")))
    if not files:
        raise IngestError(f"{path}: directory holds no .csv or .csv.gz files")
    return files


def read_metrics(
    path: str | Path,
    *,
    fmt: str = "auto",
    time_column: str | None = None,
    services: Iterable[str] | None = None,
    exclude: Sequence[str] = (),
) -> SignalTable:
    """A SignalTable from any supported metrics file or directory."""
    path = Path(path)
    if not path.exists():
        raise IngestError(f"{path}: no such file")
    if fmt not in METRIC_FORMATS:
        raise IngestError(
            f"unknown metrics format {fmt!r} (expected one of {', '.join(METRIC_FORMATS)})"
        )
    fmt = sniff_metrics(path) if fmt == "auto" else fmt
    if fmt == "prometheus":
        return read_prometheus_json(path, services=services, exclude=exclude)
    if fmt == "petshop":
        return read_petshop_csv(path)
    if fmt == "long":
        return read_long_csv(path, time_column=time_column, services=services, exclude=exclude)
    if fmt == "parquet":
        try:
            frame = pd.read_parquet(require_file(path))
        except Exception as exc:  # pyarrow raises several types for a bad file
            raise IngestError(f"{path}: not a readable parquet file ({exc})") from None
        if is_long([str(c) for c in frame.columns]):
            return read_long_frame(
                frame, path, time_column=time_column, services=services, exclude=exclude
            )
        cols = ", ".join(map(str, frame.columns[:6]))
        raise IngestError(
            f"{path}: a parquet table must be long (time, service, metric, value); got {cols}"
        )
    source = metric_files(path) if path.is_dir() else path
    return read_wide_csv(source, time_column=time_column, services=services, exclude=exclude)


def read_traces(paths: str | Path | Sequence[str | Path]) -> tuple[pd.DataFrame, list[str]]:
    """(span frame, notes) from span CSV or OTLP JSON files (or a directory of them)."""
    from detectors.ingest.otlp_json import read_otlp_json
    from detectors.ingest.span_csv import read_span_csv

    files = _expand(paths)
    json_files = [p for p in files if p.name.lower().endswith((".json", ".jsonl", ".json.gz"))]
    csv_files = [p for p in files if p not in json_files]
    frames, notes = [], []
    if csv_files:
        spans, n = read_span_csv(csv_files)
        frames.append(spans)
        notes += n
    if json_files:
        spans, n = read_otlp_json(json_files)
        frames.append(spans)
        notes += n
    out = pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]
    return out, notes


def read_log_files(paths: str | Path | Sequence[str | Path]) -> tuple[pd.DataFrame, list[str]]:
    """(log frame, notes) from CSV or JSON-lines log files (or a directory of them)."""
    from detectors.ingest.logs import read_logs

    return read_logs(_expand(paths))


def _expand(paths: str | Path | Sequence[str | Path]) -> list[Path]:
    items = [Path(p) for p in ([paths] if isinstance(paths, (str, Path)) else paths)]
    out: list[Path] = []
    for p in items:
        if p.is_dir():
            out.extend(sorted(q for q in p.iterdir() if q.is_file() and not q.name.startswith(".")))
        else:
            out.append(require_file(p))
    if not out:
        raise IngestError(f"{items[0] if items else 'input'}: no files")
    return out
