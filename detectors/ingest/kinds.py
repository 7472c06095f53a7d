"""What a signal measures, from its name and unit: latency, errors, load, CPU, memory or
other, and which direction is bad.

Real systems name the same thing many ways (`carts_lat_50`, `PodClientLatencyP90(s)`,
`http_server_request_duration_seconds`, `latency-Average`; `PodWorkload(Ops)`,
`requests-Sum`, `http_requests_total`; `PodSuccessRate(%)`, `availability`), so the name is
cut into lower-case words (camelCase, `_`, `-`, brackets) and matched word by word, in an
order that settles the usual overlaps: `CpuUsageRate` is CPU not load, `error_rate` and
`SuccessRate` are errors, `cpu_usage_seconds_total` is CPU not latency. A unit says what the
name may not: a time unit makes an otherwise unknown signal a latency.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

KINDS = ("latency", "errors", "load", "cpu", "memory", "other")

_WORD = re.compile(r"[A-Z]+(?![a-z])|[A-Z]?[a-z]+|\d+|%")
_UNIT_IN_BRACKETS = re.compile(r"\(([^)]*)\)\s*$")
_TIME_UNITS = {"s", "sec", "secs", "second", "seconds", "ms", "msec", "millis", "us", "ns"}
_UP_IS_GOOD = {"success", "availability", "available", "ok", "apdex", "uptime"}
_ERRORS = {
    "error", "errors", "err", "errs", "fail", "failed", "failure", "failures", "fault",
    "exception", "exceptions", "5xx", "logerror", "timeout", "timeouts", "rejected", "shed",
}  # fmt: skip
_CPU = {"cpu", "cpus", "processor"}
_MEMORY = {"mem", "memory", "rss", "heap", "oom"}
_LATENCY = {
    "lat", "latency", "latencies", "duration", "durations", "rt", "delay", "elapsed",
    "response", "residence", "wait", "p50", "p90", "p95", "p99", "p999",
}  # fmt: skip
_LOAD = {
    "workload", "load", "request", "requests", "req", "reqs", "rps", "qps", "tps", "ops",
    "throughput", "calls", "call", "traffic", "hits", "arrival", "arrivals", "count", "sum",
    "rate", "invocations", "messages", "volume",
}  # fmt: skip


@dataclass(frozen=True)
class SignalKind:
    """A signal's kind, its unit when the name says one, and its bad direction
    (+1: up is bad, -1: down is bad, 0: either way)."""

    kind: str
    unit: str | None
    bad: int
    host: bool = False  # a node's or host's signal, shared by every pod placed there


def words(name: str) -> list[str]:
    """Lower-case words of a metric name (`PodClientLatencyP90(s)` → pod client latency p90 s)."""
    out = []
    for part in re.split(r"[^A-Za-z0-9%]+", str(name)):
        out.extend(w.lower() for w in _WORD.findall(part))
    merged: list[str] = []
    for w in out:  # `P90` splits into `p` and `90`: put quantile names back together
        if merged and merged[-1] == "p" and w.isdigit():
            merged[-1] = f"p{w}"
        else:
            merged.append(w)
    return merged


def unit_of(name: str) -> str | None:
    """The unit a name carries: a trailing `(unit)` or a Prometheus-style suffix."""
    m = _UNIT_IN_BRACKETS.search(str(name))
    if m:
        return m.group(1).strip() or None
    tail = words(name)[-2:]
    for w in reversed(tail):
        if w in ("seconds", "ms", "bytes", "ratio", "percent"):
            return w
    return None


_HOST = {"node", "host", "machine", "vm"}


def kind_of(name: str) -> SignalKind:
    """The kind of a metric name (see the module doc); `host` marks a node-level signal
    (`NodeCpuUsageRate`), which says where a pod runs rather than what it does."""
    kind = _kind(name)
    if words(name)[:1] and words(name)[0] in _HOST:
        return SignalKind(kind.kind, kind.unit, kind.bad, host=True)
    return kind


def _kind(name: str) -> SignalKind:
    ws = words(name)
    unit = unit_of(name)
    found = set(ws)
    if found & _UP_IS_GOOD:
        return SignalKind("errors", unit, -1)
    if found & _ERRORS or ("5" in found and "xx" in found):
        return SignalKind("errors", unit, 1)
    if found & _CPU:
        return SignalKind("cpu", unit, 1)
    if found & _MEMORY or {"working", "set"} <= found:
        return SignalKind("memory", unit, 1)
    if found & _LATENCY or (unit or "").lower() in _TIME_UNITS:
        return SignalKind("latency", unit, 1)
    if found & _LOAD:
        return SignalKind("load", unit, 0)
    return SignalKind("other", unit, 0)
