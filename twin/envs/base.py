"""What both environments share: one simulation per episode, stepped a decision at a time,
with the SLO accounted per tick exactly as the twin's `SloTracker` does.

The env reads each decision interval's telemetry straight from the engine's current chunk
(the rows it has just written), so a step allocates little: an episode must fit in one
chunk, which every shipped topology does for episodes up to an hour at a 1 s tick.

Safety is injectable: an `ActionGate` decides whether an action may be applied (and may
clamp it); the twin's default only applies basic validity, and `agents.rl` wires the
guardrails in. The gate reads a `GateView` (the live state: replicas, readiness, health),
which matches `agents.contracts.SystemView` without importing it.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Any, Protocol

import gymnasium as gym
import numpy as np

from twin.control.actions import Action, StopFault
from twin.envs import fast
from twin.envs.distribution import EnvConfigError, topology
from twin.envs.encoding import (
    AgentMemory,
    ObservationEncoder,
    RobustZScorer,
    Scorer,
    ServiceStatics,
)
from twin.fields import M
from twin.flow.compiled import CompiledTopology, compile_topology
from twin.flow.engine import Simulation
from twin.flow.inputs import prepare_inputs
from twin.scenario.schema import Scenario
from twin.scenario.topology import Topology

log = logging.getLogger(__name__)

GRACE_S = 60.0  # as detectors.anomaly.evaluation: a fault's effects may outlive it by this much
STABLE_S = 300.0  # as the rehearsal's MTTR: restored once this long of good SLO windows
_THR, _ERR, _SHED = M["throughput"], M["error_rate"], M["shed_rate"]
_DES, _READY = M["desired_replicas"], M["ready_replicas"]


class TwinFailure(Exception):
    """The simulation raised or its state went non-finite during a step (a twin defect):
    the env ends the episode there and reports a reproducer instead of crashing training."""


class ActionGate(Protocol):
    """Decides whether an action may run now; returns what to apply (maybe clamped) or None."""

    def reset(self) -> None: ...

    def check(self, action: Action, view: GateView) -> Action | None: ...

    def permits(self, actions: list[Action], view: GateView) -> list[bool]:
        """Whether `check` would let each through (masks ask this every step)."""
        ...

    def record(self, action: Action, view: GateView) -> None: ...


def gate_permits(gate: ActionGate, actions: list[Action], view: GateView) -> list[bool]:
    """`gate.permits` where the gate has it (the batch form), else one `check` each: a
    gate written before `permits` existed still masks correctly."""
    permits = getattr(gate, "permits", None)
    if permits is not None:
        return list(permits(actions, view))
    return [gate.check(a, view) is not None for a in actions]


class ValidityGate:
    """The twin's default gate: every valid action passes (the env checks validity)."""

    def reset(self) -> None:
        pass

    def check(self, action: Action, view: GateView) -> Action | None:
        return action

    def permits(self, actions: list[Action], view: GateView) -> list[bool]:
        return [True] * len(actions)

    def record(self, action: Action, view: GateView) -> None:
        pass


class GateView:
    """The live state a gate may read, from the last tick's telemetry (a SystemView)."""

    def __init__(self, names: tuple[str, ...]) -> None:
        self.names = names
        self._index = {n: i for i, n in enumerate(names)}
        self.last = np.zeros((len(names), len(M)))
        self.time = 0.0
        self.health_value = 1.0

    @property
    def now(self) -> float:
        return self.time

    def services(self) -> tuple[str, ...]:
        return self.names

    def replicas(self, service: str) -> int:
        return int(round(self.last[self._index[service], _DES]))

    def ready(self, service: str) -> int:
        return int(round(self.last[self._index[service], _READY]))

    def health(self) -> float:
        return self.health_value


def window_mttr(
    good: np.ndarray, width: float, start: float, end: float, stable_s: float = STABLE_S
) -> tuple[float | None, bool]:
    """Fault start → SLO restored (the rehearsal's MTTR): the end of the last violating
    window before `stable_s` of good windows in a row. (None, False) when no window failed
    while the fault mattered; censored (True) when it never recovered before the end."""
    first = int(start // width)
    last = min(int(math.ceil((end + GRACE_S) / width)), len(good))
    if first >= last or good[first:last].all():
        return None, False
    stable = max(1, int(math.ceil(stable_s / width)))
    i = first
    while i < len(good):
        if not good[i]:
            i += 1
            continue
        run = good[i : i + stable]
        if len(run) == stable and run.all():
            return max(i * width - start, 0.0), False
        if len(run) < stable and run.all():
            break
        i += 1
    return len(good) * width - start, True


@dataclass
class StepSlo:
    """One decision interval's requests at the entries, as the SLO counts them."""

    total: float = 0.0
    failed: float = 0.0  # errors and shed (dropped at the edge included)
    served: float = 0.0
    slow: float = 0.0  # served slower than the latency objective

    @property
    def bad_share(self) -> float:
        return 0.0 if self.total <= 0 else min((self.failed + self.slow) / self.total, 1.0)


class TwinEnv(gym.Env):
    """Base: episodes drawn from a distribution, one decision every `decision_s`."""

    metadata = {"render_modes": []}  # noqa: RUF012 - gymnasium's documented class attribute

    def __init__(
        self,
        distribution: Any,
        decision_s: float,
        scorer: Scorer | None,
        gate: ActionGate | None,
        layout: str,
        top_k: int,
    ) -> None:
        super().__init__()
        self.distribution = distribution
        self.decision_s = float(decision_s)
        tick = float(distribution.tick_s)
        if (
            self.decision_s <= 0
            or abs(self.decision_s / tick - round(self.decision_s / tick)) > 1e-9
        ):
            raise EnvConfigError(
                f"decision_s: must be a positive multiple of the tick ({tick:g} s), "
                f"got {decision_s!r}"
            )
        if distribution.episode_s < 2 * self.decision_s:
            raise EnvConfigError("episode_s: must span at least two decisions")
        self.scorer = scorer if scorer is not None else RobustZScorer()
        self.gate = gate if gate is not None else ValidityGate()
        n = None
        if layout == "services":
            if len(distribution.topologies) != 1:
                raise EnvConfigError(
                    "observation 'services' needs exactly one topology (got "
                    f"{', '.join(distribution.topologies)}); use 'ranked' across topologies"
                )
            n = len(topology(distribution.topologies[0]).services)
        try:
            self.encoder = ObservationEncoder(layout, top_k, n)
        except ValueError as exc:
            raise EnvConfigError(str(exc)) from None
        self.sim: Simulation | None = None
        # compiled topologies by (topology, tick, entries): episodes redraw the traffic and
        # the fault, never the topology (frozen, loaded once), so its arrays are built once
        self._compiled: dict[tuple, tuple[Topology, CompiledTopology]] = {}

    # -- episode -----------------------------------------------------------------------
    def _start(self, scenario: Scenario) -> None:
        sim = Simulation(scenario, inputs=prepare_inputs(scenario, self._compiled_of(scenario)))
        if sim.n_ticks > sim.chunk_size:
            raise EnvConfigError(
                f"episode_s: {scenario.duration:g} s at a {scenario.tick:g} s tick is "
                f"{sim.n_ticks} ticks, more than the engine's chunk ({sim.chunk_size}) for "
                f"{sim.topo.n_services} services; shorten it or coarsen the tick"
            )
        self.sim = sim
        self.scenario = scenario
        self.statics = ServiceStatics.of(scenario)
        self.memory = AgentMemory(self.statics.n)
        self.view = GateView(self.statics.names)
        self.gate.reset()
        warmup = max(1, int(round(60.0 / self.decision_s)))
        self.encoder.reset(self.statics, self.scorer, warmup)
        slo = scenario.slos[0]
        self._slo = slo
        self._thr_s = slo.latency_ms / 1000.0
        self._entries = np.array(self.statics.entries, dtype=np.int64)
        n_windows = int(math.ceil(scenario.duration / slo.window_s - 1e-9))
        self._win = np.zeros((4, n_windows))  # total, failed, served, slow
        self._slo_sums = np.zeros(4)
        self._mean = np.zeros((self.statics.n, len(M)))
        self._steps = int(round(scenario.duration / self.decision_s))
        self._step_i = 0
        self.slo = StepSlo()
        # nonfinite: telemetry values the twin produced as NaN/inf, left out (a twin bug)
        self.stats = {"actions": 0, "refused": 0, "nonfinite": 0, "twin_failures": 0}

    def _compiled_of(self, scenario: Scenario) -> CompiledTopology:
        """The scenario's compiled topology, built the first time this env meets its
        topology, tick and entry services (the same object is kept: an id is never reused
        while its topology is held here)."""
        entries = tuple(c.entry for c in scenario.workload.classes)
        key = (id(scenario.topology), float(scenario.tick), entries)
        hit = self._compiled.get(key)
        if hit is None or hit[0] is not scenario.topology:
            hit = self._compiled[key] = (scenario.topology, compile_topology(scenario))
        return hit[1]

    def _check_running(self) -> None:
        if self.sim is None:
            raise RuntimeError("call reset() before step()")
        if self._step_i >= self._steps:
            raise RuntimeError("the episode is over (truncated): call reset()")

    def _advance(self) -> np.ndarray:
        """Simulate one decision interval; account the SLO; return the interval's rows."""
        sim = self.sim
        r0 = sim.tick_index
        try:
            sim.advance(min(sim.now + self.decision_s, sim.end))
        except (ArithmeticError, ValueError) as exc:
            raise TwinFailure(f"the simulation raised {exc!r}") from exc
        if not np.isfinite(sim.S).all():
            raise TwinFailure("the simulation's state went non-finite")
        r1 = sim.tick_index
        block = sim._out[r0:r1]  # the engine's current chunk: this episode never wraps it
        self._node_block = sim._nout[r0:r1] if sim.cluster is not None else None
        self._account(block, sim._dist[r0:r1], r0)
        self.view.last = block[-1]
        self.view.time = sim.now
        self._step_i += 1
        return block

    def _account(self, block: np.ndarray, dist: np.ndarray, r0: int) -> None:
        out = self._slo_sums
        self.stats["nonfinite"] += fast.slo_account(
            block,
            dist,
            self._entries,
            self._thr_s,
            float(self.scenario.tick),
            r0,
            float(self._slo.window_s),
            self._win,
            out,
        )
        s = self.slo
        s.total, s.failed, s.served, s.slow = (
            float(out[0]),
            float(out[1]),
            float(out[2]),
            float(out[3]),
        )

    def _violated(self, total: float, failed: float, served: float, slow: float) -> bool:
        avail = 1.0 - failed / total if total > 0 else 1.0
        fast = 1.0 - slow / served if served > 0 else 1.0
        return avail < self._slo.availability or fast < self._slo.percentile / 100.0

    def good_windows(self) -> np.ndarray:
        """Per SLO window so far: did the objective hold?"""
        done = int(math.ceil(self.sim.now / self._slo.window_s - 1e-9))
        total, failed, served, slow = self._win[:, :done]
        with np.errstate(divide="ignore", invalid="ignore"):
            avail = np.where(total > 0, 1.0 - failed / total, 1.0)
            fast = np.where(served > 0, 1.0 - slow / served, 1.0)
        return (avail >= self._slo.availability) & (fast >= self._slo.percentile / 100.0)

    def interval_mean(self, block: np.ndarray) -> np.ndarray:
        """The interval's mean telemetry (a buffer reused across steps)."""
        self.stats["nonfinite"] += fast.interval_mean(block, self._mean)
        return self._mean

    def _fail(self, exc: TwinFailure, cost_rate: float) -> tuple[float, dict[str, Any]]:
        """End the episode on a twin failure: the remaining decisions are charged at
        `cost_rate` each (so breaking the twin never pays) and a reproducer is reported."""
        remaining = max(self._steps - self._step_i, 0)
        self._step_i = self._steps
        repro = {
            "error": str(exc),
            "topology": self.scenario.topology.name,
            "scenario_seed": self.scenario.seed,
            "tick": self.scenario.tick,
            "workload": self.scenario.workload.model_dump(mode="json"),
            "faults": [f.model_dump(mode="json") for f in self.scenario.faults],
            "at": self.sim.now,
            "actions": [(t, a.to_dict()) for t, a in self.sim.action_log],
        }
        self.stats["twin_failures"] += 1
        log.warning("twin failure, episode ended: %s", repro)
        return -cost_rate * (remaining + 1), repro

    def _stop_faults(self) -> None:
        """A human fixed the cause: every active fault ends (as a human's remedy would)."""
        for index in sorted(self.sim.faults.active):
            self.sim.act(StopFault(index))

    def _apply(self, action: Action, targets: tuple[int, ...]) -> tuple[Action | None, Any]:
        """Pass the gate, apply, record; (applied action or None if refused, its profile)."""
        allowed = self.gate.check(action, self.view)
        if allowed is None:
            self.stats["refused"] += 1
            return None, None
        profile = allowed.profile(self.sim)
        self.sim.act(allowed)
        self.gate.record(allowed, self.view)
        self.memory.note(targets, self.sim.now)
        self.stats["actions"] += 1
        return allowed, profile

    def render(self) -> None:
        return None
