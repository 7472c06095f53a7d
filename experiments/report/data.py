"""What the rehearsal report reads from a run directory, boiled down to what it draws.

A day-long run holds ~16 million metric rows; the report needs a handful of metrics at
1-minute resolution, so the long table is read once, filtered by metric code and averaged
into minute bins with `np.bincount` (no pandas pivot, no per-service loops).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from detectors.anomaly.evaluation import FaultLabel, load_labels
from twin.errors import FirebreakError
from twin.telemetry.longtable import open_long_table

STEP_S = 60.0
REPORT_METRICS = ("arrival_rate", "latency_p99_ms", "error_ratio", "ready_replicas")


class ReportError(FirebreakError):
    """A run directory the report cannot read (missing or damaged file)."""


@dataclass
class RunData:
    """One operations mode's run directory, as the report needs it."""

    mode: str
    path: Path
    summary: dict[str, Any]
    faults: list[FaultLabel]
    operations: dict[str, Any]
    times: np.ndarray  # bin starts, seconds
    services: tuple[str, ...]
    cube: np.ndarray  # bins × services × REPORT_METRICS, minute means
    edges: list[tuple[str, str]] = field(default_factory=list)

    @property
    def stack(self) -> dict[str, Any]:
        """This mode's scored block of summary.json (empty when the run was not scored)."""
        return self.summary.get("stacks", {}).get(self.mode, {})

    def series(self, metric: str) -> np.ndarray:
        """bins × services for one of REPORT_METRICS."""
        return self.cube[:, :, REPORT_METRICS.index(metric)]

    @property
    def alerts(self) -> list[dict[str, Any]]:
        """Every alert the correlator filed, in time order."""
        out = [a for inc in self.operations.get("incidents", []) for a in inc.get("alerts", [])]
        return sorted(out, key=lambda a: a["time"])


def _read_json(path: Path, default: Any = None) -> Any:
    if not path.is_file():
        if default is not None:
            return default
        raise ReportError(f"{path}: missing (is this a rehearsal run directory?)")
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ReportError(f"{path}: cannot read as JSON: {exc}") from None


def _codes(column: pa.ChunkedArray) -> tuple[np.ndarray, list[str]]:
    """Integer codes and names of a (dictionary or string) column."""
    arr = column.combine_chunks()
    if not pa.types.is_dictionary(arr.type):
        arr = arr.dictionary_encode()
    return arr.indices.to_numpy(zero_copy_only=False), arr.dictionary.to_pylist()


def minute_means(
    path: Path, metrics: Sequence[str] = REPORT_METRICS, step_s: float = STEP_S
) -> tuple[np.ndarray, tuple[str, ...], np.ndarray]:
    """(bin starts, services, bins × services × metrics means) of a long metrics table."""
    try:
        dataset = open_long_table(path)
        services: dict[str, int] = {}
        parts = []
        for batch in dataset.to_batches(columns=["time", "service", "metric", "value"]):
            t = pa.Table.from_batches([batch])
            m_codes, m_names = _codes(t.column("metric"))
            m_map = np.array([metrics.index(n) if n in metrics else -1 for n in m_names])
            m_idx = m_map[m_codes] if len(m_map) else np.zeros(0, int)
            keep = m_idx >= 0
            s_codes, s_names = _codes(t.column("service"))
            s_map = np.array([services.setdefault(n, len(services)) for n in s_names])
            parts.append(
                (
                    t.column("time").to_numpy()[keep],
                    s_map[s_codes[keep]],
                    m_idx[keep],
                    t.column("value").to_numpy()[keep],
                )
            )
    except (OSError, KeyError, pa.ArrowException, FirebreakError) as exc:
        raise ReportError(f"{path}: cannot read the metrics: {exc}") from None
    if not parts or not sum(len(p[0]) for p in parts):
        raise ReportError(f"{path}: no rows for {', '.join(metrics)}")
    time, svc, met, val = (np.concatenate(c) for c in zip(*parts, strict=True))
    bins = (time // step_s).astype(np.int64)
    n_bins, n_svc, n_met = int(bins.max()) + 1, len(services), len(metrics)
    flat = (bins * n_svc + svc) * n_met + met
    ok = np.isfinite(val)
    size = n_bins * n_svc * n_met
    sums = np.bincount(flat[ok], weights=val[ok], minlength=size)
    counts = np.bincount(flat[ok], minlength=size)
    with np.errstate(invalid="ignore", divide="ignore"):
        cube = (sums / counts).reshape(n_bins, n_svc, n_met)
    return np.arange(n_bins) * step_s, tuple(services), cube


def call_edges(path: Path) -> list[tuple[str, str]]:
    """The topology's call edges, named `caller->callee` in edge_metrics.parquet."""
    if not path.exists():
        return []
    try:
        batch = next(iter(open_long_table(path).to_batches(columns=["edge"])), None)
        if batch is None:
            return []
        _, names = _codes(pa.Table.from_batches([batch]).column("edge"))
    except (OSError, KeyError, pa.ArrowException, FirebreakError) as exc:
        raise ReportError(f"{path}: cannot read the edges: {exc}") from None
    return [tuple(n.split("->", 1)) for n in names if "->" in n]


def load_run(mode: str, path: Path) -> RunData:
    """A rehearsal's run directory for the report: summary, labels, operations, minute means."""
    path = Path(path)
    if not path.is_dir():
        raise ReportError(f"{path}: no such run directory")
    summary = _read_json(path / "summary.json")
    times, services, cube = minute_means(path / "metrics.parquet")
    return RunData(
        mode=mode,
        path=path,
        summary=summary,
        faults=load_labels(path) if (path / "labels.json").is_file() else [],
        operations=_read_json(path / "operations.json", default={}),
        times=times,
        services=services,
        cube=cube,
        edges=call_edges(path / "edge_metrics.parquet"),
    )


def entry_services(run: RunData) -> list[str]:
    """Services that take external traffic: no caller in the topology and some load (else
    the busiest)."""
    called = {b for _, b in run.edges}
    load = np.nan_to_num(np.nansum(run.series("arrival_rate"), axis=0))
    entries = [s for k, s in enumerate(run.services) if s not in called and load[k] > 0]
    if entries and len(entries) < len(run.services):
        return entries
    return [run.services[int(np.argmax(load))]]
