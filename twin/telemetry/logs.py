"""Structured JSONL logs per service, generated from templates as the telemetry goes.

What a service would print, sampled so a day of traffic stays a few megabytes: INFO lines
for a share `info_rate` of the requests it completes; ERROR lines for a share `error_rate`
of the requests that fail, worded after the cause the telemetry shows (a callee down:
"connection refused"; a callee too slow for the timeout: "context deadline exceeded"; a full
queue: rejected; an open breaker: failing fast; the service's own failures, with a stack
trace while a deploy has not been rolled back); WARN lines for slow requests and memory near
the limit; and one line per control-plane event (OOM kills, crash-loop back-off, crashes with
a stack trace, deploys, rollbacks, breaker transitions, pods starting and stopping).

Logs read telemetry, events and spans, never ground truth: fault events are never printed,
and the only one read is a code fault's extent (`log_defects`): a wrong return value or a
caught exception fails nothing, so its own log lines are the one place it shows. A traced
request (a server span that came in through `on_spans`) writes its own INFO and code-fault
lines with its trace and span ids, as an instrumented service's lines carry the request's
trace context; only the untraced rest of a tick's requests are drawn per tick, with fresh
ids. (Drawn independently of the spans, a slow service's lines and spans rarely met in
one tick, so almost none of its lines named a span, and a log-and-trace RCA method could
not tie a code fault's lines to the faulty service; real Train Ticket ties every line.)
Other lines borrow the ids of a span of their service in their tick when there is one.

Spans for a chunk may arrive before or after the chunk itself (the sampler may sit before
or after this sink, and the request fidelity feeds spans directly), so a chunk is written
when the next one arrives, or on close.

Over 500 lines because every kind of line draws from the same pools and span ids, in one
chunk pass; split, each part would need the sink's state.
"""

from __future__ import annotations

import json
import math
import os
import string
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from twin.fields import M
from twin.rng import stream
from twin.scenario.schema import Scenario
from twin.telemetry.files import open_truncated, write_all
from twin.telemetry.frame import Chunk
from twin.telemetry.log_defects import DefectLog
from twin.telemetry.log_templates import (
    CURRENCIES,
    GENERIC,
    MESSAGES,
    PRODUCTS,
    REASONS,
    STACKS,
    TRAFFIC,
    WORDS,
    camel,
    iso_time,
    language_of,
)
from twin.telemetry.spans import Span
from twin.telemetry.trace_sampler import (
    OWN_ERROR_MIN_OK,
    EdgeArrays,
    RandomPool,
    edge_settings,
    failure_state,
    select_rows,
)

DEFAULT_INFO_RATE = 2e-4  # INFO lines per completed request
DEFAULT_ERROR_RATE = 0.01  # ERROR lines per failed request (services rate-limit error logs)
MEMORY_WARN_SHARE = 0.85  # of the memory limit
MEMORY_WARN_EVERY_S = 60.0
MAX_LINES_PER_TICK = 100  # per service (or call edge) and kind of line, per tick
SPANS_KEPT = MAX_LINES_PER_TICK  # spans remembered per (tick, service) and kind
DEFAULT_SLOW_S = 1.0  # slow-request threshold of a service nobody calls with a timeout


def _norm_sf(x: np.ndarray) -> np.ndarray:
    """Standard normal upper tail (Abramowitz–Stegun 7.1.26, error below 1.5e-7)."""
    z = np.abs(x) / math.sqrt(2.0)
    t = 1.0 / (1.0 + 0.3275911 * z)
    poly = 1.061405429
    for coef in (-1.453152027, 1.421413741, -0.284496736, 0.254829592):
        poly = coef + t * poly
    poly = t * poly
    erfc = poly * np.exp(-z * z)
    return np.where(x >= 0, 0.5 * erfc, 1.0 - 0.5 * erfc)


def _capped(rng: np.random.Generator, lam: np.ndarray) -> np.ndarray:
    """Poisson line counts, at most MAX_LINES_PER_TICK per cell: services and log shippers
    rate-limit their lines, and the cost of a tick stays bounded under any load."""
    return np.minimum(rng.poisson(np.minimum(lam, MAX_LINES_PER_TICK)), MAX_LINES_PER_TICK)


FAILED_STATUS = (
    ("status=200", "status=500"),
    ("status=302", "status=500"),
    ("grpc.code=OK", "grpc.code=Unavailable"),
    ("query ok", "query failed"),
)


def _failed(message: str) -> str:
    """An access line's text for a failed request: the status its template shows as OK."""
    for ok, bad in FAILED_STATUS:
        message = message.replace(ok, bad)
    return message


@lru_cache(maxsize=65536)
def _quoted(text: str) -> str:
    return json.dumps(text)


def _fields(text: str) -> tuple[str, ...]:
    return tuple(name for _, name, _, _ in string.Formatter().parse(text) if name)


class LogSink:
    """Writes `logs.jsonl` chunk by chunk; also a span listener (see the module docstring)."""

    def __init__(
        self,
        path: Path,
        scenario: Scenario,
        names: Sequence[str],
        edges: Sequence[tuple[str, str]],
        *,
        seed: int,
        info_rate: float = DEFAULT_INFO_RATE,
        error_rate: float = DEFAULT_ERROR_RATE,
        traced_share: float = 0.0,
    ) -> None:
        """`traced_share`: the share of requests whose spans reach `on_spans` (the trace
        sampling rate); those requests' lines come from their spans, the rest per tick."""
        checks = (
            ("info_rate", info_rate),
            ("error_rate", error_rate),
            ("traced_share", traced_share),
        )
        for label, value in checks:
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{label} must be in [0, 1], got {value!r}")
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # whole lines per write, so a killed run leaves a readable file (see twin/run)
        self._fd = open_truncated(self.path)
        self.names = tuple(names)
        self.index = {name: i for i, name in enumerate(self.names)}
        self.dt = float(scenario.tick)
        self.info_rate, self.error_rate = float(info_rate), float(error_rate)
        self.traced_share = float(traced_share)
        self.draws = RandomPool(stream(seed, "logs"))
        self.edges = edge_settings(scenario, self.names, edges)
        self.model = EdgeArrays.build(self.edges, len(self.names))
        self._setup_services(scenario)
        self.lines = 0
        self._pending: Chunk | None = None
        self._spans: dict[tuple[int, int, bool], list[tuple[str, str]]] = {}
        # server spans per (tick, service): ids, and whether the request failed
        self._traced: dict[tuple[int, int], list[tuple[tuple[str, str], bool]]] = {}
        self._client_failures: dict[tuple[int, int, str], list[tuple[str, str]]] = {}
        self._deployed: dict[str, str] = {}  # service → version deployed, until rolled back
        self._memory_warned = np.full(len(self.names), -np.inf)
        self._defects = DefectLog(self.index)
        self._closed = False

    def _setup_services(self, scenario: Scenario) -> None:
        services = scenario.topology.services
        entries = {c.entry for c in scenario.workload.classes}
        self.templates: list[tuple[tuple[str, str, tuple[str, ...]], ...]] = []
        self.language: list[str] = []
        self.port: list[int] = []
        self.memory_limit: list[float] = []
        for name in self.names:
            svc = services[name]
            role = "store" if svc.kind == "store" else "entry" if name in entries else "service"
            chosen = TRAFFIC.get(name) or GENERIC[role]
            self.templates.append(tuple((tid, text, _fields(text)) for tid, text in chosen))
            self.language.append(language_of(svc.description))
            self.port.append(6379 if svc.kind == "store" else 8080 if role == "entry" else 50051)
            self.memory_limit.append(svc.memory_limit_mb)
        # a request is slow past half the shortest timeout its callers give it
        slow = np.full(len(self.names), np.inf)
        for e in self.edges:
            slow[e.dst] = min(slow[e.dst], 0.5 * e.timeout)
        self.slow_s = np.where(np.isinf(slow), DEFAULT_SLOW_S, slow)
        self.memory_limit_arr = np.array(self.memory_limit)

    # -- span listener -------------------------------------------------------------------------
    def on_spans(self, spans: Sequence[Span]) -> None:
        """Remember span ids per (tick, service): the traced requests' own lines carry
        them, and other lines borrow them."""
        dt, index, kept = self.dt, self.index, SPANS_KEPT
        for span in spans:
            s = index.get(span.service)
            if s is None:
                continue
            tick = int(span.start // dt)
            if span.kind == "client":
                if span.error:
                    key = (tick, s, str(span.attributes.get("peer.service", "")))
                    bucket = self._client_failures.setdefault(key, [])
                    if len(bucket) < kept:
                        bucket.append((span.trace_id, span.span_id))
                continue
            ids = (span.trace_id, span.span_id)
            bucket = self._spans.setdefault((tick, s, bool(span.error)), [])
            if len(bucket) < kept:
                bucket.append(ids)
            traced = self._traced.setdefault((tick, s), [])
            if len(traced) < kept:
                traced.append((ids, bool(span.error)))

    # -- the sink -----------------------------------------------------------------------------
    def on_chunk(self, chunk: Chunk) -> None:
        if self._pending is not None:
            self._write_chunk(self._pending)
        self._pending = chunk

    def close(self) -> None:
        if self._closed:
            return
        if self._pending is not None:
            self._write_chunk(self._pending)
            self._pending = None
        os.close(self._fd)
        self._closed = True

    def _write_chunk(self, chunk: Chunk) -> None:
        if len(chunk.times) == 0:
            return
        records: list[tuple[float, int, str]] = []
        first_tick = int(round(chunk.times[0] / self.dt))
        self._traffic(chunk, first_tick, records)
        self._defect_lines(chunk, first_tick, records)
        self._failures(chunk, first_tick, records)
        self._memory(chunk, first_tick, records)
        self._events(chunk, records)
        records.sort(key=lambda r: (r[0], r[1]))
        data = "".join(line for _, _, line in records).encode("utf-8")
        write_all(self._fd, data)
        self.lines += len(records)
        last = first_tick + len(chunk.times)
        self._spans = {k: v for k, v in self._spans.items() if k[0] >= last}
        self._client_failures = {k: v for k, v in self._client_failures.items() if k[0] >= last}
        self._traced = {k: v for k, v in self._traced.items() if k[0] >= last}

    # -- record building -------------------------------------------------------------------------
    def _record(
        self,
        records: list,
        t: float,
        s: int,
        template_id: str,
        level: str,
        message: str,
        ids: tuple[str, str] | None,
        **extra: Any,
    ) -> None:
        """One JSON line, built by hand: lines are many and their layout is fixed."""
        trace_id, span_id = ids if ids else (self.draws.trace_id(), None)
        t = round(t, 6)
        text = (
            f'{{"time":"{iso_time(t)}","t":{t!r},"service":{_quoted(self.names[s])},'
            f'"level":"{level}","template_id":"{template_id}","message":{_quoted(message)},'
            f'"trace_id":"{trace_id}"'
        )
        if span_id is not None:
            text += f',"span_id":"{span_id}"'
        for key, value in extra.items():
            text += f',"{key}":{json.dumps(value)}'
        records.append((t, len(records), text + "}\n"))

    def _span_ids(self, tick: int, s: int, error: bool) -> tuple[str, str] | None:
        """Ids of a remembered span of s in this tick (an erroring one for error lines)."""
        for flag in (error, not error) if error else (False,):
            bucket = self._spans.get((tick, s, flag))
            if bucket:
                return bucket.pop()
        return None

    def _fill(self, fields: tuple[str, ...], mu: float, sigma: float, shift: float, s: int):
        """Values for a template's fields, drawn from the service's state in that tick."""
        d = self.draws
        out: dict[str, Any] = {}
        for name in fields:
            if name in ("d", "us"):
                value = shift + math.exp(mu + sigma * d.normal())
                out[name] = f"{value * 1000.0:.1f}" if name == "d" else str(int(value * 1e6))
            elif name == "product":
                out[name] = PRODUCTS[int(d.uniform() * len(PRODUCTS))]
            elif name == "currency":
                out[name] = CURRENCIES[int(d.uniform() * len(CURRENCIES))]
            elif name == "word":
                out[name] = WORDS[int(d.uniform() * len(WORDS))]
            elif name == "n":
                out[name] = str(1 + int(d.uniform() * 5))
            elif name == "amount":
                out[name] = f"{5.0 + 195.0 * d.uniform():.2f}"
            elif name in ("user", "order", "tracking"):
                raw = d.span_id()
                out[name] = f"{raw[:8]}-{raw[8:12]}-{raw[12:]}" if name != "tracking" else raw[:10]
            elif name == "service":
                out[name] = self.names[s]
            else:
                out[name] = ""
        return out

    def _traffic(self, chunk: Chunk, first: int, records: list) -> None:
        """INFO lines for a share `info_rate` of the completed requests: each traced one
        writes its line with its own ids, the untraced rest are drawn per tick."""
        if self.info_rate <= 0.0:
            return
        d = self.draws
        for row, s, ids, failed in self._traced_requests(chunk, first, self.info_rate):
            self._traffic_line(chunk, row, s, ids, records, failed)
        thr = np.maximum(chunk.values[:, :, M["throughput"]], 0.0)
        counts = _capped(d.rng, self._untraced_lines(thr))
        rows, services = np.nonzero(counts)
        for row, s, n in zip(
            rows.tolist(), services.tolist(), counts[rows, services].tolist(), strict=True
        ):
            for _ in range(n):
                self._traffic_line(chunk, row, s, None, records)

    def _traffic_line(
        self,
        chunk: Chunk,
        row: int,
        s: int,
        ids: tuple[str, str] | None,
        records: list,
        failed: bool = False,
    ) -> None:
        """One access line; a failed request's has the same template with a failure status
        (a service writes its access line whatever the outcome: were failed requests
        silent, a timeout upstream would read as the caller's lines vanishing)."""
        d = self.draws
        mu, sigma, shift = chunk.dist[row, s].tolist()
        templates = self.templates[s]
        tid, text, fields = templates[int(d.uniform() * len(templates))]
        t = float(chunk.times[row]) + d.uniform() * self.dt
        message = text.format(**self._fill(fields, mu, sigma, shift, s))
        self._record(records, t, s, tid, "INFO", _failed(message) if failed else message, ids)

    def _traced_requests(
        self, chunk: Chunk, first: int, share: float | np.ndarray, ok_only: bool = False
    ):
        """(row, service, ids, failed) for each traced request of the chunk that writes a
        line, each with probability `share` (a number, or rows × services)."""
        last = first + len(chunk.times)
        keys = sorted(k for k in self._traced if first <= k[0] < last)
        for tick, s in keys:
            row = tick - first
            p = float(share) if np.isscalar(share) else float(share[row, s])
            if p <= 0.0:
                continue
            for ids, failed in self._traced[(tick, s)]:
                if not (ok_only and failed) and self.draws.uniform() < p:
                    yield row, s, ids, failed

    def _untraced_lines(self, thr: np.ndarray) -> np.ndarray:
        """Expected lines per tick and service from the requests no span stands for: a
        tick's traced requests are whole spans and its throughput a fluid rate, so the
        traced share comes off the rate (in expectation `info_rate` of all requests log)."""
        return thr * (self.info_rate * self.dt * (1.0 - self.traced_share))

    def _defect_lines(self, chunk: Chunk, first: int, records: list) -> None:
        """A line for each sampled request on a code fault's path (`log_defects`): WARN for
        a wrong value a check caught, ERROR with a stack for a caught exception; a traced
        request's line carries its ids."""
        shares = self._defects.shares(chunk)
        if shares is None or self.info_rate <= 0.0:
            return
        thr = np.maximum(chunk.values[:, :, M["throughput"]], 0.0)
        untraced = self._untraced_lines(thr)
        for template, share in zip(("code.wrong_value", "code.caught"), shares, strict=True):
            traced = self._traced_requests(chunk, first, share * self.info_rate, ok_only=True)
            for row, s, ids, _ in traced:
                self._defect_line(chunk, row, s, template, ids, records)
            counts = _capped(self.draws.rng, untraced * share)
            for row, s in zip(*np.nonzero(counts), strict=True):
                for _ in range(int(counts[row, s])):
                    self._defect_line(chunk, int(row), int(s), template, None, records)

    def _defect_line(
        self, chunk: Chunk, row: int, s: int, template: str, ids: tuple[str, str] | None,
        records: list,
    ) -> None:  # fmt: skip
        level, text = MESSAGES[template]
        t = float(chunk.times[row]) + self.draws.uniform() * self.dt
        line = int(40 + self.draws.uniform() * 400)
        message = text.format(Camel=camel(self.names[s]), n=line)
        extra = {"stack": self._stack(s)} if template == "code.caught" else {}
        self._record(records, t, s, template, level, message, ids, **extra)

    def _failures(self, chunk: Chunk, first: int, records: list) -> None:
        """ERROR lines for failed calls and own failures, WARN lines for slow requests.

        The failure state is computed only for ticks that get a line: own failures are drawn
        by thinning a bound (own failures never exceed failures / OWN_ERROR_MIN_OK).
        """
        if self.error_rate <= 0.0:
            return
        scale = self.error_rate * self.dt
        rng = self.draws.rng
        call_counts = _capped(rng, np.maximum(chunk.edge_values[:, :, 1], 0.0) * scale)
        bound = np.maximum(chunk.values[:, :, M["error_rate"]], 0.0) * (scale / OWN_ERROR_MIN_OK)
        candidates = _capped(rng, bound)
        self._slow_lines(chunk, first, records)
        rows = np.union1d(
            np.nonzero(call_counts.any(axis=1))[0], np.nonzero(candidates.any(axis=1))[0]
        )
        if len(rows) == 0:
            return
        sub = select_rows(chunk, rows)
        ticks = (first + rows).tolist()
        state = failure_state(sub, self.model)
        own_rate = state["done"] * state["err_own"] * scale
        sub_bound = bound[rows]
        accept = np.divide(own_rate, sub_bound, out=np.zeros_like(own_rate), where=sub_bound > 0)
        own_counts = rng.binomial(candidates[rows], np.clip(accept, 0.0, 1.0))
        sub_calls = call_counts[rows]
        for i, e in zip(*np.nonzero(sub_calls), strict=True):
            for _ in range(int(sub_calls[i, e])):
                self._call_failure(sub, state, int(i), int(e), ticks[i], records)
        for i, s in zip(*np.nonzero(own_counts), strict=True):
            for _ in range(int(own_counts[i, s])):
                self._own_failure(sub, int(i), int(s), ticks[i], records)

    def _slow_lines(self, chunk: Chunk, first: int, records: list) -> None:
        """WARN lines for the requests slower than half their callers' timeout."""
        mu, sigma, shift = chunk.dist[:, :, 0], chunk.dist[:, :, 1], chunk.dist[:, :, 2]
        x = np.log(np.maximum(self.slow_s - shift, 1e-12))
        p_slow = np.where(shift >= self.slow_s, 1.0, _norm_sf((x - mu) / np.maximum(sigma, 1e-9)))
        v = chunk.values
        up = v[:, :, M["latency_p50_ms"]] > 0.0
        expected = np.maximum(v[:, :, M["throughput"]], 0.0) * p_slow * up
        counts = _capped(self.draws.rng, expected * (self.error_rate * self.dt))
        for row, s in zip(*np.nonzero(counts), strict=True):
            for _ in range(int(counts[row, s])):
                self._slow(chunk, int(row), int(s), first + int(row), records)

    def _slow(self, sub: Chunk, i: int, s: int, tick: int, records: list) -> None:
        t = float(sub.times[i]) + self.draws.uniform() * self.dt
        mu, sigma, shift = sub.dist[i, s].tolist()
        limit = float(self.slow_s[s])
        body = math.exp(mu + sigma * abs(self.draws.normal()))
        value = max(shift + body, limit * (1.0 + 0.2 * self.draws.uniform()))
        message = MESSAGES["request.slow"][1].format(
            d=f"{value * 1000.0:.1f}", limit_ms=f"{limit * 1000.0:g}"
        )
        ids = self._span_ids(tick, s, False)
        self._record(records, t, s, "request.slow", "WARN", message, ids)

    def _call_cause(self, chunk: Chunk, state: dict, row: int, e: int) -> str:
        """Why a call on edge e failed in this tick, drawn in proportion to the causes seen."""
        edge = self.edges[e]
        d = edge.dst
        if state["block"][row, e] >= 1.0:
            return "call.breaker"
        if state["down"][row, d]:
            return "call.refused"
        if state["hang"][row, e]:
            return "call.timeout"
        mu, sigma, shift = chunk.dist[row, d].tolist()
        x = edge.timeout - shift
        p_timeout = (
            1.0
            if x <= 0
            else 0.5 * math.erfc((math.log(x) - mu) / (max(sigma, 1e-9) * math.sqrt(2.0)))
        )
        weights = (
            ("call.breaker", state["block"][row, e]),
            ("call.timeout", p_timeout),
            ("call.rejected", state["p_shed"][row, d]),
            ("call.error", state["errp"][row, d]),
        )
        total = sum(w for _, w in weights)
        if total <= 0.0:
            return "call.error"
        pick = self.draws.uniform() * total
        for name, weight in weights:
            pick -= weight
            if pick < 0.0:
                return name
        return "call.error"

    def _call_failure(
        self, chunk: Chunk, state: dict, row: int, e: int, tick: int, records: list
    ) -> None:
        edge = self.edges[e]
        cause = self._call_cause(chunk, state, row, e)
        t = float(chunk.times[row]) + self.draws.uniform() * self.dt
        bucket = self._client_failures.get((tick, edge.src, edge.callee))
        ids = bucket.pop() if bucket else self._span_ids(tick, edge.src, True)
        level, text = MESSAGES[cause]
        message = text.format(callee=edge.callee, port=self.port[edge.dst])
        self._record(records, t, edge.src, cause, level, message, ids, peer_service=edge.callee)

    def _own_failure(self, chunk: Chunk, row: int, s: int, tick: int, records: list) -> None:
        t = float(chunk.times[row]) + self.draws.uniform() * self.dt
        ids = self._span_ids(tick, s, True)
        version = self._deployed.get(self.names[s])
        if version is not None:
            message = MESSAGES["request.exception"][1].format(version=version)
            stack = self._stack(s)
            self._record(records, t, s, "request.exception", "ERROR", message, ids, stack=stack)
            return
        reason = REASONS[int(self.draws.uniform() * len(REASONS))]
        message = MESSAGES["request.error"][1].format(reason=reason)
        self._record(records, t, s, "request.error", "ERROR", message, ids)

    def _stack(self, s: int) -> str:
        name = self.names[s]
        return STACKS[self.language[s]].format(
            service=name,
            Camel=camel(name),
            n=1 + int(self.draws.uniform() * 5000),
            line=40 + int(self.draws.uniform() * 400),
            product=PRODUCTS[int(self.draws.uniform() * len(PRODUCTS))],
        )

    def _memory(self, chunk: Chunk, first: int, records: list) -> None:
        """A WARN a minute per service while its replicas sit near their memory limit."""
        mem = chunk.values[:, :, M["memory_mb"]]
        high = mem > MEMORY_WARN_SHARE * self.memory_limit_arr
        for row, s in zip(*np.nonzero(high), strict=True):
            t = float(chunk.times[row])
            if t - self._memory_warned[s] < MEMORY_WARN_EVERY_S:
                continue
            self._memory_warned[s] = t
            message = MESSAGES["memory.high"][1].format(
                mb=f"{mem[row, s]:.0f}", limit=f"{self.memory_limit[s]:g}"
            )
            ids = self._span_ids(first + int(row), int(s), False)
            self._record(records, t + 0.5 * self.dt, int(s), "memory.high", "WARN", message, ids)

    def _events(self, chunk: Chunk, records: list) -> None:
        """One line per control-plane event of a service; fault events are ground truth: skipped."""
        for event in chunk.events:
            kind = event.get("kind")
            service = event.get("service") or event.get("source")
            s = self.index.get(service) if isinstance(service, str) else None
            if s is None:
                continue
            t = float(event.get("time", 0.0))
            if kind == "pod_crash":
                self._pod_crash(event, s, t, records)
            elif kind == "pod_ready":
                self._emit(records, t, s, "pod.ready", port=self.port[s], pod=event.get("pod"))
            elif kind == "pod_restart":
                self._emit(records, t, s, "pod.shutdown", pod=event.get("pod"))
            elif kind == "deploy":
                version = str(event.get("version", "new"))
                self._deployed[service] = version
                self._emit(records, t, s, "deploy.start", service=service, version=version)
            elif kind == "rollback":
                self._deployed.pop(service, None)
                self._emit(records, t, s, "deploy.rollback", service=service)
            elif kind == "breaker":
                state = str(event.get("state", "open"))
                template = f"breaker.{state}" if f"breaker.{state}" in MESSAGES else "breaker.open"
                self._emit(records, t, s, template, callee=event.get("target"))

    def _pod_crash(self, event: dict, s: int, t: float, records: list) -> None:
        reason, pod = event.get("reason"), event.get("pod")
        service = self.names[s]
        if reason == "OOMKilled":
            limit = f"{self.memory_limit[s]:g}"
            self._emit(records, t, s, "pod.oom", service=service, pod=pod, limit=limit)
        elif reason != "CrashLoopBackOff":
            self._emit(records, t, s, "pod.crash", service=service, pod=pod, stack=self._stack(s))
        backoff = float(event.get("backoff_s") or 0.0)
        if backoff > 0.0 or reason == "CrashLoopBackOff":
            self._emit(
                records, t + 1e-3, s, "pod.backoff",
                service=service, pod=pod, restarts=event.get("restarts", 1), backoff=f"{backoff:g}",
            )  # fmt: skip

    def _emit(self, records: list, t: float, s: int, template_id: str, **fields: Any) -> None:
        level, text = MESSAGES[template_id]
        stack = fields.pop("stack", None)
        message = text.format(**fields)
        extra: dict[str, Any] = {}
        if fields.get("pod"):
            extra["pod"] = fields["pod"]
        if stack:
            extra["stack"] = stack
        self._record(records, t, s, template_id, level, message, None, **extra)
