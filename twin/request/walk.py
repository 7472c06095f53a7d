"""The request fidelity's walk: one SimPy process per external request through the call graph.

A visit to a service takes a worker of its pool (a SimPy Resource of replicas × workers
slots), does its own work, makes its calls and releases the worker: thread-per-request, as
in the flow model. A synchronous call is walked inline by the caller (a generator driven
step by step) so that no process is spawned per call; the caller checks every event the
callee waits on against the call's deadline. When the deadline would pass first, the
callee's unfinished walk is handed to a process of its own (it keeps its worker and its
calls: timed-out work is still done) and the caller resumes at the deadline with a timeout.
This keeps the exact semantics of per-call timeouts at close to the cost of a bare chain.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import simpy
from simpy.events import AllOf, Timeout

from twin.telemetry.spans import Span

if TYPE_CHECKING:
    from twin.request.engine import RequestSimulation

OK, FAILED, REFUSED, TIMED_OUT = 0, 1, 2, 3
CONNECT_REFUSED_S = 0.001  # as in the flow kernel: a refused connection costs a millisecond


class RandomBuffer:
    """Scalar draws from a numpy Generator, fetched in blocks (per-draw calls are slow)."""

    def __init__(self, rng: np.random.Generator, block: int = 1 << 15) -> None:
        self.rng = rng
        self.block = block
        self._u: list[float] = []
        self._z: list[float] = []
        self._bits: list[int] = []

    def uniform(self) -> float:
        if not self._u:
            self._u = self.rng.random(self.block).tolist()
        return self._u.pop()

    def normal(self) -> float:
        if not self._z:
            self._z = self.rng.standard_normal(self.block).tolist()
        return self._z.pop()

    def bits64(self) -> int:
        if not self._bits:
            self._bits = self.rng.integers(1, 2**63, size=4096, dtype=np.int64).tolist()
        return self._bits.pop()


class Pool(simpy.Resource):
    """A worker pool whose size follows the ready replicas (SimPy's is fixed at creation)."""

    def resize(self, capacity: int) -> None:
        grew = capacity > self._capacity
        self._capacity = capacity
        if grew:
            self._trigger_put(None)


@dataclass(slots=True)
class EdgeSpec:
    """A call edge as the walk reads it; dynamic settings are refreshed every tick."""

    index: int
    target: int
    whole: int  # calls per request: `whole` plus one more with probability `fraction`
    fraction: float
    probability: float
    sync: bool
    required: bool


class Token:
    """Marks one in-flight visit; a killed pod sets `lost` on the visits it held. `seq`
    orders them deterministically (never by memory address)."""

    __slots__ = ("lost", "seq")

    def __init__(self, seq: int) -> None:
        self.lost = False
        self.seq = seq


@dataclass(slots=True)
class TraceContext:
    trace_id: str
    spans: list[Span]


def _detached(event: simpy.Event, walk):
    """Finish a callee's walk after its caller stopped waiting (the work is not cancelled)."""
    value = yield event
    while True:
        try:
            event = walk.send(value)
        except StopIteration:
            return
        value = yield event


class Walker:
    """Walks requests through the services of one RequestSimulation."""

    def __init__(self, sim: RequestSimulation) -> None:
        self.sim = sim
        self.env = sim.env
        self.rand = sim.rand
        self.out_edges: list[list[EdgeSpec]] = sim.out_edges

    # -- a service visit -----------------------------------------------------------------
    def visit(self, s: int, trace: TraceContext | None, parent_id: str | None):
        """Generator: one request at service s; returns OK, FAILED or REFUSED."""
        sim, env, rand = self.sim, self.env, self.rand
        t0 = env._now
        sim.tick_arrived[s] += 1
        if sim.down[s]:
            sim.tick_shed[s] += 1
            return REFUSED
        pool = sim.pools[s]
        if len(pool.users) >= pool._capacity and len(pool.queue) >= sim.qmax[s]:
            sim.tick_shed[s] += 1
            return REFUSED
        sim.enter(s, t0)
        sim.visit_seq += 1
        token = Token(sim.visit_seq)
        active = sim.active[s]
        active.add(token)
        req = pool.request()
        if not req.triggered:
            yield req
        started = env._now
        own = sim.own_time(s)
        yield env.timeout(own)
        span_id = None
        if trace is not None:
            span_id = f"{rand.bits64():016x}"
        if sim.parallel[s]:
            ok = yield from self._fan_out(s, trace, span_id)
        else:
            ok = True
            for edge in self.out_edges[s]:
                for _ in range(self._count(edge)):
                    if not edge.sync:
                        self._send_async(s, edge, trace, span_id)
                        continue
                    result = yield from self.call(s, edge, trace, span_id)
                    if not result and edge.required:
                        ok = False
        err = sim.err_own[s]
        if ok and err > 0.0 and rand.uniform() < err:
            ok = False
        pool.release(req)
        active.discard(token)
        if token.lost:
            ok = False
        now = env._now
        sim.leave(s, now)
        sim.record(s, now - t0, started - t0, ok)
        if trace is not None:
            trace.spans.append(
                Span(
                    trace.trace_id,
                    span_id,
                    parent_id,
                    sim.names[s],
                    sim.names[s],
                    "server",
                    t0,
                    now,
                    not ok,
                    {"queue_wait_s": started - t0, "own_time_s": own},
                )
            )
        return OK if ok else FAILED

    def _fan_out(self, s: int, trace: TraceContext | None, span_id: str | None):
        """Parallel fan-out: every synchronous call at once; the request waits for all."""
        env = self.env
        procs = []
        required = []
        for edge in self.out_edges[s]:
            for _ in range(self._count(edge)):
                if not edge.sync:
                    self._send_async(s, edge, trace, span_id)
                    continue
                procs.append(env.process(self.call(s, edge, trace, span_id)))
                required.append(edge.required)
        if not procs:
            return True
        results = yield AllOf(env, procs)
        return all(results[p] or not req for p, req in zip(procs, required, strict=True))

    def _send_async(
        self, s: int, edge: EdgeSpec, trace: TraceContext | None, parent_id: str | None
    ) -> None:
        """A call nobody waits for: the callee's visit runs as a process of its own."""
        sim = self.sim
        client_id = None
        if trace is not None:
            client_id = f"{self.rand.bits64():016x}"
            now = self.env._now
            attrs = {"peer.service": sim.names[edge.target], "rpc.attempt": 1, "rpc.async": True}
            name = f"call {sim.names[edge.target]}"
            trace.spans.append(
                Span(trace.trace_id, client_id, parent_id, sim.names[s], name, "client", now, now,
                     False, attrs)
            )  # fmt: skip
        self.env.process(self.visit(edge.target, trace, client_id))

    def _count(self, edge: EdgeSpec) -> int:
        """Calls this request makes on an edge: per_request (fractions drawn), each probable."""
        rand = self.rand
        count = edge.whole
        if edge.fraction > 0.0 and rand.uniform() < edge.fraction:
            count += 1
        if edge.probability < 1.0:
            count = sum(1 for _ in range(count) if rand.uniform() < edge.probability)
        return count

    # -- a call with timeout, retries and breaker ----------------------------------------
    def call(self, s: int, edge: EdgeSpec, trace: TraceContext | None, parent_id: str | None):
        """Generator: one logical call s → edge.target; returns True on success."""
        sim, env, rand = self.sim, self.env, self.rand
        e = edge.index
        block = sim.breaker_block[e]
        if block > 0.0 and (block >= 1.0 or rand.uniform() < block):
            sim.edge_final_fail[e] += 1
            return False
        retries = sim.edge_retries[e]
        delay = sim.edge_backoff[e]
        for attempt in range(retries + 1):
            if attempt and delay > 0.0:
                yield env.timeout(delay)
                delay *= sim.edge_backoff_mult[e]
            start = env._now
            deadline = start + sim.edge_timeout[e]
            client_id = f"{rand.bits64():016x}" if trace is not None else None
            result = yield from self._attempt(edge, deadline, trace, client_id)
            if result == OK and sim.edge_loss[e] > 0.0 and rand.uniform() < sim.edge_loss[e]:
                result = FAILED
            now = env._now
            sim.edge_attempts[e] += 1
            sim.edge_latency[e] += now - start
            if result != OK:
                sim.edge_attempt_fail[e] += 1
            if trace is not None:
                attrs = {"peer.service": sim.names[edge.target], "rpc.attempt": attempt + 1}
                if result == TIMED_OUT:
                    attrs["error.type"] = "timeout"
                elif result == REFUSED:
                    attrs["error.type"] = "connection_refused"
                trace.spans.append(
                    Span(
                        trace.trace_id,
                        client_id,
                        parent_id,
                        sim.names[s],
                        f"call {sim.names[edge.target]}",
                        "client",
                        start,
                        now,
                        result != OK,
                        attrs,
                    )
                )
            if result == OK:
                return True
        sim.edge_final_fail[e] += 1
        return False

    def _attempt(self, edge: EdgeSpec, deadline: float, trace, client_id):
        """Generator: one attempt, walked inline, abandoned to its own process at the deadline."""
        sim, env = self.sim, self.env
        e = edge.index
        if sim.edge_partition[e]:
            yield env.timeout(max(deadline - env._now, 0.0))
            return TIMED_OUT
        extra = sim.edge_fault_latency[e]
        if extra > 0.0:
            yield env.timeout(min(extra, max(deadline - env._now, 0.0)))
            if env._now >= deadline:
                return TIMED_OUT
        if sim.down[edge.target]:
            sim.tick_arrived[edge.target] += 1
            sim.tick_shed[edge.target] += 1
            yield env.timeout(min(CONNECT_REFUSED_S, max(deadline - env._now, 0.0)))
            return REFUSED
        walk = self.visit(edge.target, trace, client_id)
        value = None
        while True:
            try:
                event = walk.send(value)
            except StopIteration as stop:
                result = stop.value
                if result == REFUSED:
                    yield env.timeout(min(CONNECT_REFUSED_S, max(deadline - env._now, 0.0)))
                return result
            left = deadline - env._now
            if type(event) is Timeout:
                if event._delay > left:
                    env.process(_detached(event, walk))
                    if left > 0.0:
                        yield env.timeout(left)
                    return TIMED_OUT
                value = yield event
            else:
                if left <= 0.0:
                    env.process(_detached(event, walk))
                    return TIMED_OUT
                # (not `event in outcome`: SimPy flattens nested conditions into their leaves)
                yield event | env.timeout(left)
                if not event.triggered:
                    env.process(_detached(event, walk))
                    return TIMED_OUT
                value = event._value if event.processed else (yield event)


def lognormal_shape(cv: float) -> tuple[float, float]:
    """(sigma, -sigma²/2) of a mean-one lognormal with coefficient of variation cv."""
    sigma2 = math.log1p(cv * cv)
    return math.sqrt(sigma2), -0.5 * sigma2
