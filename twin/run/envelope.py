"""Where the flow fidelity is known to be off, and whether a scenario goes there.

A watcher on a flow run reads each service's operating point every few ticks and flags the
regimes where the stress suite's probes (README, "Two fidelities") measured the flow model
off by more than the targets, naming the service and the reason:

- utilisation: arrivals at 95% or more of a worker pool's capacity while the load moves
  (a queue that close to saturation takes minutes to settle, longer than the traffic holds
  still: the per-tick stationary wait is 12-58% low), or at 85% or more of a CPU limit
  (the CFS quota's queue is then 19-73% off: its arrivals are throttled by the pool).
- pool tightness: a service whose queue is held back by the pools of several callers
  (the overflow's spill upstream is exact for one caller, 16% off for two).
- retry amplification: a knife edge: enough retries that a storm state exists, and a burst
  to reach it likely within the run but not at once. The storm starts at a random moment in
  either fidelity (the flow model draws it from an escape-time estimate whose distribution
  matches the request fidelity's), so one run of either says little: compare seeds.

Utilisation and pool tightness make `--fidelity auto` run the request fidelity; a knife
edge only warns. `check_envelope` runs the scenario in flow fidelity with the watcher (a
few seconds for a day of Online Boutique); `EnvelopeWatcher` rides along a run that
happens anyway.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from twin import fields as f
from twin.flow.engine import Simulation
from twin.scenario.schema import Scenario

POOL_LIMIT = 0.95  # intensity / worker capacity at or above which (short of 1) ...
CPU_LIMIT = 0.85  # ... or / CPU capacity ...
NEAR_SHARE, NEAR_S = 0.10, 300.0  # ... for this share of the run or this long, it is off
STEADY_CV = 0.01  # a pool near saturation under load steadier than this is fine
SPILL_LIMIT = 0.25  # chance an arrival finds the queue past the callers' cap (as long)
ESCAPE_MIN_S, ESCAPE_RUNS = 30.0, 10.0  # a storm escape time in [30 s, 10 runs] is a knife edge
SAMPLE_EVERY = 5  # ticks between readings

REASONS = ("utilisation", "pool tightness", "retry amplification")
SWITCHING = ("utilisation", "pool tightness")  # reasons that send --fidelity auto to request


@dataclass(frozen=True)
class Concern:
    """One service outside the envelope, and why."""

    service: str
    reason: str  # one of REASONS
    detail: str

    def __str__(self) -> str:
        return f"{self.service}: {self.reason}: {self.detail}"


@dataclass
class Envelope:
    """What a flow run saw: the concerns, and the figures behind them per service."""

    concerns: list[Concern] = field(default_factory=list)
    figures: dict[str, dict[str, float]] = field(default_factory=dict)

    @property
    def inside(self) -> bool:
        """No concern that makes the request fidelity the better judge."""
        return not [c for c in self.concerns if c.reason in SWITCHING]

    @property
    def services(self) -> set[str]:
        return {c.service for c in self.concerns}

    @property
    def warnings(self) -> list[str]:
        out = []
        for c in self.concerns:
            if c.reason in SWITCHING:
                out.append(
                    f"flow fidelity is known to be off here: {c} (firebreak fidelity compares "
                    "it with the request fidelity; --fidelity auto runs request fidelity)"
                )
            else:
                out.append(f"one run is one draw here: {c}")
        return out


class EnvelopeWatcher:
    """An on_tick hook for a flow Simulation: samples the operating point every few ticks."""

    def __init__(self, every: int = SAMPLE_EVERY) -> None:
        self.every = every
        self.samples = 0
        self._names: tuple[str, ...] = ()
        self._duration = 0.0

    def _start(self, sim: Simulation) -> None:
        n = sim.topo.n_services
        self._names = sim.topo.names
        self._duration = sim.end
        self._tick = sim.dt
        self._callers = np.zeros(n)
        np.add.at(self._callers, sim.topo.dst, sim.E[f.E_SYNC] > 0)
        self._pool_near = np.zeros(n)  # samples near a worker pool's capacity
        self._pool_sum = np.zeros(n)  # their load, and its square (is it moving?)
        self._pool_sq = np.zeros(n)
        self._cpu_near = np.zeros(n)
        self._spill = np.zeros(n)
        self._escape = np.full(n, np.inf)

    def __call__(self, sim: Simulation) -> None:
        if sim.tick_index % self.every:
            return
        if not self.samples:
            self._start(sim)
        S = sim.S
        ready = S[f.P_READY]
        up = (ready > 0) & (S[f.F_OUTAGE] <= 0)
        intensity = sim.arrival_intensity
        per_req = S[f.P_CPU_PER_REQ] * S[f.F_CPU_FACTOR]
        cores = np.maximum(ready * S[f.P_CPU_LIMIT] - S[f.F_CPU_HOG] * ready, 0.02 * ready)
        with np.errstate(divide="ignore", invalid="ignore"):
            workers = ready * S[f.P_WORKERS] / np.maximum(S[f.X_HOLD_EFF], 1e-9)
            cpu = np.where(per_req > 0, cores / per_req, np.inf)
            rho_pool = np.where(up & (workers < cpu), intensity / workers, 0.0)
            rho_cpu = np.where(up & (cpu <= workers), intensity / cpu, 0.0)
        near = (rho_pool >= POOL_LIMIT) & (rho_pool < 1.0)
        self._pool_near += near
        self._pool_sum += np.where(near, rho_pool, 0.0)
        self._pool_sq += np.where(near, rho_pool * rho_pool, 0.0)
        self._cpu_near += (rho_cpu >= CPU_LIMIT) & (rho_cpu < 1.0)
        self._spill += up & (S[f.X_SPILL_P] >= SPILL_LIMIT)
        rate = S[f.X_ESC_RATE]
        with np.errstate(divide="ignore"):
            np.minimum(self._escape, np.where(rate > 0, 1.0 / rate, np.inf), out=self._escape)
        self.samples += 1

    def envelope(self) -> Envelope:
        """The concerns over the run so far."""
        if not self.samples:
            return Envelope()
        concerns = []
        figures = {}
        step = self.every * self._tick  # seconds a sample stands for
        long = NEAR_S / step

        def lasting(count: float) -> bool:
            return count / self.samples >= NEAR_SHARE or count >= long

        for i, name in enumerate(self._names):
            near = self._pool_near[i]
            moving = 0.0
            if near > 0:
                mean = self._pool_sum[i] / near
                moving = float(np.sqrt(max(self._pool_sq[i] / near - mean * mean, 0.0)) / mean)
            pool = near / self.samples
            cpu = self._cpu_near[i] / self.samples
            spill = self._spill[i] / self.samples
            escape = float(self._escape[i])
            figures[name] = {
                "pool_near_share": round(float(pool), 4),
                "pool_load_cv": round(moving, 4),
                "cpu_near_share": round(float(cpu), 4),
                "spill_share": round(float(spill), 4),
                "callers": int(self._callers[i]),
                "storm_escape_s": escape,
            }
            if lasting(near) and moving >= STEADY_CV:
                concerns.append(
                    Concern(
                        name,
                        "utilisation",
                        f"arrivals at {POOL_LIMIT:.0%}-100% of its workers' capacity, and "
                        f"moving, for {pool:.0%} of the run",
                    )
                )
            if lasting(self._cpu_near[i]):
                concerns.append(
                    Concern(
                        name,
                        "utilisation",
                        f"arrivals at {CPU_LIMIT:.0%}-100% of its CPU limit's capacity for "
                        f"{cpu:.0%} of the run ({self._cpu_near[i] * step:,.0f} s)",
                    )
                )
            if lasting(self._spill[i]) and self._callers[i] >= 2:
                concerns.append(
                    Concern(
                        name,
                        "pool tightness",
                        f"{int(self._callers[i])} callers' pools hold back its queue (an "
                        f"arrival finds it past their cap with probability {SPILL_LIMIT:g} "
                        f"or more) for {spill:.0%} of the run",
                    )
                )
            if ESCAPE_MIN_S <= escape <= ESCAPE_RUNS * self._duration:
                concerns.append(
                    Concern(
                        name,
                        "retry amplification",
                        f"a knife edge: a burst can tip it into a retry storm (mean time to "
                        f"the first about {escape:,.0f} s), at a random moment in either "
                        "fidelity; compare several seeds",
                    )
                )
        return Envelope(concerns=concerns, figures=figures)


def check_envelope(scenario: Scenario) -> Envelope:
    """Run the scenario in flow fidelity (no telemetry kept) and report its envelope."""
    sim = Simulation(scenario)
    watcher = EnvelopeWatcher()
    sim.on_tick.append(watcher)
    sim.run()
    return watcher.envelope()
