"""The flow-fidelity simulation: a SimPy environment whose tick process runs the kernel.

Control-plane happenings (faults, pod crashes and restarts, the HPA, later actions) are
SimPy events between ticks; the tick itself is one compiled call over all services.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence

import numpy as np
import simpy

from . import fields as f
from .compiled import CompiledTopology, compile_topology
from .events import EventLog
from .faults import FaultInjector
from .hpa import hpa_process
from .kernel import EVENT_OOM, flow_tick
from .pods import PodController
from .rng import stream
from .scenario import Scenario
from .telemetry import Chunk, Frame, Sink
from .workload import rate_curves, sample_arrivals

CHUNK_CELLS = 1_500_000  # telemetry values buffered before sinks get them
MAX_KERNEL_EVENTS = 4096


class Simulation:
    """One run of a scenario. A run is a pure function of (scenario, seed, actions)."""

    def __init__(
        self,
        scenario: Scenario,
        *,
        exclude_faults: Sequence[int] = (),
        sinks: Sequence[Sink] = (),
    ) -> None:
        self.scenario = scenario
        self.dt = float(scenario.tick)
        self.n_ticks = int(math.ceil(scenario.duration / self.dt - 1e-9))
        self.topo: CompiledTopology = compile_topology(scenario)
        self.S = self.topo.base_services.copy()
        self.E = self.topo.base_edges.copy()
        self.env = simpy.Environment()
        self.events = EventLog()
        self.sinks = list(sinks)
        self.hpa_paused: dict[int, bool] = {}
        self.tick_index = 0
        self.interrupted = False
        self.on_tick: list[Callable[[Simulation], None]] = []

        workload = scenario.workload
        self.class_rates = rate_curves(workload, self.n_ticks, self.dt)
        self.class_arrivals = sample_arrivals(
            self.class_rates, workload.noise, self.dt, stream(scenario.seed, "workload")
        )
        n, m = self.topo.n_services, self.topo.n_edges
        self.class_entry = np.zeros((len(workload.classes), n))
        for i, cls in enumerate(workload.classes):
            self.class_entry[i, self.topo.service_index(cls.entry)] = 1.0

        self.chunk_size = max(16, min(3600, CHUNK_CELLS // max(n * f.N_SERVICE_METRICS, 1)))
        self._out = np.zeros((self.chunk_size, n, f.N_SERVICE_METRICS))
        self._eout = np.zeros((self.chunk_size, m, f.N_EDGE_METRICS))
        self._dist = np.zeros((self.chunk_size, n, 3))
        self._ext = np.zeros((self.chunk_size, n))
        self._times = np.zeros(self.chunk_size)
        self._kernel_events = np.zeros((MAX_KERNEL_EVENTS, 4))
        self._scratch = np.zeros((n, 5))
        self._chunk_start = 0
        self._chunk_events: list[dict] = []

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

    # -- the tick ------------------------------------------------------------------------
    def _fill_external(self, start: int) -> None:
        stop = min(start + self.chunk_size, self.n_ticks)
        rows = stop - start
        np.matmul(self.class_arrivals[start:stop], self.class_entry, out=self._ext[:rows])

    def _tick_loop(self):
        dt, topo, S, E = self.dt, self.topo, self.S, self.E
        order, src, dst = topo.order, topo.src, topo.dst
        in_ptr, in_idx, out_ptr, out_idx = topo.in_ptr, topo.in_idx, topo.out_ptr, topo.out_idx
        out, eout, dist, ext = self._out, self._eout, self._dist, self._ext
        kev, scratch, times = self._kernel_events, self._scratch, self._times
        timeout = self.env.timeout
        self._fill_external(0)
        for i in range(self.n_ticks):
            row = i - self._chunk_start
            if row == self.chunk_size:
                self._flush(i)
                self._fill_external(i)
                row = 0
            t = i * dt
            times[row] = t
            n_ev = flow_tick(
                t,
                dt,
                S,
                E,
                order,
                src,
                dst,
                in_ptr,
                in_idx,
                out_ptr,
                out_idx,
                ext[row],
                out[row],
                eout[row],
                dist[row],
                kev,
                scratch,
            )
            if n_ev:
                self._handle_kernel_events(n_ev)
            self.tick_index = i + 1
            for hook in self.on_tick:
                hook(self)
            yield timeout(dt)

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
        rows = stop_tick - self._chunk_start
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
        for sink in self.sinks:
            sink.on_chunk(chunk)

    # -- driving -------------------------------------------------------------------------
    def run(self, progress: Callable[[float], None] | None = None) -> None:
        """Simulate to the end (or until Ctrl-C), handing chunks to the sinks as it goes."""
        end = self.n_ticks * self.dt
        step = self.chunk_size * self.dt
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
        self._flush(self.tick_index)
        for sink in self.sinks:
            sink.close()

    def frames(self) -> Iterator[Frame]:
        """Stream the run tick by tick (for detectors and agents that act as it goes)."""
        names, edges = self.topo.names, self.topo.edges
        for i in range(self.n_ticks):
            self.env.run(until=(i + 1) * self.dt)
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
        self._flush(self.tick_index)
        for sink in self.sinks:
            sink.close()

    @property
    def now(self) -> float:
        return self.env.now

    def conservation(self) -> dict[str, np.ndarray]:
        """Cumulative request accounting per service; in flight is what is left in the system."""
        S = self.S
        return {
            "arrived": S[f.C_ARRIVED].copy(),
            "completed": S[f.C_COMPLETED].copy(),
            "failed": S[f.C_FAILED].copy(),
            "shed": S[f.C_SHED].copy(),
            "in_flight": S[f.X_QUEUE] + S[f.X_NSERV] + S[f.X_LOST],
        }
