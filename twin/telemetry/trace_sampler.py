"""Sampled span trees for the flow fidelity, consistent with each tick's latency and errors.

The flow kernel keeps no individual requests, so traces are synthesised after each chunk: per
tick, Poisson(entry requests × rate × dt) traces per request class, each grown by walking the
call edges of the topology and drawing every service's residence from that tick's
distribution. Timing is built bottom-up so a server span always contains its synchronous
calls: the service's own part (queueing plus own work, whose mean is the tick's mean
residence less the expected cost of its calls, read from the edge telemetry) is split around
the calls, which run back to back, or side by side when the service fans out in parallel.
Errors come from the same state: a callee that is down refuses the connection, a full queue
rejects, a breaker fails fast, a residence beyond the edge timeout times the client out, and
a service fails on its own with the share of its failures its calls do not explain.

Failed spans carry `error.type`: on client spans timeout, connection_refused (callee
down), unavailable (callee's queue full), circuit_open (no attempt made, no retry) or
server_error (the callee answered with an error); on server spans internal (own failure) or
dependency_failed (a required call failed). Client spans carry `peer.service` and
`rpc.attempt` (1 for the first attempt), and `rpc.async` on calls nobody waits for.

What telemetry does not show is taken from the topology as declared: timeouts, retry
policies and call counts (a misconfiguration or retry-storm fault that changes them is
reflected only through the latencies and error rates it causes), and packet loss shows only
as callee-side latency, not as extra lost attempts.

Over 500 lines because one walk builds a span tree's timing and its errors together from the
same per-tick state; apart, that state would be passed back and forth.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from twin.fields import M
from twin.rng import stream
from twin.scenario.schema import Scenario
from twin.telemetry.frame import Chunk
from twin.telemetry.otlp import OtlpTraceWriter
from twin.telemetry.spans import Span

MAX_TRACES_PER_TICK = 200  # per request class and tick: the sampler's cost stays bounded

DEFAULT_RATE = 1e-4  # one request in 10,000: ~860 traces a day at Online Boutique's 100 rps
REFUSED_S = 0.001  # a refused or rejected attempt costs the caller about a millisecond
ASYNC_SEND_S = 0.0005  # a fire-and-forget call occupies its caller only while sending
MAX_DEPTH = 24  # deeper calls (cycles) are not expanded
MAX_SPANS_PER_TRACE = 2000  # a trace stops growing here (huge fan-outs, cycles with k ≥ 1)
OWN_FLOOR = 0.1  # the own part keeps at least this share of the mean residence
FIXED_SHARE_MAX = 0.9  # of the own time: at most this much of it is the constant part
OWN_ERROR_MIN_OK = 0.05  # below this chance that all calls succeed, own errors are not inferred


class SpanListener(Protocol):
    """Anything that wants the spans of each chunk (the log sink, the OTLP writer)."""

    def on_spans(self, spans: Sequence[Span]) -> None: ...


@dataclass(frozen=True)
class _Edge:
    """Static client settings of one call edge, as declared in the topology."""

    index: int
    src: int
    dst: int
    callee: str
    per_request: float
    probability: float
    sync: bool
    required: bool
    timeout: float
    retries: int
    backoff: float
    multiplier: float
    half_open_share: float


class RandomPool:
    """Buffered draws from one generator: scalar numpy calls cost microseconds each."""

    SIZE = 4096

    def __init__(self, rng: np.random.Generator) -> None:
        self.rng = rng
        self._normal: list[float] = []
        self._uniform: list[float] = []
        self._hex = ""
        self._ni = self._ui = self._hi = 0

    def normal(self) -> float:
        if self._ni >= len(self._normal):
            self._normal, self._ni = self.rng.standard_normal(self.SIZE).tolist(), 0
        self._ni += 1
        return self._normal[self._ni - 1]

    def uniform(self) -> float:
        if self._ui >= len(self._uniform):
            self._uniform, self._ui = self.rng.random(self.SIZE).tolist(), 0
        self._ui += 1
        return self._uniform[self._ui - 1]

    def hex(self, digits: int) -> str:
        """Random lowercase hex digits (ids), sliced from one large draw of random bytes."""
        end = self._hi + digits
        if end > len(self._hex):
            self._hex, self._hi, end = self.rng.bytes(self.SIZE * 8).hex(), 0, digits
        self._hi = end
        return self._hex[end - digits : end]

    def span_id(self) -> str:
        return self.hex(16)

    def trace_id(self) -> str:
        return self.hex(32)


@dataclass
class _TickView:
    """One tick's state as Python lists (fast scalar access while growing trees)."""

    down: list[bool]
    p_shed: list[float]
    err_own: list[float]
    mu_x: list[float]
    sigma: list[float]
    shift: list[float]
    block: list[float]
    hang: list[bool]
    wire: list[float]


def edge_settings(
    scenario: Scenario, names: Sequence[str], edges: Sequence[tuple[str, str]]
) -> list[_Edge]:
    """Static edge settings in the engine's edge order."""
    topo = scenario.topology
    index = {name: i for i, name in enumerate(names)}
    calls = {(c.source, c.target): c for c in topo.calls}
    out = []
    for j, (a, b) in enumerate(edges):
        call = calls[(a, b)]
        retries = call.retries or topo.defaults.retries
        breaker = call.breaker or topo.defaults.breaker
        out.append(
            _Edge(
                index=j,
                src=index[a],
                dst=index[b],
                callee=b,
                per_request=call.per_request,
                probability=call.probability,
                sync=call.sync,
                required=call.required,
                timeout=(call.timeout_ms or topo.defaults.timeout_ms) / 1000.0,
                retries=retries.max,
                backoff=retries.backoff_ms / 1000.0,
                multiplier=retries.multiplier,
                half_open_share=breaker.half_open_share if breaker else 1.0,
            )
        )
    return out


@dataclass(frozen=True)
class EdgeArrays:
    """The static edge settings as arrays, for vectorised per-chunk computations."""

    src: np.ndarray
    dst: np.ndarray
    k: np.ndarray  # expected calls per caller request (per_request × probability)
    timeout: np.ndarray
    half_open: np.ndarray
    sync_to_src: np.ndarray  # edges × services: sums a sync edge's quantity into its caller
    required: np.ndarray  # sync and required: a failure fails the caller

    @classmethod
    def build(cls, edges: Sequence[_Edge], n_services: int) -> EdgeArrays:
        sync_to_src = np.zeros((len(edges), n_services))
        for e in edges:
            if e.sync:
                sync_to_src[e.index, e.src] = 1.0
        return cls(
            src=np.array([e.src for e in edges], dtype=np.int64),
            dst=np.array([e.dst for e in edges], dtype=np.int64),
            k=np.array([e.per_request * e.probability for e in edges]),
            timeout=np.array([e.timeout for e in edges]),
            half_open=np.array([e.half_open_share for e in edges]),
            sync_to_src=sync_to_src,
            required=np.array([e.sync and e.required for e in edges], dtype=bool),
        )


def select_rows(chunk: Chunk, rows: np.ndarray) -> Chunk:
    """The chunk restricted to some ticks (events dropped), for sparse per-tick work."""
    return Chunk(
        times=chunk.times[rows],
        values=chunk.values[rows],
        edge_values=chunk.edge_values[rows],
        dist=chunk.dist[rows],
        events=[],
        wire=None if chunk.wire is None else chunk.wire[rows],
    )


def failure_state(chunk: Chunk, model: EdgeArrays) -> dict[str, np.ndarray]:
    """How requests fail in each tick, read from telemetry alone (ticks × services or edges).

    `err_own` is the share of a service's served requests that fail on their own: its failed
    share less what failures of its required calls explain (the kernel composes them as
    1 - (1 - own)·P(all required calls succeed)). `fail` is the share of calls on an edge that
    fail after retries; `block` the share a breaker refuses; `hang` marks edges whose every
    attempt waits out its timeout while the callee itself is not backlogged (a partition).
    """
    v, ev = chunk.values, chunk.edge_values
    thr, err = v[:, :, M["throughput"]], v[:, :, M["error_rate"]]
    arr, shed = v[:, :, M["arrival_rate"]], v[:, :, M["shed_rate"]]
    done = thr + err
    down = v[:, :, M["latency_p50_ms"]] <= 0.0
    p_shed = np.clip(np.divide(shed, arr, out=np.zeros_like(shed), where=arr > 0), 0, 1)
    errp = np.clip(np.divide(err, done, out=np.zeros_like(err), where=done > 0), 0, 1)
    served = np.maximum(arr - shed, 0.0)  # the rate the kernel's edge counts are based on
    per_call = model.k * served[:, model.src]
    fail = np.clip(
        np.divide(ev[:, :, 1], per_call, out=np.zeros_like(per_call), where=per_call > 0), 0, 1
    )
    k = model.k
    ok_edge = np.where(k < 1.0, 1.0 - k * fail, (1.0 - fail) ** np.maximum(k, 1.0))
    log_ok = np.log(np.maximum(np.where(model.required, ok_edge, 1.0), 1e-12))
    p_ok = np.exp(log_ok @ model.sync_to_src)
    # when nearly every call fails, own failures are not identifiable: the calls take the blame
    err_own = (errp - (1.0 - p_ok)) / np.maximum(p_ok, OWN_ERROR_MIN_OK)
    state = ev[:, :, 3]
    block = np.where((state == 1.0) | (state == 4.0), 1.0, 0.0)
    block = np.where(state == 2.0, 1.0 - model.half_open, block)
    shift = chunk.dist[:, :, 2]
    hang = (
        (ev[:, :, 2] >= 0.9999 * model.timeout * 1000.0)
        & (shift[:, model.dst] < 0.5 * model.timeout)
        & ~down[:, model.dst]
    )
    return {
        "done": done,
        "down": down,
        "p_shed": p_shed,
        "errp": errp,
        "err_own": np.clip(err_own, 0.0, 1.0),
        "fail": fail,
        "block": block,
        "hang": hang,
    }


class TraceSampler:
    """A telemetry sink that turns each chunk into sampled traces (see the module docstring).

    `rate` is the share of entry requests traced. Spans go to `writer` (if any) and to every
    listener's `on_spans` after each chunk. All randomness, ids included, comes from the
    run's "traces" stream, so the same seed gives the same traces byte for byte.
    """

    def __init__(
        self,
        scenario: Scenario,
        names: Sequence[str],
        edges: Sequence[tuple[str, str]],
        *,
        rate: float = DEFAULT_RATE,
        seed: int,
        writer: OtlpTraceWriter | None = None,
        listeners: Sequence[SpanListener] = (),
    ) -> None:
        if not 0.0 <= rate <= 1.0:
            raise ValueError(f"trace sampling rate must be in [0, 1], got {rate!r}")
        self.rate = float(rate)
        self.dt = float(scenario.tick)
        self.names = tuple(names)
        self.writer = writer
        self.listeners = list(listeners)
        self.draws = RandomPool(stream(seed, "traces"))
        self.edges = edge_settings(scenario, self.names, edges)
        n = len(self.names)
        self.out_edges: list[list[_Edge]] = [[] for _ in range(n)]
        for edge in self.edges:
            self.out_edges[edge.src].append(edge)
        services = scenario.topology.services
        self.parallel = [services[name].parallel_calls for name in self.names]
        self.model = EdgeArrays.build(self.edges, len(self.names))
        self._setup_classes(scenario)
        self.traces = 0
        self.spans = 0
        self._trace_start = 0

    def _setup_classes(self, scenario: Scenario) -> None:
        classes = scenario.workload.classes
        self.class_names = [c.name for c in classes]
        self.class_entry = np.array([self.names.index(c.entry) for c in classes], dtype=np.int64)
        share = np.zeros(len(classes))
        for entry in set(self.class_entry.tolist()):
            members = self.class_entry == entry
            rates = np.array([c.rate for c in classes])[members]
            total = rates.sum()
            share[members] = rates / total if total > 0 else 1.0 / members.sum()
        self.class_share = share

    # -- the sink ----------------------------------------------------------------------------
    def on_chunk(self, chunk: Chunk) -> None:
        if self.rate <= 0.0 or len(chunk.times) == 0:
            return
        values = chunk.values
        entry_total = (
            values[:, :, M["throughput"]]
            + values[:, :, M["error_rate"]]
            + values[:, :, M["shed_rate"]]
        )[:, self.class_entry]
        lam = np.maximum(entry_total, 0.0) * (self.class_share * self.rate * self.dt)
        # a bounded cost per tick whatever the offered load (a flood of shed requests
        # included), as a tail-sampling collector's per-second budget bounds it
        lam = np.minimum(lam, MAX_TRACES_PER_TICK)
        counts = np.minimum(self.draws.rng.poisson(lam), MAX_TRACES_PER_TICK)
        ticks, classes = np.nonzero(counts)
        if len(ticks) == 0:
            return
        rows = np.unique(ticks)  # the state is computed for the ticks that have traces only
        state = self._chunk_state(select_rows(chunk, rows))
        position = {t: i for i, t in enumerate(rows.tolist())}
        spans: list[Span] = []
        views: dict[int, _TickView] = {}
        for t, c in zip(ticks.tolist(), classes.tolist(), strict=True):
            view = views.get(t)
            if view is None:
                view = views[t] = self._view(state, position[t])
            base = float(chunk.times[t])
            for _ in range(int(counts[t, c])):
                start = base + self.draws.uniform() * self.dt
                self._trace(view, c, start, spans)
        self.traces += int(counts.sum())
        self.spans += len(spans)
        for listener in self.listeners:
            listener.on_spans(spans)
        if self.writer is not None:
            self.writer.add(spans)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()

    # -- per-chunk state, vectorised -----------------------------------------------------------
    def _chunk_state(self, chunk: Chunk) -> dict[str, np.ndarray]:
        """Per tick and service (or edge): what the tree walk needs, from telemetry only."""
        model, ev = self.model, chunk.edge_values
        base = failure_state(chunk, model)
        k, done_src = model.k, base["done"][:, model.src]
        calls_per_req = np.divide(
            ev[:, :, 0], done_src, out=np.broadcast_to(k, done_src.shape).copy(), where=done_src > 0
        )
        cost = calls_per_req * ev[:, :, 2] / 1000.0
        expected_calls = cost @ model.sync_to_src
        for s, parallel in enumerate(self.parallel):
            sync = [e.index for e in self.out_edges[s] if e.sync]
            if parallel and sync:
                expected_calls[:, s] = cost[:, sync].max(axis=1)
        mu, sigma, shift = chunk.dist[:, :, 0], chunk.dist[:, :, 1], chunk.dist[:, :, 2]
        body = np.exp(mu + 0.5 * sigma * sigma)
        # the shift is the fit's (a skewed residence is shift + lognormal); the backlog's wait,
        # which every request pays before its work, is the queue over the rate served
        queue = chunk.values[:, :, M["queue"]]
        served = chunk.values[:, :, M["throughput"]] + chunk.values[:, :, M["error_rate"]]
        wait = np.where(queue > 0.0, queue / np.maximum(served, 1e-9), 0.0)
        wait = np.minimum(wait, np.maximum(body + shift, 0.0))
        residence = body + shift - wait
        own = np.maximum(residence - expected_calls, OWN_FLOOR * residence)
        # the fit's shift is a constant every request pays (a latency fault's added
        # milliseconds, a floor of work): it stays constant in the own time, and only the
        # rest is lognormal, so a leaf service's spans follow the kernel's shift + lognormal
        # exactly; a multiplier on all of it would turn a +200 ms delay into +5..200 ms at
        # the median, depending on sigma
        fixed = np.clip(shift, 0.0, FIXED_SHARE_MAX * own)
        return {
            "down": base["down"],
            "p_shed": base["p_shed"],
            "err_own": base["err_own"],
            "mu_x": np.log(np.maximum(own - fixed, 1e-12)) - 0.5 * sigma * sigma,
            "sigma": sigma,
            "shift": wait + fixed,
            "block": base["block"],
            "hang": base["hang"],
            "wire": chunk.wire if chunk.wire is not None else np.zeros_like(ev[:, :, 0]),
        }

    @staticmethod
    def _view(state: dict[str, np.ndarray], t: int) -> _TickView:
        return _TickView(**{key: arr[t].tolist() for key, arr in state.items()})

    # -- growing one trace ----------------------------------------------------------------------
    def _trace(self, view: _TickView, cls: int, start: float, out: list[Span]) -> None:
        trace_id = self.draws.trace_id()
        self._trace_start = len(out)
        entry = int(self.class_entry[cls])
        attrs = {"request.class": self.class_names[cls]}
        if view.down[entry] or self.draws.uniform() < view.p_shed[entry]:
            attrs["error.type"] = "unavailable"
            span = Span(
                trace_id, self.draws.span_id(), None, self.names[entry], self.class_names[cls],
                "server", start, start + REFUSED_S, True, attrs,
            )  # fmt: skip
            out.append(span)
            return
        self._server(view, entry, start, None, trace_id, 0, out, self.class_names[cls], attrs)

    def _server(
        self,
        view: _TickView,
        s: int,
        start: float,
        parent_id: str | None,
        trace_id: str,
        depth: int,
        out: list[Span],
        name: str | None = None,
        attrs: dict[str, Any] | None = None,
    ) -> tuple[float, str | None]:
        """A server span of service s starting at `start`; returns its end and error type."""
        draws = self.draws
        span = Span(
            trace_id, draws.span_id(), parent_id, self.names[s], name or f"{self.names[s]}.handle",
            "server", start, start, False, attrs if attrs is not None else {},
        )  # fmt: skip
        out.append(span)
        own = view.shift[s] + math.exp(view.mu_x[s] + view.sigma[s] * draws.normal())
        error = "internal" if draws.uniform() < view.err_own[s] else None
        cursor = start + 0.5 * own
        if depth < MAX_DEPTH:
            cursor, child_error = self._calls(view, s, cursor, span.span_id, trace_id, depth, out)
            if error is None and child_error is not None:
                error = "dependency_failed"
        span.end = cursor + 0.5 * own
        if error is not None:
            span.error = True
            span.attributes["error.type"] = error
        return span.end, error

    def _calls(
        self,
        view: _TickView,
        s: int,
        start: float,
        parent_id: str,
        trace_id: str,
        depth: int,
        out: list[Span],
    ) -> tuple[float, str | None]:
        """Every call of one request of s, in edge order; returns when the last sync one ends."""
        draws = self.draws
        parallel = self.parallel[s]
        cursor = latest = start
        error: str | None = None
        for edge in self.out_edges[s]:
            if edge.probability < 1.0 and draws.uniform() >= edge.probability:
                continue
            n = int(edge.per_request)
            if draws.uniform() < edge.per_request - n:
                n += 1
            for _ in range(n):
                if len(out) - self._trace_start >= MAX_SPANS_PER_TRACE:
                    return max(cursor, latest), error
                at = start if parallel else cursor
                end, failure = self._call(view, edge, at, parent_id, trace_id, depth, out)
                if not edge.sync:
                    continue
                latest = max(latest, end)
                cursor = end if not parallel else cursor
                if failure is not None and edge.required and error is None:
                    error = failure
        return (latest if parallel else cursor), error

    def _call(
        self,
        view: _TickView,
        edge: _Edge,
        start: float,
        parent_id: str,
        trace_id: str,
        depth: int,
        out: list[Span],
    ) -> tuple[float, str | None]:
        """One logical call: its attempts (client spans), retries and back-off."""
        draws = self.draws
        t = start
        delay = edge.backoff
        failure: str | None = None
        for attempt in range(edge.retries + 1):
            attrs: dict[str, Any] = {"peer.service": edge.callee, "rpc.attempt": attempt + 1}
            if not edge.sync:
                attrs["rpc.async"] = True
            span = Span(
                trace_id, draws.span_id(), parent_id, self.names[edge.src],
                f"{edge.callee}.call", "client", t, t, False, attrs,
            )  # fmt: skip
            out.append(span)
            end, failure = self._attempt(view, edge, t, span.span_id, trace_id, depth, out)
            span.end = end
            if failure is not None:
                span.error = True
                attrs["error.type"] = failure
            if failure is None or failure == "circuit_open" or attempt == edge.retries:
                return end, failure
            t = end + delay
            delay *= edge.multiplier
        return t, failure

    def _attempt(
        self,
        view: _TickView,
        edge: _Edge,
        t: float,
        client_id: str,
        trace_id: str,
        depth: int,
        out: list[Span],
    ) -> tuple[float, str | None]:
        """What one attempt meets: breaker, refusal, rejection, partition, or the callee."""
        d = edge.dst
        if view.block[edge.index] > 0.0 and self.draws.uniform() < view.block[edge.index]:
            return t, "circuit_open"
        if view.down[d]:
            return t + REFUSED_S, "connection_refused"
        if view.hang[edge.index]:
            return t + edge.timeout, "timeout"
        if view.p_shed[d] > 0.0 and self.draws.uniform() < view.p_shed[d]:
            return t + REFUSED_S, "unavailable"
        end, error = self._server(view, d, t, client_id, trace_id, depth + 1, out)
        if not edge.sync:
            return t + min(ASYNC_SEND_S, end - t), None
        end += view.wire[edge.index]  # on the wire: after the callee's span, in the client's
        if end - t > edge.timeout:
            return t + edge.timeout, "timeout"
        return end, None if error is None else "server_error"
