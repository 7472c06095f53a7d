"""Where the flow fidelity is known to be off, and whether a scenario goes there.

A watcher on a flow run reads each service's operating point every few ticks and flags the
regimes the stress suite and its probes (README, "Two fidelities") found the flow model
weak in, naming the service and the reason:

- utilisation: the arrival intensity sits just below the pool's capacity (workers or CPU)
  for a while. The flow model waits as a stationary queue would at each tick's intensity;
  near saturation a queue takes minutes to settle, longer than the traffic holds still.
- pool tightness: the callers' pools hold back much of a service's queue (it spills into
  the callers' queues). The spill model is exact for a chain with one bottleneck, not for
  several callers sharing one.
- retry amplification: calls retried at a rate that amplifies the load much, or a knife
  edge: a burst can tip the service into a retry storm, at a random time in either
  fidelity (the flow model draws it from an escape-time estimate), so one run says little.

`check_envelope` runs the scenario in flow fidelity with the watcher (a few seconds for a
day of Online Boutique); `EnvelopeWatcher` rides along a run that happens anyway.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from twin import fields as f
from twin.flow.engine import Simulation
from twin.flow.stages import K_INTENSITY
from twin.scenario.schema import Scenario

UTILISATION_LIMIT = 0.95  # intensity / capacity at or above which (short of 1) ...
UTILISATION_SHARE = 0.10  # ... for this share of the run, the stationary wait is suspect
SPILL_LIMIT = 0.25  # chance an arrival finds the queue past the callers' cap ...
SPILL_SHARE = 0.10  # ... for this share of the run
AMPLIFICATION_LIMIT = 1.25  # attempts per call in the healthy state
ESCAPE_MIN_S, ESCAPE_RUNS = 30.0, 10.0  # a storm escape time in [30 s, 10 runs] is a knife edge
SAMPLE_EVERY = 5  # ticks between readings

REASONS = ("utilisation", "pool tightness", "retry amplification")


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
        return not self.concerns

    @property
    def services(self) -> set[str]:
        return {c.service for c in self.concerns}

    @property
    def warnings(self) -> list[str]:
        return [
            f"flow fidelity is known to be off here: {c} (firebreak fidelity compares it "
            "with the request fidelity; --fidelity auto runs request fidelity)"
            for c in self.concerns
        ]


class EnvelopeWatcher:
    """An on_tick hook for a flow Simulation: samples the operating point every few ticks."""

    def __init__(self, every: int = SAMPLE_EVERY) -> None:
        self.every = every
        self.samples = 0
        self._near = self._spill = self._amplified = None
        self._escape = None
        self._names: tuple[str, ...] = ()
        self._dst = self._src = None
        self._duration = 0.0

    def _start(self, sim: Simulation) -> None:
        n = sim.topo.n_services
        self._names = sim.topo.names
        self._src, self._dst = sim.topo.src, sim.topo.dst
        self._near = np.zeros(n)
        self._spill = np.zeros(n)
        self._amplified = np.zeros(n)
        self._escape = np.full(n, np.inf)
        self._duration = sim.end

    def __call__(self, sim: Simulation) -> None:
        if sim.tick_index % self.every:
            return
        if self._near is None:
            self._start(sim)
        S, E = sim.S, sim.E
        ready = S[f.P_READY]
        up = (ready > 0) & (S[f.F_OUTAGE] <= 0)
        hold = np.maximum(S[f.X_HOLD_EFF], 1e-9)
        per_req = S[f.P_CPU_PER_REQ] * S[f.F_CPU_FACTOR]
        cores = np.maximum(ready * S[f.P_CPU_LIMIT] - S[f.F_CPU_HOG] * ready, 0.02 * ready)
        with np.errstate(divide="ignore", invalid="ignore"):
            cpu = np.where(per_req > 0, cores / per_req, np.inf)
            capacity = np.minimum(ready * S[f.P_WORKERS] / hold, cpu)
            rho = np.where(up & (capacity > 0), sim._scratch[:, K_INTENSITY] / capacity, 0.0)
        self._near += up & (rho >= UTILISATION_LIMIT) & (rho < 1.0)
        self._spill += up & (S[f.X_SPILL_P] >= SPILL_LIMIT)
        p = E[f.E_P_ATTEMPT]
        retries = E[f.E_RETRIES]
        attempts = np.where(
            retries > 0, (1.0 - p ** (retries + 1.0)) / np.maximum(1.0 - p, 1e-12), 1.0
        )
        healthy = S[f.X_QUEUE, self._dst] <= 0.0
        amplified = np.zeros(len(self._names))
        np.maximum.at(amplified, self._dst, np.where(healthy, attempts, 1.0))
        self._amplified += amplified >= AMPLIFICATION_LIMIT
        rate = S[f.X_ESC_RATE]
        with np.errstate(divide="ignore"):
            escape = np.where(rate > 0, 1.0 / rate, np.inf)
        np.minimum(self._escape, escape, out=self._escape)
        self.samples += 1

    def envelope(self) -> Envelope:
        """The concerns over the run so far."""
        if not self.samples:
            return Envelope()
        concerns = []
        figures = {}
        for i, name in enumerate(self._names):
            near = self._near[i] / self.samples
            spill = self._spill[i] / self.samples
            amplified = self._amplified[i] / self.samples
            escape = float(self._escape[i])
            figures[name] = {
                "near_saturation_share": round(float(near), 4),
                "spill_share": round(float(spill), 4),
                "amplified_share": round(float(amplified), 4),
                "storm_escape_s": escape,
            }
            if near >= UTILISATION_SHARE:
                concerns.append(
                    Concern(
                        name,
                        "utilisation",
                        f"arrivals at {UTILISATION_LIMIT:.0%}-100% of its capacity for "
                        f"{near:.0%} of the run",
                    )
                )
            if spill >= SPILL_SHARE:
                concerns.append(
                    Concern(
                        name,
                        "pool tightness",
                        f"its callers' pools hold back its queue (an arrival finds it past "
                        f"their cap with probability >= {SPILL_LIMIT:g}) for {spill:.0%} "
                        "of the run",
                    )
                )
            if amplified >= UTILISATION_SHARE:
                concerns.append(
                    Concern(
                        name,
                        "retry amplification",
                        f"its callers retry it {AMPLIFICATION_LIMIT:g}x or more per call "
                        f"while it is healthy, for {amplified:.0%} of the run",
                    )
                )
            if ESCAPE_MIN_S <= escape <= ESCAPE_RUNS * self._duration:
                concerns.append(
                    Concern(
                        name,
                        "retry amplification",
                        f"a knife edge: a burst can tip it into a retry storm (mean time "
                        f"to the first about {escape:,.0f} s), at a random moment in either "
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
