"""OTLP JSON traces (an ExportTraceServiceRequest, or the collector's JSON lines) into the
span frame: the service from the resource's `service.name` (a `k8s.pod.name` is kept as
the pod), times from `startTimeUnixNano`/`endTimeUnixNano`, the error from the status code
and the peer from `peer.service` (`server.address` / `net.peer.name` failing that)."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from detectors.ingest.errors import IngestError, fail, require_file
from detectors.ingest.spans import finish_spans

KINDS = {0: "", 1: "internal", 2: "server", 3: "client", 4: "producer", 5: "consumer"}
PEER_KEYS = ("peer.service", "server.address", "net.peer.name")


def _value(v: Any) -> Any:
    if not isinstance(v, Mapping):
        return v
    for key in ("stringValue", "intValue", "doubleValue", "boolValue"):
        if key in v:
            return v[key]
    return None


def _attrs(items: Any) -> dict[str, Any]:
    if not isinstance(items, list):
        return {}
    return {str(i.get("key")): _value(i.get("value")) for i in items if isinstance(i, Mapping)}


def _documents(path: Path) -> list[Any]:
    text = path.read_text(encoding="utf-8", errors="replace")
    if not text.strip():
        raise IngestError(f"{path}: empty file")
    try:
        return [json.loads(text)]
    except json.JSONDecodeError as first:
        docs = []
        for line in text.splitlines():
            if line.strip():
                try:
                    docs.append(json.loads(line))
                except json.JSONDecodeError:
                    raise IngestError(
                        f"{path}: not JSON (line {first.lineno}, column {first.colno}: {first.msg})"
                    ) from None
        return docs


def _kind(raw: Any) -> str:
    if isinstance(raw, str):
        return raw.lower().replace("span_kind_", "").replace("unspecified", "")
    return KINDS.get(int(raw or 0), "")


def read_otlp_json(paths: str | Path | Sequence[str | Path]) -> tuple[pd.DataFrame, list[str]]:
    """(span frame, notes) from OTLP JSON files."""
    paths = [Path(p) for p in ([paths] if isinstance(paths, (str, Path)) else paths)]
    rows: list[dict[str, Any]] = []
    for path in paths:
        for d, doc in enumerate(_documents(require_file(path))):
            if not isinstance(doc, Mapping) or "resourceSpans" not in doc:
                fail(path, f"document {d}: no 'resourceSpans' (not OTLP JSON traces)")
            for i, rs in enumerate(doc["resourceSpans"] or []):
                res = _attrs(((rs or {}).get("resource") or {}).get("attributes"))
                service = res.get("service.name")
                if not service:
                    fail(path, f"resourceSpans[{i}].resource: no 'service.name' attribute")
                pod = str(res.get("k8s.pod.name") or service)
                scopes = rs.get("scopeSpans") or rs.get("instrumentationLibrarySpans") or []
                for j, scope in enumerate(scopes):
                    for k, span in enumerate((scope or {}).get("spans") or []):
                        rows.append(
                            _span(
                                span,
                                str(service),
                                pod,
                                path,
                                f"resourceSpans[{i}].scopeSpans[{j}].spans[{k}]",
                            )
                        )
    if not rows:
        raise IngestError(f"{paths[0] if paths else 'traces'}: no spans found")
    spans, notes = finish_spans(pd.DataFrame(rows))
    return spans, ["span times: epoch nanoseconds (OTLP)", *notes]


def _span(span: Any, service: str, pod: str, path: Path, where: str) -> dict[str, Any]:
    if not isinstance(span, Mapping):
        fail(path, f"{where}: not an object")
    try:
        start = int(span["startTimeUnixNano"]) / 1e9
        end = int(span["endTimeUnixNano"]) / 1e9
        trace, span_id = str(span["traceId"]), str(span["spanId"])
    except KeyError as exc:
        fail(path, f"{where}: no {exc.args[0]!r}")
    except (TypeError, ValueError):
        fail(path, f"{where}: start/end are not integer nanoseconds")
    if end < start:
        fail(path, f"{where}: ends before it starts")
    attrs = _attrs(span.get("attributes"))
    code = (span.get("status") or {}).get("code")
    return {
        "trace": trace,
        "span": span_id,
        "parent": str(span.get("parentSpanId") or ""),
        "service": service,
        "pod": pod,
        "op": str(span.get("name", "")),
        "start": start,
        "end": end,
        "dur_ms": (end - start) * 1e3,
        "kind": _kind(span.get("kind", 0)),
        "error": float(code in (2, "STATUS_CODE_ERROR")),
        "peer": str(next((attrs[k] for k in PEER_KEYS if attrs.get(k)), "")),
    }
