"""The request fidelity: every request a SimPy process through per-service worker pools.

Same scenario file, same control plane (pods, CrashLoopBackOff, the HPA, faults) and same
telemetry contract as the flow fidelity: the control plane writes the same parameter
matrices, and the walk (request_walk.py) reads them through per-tick caches. Each tick the
requests that finished in it are summarised into the same services × metrics row the flow
kernel writes, so every sink works on either fidelity. Arrivals are the flow run's own
per-tick counts (same seed, same stream) spread uniformly over the tick, as a Poisson
process conditioned on its count is.

Over 500 lines because the run loop, the per-tick caches the walk reads and the tick
summaries share one state.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence

import numpy as np
import simpy

from twin import fields as f
from twin.control.actions import Action, ActionError
from twin.control.events import EventLog
from twin.control.faults import FaultInjector
from twin.control.hpa import hpa_process
from twin.control.pods import PodController
from twin.flow.compiled import CompiledTopology, compile_topology
from twin.flow.queueing import CFS_PERIOD_S
from twin.flow.service import breaker_block, breaker_step, cpu_available
from twin.flow.stages import METRICS_WINDOW_S
from twin.infra.cluster import Cluster
from twin.request.walk import EdgeSpec, Pool, RandomBuffer, TraceContext, Walker, lognormal_shape
from twin.rng import stream
from twin.scenario.schema import Scenario
from twin.scenario.workload import rate_curves, sample_arrivals
from twin.telemetry.frame import Chunk, Frame, Sink
from twin.telemetry.handover import hand_over, interrupts_held
from twin.telemetry.spans import Span

DIST_KIND = {"lognormal": 0, "exponential": 1, "deterministic": 2}
CHUNK_TICKS = 600
MAX_BREAKER_EVENTS = 64


class RequestPods(PodController):
    """Pods as in the flow fidelity; a killed pod fails the visits it was holding."""

    def _drop_inflight(self, index: int) -> None:
        self.sim.drop_inflight(index, self.ready(index))

    def _sync(self, dep) -> None:
        super()._sync(dep)
        if getattr(self.sim, "pools", None) is not None:
            self.sim.refresh_service(dep.index)


class RequestFaults(FaultInjector):
    """Faults as in the flow fidelity; the walk's caches follow every change at once."""

    def apply(self) -> None:
        super().apply()
        self.sim.refresh_all()


class RequestSimulation:
    """One request-fidelity run of a scenario; interface as twin.flow.engine.Simulation."""

    fidelity = "request"

    def __init__(
        self,
        scenario: Scenario,
        *,
        exclude_faults: Sequence[int] = (),
        sinks: Sequence[Sink] = (),
        trace_rate: float = 0.01,
        span_sinks: Sequence[Callable[[list[Span]], None]] = (),
        record_visits: bool = False,
    ) -> None:
        if not 0.0 <= trace_rate <= 1.0:
            raise ValueError(f"trace_rate must be in [0, 1], got {trace_rate}")
        self.scenario = scenario
        self.dt = float(scenario.tick)
        self.n_ticks = int(math.ceil(scenario.duration / self.dt - 1e-9))
        self.topo: CompiledTopology = compile_topology(scenario)
        self.names = self.topo.names
        self.S = self.topo.base_services.copy()
        self.E = self.topo.base_edges.copy()
        self.env = simpy.Environment()
        self.events = EventLog()
        self.sinks = list(sinks)
        self.span_sinks = list(span_sinks)
        self.trace_rate = trace_rate
        self.hpa_paused: dict[int, bool] = {}
        self.tick_index = 0
        self.interrupted = False
        self.on_tick: list[Callable[[RequestSimulation], None]] = []
        self.rand = RandomBuffer(stream(scenario.seed, "requests"))
        self._shed_rand = RandomBuffer(stream(scenario.seed, "shed-load"))
        self.exclude_faults = tuple(exclude_faults)
        self.action_log: list[tuple[float, Action]] = []
        self.action_generations: dict[tuple[str, int], int] = {}  # see actions._after
        self._arrival_rng = stream(scenario.seed, "arrival-times")
        self.visits: list[tuple[int, float, float, float]] | None = [] if record_visits else None

        workload = scenario.workload
        self.class_rates = rate_curves(workload, self.n_ticks, self.dt)
        self.class_arrivals = sample_arrivals(
            self.class_rates, workload.noise, self.dt, stream(scenario.seed, "workload")
        )
        self.class_entry = [self.topo.service_index(c.entry) for c in workload.classes]
        self._build_static()

        self.pools: list[Pool] | None = None
        infra = scenario.infrastructure
        self.cluster = Cluster(self, infra) if infra is not None else None  # no node metrics
        self.pods = RequestPods(self)
        self.faults = RequestFaults(self)
        n = self.topo.n_services
        self.pools = [Pool(self.env, capacity=max(self._capacity(s), 1)) for s in range(n)]
        self.refresh_all()
        excluded = set(exclude_faults)
        for i, fault in enumerate(scenario.faults):
            if i not in excluded:
                self.faults.schedule(i, fault)
        for i, svc in enumerate(scenario.topology.services.values()):
            if svc.hpa is not None:
                self.env.process(hpa_process(self, i, svc.hpa))
        self.walker = Walker(self)
        self.env.process(self._source())
        self.env.process(self._ticks())

    # -- static structure ------------------------------------------------------------------
    def _build_static(self) -> None:
        topo, sc = self.topo, self.scenario
        n, m = topo.n_services, topo.n_edges
        services = list(sc.topology.services.values())
        self.parallel = [svc.parallel_calls for svc in services]
        self.dist_kind = [DIST_KIND[svc.service_time.dist] for svc in services]
        shapes = [lognormal_shape(svc.service_time.effective_cv) for svc in services]
        self.sigma = [sh[0] for sh in shapes]
        self.log_shift = [sh[1] for sh in shapes]
        self.out_edges: list[list[EdgeSpec]] = [[] for _ in range(n)]
        for j, call in enumerate(sc.topology.calls):
            whole = math.floor(call.per_request)
            self.out_edges[int(topo.src[j])].append(
                EdgeSpec(
                    index=j,
                    target=int(topo.dst[j]),
                    whole=whole,
                    fraction=call.per_request - whole,
                    probability=call.probability,
                    sync=call.sync,
                    required=call.required,
                )
            )
        # per-tick accumulators and cumulative counters
        zeros_i = [0] * n
        self.tick_arrived, self.tick_shed = zeros_i[:], zeros_i[:]
        self.tick_ok, self.tick_failed = zeros_i[:], zeros_i[:]
        self.latencies: list[list[float]] = [[] for _ in range(n)]
        self.cum = {k: np.zeros(n) for k in ("arrived", "completed", "failed", "shed")}
        self.in_flight = zeros_i[:]
        self.area = [0.0] * n  # ∫ in-flight dt, for Little's law
        self.area_since = [0.0] * n
        self.active: list[set] = [set() for _ in range(n)]
        self.visit_seq = 0
        self.edge_attempts, self.edge_attempt_fail = [0] * m, [0] * m
        self.edge_final_fail, self.edge_latency = [0] * m, [0.0] * m
        # caches the walk reads (refreshed from S and E)
        self.down = [False] * n
        self.qmax = [0] * n
        self.own_mean = [0.0] * n
        self.cpu_share = [0.0] * n  # share of a draw of the own time that is CPU work
        self.cpu_rate = [0.0] * n  # cores left to requests
        self.cpu_backlog = [0.0] * n  # CPU work (core-seconds) not yet done
        self.cpu_since = [0.0] * n
        self.own_add = [0.0] * n
        self.err_own = [0.0] * n
        for name in ("timeout", "backoff", "backoff_mult", "loss", "fault_latency"):
            setattr(self, f"edge_{name}", [0.0] * m)
        self.edge_retries = [0] * m
        self.edge_partition = [False] * m
        self.breaker_block = [0.0] * m
        # telemetry buffers, as the flow engine's
        self.chunk_size = CHUNK_TICKS
        self._out = np.zeros((self.chunk_size, n, f.N_SERVICE_METRICS))
        self._eout = np.zeros((self.chunk_size, m, f.N_EDGE_METRICS))
        self._dist = np.zeros((self.chunk_size, n, 3))
        self._times = np.zeros(self.chunk_size)
        self._chunk_start = 0
        self._chunk_events: list[dict] = []
        self._spans: list[Span] = []
        self._last_latency = np.zeros((n, 4))
        self._last_dist = np.zeros((n, 3))
        self._kev = np.zeros((MAX_BREAKER_EVENTS, 4))

    # -- caches ----------------------------------------------------------------------------
    def _capacity(self, s: int) -> int:
        return int(self.S[f.P_READY, s] * self.S[f.P_WORKERS, s])

    def refresh_service(self, s: int) -> None:
        """Re-read one service's parameters (after pods, faults or the HPA changed them)."""
        S = self.S
        ready = S[f.P_READY, s]
        self.down[s] = bool(ready <= 0.0 or S[f.F_OUTAGE, s] > 0.0)
        self.qmax[s] = int(ready * S[f.P_QLIMIT, s])
        if self.pools is not None:
            self.pools[s].resize(max(self._capacity(s), 0))
        base = S[f.P_SVC_MEAN, s] * S[f.F_LAT_FACTOR, s]
        work = S[f.P_CPU_PER_REQ, s] * S[f.F_CPU_FACTOR, s]
        share = min(work / base, 1.0) if base > 0.0 else 0.0
        cap = ready * S[f.P_CPU_LIMIT, s]
        rate = cpu_available(s, S) if cap > 0.0 else 0.0
        # a hog's share of the quota stretches the CPU part of the own time (as in the flow
        # kernel); contention between requests is the CFS bucket in own_time
        stretch = 1.0 + share * (cap / rate - 1.0) if rate > 0.0 else 1.0
        self.own_mean[s] = float(base * stretch)
        self.cpu_share[s] = float(share / stretch)
        self.cpu_rate[s] = float(rate)
        self.own_add[s] = float(S[f.F_LAT_ADD, s])
        self.err_own[s] = float(1.0 - (1.0 - S[f.P_ERR_BASE, s]) * (1.0 - S[f.F_ERR, s]))

    def refresh_all(self) -> None:
        for s in range(self.topo.n_services):
            self.refresh_service(s)
        E = self.E
        self.edge_timeout = E[f.E_TIMEOUT].tolist()
        self.edge_retries = [int(r) for r in E[f.E_RETRIES]]
        self.edge_backoff = E[f.E_BACKOFF].tolist()
        self.edge_backoff_mult = E[f.E_BACKOFF_MULT].tolist()
        self.edge_loss = E[f.E_FAULT_FAIL].tolist()
        self.edge_fault_latency = E[f.E_FAULT_LAT].tolist()
        self.edge_partition = (E[f.E_PARTITION] > 0.0).tolist()
        self.breaker_block = [breaker_block(e, E) for e in range(self.topo.n_edges)]

    # -- hooks the walk calls --------------------------------------------------------------
    def own_time(self, s: int) -> float:
        """A draw of service s's own processing time under its current slowdowns."""
        mean = self.own_mean[s]
        kind = self.dist_kind[s]
        if kind == 0:
            value = mean * math.exp(self.sigma[s] * self.rand.normal() + self.log_shift[s])
        elif kind == 1:
            value = -mean * math.log(1.0 - self.rand.uniform())
        else:
            value = mean
        return value + self.own_add[s] + self._cpu_wait(s, value * self.cpu_share[s])

    def _cpu_wait(self, s: int, work: float) -> float:
        """CFS quota as a bucket shared by the service's pods: CPU work runs at full speed
        while the period's quota lasts, then waits for the quota to refill. Throughput can
        never exceed cores left / CPU per request; beyond it, work piles up in the bucket."""
        rate = self.cpu_rate[s]
        if work <= 0.0 or rate <= 0.0:
            return 0.0
        now = self.env._now
        backlog = self.cpu_backlog[s] - rate * (now - self.cpu_since[s])
        backlog = (backlog if backlog > 0.0 else 0.0) + work
        self.cpu_backlog[s] = backlog
        self.cpu_since[s] = now
        excess = backlog - rate * CFS_PERIOD_S
        return excess / rate if excess > 0.0 else 0.0

    def enter(self, s: int, now: float) -> None:
        self.area[s] += self.in_flight[s] * (now - self.area_since[s])
        self.area_since[s] = now
        self.in_flight[s] += 1

    def leave(self, s: int, now: float) -> None:
        self.area[s] += self.in_flight[s] * (now - self.area_since[s])
        self.area_since[s] = now
        self.in_flight[s] -= 1

    def record(self, s: int, residence: float, wait: float, ok: bool) -> None:
        self.latencies[s].append(residence)
        if ok:
            self.tick_ok[s] += 1
        else:
            self.tick_failed[s] += 1
        if self.visits is not None:
            now = self.env._now
            self.visits.append((s, now - residence, now - residence + wait, now))

    def drop_inflight(self, s: int, ready: int) -> None:
        """A killed pod takes its share of the visits in flight: they fail when they end."""
        if ready <= 0:
            return
        share = 1.0 / ready
        for token in sorted(self.active[s], key=lambda tok: tok.seq):
            if self.rand.uniform() < share:
                token.lost = True

    # -- processes -------------------------------------------------------------------------
    def _source(self):
        """External arrivals: the tick's counts per class, at uniform times inside the tick."""
        env, dt, rng, rand = self.env, self.dt, self._arrival_rng, self.rand
        visit, rate = self.walker.visit, self.trace_rate
        entries = np.asarray(self.class_entry, dtype=np.int64)
        spans = self._spans
        shed_share, shed_rand = self.S[f.A_SHED], self._shed_rand  # a view: actions write S
        for i in range(self.n_ticks):
            counts = self.class_arrivals[i].astype(np.int64)
            total = int(counts.sum())
            if total == 0:
                continue
            offsets = rng.random(total)
            order = np.argsort(offsets, kind="stable")
            times = (i * dt + offsets[order] * dt).tolist()
            targets = np.repeat(entries, counts)[order].tolist()
            for t, s in zip(times, targets, strict=True):
                delay = t - env._now
                if delay > 0.0:
                    yield env.timeout(delay)
                if shed_share[s] > 0.0 and shed_rand.uniform() < shed_share[s]:
                    self.tick_arrived[s] += 1  # dropped at the ingress (a ShedLoad action)
                    self.tick_shed[s] += 1
                    continue
                trace = None
                if rate > 0.0 and rand.uniform() < rate:
                    trace = TraceContext(f"{rand.bits64():016x}{rand.bits64():016x}", spans)
                env.process(visit(s, trace, None))

    def _ticks(self):
        env, dt = self.env, self.dt
        for i in range(self.n_ticks):
            yield env.timeout(dt)
            row = i - self._chunk_start
            if row == self.chunk_size:
                self._flush(i)
                row = 0
            self._close_tick(i, row)
            self.tick_index = i + 1
            for hook in self.on_tick:
                hook(self)

    # -- a tick's telemetry ----------------------------------------------------------------
    def _close_tick(self, i: int, row: int) -> None:
        S, E, dt = self.S, self.E, self.dt
        t = i * dt
        self._times[row] = t
        out, dist = self._out[row], self._dist[row]
        n = self.topo.n_services
        oom: list[int] = []
        for s in range(n):
            arrived, shed = self.tick_arrived[s], self.tick_shed[s]
            ok, failed = self.tick_ok[s], self.tick_failed[s]
            lat = self.latencies[s]
            if lat:
                x = np.asarray(lat)
                p50, p95, p99 = np.percentile(x, (50.0, 95.0, 99.0))
                self._last_latency[s] = (x.mean(), p50, p95, p99)
                logs = np.log(np.maximum(x, 1e-9))
                self._last_dist[s] = (logs.mean(), logs.std(), 0.0)
                lat.clear()
            ready = S[f.P_READY, s]
            finished = ok + failed + shed
            out[s, 0] = arrived / dt
            out[s, 1] = ok / dt
            out[s, 2] = failed / dt
            out[s, 3] = shed / dt
            out[s, 4] = (failed + shed) / finished if finished else 0.0
            down = self.down[s]
            out[s, 5:9] = 0.0 if down else self._last_latency[s] * 1000.0
            dist[s] = self._last_dist[s]
            served = ok + failed
            cpu_req = served * S[f.P_CPU_PER_REQ, s] * S[f.F_CPU_FACTOR, s] / dt
            cpu_cap = ready * S[f.P_CPU_LIMIT, s]
            cpu_used = min(cpu_req + (S[f.F_CPU_HOG, s] + S[f.P_CPU_IDLE, s]) * ready, cpu_cap)
            out[s, 9] = cpu_used
            util = cpu_used / (ready * S[f.P_CPU_REQUEST, s]) if ready > 0 else 0.0
            out[s, 10] = util
            S[f.X_CPU_AVG, s] += min(dt / METRICS_WINDOW_S, 1.0) * (util - S[f.X_CPU_AVG, s])
            mem = self._memory(s, t + dt)
            out[s, 11] = mem if ready > 0 else 0.0
            if ready > 0 and mem > S[f.P_MEM_LIMIT, s]:
                oom.append(s)
            pool = self.pools[s]
            out[s, 12] = len(pool.queue)
            out[s, 13] = self.in_flight[s]
            out[s, 14] = len(pool.users) / pool._capacity if pool._capacity else 0.0
            out[s, 15] = ready
            out[s, 16] = S[f.X_DESIRED, s]
            self.cum["arrived"][s] += arrived
            self.cum["completed"][s] += ok
            self.cum["failed"][s] += failed
            self.cum["shed"][s] += shed
            self.tick_arrived[s] = self.tick_shed[s] = self.tick_ok[s] = self.tick_failed[s] = 0
        self._edges_tick(t, row)
        for s in oom:
            self.pods.oom_kill(s)
        for s in range(n):
            self.refresh_service(s)
        self.breaker_block = [breaker_block(e, E) for e in range(self.topo.n_edges)]

    def _memory(self, s: int, t: float) -> float:
        S = self.S
        ready = S[f.P_READY, s]
        leak = 0.0
        if S[f.F_LEAK_RATE, s] > 0.0:
            leak = S[f.F_LEAK_RATE, s] * max(t - S[f.F_LEAK_ORIGIN, s], 0.0)
        mem = S[f.P_MEM_BASE, s] + leak
        if ready > 0:
            mem += S[f.P_MEM_PER_REQ, s] * self.in_flight[s] / ready
        return float(mem)

    def _edges_tick(self, t: float, row: int) -> None:
        E, dt, eout = self.E, self.dt, self._eout[row]
        n_ev = 0
        for e in range(self.topo.n_edges):
            attempts = self.edge_attempts[e]
            fails = self.edge_attempt_fail[e]
            eout[e, 0] = attempts / dt
            eout[e, 1] = self.edge_final_fail[e] / dt
            eout[e, 2] = self.edge_latency[e] / attempts * 1000.0 if attempts else 0.0
            E[f.E_P_ATTEMPT, e] = fails / attempts if attempts else 0.0
            n_ev = breaker_step(t, dt, e, E, float(attempts), float(fails), self._kev, n_ev)
            eout[e, 3] = E[f.E_BR_STATE, e] if E[f.E_FORCED, e] < 0.0 else 3.0 + E[f.E_FORCED, e]
            self.edge_attempts[e] = self.edge_attempt_fail[e] = self.edge_final_fail[e] = 0
            self.edge_latency[e] = 0.0
        edges = self.topo.edges
        for time_, _kind, index, value in self._kev[:n_ev]:
            src, dst = edges[int(index)]
            state = f.BREAKER_STATES[int(value)]
            self.events.emit(time_, "breaker", source=src, target=dst, state=state)

    def _flush(self, stop_tick: int) -> None:
        """The chunk bookkeeping and the hand-over as one step a stop cannot split (a
        stop between them would lose the rows the summary still counts)."""
        with interrupts_held():
            self._flush_rows(stop_tick)

    def _flush_rows(self, stop_tick: int) -> None:
        rows = stop_tick - self._chunk_start
        if self._spans:
            spans = self._spans[:]
            self._spans.clear()
            for sink in self.span_sinks:
                sink(spans)
        if rows <= 0:
            return
        self._chunk_events.extend(self.events.drain())
        chunk = Chunk(
            times=self._times[:rows].copy(),
            values=self._out[:rows].copy(),
            edge_values=self._eout[:rows].copy(),
            dist=self._dist[:rows].copy(),
            events=self._chunk_events,
        )
        self._chunk_events = []
        self._chunk_start = stop_tick
        hand_over(chunk, self.sinks)

    # -- driving -------------------------------------------------------------------------
    def run(self, progress: Callable[[float], None] | None = None) -> None:
        """Simulate to the end, handing chunks to the sinks as it goes. Ctrl-C (SIGTERM in
        the CLI) marks the run interrupted, hands the sinks what was simulated and closes
        them, then propagates: the caller decides whether that ends everything."""
        end = self.n_ticks * self.dt
        step = max(self.dt, min(60.0, end / 100.0))
        try:
            t = 0.0
            while t < end:
                t = min(t + step, end)
                self.env.run(until=t)
                if progress is not None:
                    progress(t)
            self.env.run(until=end + self.dt * 0.5)
        except KeyboardInterrupt:
            self.interrupted = True
            self._close_sinks()
            raise
        self._close_sinks()

    def _close_sinks(self) -> None:
        with interrupts_held():  # a stop now would cut the last part or a file's footer
            self._flush(self.tick_index)
            for sink in self.sinks:
                sink.close()

    def frames(self) -> Iterator[Frame]:
        """Stream the run tick by tick."""
        names, edges = self.topo.names, self.topo.edges
        for i in range(self.n_ticks):
            while self.tick_index <= i:
                self.env.step()
            row = i - self._chunk_start
            events = self.events.pending[:]
            self._chunk_events.extend(self.events.drain())
            yield Frame(
                time=i * self.dt,
                values=self._out[row].copy(),
                edge_values=self._eout[row].copy(),
                services=names,
                edges=edges,
                events=events,
            )
        self._close_sinks()

    # -- actions -------------------------------------------------------------------------
    def act(self, action: Action) -> float:
        """Apply an action now and return the time (no schedule, replay or fork here: the
        request fidelity is the reference, driven step by step). A kind it does not model
        is refused with an ActionError, never ignored."""
        if not isinstance(action, Action):
            raise ActionError(f"not an action: {action!r}")
        if "request" not in action.fidelities:
            raise ActionError(
                f"{action.kind}: needs flow fidelity (the request fidelity does not model it); "
                "run with fidelity 'flow'"
            )
        action.check(self)  # type: ignore[arg-type]
        now = self.env.now
        self.events.emit(now, "action", action=action.kind, **action.params())
        record = self.events.pending[-1]
        record.update(action.apply(self))  # type: ignore[arg-type]
        self.action_log.append((now, action))
        self.refresh_all()
        return now

    @property
    def now(self) -> float:
        return self.env.now

    def standby_replica_hours(self) -> float:
        """Always 0 here (no failover in this fidelity); the same interface as the flow's."""
        return self.pods.standby_replica_seconds(self.env.now) / 3600.0

    def conservation(self) -> dict[str, np.ndarray]:
        """Per-service request accounting; in flight is what is still inside a service."""
        pending = {
            "arrived": self.tick_arrived,
            "completed": self.tick_ok,
            "failed": self.tick_failed,
            "shed": self.tick_shed,
        }
        out = {k: v + np.asarray(pending[k], dtype=float) for k, v in self.cum.items()}
        out["in_flight"] = np.asarray(self.in_flight, dtype=float)
        return out

    def littles_law(self) -> np.ndarray:
        """Time-average number of requests inside each service (L) over the run so far."""
        now = self.env._now
        area = np.asarray(self.area) + np.asarray(self.in_flight) * (
            now - np.asarray(self.area_since)
        )
        return area / max(now, 1e-12)
