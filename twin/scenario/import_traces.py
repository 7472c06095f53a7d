"""A topology from recorded traces (Jaeger JSON or OTLP JSON): services, calls, latencies.

What traces show is taken; what they cannot show is left at the topology defaults and said
so in the file's header: capacity (replicas, workers, CPU, memory), timeouts and retries.

- services: every service that owns a span, plus callees known only by a client span's
  `peer.service` (uninstrumented stores; `db.system` marks them as stores);
- calls: a span whose parent belongs to another service is a call from that service; a
  CLIENT span and the SERVER span under it are one call, and retry attempts
  (`rpc.attempt` > 1, or the request fidelity's `retry` > 0) are not calls;
- calls per request: per caller request (a span of the caller whose parent is elsewhere),
  the share that calls the callee at all (`probability`) and the mean count among those
  (`per_request`);
- async: a call the caller does not wait for (FOLLOWS_FROM, a PRODUCER span, `rpc.async`,
  or a callee that outlives the client span, or without one the span, that called it),
  decided per edge by majority;
- own service time: a request's duration less the union of its synchronous calls, as a
  lognormal with the observed mean and coefficient of variation; `parallel_calls` when most
  requests overlap their calls; `error_rate` from requests that failed with no failed call.

Over 500 lines because both trace formats (Jaeger, OTLP JSON and JSON lines) and every check
of a malformed file feed one topology builder, and reading them apart would duplicate the
span model.
"""

from __future__ import annotations

import itertools
import json
import math
from collections import defaultdict
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from twin.errors import FirebreakError
from twin.scenario.loader import check_topology
from twin.scenario.topology import Topology

SERVER_KINDS = {"server", "consumer"}
CLIENT_KINDS = {"client", "producer"}
OTLP_KINDS = {0: None, 1: "internal", 2: "server", 3: "client", 4: "producer", 5: "consumer"}
MIN_MEAN_MS = 0.001
MAX_ERROR_RATE = 0.99


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


def _number(value: Any, where: str) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise TraceImportError(f"{where}: not a number: {value!r}") from None
    if not math.isfinite(number):
        raise TraceImportError(f"{where}: not a finite number: {value!r}")
    return number


def _truthy(value: Any) -> bool:
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
    start = _number(_need(span, "startTime", where), f"{where}.startTime")
    duration = _number(_need(span, "duration", where), f"{where}.duration")
    if duration < 0:
        raise TraceImportError(f"{where}.duration: negative ({duration:g})")
    kind = tags.get("span.kind")
    error = _truthy(tags.get("error")) or str(tags.get("otel.status_code", "")).upper() == "ERROR"
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
    start = _number(_need(span, "startTimeUnixNano", where), f"{where}.startTimeUnixNano")
    end = _number(_need(span, "endTimeUnixNano", where), f"{where}.endTimeUnixNano")
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


# -- building ----------------------------------------------------------------------------------
@dataclass
class _Call:
    target: str
    start: float
    end: float
    error: bool
    sync: bool


@dataclass
class _Analysis:
    requests: dict[str, list[RawSpan]]  # service → its requests
    calls: dict[tuple[str, str], list[_Call]]  # (trace, request span id) → its calls
    roots: dict[str, int]  # entry service → traces that start there
    peer_only: dict[str, list[RawSpan]]  # callee known only from client spans
    stores: set[str]
    traces: int


def _analyse(spans: list[RawSpan]) -> _Analysis:
    by_id = {(s.trace, s.span_id): s for s in spans}
    children: dict[tuple[str, str], list[RawSpan]] = defaultdict(list)
    for s in spans:
        if s.parent is not None and (s.trace, s.parent) in by_id:
            children[(s.trace, s.parent)].append(s)

    def parent_of(s: RawSpan) -> RawSpan | None:
        return by_id.get((s.trace, s.parent)) if s.parent is not None else None

    def request_of(s: RawSpan) -> RawSpan:
        while (p := parent_of(s)) is not None and p.service == s.service:
            s = p
        return s

    requests: dict[str, list[RawSpan]] = defaultdict(list)
    calls: dict[tuple[str, str], list[_Call]] = defaultdict(list)
    roots: dict[str, int] = defaultdict(int)
    peer_only: dict[str, list[RawSpan]] = defaultdict(list)
    stores: set[str] = set()
    for s in spans:
        parent = parent_of(s)
        if parent is None or parent.service != s.service:
            requests[s.service].append(s)
            if parent is None:
                roots[s.service] += 1
        if s.kind in CLIENT_KINDS:
            _client_call(s, children, request_of, calls, peer_only, stores)
        elif parent is not None and parent.service != s.service and parent.kind not in CLIENT_KINDS:
            # a call without a client span: the callee's span hangs under the caller's, and
            # one that outlives its caller's span was not waited for
            sync = not (s.follows_from or s.kind == "consumer" or s.end > parent.end)
            owner = request_of(parent)
            call = _Call(s.service, s.start, s.end, s.error, sync)
            calls[(owner.trace, owner.span_id)].append(call)
    return _Analysis(requests, calls, roots, peer_only, stores, len({s.trace for s in spans}))


def _client_call(s, children, request_of, calls, peer_only, stores) -> None:
    """A CLIENT/PRODUCER span: one call (unless it is a retry) to its child's service."""
    remote = [c for c in children.get((s.trace, s.span_id), []) if c.service != s.service]
    target = remote[0].service if remote else s.attrs.get("peer.service")
    if not target or target == s.service:
        return
    attempt = s.attrs.get("rpc.attempt")
    if attempt is None and s.attrs.get("retry") is not None:  # the request fidelity: 0-based
        attempt = _number(s.attrs["retry"], "retry") + 1
    if not remote:
        peer_only[str(target)].append(s)
        if s.attrs.get("db.system"):
            stores.add(str(target))
    if attempt is not None and _number(attempt, "rpc.attempt") > 1:
        return
    # the callee still working well after the client span ended: nobody waited for it
    # (half its duration as margin, so clock skew between hosts does not count)
    outlives = bool(remote) and remote[0].end > s.end + 0.5 * (remote[0].end - remote[0].start)
    sync = not (
        s.kind == "producer"
        or _truthy(s.attrs.get("rpc.async"))
        or s.attrs.get("rpc.async") is True
        or any(c.follows_from for c in remote)
        or outlives
    )
    owner = request_of(s)
    calls[(owner.trace, owner.span_id)].append(_Call(str(target), s.start, s.end, s.error, sync))


def _union_length(intervals: list[tuple[float, float]]) -> float:
    total, cur_start, cur_end = 0.0, None, None
    for a, b in sorted(intervals):
        if cur_end is None or a > cur_end:
            if cur_end is not None:
                total += cur_end - cur_start
            cur_start, cur_end = a, b
        else:
            cur_end = max(cur_end, b)
    if cur_end is not None:
        total += cur_end - cur_start
    return total


def _overlaps(intervals: list[tuple[float, float]]) -> bool:
    ordered = sorted(intervals)
    return any(b[0] < a[1] - 1e-3 for a, b in itertools.pairwise(ordered))


def _mean_cv(values: list[float]) -> tuple[float, float]:
    n = len(values)
    mean = sum(values) / n
    var = sum((v - mean) ** 2 for v in values) / (n - 1) if n > 1 else 0.0
    return mean, (math.sqrt(var) / mean if mean > 0 else 0.0)


def _service_entry(
    requests: list[RawSpan], calls: Mapping[tuple[str, str], list[_Call]]
) -> dict[str, Any]:
    """service_time, parallel_calls and error_rate of one service from its requests."""
    own: list[float] = []
    own_ok: list[float] = []
    own_errors = fanned = overlapping = 0
    for req in requests:
        made = calls.get((req.trace, req.span_id), [])
        sync = [(max(c.start, req.start), min(c.end, req.end)) for c in made if c.sync]
        sync = [(a, b) for a, b in sync if b > a]
        value = max(req.end - req.start - _union_length(sync), 0.0) / 1000.0  # ms
        own.append(value)
        if not req.error:
            own_ok.append(value)
        elif not any(c.error for c in made):
            own_errors += 1
        if len(sync) >= 2:
            fanned += 1
            overlapping += _overlaps(sync)
    mean, cv = _mean_cv(own_ok if len(own_ok) >= max(2, len(own) // 2) else own)
    entry: dict[str, Any] = {
        "service_time": {
            "dist": "lognormal",
            "mean_ms": round(max(mean, MIN_MEAN_MS), 4),
            "cv": round(cv, 3),
        }
    }
    if fanned and overlapping > fanned / 2:
        entry["parallel_calls"] = True
    if own_errors:
        entry["error_rate"] = round(min(own_errors / len(requests), MAX_ERROR_RATE), 4)
    return entry


def build_topology(spans: list[RawSpan], name: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """The topology (plain data, ready for YAML) and a summary of what was found."""
    a = _analyse(spans)
    services: dict[str, dict[str, Any]] = {}
    for service in sorted(set(a.requests) | set(a.peer_only)):
        if a.requests.get(service):
            services[service] = _service_entry(a.requests[service], a.calls)
        else:  # only seen from its callers: its time is what the callers waited
            durations = [(s.end - s.start) / 1000.0 for s in a.peer_only[service] if not s.error]
            durations = durations or [(s.end - s.start) / 1000.0 for s in a.peer_only[service]]
            mean, cv = _mean_cv(durations)
            services[service] = {
                "service_time": {
                    "dist": "lognormal",
                    "mean_ms": round(max(mean, MIN_MEAN_MS), 4),
                    "cv": round(cv, 3),
                }
            }
        if service in a.stores:
            services[service] = {"kind": "store", **services[service]}
    edges = []
    for caller in sorted(a.requests):
        reqs = a.requests[caller]
        per_target: dict[str, list[int]] = defaultdict(list)
        for req in reqs:
            counts: dict[str, int] = defaultdict(int)
            for call in a.calls.get((req.trace, req.span_id), []):
                counts[call.target] += 1
            for target, count in counts.items():
                per_target[target].append(count)
        for target in sorted(per_target):
            made = per_target[target]
            sync_votes = [
                c.sync
                for r in reqs
                for c in a.calls.get((r.trace, r.span_id), [])
                if c.target == target
            ]
            edge: dict[str, Any] = {
                "from": caller,
                "to": target,
                "per_request": round(sum(made) / len(made), 4),
                "probability": round(min(len(made) / len(reqs), 1.0), 4),
            }
            if sum(sync_votes) < len(sync_votes) / 2:
                edge["sync"] = False
            edges.append(edge)
    topology = {
        "name": name,
        "description": f"Imported from traces: {len(services)} services, {len(edges)} calls.",
        "services": services,
        "calls": edges,
    }
    summary = {
        "traces": a.traces,
        "spans": len(spans),
        "entries": dict(sorted(a.roots.items(), key=lambda kv: (-kv[1], kv[0]))),
        "requests": {s: len(r) for s, r in sorted(a.requests.items())},
    }
    return topology, summary


def _validate(topology: dict[str, Any], source: str) -> Topology:
    try:
        topo = Topology.model_validate(topology)
    except ValidationError as exc:  # a bug here, not the user's: say what came out
        raise TraceImportError(f"{source}: the imported topology is invalid: {exc}") from None
    check_topology(topo, source)
    return topo


def import_traces(path: str | Path, name: str | None = None) -> tuple[dict[str, Any], dict]:
    """Read a trace file and build a validated topology from it (plain data and a summary)."""
    path = Path(path)
    fmt, spans = read_spans(path)
    topology, summary = build_topology(spans, name or path.stem)
    summary["format"] = fmt
    _validate(topology, str(path))
    return topology, summary


def header(path: Path, summary: Mapping[str, Any]) -> str:
    """The comment block that says where the topology came from and what it lacks."""
    entries = ", ".join(f"{svc} ({count} traces)" for svc, count in summary["entries"].items())
    lines = [
        f"Imported by `firebreak import-traces` from {path.name} ({summary['format']}):",
        f"{summary['traces']} traces, {summary['spans']} spans.",
        f"Entry services (where traces start): {entries or 'none'}.",
        "Observed: services, calls, calls per request, async calls, own service time (mean,",
        "cv), parallel fan-out, own error rate. Not observable in traces and left at the",
        "defaults: replicas, workers, CPU, memory, queue limits, timeouts, retries, breakers.",
    ]
    return "".join(f"# {line}\n" for line in lines)


def write_topology(topology: Mapping[str, Any], out: str | Path, comment: str = "") -> None:
    out = Path(out)
    if out.parent and not out.parent.exists():
        raise TraceImportError(f"{out}: directory {out.parent} does not exist")
    text = yaml.safe_dump(dict(topology), sort_keys=False, default_flow_style=None, width=100)
    out.write_text(comment + text, encoding="utf-8")
