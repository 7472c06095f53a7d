"""The flow-fidelity simulation: a SimPy environment whose tick process runs the kernel.

Control-plane happenings (faults, pod crashes and restarts, the HPA, actions) are SimPy
events between ticks; the tick itself is one compiled call over all services.

A run is a pure function of (scenario, seed, actions taken). Actions apply at an instant
before any other event of that instant (SimPy's urgent priority), whether an agent calls
`act()` between `advance()` calls or they were scheduled up front, so the action log alone
replays a run exactly: that is how `fork()` makes a what-if copy of the present.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence

import numpy as np
import simpy
from simpy.events import URGENT

from twin import fields as f
from twin.control.actions import Action, ActionError
from twin.control.events import EventLog
from twin.control.faults import FaultInjector
from twin.control.hpa import hpa_process
from twin.control.pods import PodController
from twin.errors import FirebreakError
from twin.fields import NODE_METRICS
from twin.flow.burst import flow_ticks
from twin.flow.compiled import CompiledTopology
from twin.flow.inputs import RunInputs, prepare_inputs
from twin.flow.stages import EVENT_OOM, K_INTENSITY, N_COUNTERS
from twin.infra.cluster import Cluster
from twin.rng import stream
from twin.scenario.schema import Scenario
from twin.telemetry.frame import Chunk, Frame, Sink
from twin.telemetry.handover import hand_over, interrupts_held

CHUNK_CELLS = 1_500_000  # telemetry values buffered before sinks get them
MAX_KERNEL_EVENTS = 4096


class TimeRangeError(FirebreakError):
    """A time outside what the run can reach: negative, past its end, or in its past."""


class _Urgent(simpy.Event):
    """An event that fires `delay` from now ahead of every ordinary event of that instant.

    This is how SimPy's own run(until=...) stops, so an action scheduled for time t lands
    exactly where a caller's act() after advance(t) lands: after all of t's predecessors,
    before t's tick, fault transitions and HPA syncs.
    """

    def __init__(self, env: simpy.Environment, delay: float) -> None:
        super().__init__(env)
        self._ok = True
        self._value = None
        env.schedule(self, URGENT, delay)


class Simulation:
    """One run of a scenario. A run is a pure function of (scenario, seed, actions)."""

    def __init__(
        self,
        scenario: Scenario,
        *,
        exclude_faults: Sequence[int] = (),
        sinks: Sequence[Sink] = (),
        actions: Sequence[tuple[float, Action]] = (),
        inputs: RunInputs | None = None,
    ) -> None:
        """`actions` are (time, action) pairs applied at those times; `inputs` (from
        `prepare_inputs(scenario)`, or another run's) skips recomputing the traffic."""
        self.scenario = scenario
        self.dt = float(scenario.tick)
        self.n_ticks = int(math.ceil(scenario.duration / self.dt - 1e-9))
        if inputs is None:
            inputs = prepare_inputs(scenario)
        elif inputs.scenario is not scenario:
            raise ValueError("inputs were prepared for a different scenario")
        self.inputs = inputs
        self.topo: CompiledTopology = inputs.topo
        self.S = self.topo.base_services.copy()
        self.E = self.topo.base_edges.copy()
        self.env = simpy.Environment()
        self.events = EventLog()
        self.sinks = list(sinks)
        self.hpa_paused: dict[int, bool] = {}
        self.tick_index = 0
        self.interrupted = False
        self.on_tick: list[Callable[[Simulation], None]] = []
        self.exclude_faults = tuple(exclude_faults)
        self.action_log: list[tuple[float, Action]] = []
        self.action_generations: dict[tuple[str, int], int] = {}  # see actions._after
        self._pending: list[tuple[float, Action]] = []  # scheduled, not yet applied
        self._running = False
        self._finished = False
        self._skip_rows = 0  # rows of the current chunk already handed over (or not ours)
        self._frame_events: list[dict] | None = None  # while frames() streams: this tick's

        self.class_rates = inputs.class_rates
        self.class_arrivals = inputs.class_arrivals
        self.class_entry = inputs.class_entry
        self.class_intensity = inputs.class_intensity
        # the flow model's own noise (bursts that tip a pool into a retry storm): drawn per
        # chunk in tick order, so a replay or a fork draws the same numbers
        self._noise_rng = stream(scenario.seed, "flow-noise")
        n, m = self.topo.n_services, self.topo.n_edges

        # never longer than the run: a short episode (an RL reset) allocates what it uses
        cells = CHUNK_CELLS // max(n * f.N_SERVICE_METRICS, 1)
        self.chunk_size = max(16, min(3600, cells, self.n_ticks))
        self._out = np.zeros((self.chunk_size, n, f.N_SERVICE_METRICS))
        self._eout = np.zeros((self.chunk_size, m, f.N_EDGE_METRICS))
        self._dist = np.zeros((self.chunk_size, n, 3))
        self._wire = np.zeros((self.chunk_size, m))
        self._ext = np.zeros((self.chunk_size, n))
        self._ext_int = np.zeros((self.chunk_size, n))
        self._draws = np.zeros((self.chunk_size, n))
        self._times = np.zeros(self.chunk_size)
        self._kernel_events = np.zeros((MAX_KERNEL_EVENTS, 4))
        self._scratch = np.zeros((n, N_COUNTERS))
        self._chunk_start = 0
        self._chunk_events: list[dict] = []
        # tick times are exact binary fractions (1 s, 0.5 s, …): now + dt == (i + 1)·dt, so
        # several ticks may share one SimPy timeout (see `_burst`)
        self._exact_times = (self.dt * 1024.0).is_integer() and self.n_ticks * 1024 < 2**52

        infra = scenario.infrastructure
        self.cluster = Cluster(self, infra) if infra is not None else None
        n_nodes = len(self.cluster.names) if self.cluster is not None else 0
        self._nout = np.zeros((self.chunk_size, n_nodes, len(NODE_METRICS)))
        self.pods = PodController(self)
        self.faults = FaultInjector(self)
        excluded = set(exclude_faults)
        for i, fault in enumerate(scenario.faults):
            if i not in excluded:
                self.faults.schedule(i, fault)
        for i, svc in enumerate(scenario.topology.services.values()):
            if svc.hpa is not None:
                self.env.process(hpa_process(self, i, svc.hpa))
        self._ticker = self.env.process(self._tick_loop())
        self._schedule_initial(actions)

    # -- the tick ------------------------------------------------------------------------
    def _fill_external(self, start: int) -> None:
        stop = min(start + self.chunk_size, self.n_ticks)
        rows = stop - start
        np.matmul(self.class_arrivals[start:stop], self.class_entry, out=self._ext[:rows])
        np.matmul(self.class_intensity[start:stop], self.class_entry, out=self._ext_int[:rows])
        self._noise_rng.random(out=self._draws[:rows])

    def _tick_loop(self):
        dt, topo, S, E = self.dt, self.topo, self.S, self.E
        order, src, dst = topo.order, topo.src, topo.dst
        in_ptr, in_idx, out_ptr, out_idx = topo.in_ptr, topo.in_idx, topo.out_ptr, topo.out_idx
        out, eout, dist, ext = self._out, self._eout, self._dist, self._ext
        ext_int, draws = self._ext_int, self._draws
        kev, scratch, times = self._kernel_events, self._scratch, self._times
        env, timeout = self.env, self.env.timeout
        cluster, nout = self.cluster, self._nout
        self._fill_external(0)
        i = 0
        while i < self.n_ticks:
            row = i - self._chunk_start
            if row == self.chunk_size:
                self._flush(i)
                self._fill_external(i)
                row = 0
            count = self._burst(i, row)
            done, n_ev = flow_ticks(
                i, count, row, dt, S, E, order, src, dst, in_ptr, in_idx, out_ptr, out_idx,
                ext, ext_int, draws, out, eout, dist, times, kev, scratch,
            )  # fmt: skip
            last = done - 1 if n_ev else done  # rows recorded before the events' handlers
            self._wire[row : row + done] = E[f.E_FAULT_LAT]  # set only at events: fixed in a burst
            if cluster is not None and last:
                cluster.record(out[row : row + last], nout[row : row + last])
            if n_ev:
                if last:  # the handlers act at their own tick's time, as tick by tick
                    self.tick_index = i + last
                    yield timeout(last * dt)
                self._handle_kernel_events(n_ev)
                if cluster is not None:
                    cluster.record(out[row + last], nout[row + last])
            i += done
            self.tick_index = i
            for hook in self.on_tick:
                hook(self)
            yield timeout(dt if done == 1 else i * dt - env.now)

    def _burst(self, i: int, row: int) -> int:
        """How many ticks from tick `i` can run in one compiled call: up to the next SimPy
        event (nothing else may run between them), the chunk's end and the run's end.

        One tick while per-tick hooks listen, and where tick times are not exact in binary
        (then `now + dt` summed tick by tick is not `i·dt`, and a burst's single timeout
        would land a last bit away from where tick-by-tick timeouts land)."""
        limit = min(self.chunk_size - row, self.n_ticks - i)
        if limit <= 1 or self.on_tick or not self._exact_times:
            return 1
        nxt = self.env.peek()
        count = 1
        while count < limit and (i + count) * self.dt < nxt:
            count += 1
        return count

    def _handle_kernel_events(self, count: int) -> None:
        edges = self.topo.edges
        oom_seen: set[int] = set()
        for time_, kind, index, value in self._kernel_events[:count]:
            idx = int(index)
            if kind == EVENT_OOM:
                if idx not in oom_seen:
                    oom_seen.add(idx)
                    self.pods.oom_kill(idx)
            else:
                src, dst = edges[idx]
                state = f.BREAKER_STATES[int(value)]
                self.events.emit(time_, "breaker", source=src, target=dst, state=state)

    def _flush(self, stop_tick: int) -> None:
        """The chunk bookkeeping and the hand-over as one step a stop cannot split (a
        stop between them would lose the rows the summary still counts)."""
        with interrupts_held():
            self._flush_rows(stop_tick)

    def _flush_rows(self, stop_tick: int) -> None:
        """Hand the chunk's rows not yet handed over to the sinks; at a full chunk, start anew.
        Without sinks nothing is copied and events are dropped: a fork's replay stays cheap."""
        rows = stop_tick - self._chunk_start
        skip = self._skip_rows
        if rows == self.chunk_size:
            self._chunk_start, self._skip_rows = stop_tick, 0
        elif rows > skip:
            self._skip_rows = rows
        drained = self.events.drain()
        if self._frame_events is not None:
            self._frame_events.extend(drained)
        if not self.sinks:
            self._chunk_events = []
            return
        self._chunk_events.extend(drained)
        if rows <= skip:
            return
        chunk = Chunk(
            times=self._times[skip:rows].copy(),
            values=self._out[skip:rows].copy(),
            edge_values=self._eout[skip:rows].copy(),
            dist=self._dist[skip:rows].copy(),
            wire=self._wire[skip:rows].copy(),
            events=self._chunk_events,
            node_values=self._nout[skip:rows].copy() if self.cluster is not None else None,
            nodes=self.node_names,
        )
        self._chunk_events = []
        hand_over(chunk, self.sinks)

    # -- driving -------------------------------------------------------------------------
    def _run_until(self, t: float) -> None:
        self._running = True
        try:
            self.env.run(until=t)
        finally:
            self._running = False

    @property
    def end(self) -> float:
        """The time just after the last tick."""
        return self.n_ticks * self.dt

    def run(self, progress: Callable[[float], None] | None = None) -> None:
        """Simulate to the end, handing chunks to the sinks as it goes. Ctrl-C (SIGTERM in
        the CLI) marks the run interrupted, hands the sinks what was simulated and closes
        them, then propagates: the caller decides whether that ends everything (a
        fault-free replay or a what-if fork must not carry on as if complete)."""
        end = self.end
        step = self.chunk_size * self.dt
        try:
            t = self.env.now
            while t < end:
                t = min(t + step, end)
                self._run_until(t)
                if progress is not None:
                    progress(t)
            if self.env.now < end + self.dt * 0.5:
                self._run_until(end + self.dt * 0.5)
        except KeyboardInterrupt:
            self.interrupted = True
            self.finish()
            raise
        self.finish()

    def advance(self, until: float) -> None:
        """Simulate up to time `until` (ticks before it), without closing the sinks.
        Chunks reach the sinks as they fill; `finish()` (or `run()`) hands over the rest."""
        until = self._check_time(until, "advance to")
        if self._finished:
            raise TimeRangeError("cannot advance: the run is finished")
        if until < self.env.now:
            raise TimeRangeError(
                f"cannot advance to t={until:g} s: the run is already at t={self.env.now:g} s"
            )
        if until > self.env.now:
            self._run_until(until)

    def hand_over_every(self, ticks: int) -> None:
        """Give the sinks their chunks every `ticks` ticks rather than when the buffer fills
        (a sink read while the run goes, as the closed loop reads production telemetry).
        Only before the first tick; what the twin simulates does not depend on it."""
        if self.tick_index or self._running:
            raise TimeRangeError("hand_over_every: the run has started")
        self.chunk_size = max(1, min(int(ticks), len(self._times)))

    def finish(self) -> None:
        """Hand the remaining telemetry to the sinks and close them; the run ends here."""
        if self._finished:
            return
        self._finished = True
        with interrupts_held():  # a stop now would cut the last part or a file's footer
            self._flush(self.tick_index)
            for sink in self.sinks:
                sink.close()

    def frames(self) -> Iterator[Frame]:
        """Stream the run tick by tick (for detectors and agents that act as it goes)."""
        names, edges = self.topo.names, self.topo.edges
        for i in range(self.tick_index, self.n_ticks):
            self._frame_events = []  # events a chunk flush takes during the tick stay its own
            self._run_until((i + 1) * self.dt)
            row = i - self._chunk_start
            events = self._frame_events + self.events.pending
            self._frame_events = None
            self._chunk_events.extend(self.events.drain())
            yield Frame(
                time=i * self.dt,
                values=self._out[row].copy(),
                edge_values=self._eout[row].copy(),
                services=names,
                edges=edges,
                events=events,
                node_values=self._nout[row].copy() if self.cluster is not None else None,
                nodes=self.node_names,
            )
        self.finish()

    # -- actions and forks ---------------------------------------------------------------
    def act(self, action: Action) -> float:
        """Apply an action now and return the time it was applied (what it sets in motion,
        a rollout or a traffic shift, completes later: see `Action.profile`).

        Called from inside the running simulation (an on_tick hook, a SimPy process), the
        action waits for the next tick boundary, so a replay can put it at the same place.
        """
        self._check_action(action)
        if self._running or self.env.active_process is not None:
            at = self.tick_index * self.dt
            if at <= self.env.now:
                at += self.dt
            return self.schedule(action, at)
        if self._finished or self.env.now > self.end:
            raise TimeRangeError(f"cannot act at t={self.env.now:g} s: the run is finished")
        self._apply(action)
        return self.env.now

    def schedule(self, action: Action, at: float) -> float:
        """Apply an action at a later time `at` (before that instant's tick); returns `at`."""
        self._check_action(action)
        at = self._check_time(at, "schedule an action at")
        if at <= self.env.now:
            raise TimeRangeError(
                f"cannot schedule an action at t={at:g} s: the run is already at "
                f"t={self.env.now:g} s (use act() for now)"
            )
        delay = at - self.env.now
        entry = (self.env.now + delay, action)  # the clock's own sum, as a replay will see it
        self._pending.append(entry)
        _Urgent(self.env, delay).callbacks.append(lambda _e: self._fire(entry))
        return entry[0]

    def fork(
        self, at: float | None = None, *, sinks: Sequence[Sink] = (), blind: bool = False
    ) -> Simulation:
        """A copy of this run at time `at` (default: now), free to diverge from there.

        Replays the scenario with the actions this run took before `at` (sinks see nothing
        of the replay), then applies those taken at `at` and carries actions scheduled but
        not yet due; with no further change it continues bit for bit like this run.

        `blind`: from `at` on, no remedy ends a fault and no new pod starts clean of one
        (`FaultInjector.blind`): the fork an operator may dry-run a remedy in, since a
        copy of the present knows the system, not the hidden cause.
        """
        now = min(self.env.now, self.end)
        at = now if at is None else self._check_time(at, "fork at")
        if at > now:
            raise TimeRangeError(
                f"cannot fork at t={at:g} s: this run has only reached t={now:g} s"
            )
        history = self.action_log + sorted(self._pending, key=lambda e: e[0])
        if at < now:
            history = [(t, a) for t, a in history if t <= at]
        child = Simulation(
            self.scenario,
            exclude_faults=self.exclude_faults,
            actions=[(t, a) for t, a in history if t < at or t > at],
            inputs=self.inputs,
        )
        child.advance(at)
        child.faults.blind = blind
        child._attach(at, sinks)
        for t, action in history:
            if t == at:
                child.act(action)
        return child

    def _attach(self, at: float, sinks: Sequence[Sink]) -> None:
        """Hand `sinks` the telemetry from `at` on: later ticks, events stamped at or after it."""
        since = round(at, 6)
        self._chunk_events = [e for e in self.events.drain() if e["time"] >= since]
        self._skip_rows = self.tick_index - self._chunk_start
        self.sinks = list(sinks)

    def _schedule_initial(self, actions: Sequence[tuple[float, Action]]) -> None:
        """Constructor actions: checked up front; those at t = 0 apply at once, like act()."""
        checked = []
        for entry in actions:
            if not (isinstance(entry, tuple | list) and len(entry) == 2):
                raise ActionError(f"actions: expected (time, action) pairs, got {entry!r}")
            t, action = entry
            self._check_action(action)
            checked.append((self._check_time(t, "schedule an action at"), action))
        checked.sort(key=lambda e: e[0])
        for t, action in checked:
            if t > 0.0:
                self.schedule(action, t)
        for t, action in checked:
            if t == 0.0:
                self._apply(action)

    def _check_action(self, action: object) -> None:
        if not isinstance(action, Action):
            raise ActionError(f"not an action: {action!r}")
        action.check(self)

    def _check_time(self, t: float, what: str) -> float:
        try:
            t = float(t)
        except (TypeError, ValueError):
            raise TimeRangeError(f"cannot {what} {t!r}: not a number") from None
        if not math.isfinite(t) or t < 0.0:
            raise TimeRangeError(f"cannot {what} t={t:g} s: times start at 0")
        if t > self.end:
            raise TimeRangeError(f"cannot {what} t={t:g} s: the run ends at t={self.end:g} s")
        return t

    def _fire(self, entry: tuple[float, Action]) -> None:
        self._pending.remove(entry)
        self._apply(entry[1])

    def _apply(self, action: Action) -> None:
        """Record the action as an event (before its consequences), apply it, log it."""
        now = self.env.now
        self.events.emit(now, "action", action=action.kind, **action.params())
        record = self.events.pending[-1]
        record.update(action.apply(self))
        self.action_log.append((now, action))

    @property
    def now(self) -> float:
        return self.env.now

    @property
    def arrival_intensity(self) -> np.ndarray:
        """Each service's arrival intensity (requests/s, the Poisson rate behind the counts,
        retries included) in the last tick: a view, valid until the next tick."""
        return self._scratch[:, K_INTENSITY]

    @property
    def node_names(self) -> tuple[str, ...]:
        return self.cluster.names if self.cluster is not None else ()

    def standby_replica_hours(self) -> float:
        """Replica-hours of failover standbys so far: part of what the run cost in pods."""
        return self.pods.standby_replica_seconds(min(self.env.now, self.end)) / 3600.0

    def conservation(self) -> dict[str, np.ndarray]:
        """Cumulative request accounting per service; in flight is what is left in the system."""
        S = self.S
        return {
            "arrived": S[f.C_ARRIVED].copy(),
            "completed": S[f.C_COMPLETED].copy(),
            "failed": S[f.C_FAILED].copy(),
            "shed": S[f.C_SHED].copy(),
            "in_flight": S[f.X_QUEUE] + S[f.X_WAITING] + S[f.X_NSERV] + S[f.X_LOST],
        }
