"""A topology from recorded traces (Jaeger JSON or OTLP JSON): services, calls, latencies.

What traces show is taken; what they cannot show is sized or left at the topology defaults
and said so in the file's header (twin.scenario.trace_scenario turns it into a scenario).

- services: every service that owns a span, plus callees known only by a client span:
  `peer.service`, or for a database client span (`db.system`, OpenTracing's `db.type`) the
  server it names (`server.address`, `net.peer.name`, `peer.hostname`) or else its system
  and database (`postgresql-orders`); `db.system` marks them as stores;
- calls: a span whose parent belongs to another service is a call from that service; a
  CLIENT span and the SERVER span under it are one call; retry attempts (`rpc.attempt` > 1,
  the request fidelity's `retry` > 0, or a call to the same callee that starts after the
  same request's previous attempt failed) are not new calls but kept as attempts, from
  which timeouts and retry policies are read;
- calls per request: per caller request (a span of the caller whose parent is elsewhere),
  the share that calls the callee at all (`probability`) and the mean count among those
  (`per_request`);
- async: a call the caller does not wait for (FOLLOWS_FROM, a PRODUCER span, `rpc.async`,
  or a callee that outlives the client span, or without one the span, that called it),
  decided per edge by majority;
- own service time: a request's duration less the union of its synchronous calls (a call
  with retries: first attempt to last, back-off included), as a lognormal with the observed
  mean and coefficient of variation; `parallel_calls` when most requests overlap their
  calls; `error_rate` from requests that failed with no failed call.
"""

from __future__ import annotations

import itertools
import math
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from twin.scenario.loader import check_topology
from twin.scenario.topology import Topology
from twin.scenario.trace_files import RawSpan, TraceImportError, number, read_spans, truthy

__all__ = ["RawSpan", "TraceImportError", "build_topology", "import_traces", "read_spans"]

SERVER_KINDS = {"server", "consumer"}
CLIENT_KINDS = {"client", "producer"}
MIN_MEAN_MS = 0.001
MAX_ERROR_RATE = 0.99
DB_HOST_KEYS = ("server.address", "net.peer.name", "peer.hostname", "net.peer.ip")


@dataclass
class Call:
    """One attempt of a call (microseconds); `attempt` 1 is the call itself."""

    target: str
    start: float
    end: float
    error: bool
    sync: bool
    attempt: int | None = None  # None: not stated by the span, numbered by `_number_attempts`


@dataclass
class Analysis:
    """Every request, call attempt and entry point found in the spans."""

    requests: dict[str, list[RawSpan]]  # service → its requests
    calls: dict[tuple[str, str], list[Call]]  # (trace, request span id) → its call attempts
    roots: dict[str, int]  # entry service → traces that start there
    root_spans: list[RawSpan]  # every trace's root span
    peer_only: dict[str, list[RawSpan]]  # callee known only from client spans
    stores: set[str]
    traces: int


def analyse(spans: list[RawSpan]) -> Analysis:
    """Requests, calls (attempts numbered) and entries of a list of spans."""
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
    calls: dict[tuple[str, str], list[Call]] = defaultdict(list)
    roots: dict[str, int] = defaultdict(int)
    root_spans: list[RawSpan] = []
    peer_only: dict[str, list[RawSpan]] = defaultdict(list)
    stores: set[str] = set()
    for s in spans:
        parent = parent_of(s)
        if parent is None or parent.service != s.service:
            requests[s.service].append(s)
            if parent is None:
                roots[s.service] += 1
                root_spans.append(s)
        if s.kind in CLIENT_KINDS:
            _client_call(s, children, request_of, calls, peer_only, stores)
        elif parent is not None and parent.service != s.service and parent.kind not in CLIENT_KINDS:
            # a call without a client span: the callee's span hangs under the caller's, and
            # one that outlives its caller's span was not waited for
            sync = not (s.follows_from or s.kind == "consumer" or s.end > parent.end)
            owner = request_of(parent)
            call = Call(s.service, s.start, s.end, s.error, sync, _attempt(s))
            calls[(owner.trace, owner.span_id)].append(call)
    for made in calls.values():
        _number_attempts(made)
    traces = len({s.trace for s in spans})
    return Analysis(requests, calls, roots, root_spans, peer_only, stores, traces)


def _attempt(s: RawSpan) -> int | None:
    """The attempt a span states (`rpc.attempt`, 1-based; the request fidelity's 0-based
    `retry`), or None."""
    attempt = s.attrs.get("rpc.attempt")
    if attempt is None and s.attrs.get("retry") is not None:
        attempt = number(s.attrs["retry"], "retry") + 1
    return None if attempt is None else max(1, int(number(attempt, "rpc.attempt")))


def _store_name(s: RawSpan) -> str | None:
    """The database a client span talks to, when the span says it is a database call."""
    system = s.attrs.get("db.system") or s.attrs.get("db.type")
    if not system:
        return None
    for key in DB_HOST_KEYS:
        if s.attrs.get(key):
            return str(s.attrs[key])
    database = s.attrs.get("db.name") or s.attrs.get("db.namespace") or s.attrs.get("db.instance")
    return f"{system}-{database}" if database else str(system)


def _client_call(s, children, request_of, calls, peer_only, stores) -> None:
    """A CLIENT/PRODUCER span: one call attempt to its child's service."""
    remote = [c for c in children.get((s.trace, s.span_id), []) if c.service != s.service]
    target = remote[0].service if remote else (s.attrs.get("peer.service") or _store_name(s))
    if not target or target == s.service:
        return
    if not remote:
        peer_only[str(target)].append(s)
        if s.attrs.get("db.system") or s.attrs.get("db.type"):
            stores.add(str(target))
    # the callee still working well after the client span ended: nobody waited for it
    # (half its duration as margin, so clock skew between hosts does not count)
    outlives = bool(remote) and remote[0].end > s.end + 0.5 * (remote[0].end - remote[0].start)
    sync = not (
        s.kind == "producer"
        or truthy(s.attrs.get("rpc.async"))
        or any(c.follows_from for c in remote)
        or outlives
    )
    owner = request_of(s)
    call = Call(str(target), s.start, s.end, s.error, sync, _attempt(s))
    calls[(owner.trace, owner.span_id)].append(call)


def _number_attempts(made: list[Call]) -> None:
    """Attempts a span did not number: a call to the same callee that starts once the same
    request's previous call to it has failed is that call's next attempt."""
    made.sort(key=lambda c: (c.start, c.end))
    last: dict[str, Call] = {}
    for call in made:
        if call.attempt is None:
            prev = last.get(call.target)
            retry = prev is not None and prev.error and call.start >= prev.end
            call.attempt = prev.attempt + 1 if retry and prev.attempt else 1
        last[call.target] = call


def chains(made: list[Call]) -> list[list[Call]]:
    """A request's calls as chains of attempts (first attempt, its retries)."""
    out: list[list[Call]] = []
    open_chain: dict[str, list[Call]] = {}
    for call in made:
        if call.attempt == 1 or call.target not in open_chain:
            open_chain[call.target] = [call]
            out.append(open_chain[call.target])
        else:
            open_chain[call.target].append(call)
    return out


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


def _service_time(mean: float, cv: float) -> dict[str, Any]:
    return {"dist": "lognormal", "mean_ms": round(max(mean, MIN_MEAN_MS), 4), "cv": round(cv, 3)}


def _service_entry(
    requests: list[RawSpan], calls: Mapping[tuple[str, str], list[Call]]
) -> dict[str, Any]:
    """service_time, parallel_calls and error_rate of one service from its requests."""
    own: list[float] = []
    own_ok: list[float] = []
    own_errors = fanned = overlapping = 0
    for req in requests:
        made = calls.get((req.trace, req.span_id), [])
        waited = [(ch[0].start, ch[-1].end) for ch in chains(made) if ch[0].sync]
        sync = [(max(a, req.start), min(b, req.end)) for a, b in waited]
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
    entry: dict[str, Any] = {"service_time": _service_time(mean, cv)}
    if fanned and overlapping > fanned / 2:
        entry["parallel_calls"] = True
    if own_errors:
        entry["error_rate"] = round(min(own_errors / len(requests), MAX_ERROR_RATE), 4)
    return entry


def _edges(a: Analysis) -> list[dict[str, Any]]:
    """Call edges: calls per request, probability, sync (retry attempts are not calls)."""
    edges = []
    for caller in sorted(a.requests):
        reqs = a.requests[caller]
        per_target: dict[str, list[int]] = defaultdict(list)
        votes: dict[str, list[bool]] = defaultdict(list)
        for req in reqs:
            counts: dict[str, int] = defaultdict(int)
            for call in a.calls.get((req.trace, req.span_id), []):
                if call.attempt == 1:
                    counts[call.target] += 1
                    votes[call.target].append(call.sync)
            for target, count in counts.items():
                per_target[target].append(count)
        for target in sorted(per_target):
            made = per_target[target]
            edge: dict[str, Any] = {
                "from": caller,
                "to": target,
                "per_request": round(sum(made) / len(made), 4),
                "probability": round(min(len(made) / len(reqs), 1.0), 4),
            }
            if sum(votes[target]) < len(votes[target]) / 2:
                edge["sync"] = False
            edges.append(edge)
    return edges


def build_topology(spans: list[RawSpan], name: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """The topology (plain data, ready for YAML) and a summary of what was found."""
    return topology_from(analyse(spans), name, len(spans))


def topology_from(a: Analysis, name: str, n_spans: int) -> tuple[dict[str, Any], dict[str, Any]]:
    """The topology and summary of an analysis (see `build_topology`)."""
    services: dict[str, dict[str, Any]] = {}
    for service in sorted(set(a.requests) | set(a.peer_only)):
        if a.requests.get(service):
            services[service] = _service_entry(a.requests[service], a.calls)
        else:  # only seen from its callers: its time is what the callers waited
            durations = [(s.end - s.start) / 1000.0 for s in a.peer_only[service] if not s.error]
            durations = durations or [(s.end - s.start) / 1000.0 for s in a.peer_only[service]]
            services[service] = {"service_time": _service_time(*_mean_cv(durations))}
        if service in a.stores:
            services[service] = {"kind": "store", **services[service]}
    edges = _edges(a)
    topology = {
        "name": name,
        "description": f"Imported from traces: {len(services)} services, {len(edges)} calls.",
        "services": services,
        "calls": edges,
    }
    summary = {
        "traces": a.traces,
        "spans": n_spans,
        "entries": dict(sorted(a.roots.items(), key=lambda kv: (-kv[1], kv[0]))),
        "requests": {s: len(r) for s, r in sorted(a.requests.items())},
    }
    return topology, summary


def validate_topology(topology: dict[str, Any], source: str) -> Topology:
    """The typed topology, or an error saying what came out wrong (a bug, not the user's)."""
    try:
        topo = Topology.model_validate(topology)
    except ValidationError as exc:
        raise TraceImportError(f"{source}: the imported topology is invalid: {exc}") from None
    check_topology(topo, source)
    return topo


def import_traces(path: str | Path, name: str | None = None) -> tuple[dict[str, Any], dict]:
    """Read a trace file and build a validated topology from it (plain data and a summary)."""
    path = Path(path)
    fmt, spans = read_spans(path)
    topology, summary = build_topology(spans, name or path.stem)
    summary["format"] = fmt
    validate_topology(topology, str(path))
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


def write_yaml(doc: Mapping[str, Any], out: str | Path, comment: str = "") -> None:
    """A topology or scenario as YAML under its comment header."""
    out = Path(out)
    if out.parent and not out.parent.exists():
        raise TraceImportError(f"{out}: directory {out.parent} does not exist")
    if out.is_dir():
        raise TraceImportError(f"{out}: is a directory, expected a file to write")
    text = yaml.safe_dump(dict(doc), sort_keys=False, default_flow_style=None, width=100)
    try:
        out.write_text(comment + text, encoding="utf-8")
    except OSError as exc:
        raise TraceImportError(f"{out}: cannot write: {exc.strerror or exc}") from None


write_topology = write_yaml
