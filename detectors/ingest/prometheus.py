"""Prometheus range queries: the JSON of `/api/v1/query_range` (`resultType: matrix`).

A file holds one response, a list of responses, or JSON lines of them (one per query).
Each series becomes a signal: its service from the usual labels (`service`, `app`,
`job`, `container`, then `pod` mapped to its workload), its metric from `__name__` plus the
labels that tell series of one name apart (`quantile`, `le`, `code`, `method`, ...), in
label order. Values are strings in the JSON (`"NaN"`, `"+Inf"` included); counters
(`_total`) become rates as everywhere else.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from detectors.ingest.clean import ground_truth_columns
from detectors.ingest.entities import entity_table
from detectors.ingest.errors import IngestError, fail, require_file
from detectors.ingest.names import service_of_pod
from detectors.ingest.table import SignalTable

SERVICE_LABELS = ("service", "service_name", "app", "app_kubernetes_io_name", "job", "container")
IDENTITY_LABELS = {*SERVICE_LABELS, "__name__", "pod", "instance", "namespace", "node"}


def _documents(path: Path) -> list[Any]:
    text = path.read_text(encoding="utf-8", errors="replace")
    if not text.strip():
        raise IngestError(f"{path}: empty file")
    try:
        doc = json.loads(text)
        return doc if isinstance(doc, list) else [doc]
    except json.JSONDecodeError as first:
        docs = []
        for line in text.splitlines():
            if not line.strip():
                continue
            try:
                docs.append(json.loads(line))
            except json.JSONDecodeError:
                raise IngestError(
                    f"{path}: not JSON (line {first.lineno}, column {first.colno}: {first.msg})"
                ) from None
        return docs


def _series_name(labels: Mapping[str, str]) -> tuple[str, str]:
    """(entity, metric) of one series' labels."""
    entity = next((labels[k] for k in SERVICE_LABELS if labels.get(k)), None)
    if entity is None and labels.get("pod"):
        entity = service_of_pod(labels["pod"])
    if entity is None:
        entity = labels.get("instance") or "all"
    metric = labels.get("__name__") or "value"
    extra = [f"{k}={v}" for k, v in labels.items() if k not in IDENTITY_LABELS]
    if labels.get("pod") and any(labels.get(k) for k in SERVICE_LABELS):
        extra.append(f"pod={labels['pod']}")
    return str(entity), metric + (f"{{{','.join(extra)}}}" if extra else "")


def read_prometheus_json(
    path: str | Path, *, services: Iterable[str] | None = None, exclude: Sequence[str] = ()
) -> SignalTable:
    """A SignalTable from saved query_range responses."""
    path = require_file(path)
    times: list[float] = []
    entities: list[str] = []
    metrics: list[str] = []
    values: list[float] = []
    for d, doc in enumerate(_documents(path)):
        where = f"response {d}"
        if not isinstance(doc, Mapping):
            fail(path, f"{where}: expected a JSON object")
        if doc.get("status") not in (None, "success"):
            fail(
                path, f"{where}: status {doc.get('status')!r} ({doc.get('error', 'no error text')})"
            )
        data = doc.get("data", doc)
        if not isinstance(data, Mapping) or "result" not in data:
            fail(path, f"{where}: no data.result (not a Prometheus query response)")
        if data.get("resultType", "matrix") != "matrix":
            fail(
                path,
                f"{where}: resultType {data.get('resultType')!r}; a range query gives 'matrix'",
            )
        for s, series in enumerate(data["result"]):
            labels = series.get("metric", {}) if isinstance(series, Mapping) else None
            points = series.get("values") if isinstance(series, Mapping) else None
            if not isinstance(labels, Mapping) or not isinstance(points, list):
                fail(path, f"{where}, series {s}: expected 'metric' labels and a 'values' list")
            entity, metric = _series_name(labels)
            for p, point in enumerate(points):
                try:
                    t, v = float(point[0]), float(point[1])
                except (TypeError, ValueError, IndexError):
                    fail(
                        path,
                        f"{where}, series {s} ({metric}), point {p}: not [time, value]: {point!r}",
                    )
                times.append(t)
                entities.append(entity)
                metrics.append(metric)
                values.append(v if np.isfinite(v) else np.nan)
    if not times:
        raise IngestError(f"{path}: no samples in the responses")
    names = list(dict.fromkeys(metrics))
    truth = ground_truth_columns(names, exclude)
    keep = np.array([m not in set(truth) for m in metrics])
    notes = ["time: Prometheus epoch seconds"]
    if truth:
        notes.append(f"not scored (ground truth or --exclude): {', '.join(truth)}")
    return entity_table(
        str(path),
        np.asarray(times)[keep],
        np.asarray(entities)[keep],
        np.asarray(metrics)[keep],
        np.asarray(values)[keep],
        known=services,
        notes=notes,
        excluded=truth,
    )
