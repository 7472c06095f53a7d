"""Reading recorded trace files (Jaeger JSON, OTLP JSON and JSON lines) into one span model.

Every malformed input fails with the file and the place in it (`data[0].spans[3].duration:
not a number`), never a traceback; `twin.scenario.import_traces` builds topologies from the
spans, `detectors.anomaly.traces` scores them.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from twin.errors import FirebreakError

OTLP_KINDS = {0: None, 1: "internal", 2: "server", 3: "client", 4: "producer", 5: "consumer"}


class TraceImportError(FirebreakError):
    """A trace file that cannot be read as Jaeger or OTLP JSON; the message says where."""


@dataclass(slots=True)
class RawSpan:
    """A span as both formats describe it, times in microseconds."""

    trace: str
    span_id: str
    parent: str | None
    service: str
    kind: str | None
    start: float
    end: float
    error: bool = False
    follows_from: bool = False
    attrs: dict[str, Any] = field(default_factory=dict)


# -- reading -----------------------------------------------------------------------------------
def _load_documents(path: Path) -> list[Any]:
    """One JSON document, or JSON lines (the OpenTelemetry collector's file exporter)."""
    if not path.exists():
        raise TraceImportError(f"{path}: file not found")
    if path.is_dir():
        raise TraceImportError(f"{path}: is a directory, expected a JSON trace file")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise TraceImportError(f"{path}: not a UTF-8 text file ({exc.reason})") from None
    if not text.strip():
        raise TraceImportError(f"{path}: empty file")
    try:
        return [json.loads(text)]
    except json.JSONDecodeError as exc:
        first_error = exc
    except RecursionError:
        raise TraceImportError(f"{path}: JSON nested too deeply to read") from None
    docs = []
    for line in text.splitlines():
        if not line.strip():
            continue
        try:
            docs.append(json.loads(line))
        except RecursionError:
            raise TraceImportError(f"{path}: JSON nested too deeply to read") from None
        except json.JSONDecodeError:
            e = first_error
            raise TraceImportError(
                f"{path}: not valid JSON (line {e.lineno}, column {e.colno}: {e.msg})"
            ) from None
    return docs


def read_spans(path: str | Path) -> tuple[str, list[RawSpan]]:
    """The spans of a Jaeger or OTLP JSON file, and which format it was."""
    path = Path(path)
    spans: list[RawSpan] = []
    formats = set()
    for doc in _load_documents(path):
        if isinstance(doc, Mapping) and "resourceSpans" in doc:
            formats.add("otlp")
            spans.extend(_otlp_spans(doc, str(path)))
        elif isinstance(doc, Mapping) and ("data" in doc or "spans" in doc):
            formats.add("jaeger")
            spans.extend(_jaeger_spans(doc, str(path)))
        else:
            raise TraceImportError(
                f"{path}: neither Jaeger JSON (an object with a 'data' list of traces) nor "
                "OTLP JSON (an object with 'resourceSpans')"
            )
    if not spans:
        raise TraceImportError(f"{path}: no spans found")
    return "+".join(sorted(formats)), spans


def _need(obj: Any, key: str, where: str) -> Any:
    if not isinstance(obj, Mapping):
        raise TraceImportError(f"{where}: expected an object, got {type(obj).__name__}")
    if key not in obj or obj[key] is None:
        raise TraceImportError(f"{where}: missing {key!r}")
    return obj[key]


def _list(value: Any, where: str) -> list:
    if not isinstance(value, list):
        raise TraceImportError(f"{where}: expected a list, got {type(value).__name__}")
    return value


def number(value: Any, where: str) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise TraceImportError(f"{where}: not a number: {value!r}") from None
    if not math.isfinite(number):
        raise TraceImportError(f"{where}: not a finite number: {value!r}")
    return number


def truthy(value: Any) -> bool:
    return value is True or (isinstance(value, str) and value.lower() == "true")


def _jaeger_spans(doc: Mapping, source: str) -> Iterator[RawSpan]:
    traces = doc.get("data", [doc])
    for i, trace in enumerate(_list(traces, f"{source}: data")):
        where = f"{source}: data[{i}]"
        processes = (trace.get("processes") if isinstance(trace, Mapping) else None) or {}
        for j, span in enumerate(_list(_need(trace, "spans", where), f"{where}.spans")):
            yield _jaeger_span(span, processes, trace, f"{where}.spans[{j}]")


def _jaeger_span(span: Any, processes: Mapping, trace: Mapping, where: str) -> RawSpan:
    span_id = str(_need(span, "spanID", where))
    process = span.get("process")
    if process is None:
        pid = _need(span, "processID", where)
        if pid not in processes:
            raise TraceImportError(f"{where}.processID: {pid!r} is not in the trace's processes")
        process = processes[pid]
    service = _need(process, "serviceName", f"{where} process")
    tags = {}
    for k, tag in enumerate(_list(span.get("tags") or [], f"{where}.tags")):
        tags[str(_need(tag, "key", f"{where}.tags[{k}]"))] = tag.get("value")
    parent, follows = None, False
    for k, ref in enumerate(_list(span.get("references") or [], f"{where}.references")):
        ref_where = f"{where}.references[{k}]"
        kind = _need(ref, "refType", ref_where)
        if kind not in ("CHILD_OF", "FOLLOWS_FROM"):
            raise TraceImportError(f"{ref_where}.refType: unknown {kind!r}")
        if parent is None or (kind == "CHILD_OF" and follows):  # CHILD_OF wins
            parent, follows = str(_need(ref, "spanID", ref_where)), kind == "FOLLOWS_FROM"
    if parent is None and span.get("parentSpanID"):
        parent = str(span["parentSpanID"])
    start = number(_need(span, "startTime", where), f"{where}.startTime")
    duration = number(_need(span, "duration", where), f"{where}.duration")
    if duration < 0:
        raise TraceImportError(f"{where}.duration: negative ({duration:g})")
    kind = tags.get("span.kind")
    error = truthy(tags.get("error")) or str(tags.get("otel.status_code", "")).upper() == "ERROR"
    return RawSpan(
        trace=str(span.get("traceID") or _need(trace, "traceID", where)),
        span_id=span_id,
        parent=parent,
        service=str(service),
        kind=str(kind).lower() if kind else None,
        start=start,
        end=start + duration,
        error=error,
        follows_from=follows,
        attrs=tags,
    )


def _any_value(value: Any) -> Any:
    if not isinstance(value, Mapping):
        return value
    for key in ("stringValue", "boolValue", "doubleValue"):
        if key in value:
            return value[key]
    if "intValue" in value:
        return int(value["intValue"])
    return None


def _otlp_attributes(items: Any, where: str) -> dict[str, Any]:
    out = {}
    for k, item in enumerate(_list(items or [], where)):
        out[str(_need(item, "key", f"{where}[{k}]"))] = _any_value(item.get("value"))
    return out


def _otlp_kind(value: Any, where: str) -> str | None:
    if isinstance(value, str):
        name = value.upper().removeprefix("SPAN_KIND_")
        if name in ("UNSPECIFIED", "INTERNAL", "SERVER", "CLIENT", "PRODUCER", "CONSUMER"):
            return None if name == "UNSPECIFIED" else name.lower()
    elif isinstance(value, int) and value in OTLP_KINDS:
        return OTLP_KINDS[value]
    raise TraceImportError(f"{where}.kind: unknown span kind {value!r}")


def _otlp_spans(doc: Mapping, source: str) -> Iterator[RawSpan]:
    for i, rs in enumerate(_list(doc["resourceSpans"], f"{source}: resourceSpans")):
        where = f"{source}: resourceSpans[{i}]"
        resource = (rs.get("resource") if isinstance(rs, Mapping) else None) or {}
        attrs = _otlp_attributes(resource.get("attributes"), f"{where}.resource.attributes")
        service = attrs.get("service.name")
        if not service:
            raise TraceImportError(f"{where}.resource: no 'service.name' attribute")
        scopes = rs.get("scopeSpans") or rs.get("instrumentationLibrarySpans") or []
        for j, scope in enumerate(_list(scopes, f"{where}.scopeSpans")):
            spans = (scope.get("spans") if isinstance(scope, Mapping) else None) or []
            for k, span in enumerate(_list(spans, f"{where}.scopeSpans[{j}].spans")):
                yield _otlp_span(span, str(service), f"{where}.scopeSpans[{j}].spans[{k}]")


def _otlp_span(span: Any, service: str, where: str) -> RawSpan:
    start = number(_need(span, "startTimeUnixNano", where), f"{where}.startTimeUnixNano")
    end = number(_need(span, "endTimeUnixNano", where), f"{where}.endTimeUnixNano")
    if end < start:
        raise TraceImportError(f"{where}: ends before it starts")
    status = span.get("status") or {}
    code = status.get("code") if isinstance(status, Mapping) else None
    return RawSpan(
        trace=str(_need(span, "traceId", where)),
        span_id=str(_need(span, "spanId", where)),
        parent=str(span.get("parentSpanId") or "") or None,
        service=service,
        kind=_otlp_kind(span.get("kind", 0), where),
        start=start / 1000.0,
        end=end / 1000.0,
        error=code in (2, "STATUS_CODE_ERROR"),
        attrs=_otlp_attributes(span.get("attributes"), f"{where}.attributes"),
    )
