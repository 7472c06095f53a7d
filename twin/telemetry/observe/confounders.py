"""Benign confounders drawn from the scenario's seed: things that move a production system's
metrics every day without hurting any SLO, so an anomaly detector or an RCA method that
blames every change is caught out.

- an unrelated deploy: a rollout of a healthy version (new pods, their counters from zero,
  a JIT and cache warm-up: latency up to +25% and CPU up to +50%, fading over minutes);
- a cron or batch job: extra CPU (a tenth to a third of a core) and memory for 5-30 min;
- a noisy neighbour: CPU steal on the service's node, latency +3-10% for 10-40 min;
- slow drift: memory and CPU creeping up a few percent a day (caches, fragmentation).

They touch only what is observed, never the simulated system: labels.json knows nothing
of them, and telemetry.json lists them for whoever studies a detector's false alarms.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from twin.scenario.schema import Scenario

DAY_S = 86400.0
WARMUP_S = 120.0  # time constant of a rollout's warm-up


@dataclass(frozen=True)
class Confounder:
    """One benign happening on one service."""

    kind: str  # deploy, batch_job, noisy_neighbour
    service: str
    start: float
    duration: float
    size: float  # deploy: latency lift at start; batch: cores; neighbour: latency lift

    def as_dict(self) -> dict:
        return {k: round(v, 3) if isinstance(v, float) else v for k, v in asdict(self).items()}


def draw(scenario: Scenario, names: tuple[str, ...], rng: np.random.Generator) -> list[Confounder]:
    """The run's confounders: Poisson numbers of each kind over its duration."""
    conf = scenario.telemetry.production.confounders
    days = scenario.duration / DAY_S
    out: list[Confounder] = []
    kinds = (
        ("deploy", conf.deploys_per_day, (600.0, 600.0), (0.1, 0.25)),
        ("batch_job", conf.batch_jobs_per_day, (300.0, 1800.0), (0.1, 0.33)),
        ("noisy_neighbour", conf.noisy_neighbours_per_day, (600.0, 2400.0), (0.03, 0.1)),
    )
    for kind, per_day, (d_lo, d_hi), (s_lo, s_hi) in kinds:
        for _ in range(int(rng.poisson(per_day * days))):
            out.append(
                Confounder(
                    kind=kind,
                    service=names[int(rng.integers(len(names)))],
                    start=float(rng.uniform(0.0, scenario.duration)),
                    duration=float(rng.uniform(d_lo, d_hi)),
                    size=float(rng.uniform(s_lo, s_hi)),
                )
            )
    return sorted(out, key=lambda c: (c.start, c.service, c.kind))


class Effects:
    """Per-tick multipliers and additions the confounders and drift apply to a service."""

    def __init__(
        self,
        scenario: Scenario,
        names: tuple[str, ...],
        events: list[Confounder],
        rng: np.random.Generator,
    ):
        self.index = {n: i for i, n in enumerate(names)}
        self.events = events
        self.n = len(names)
        drift = scenario.telemetry.production.confounders.drift_per_day
        self.drift = drift * rng.uniform(0.5, 1.5, self.n)  # each service drifts its own way

    def at(self, times: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(latency factor, CPU factor, extra cores, memory factor), each T × services."""
        t = times[:, None]
        lat = np.ones((len(times), self.n))
        cpu_f = 1.0 + self.drift[None, :] * t / DAY_S
        mem = 1.0 + self.drift[None, :] * t / DAY_S
        cores = np.zeros((len(times), self.n))
        lo, hi = float(times[0]), float(times[-1])
        for c in self.events:
            if c.start > hi or c.start + c.duration < lo:
                continue
            s = self.index[c.service]
            inside = (times >= c.start) & (times < c.start + c.duration)
            if c.kind == "deploy":
                fade = np.where(inside, np.exp(-(times - c.start) / WARMUP_S), 0.0)
                lat[:, s] *= 1.0 + c.size * fade
                cpu_f[:, s] *= 1.0 + 2.0 * c.size * fade
            elif c.kind == "batch_job":
                cores[:, s] += np.where(inside, c.size, 0.0)
                mem[:, s] *= np.where(inside, 1.0 + c.size / 2.0, 1.0)
            else:
                lat[:, s] *= np.where(inside, 1.0 + c.size, 1.0)
                cpu_f[:, s] *= np.where(inside, 1.0 + c.size, 1.0)
        return lat, cpu_f, cores, mem

    def rollouts(self, lo: float, hi: float) -> list[tuple[float, int]]:
        """(time, service index) of the deploys starting in [lo, hi)."""
        return [
            (c.start, self.index[c.service])
            for c in self.events
            if c.kind == "deploy" and lo <= c.start < hi
        ]
