"""Twin-verified counterfactuals: re-rank a method's top candidates by what fixing them fixes.

For each candidate the twin is forked at the incident's start, the candidate is restored to
its declared healthy state (every fault active on it stopped; a bad deploy rolled back),
the fork replays to the end of the fault window, and the candidate scores the share of the
violation that disappears against a do-nothing fork. This assumes the twin matches the
system and knows which faults sit on which service: an oracle for the repair, not an
observation, which is why the suite reports it apart from the methods.

The violation is the entry services' excess over their normal: error ratio above its
pre-incident median plus p99 latency above its median, in multiples of it, summed over the
window's ticks. When the entry barely moved (a fault its retries and fallbacks absorb),
every service's excess is used instead.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from twin.control.actions import Action, Rollback, StopFault
from twin.control.fork import Recorder
from twin.fields import M
from twin.flow.engine import Simulation
from twin.scenario.schema import BadDeployFault

NORMAL_FROM_S, NORMAL_UNTIL_S = 1800.0, 600.0  # normal: [at - 1800 s, at - 600 s)
NEGLIGIBLE = 0.01  # per-tick entry excess below which the whole system is judged instead
NO_EFFECT = 0.05  # a repair removing less than this share counts as none


def restore_actions(sim: Simulation, service: str) -> list[Action]:
    """Actions that return `service` to health in `sim` now (none if nothing is wrong)."""
    actions: list[Action] = []
    for index, fault in sorted(sim.faults.active.items()):
        if getattr(fault, "target", None) != service:
            continue
        # restoring the declared healthy state is immediate here (a what-if, not an operation)
        restore = Rollback(service, rollout_s=0.0) if isinstance(fault, BadDeployFault) else None
        actions.append(restore or StopFault(index))
    return list(dict.fromkeys(actions))


def _normal(values: np.ndarray, times: np.ndarray, at: float) -> tuple[np.ndarray, np.ndarray]:
    mask = (times >= at - NORMAL_FROM_S) & (times < at - NORMAL_UNTIL_S)
    if not mask.any():
        mask = times < at
    err = np.median(values[mask][:, :, M["error_ratio"]], axis=0)
    p99 = np.median(values[mask][:, :, M["latency_p99_ms"]], axis=0)
    return err, np.maximum(p99, 1e-3)


def excess(values: np.ndarray, base_err: np.ndarray, base_p99: np.ndarray) -> np.ndarray:
    """Per service: summed error-ratio excess + p99 excess (in multiples of normal)."""
    err = np.maximum(values[:, :, M["error_ratio"]] - base_err, 0.0)
    lat = np.maximum(values[:, :, M["latency_p99_ms"]] / base_p99 - 1.0, 0.0)
    return (err + lat).sum(axis=0)


def _fork_values(sim: Simulation, at: float, until: float, service: str | None) -> np.ndarray:
    recorder = Recorder(sim.topo.names, sim.topo.edges)
    child = sim.fork(at, sinks=[recorder])
    child.advance(min(at + sim.dt, child.end))  # faults due at `at` itself have started
    if service is not None:
        for action in restore_actions(child, service):
            child.act(action)
    child.advance(min(until, child.end))
    child.finish()
    return recorder.telemetry().values


def removal_shares(
    sim: Simulation,
    history: tuple[np.ndarray, np.ndarray],
    candidates: Sequence[str],
    at: float,
    until: float,
    entries: Sequence[str],
) -> dict[str, float]:
    """Share of the violation in [at, until) that restoring each candidate removes.

    `sim` is the finished run, `history` its (times, values) telemetry, candidates twin
    service names. A candidate with no fault on it forks into the do-nothing run: 0."""
    times, values = history
    base_err, base_p99 = _normal(values, times, at)
    idx = [sim.topo.names.index(e) for e in entries]
    nothing = excess(_fork_values(sim, at, until, None), base_err, base_p99)
    n_ticks = max(int(round((until - at) / sim.dt)), 1)
    use = idx if nothing[idx].sum() / n_ticks >= NEGLIGIBLE else list(range(len(nothing)))
    total = float(nothing[use].sum())
    out: dict[str, float] = {}
    for name in candidates:
        if not restore_actions_possible(sim, name):
            out[name] = 0.0
            continue
        after = excess(_fork_values(sim, at, until, name), base_err, base_p99)
        out[name] = float((total - after[use].sum()) / total) if total > 0 else 0.0
    return out


def restore_actions_possible(sim: Simulation, service: str) -> bool:
    """Whether any scenario fault sits on `service` (else a fork would change nothing)."""
    return service in sim.topo.names and any(
        getattr(f, "target", None) == service for f in sim.scenario.faults
    )


def rerank(ranking: Sequence[str], shares: dict[str, float]) -> list[str]:
    """The top candidates by removed share (ties and no-effect keep their order), then the rest."""
    top = [s for s in ranking if s in shares]
    keyed = sorted(
        enumerate(top),
        key=lambda p: (-(shares[p[1]] if shares[p[1]] >= NO_EFFECT else 0.0), p[0]),
    )
    head = [s for _, s in keyed]
    return head + [s for s in ranking if s not in shares]
