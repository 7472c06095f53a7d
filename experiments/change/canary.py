"""Canary rehearsal: a deploy plan played against a regressed version in the twin.

The twin has no second version of a service, but its failover mixture is one: a share of a
service's calls served by a second deployment running the service's *declared* profile,
mixed exactly per attempt for callers. So the rehearsal runs the new version as a bad
deploy of the primary from t = 0 and keeps the stable version on that second deployment
(in the same cluster: no latency penalty, sized like the service): all traffic starts on
stable, and a canary weight w is a failover share of 1 - w. Rolling back is a share of 1
again; full rollout is a share of 0 (the standby goes away). Nothing in the twin changes.

Limits of that mapping: the new version can only be worse than the declared one (the bad
deploy's factors are at least 1); the primary keeps its replicas while the stable side has
its own, so pods are not taken from stable as a canary grows (Argo Rollouts' default
without dynamic stable scaling); the stable side has no autoscaler.

The rollback criterion sees what a Prometheus query on the service sees: its p99 and error
ratio per interval, both versions together, against the p99 it had before the canary began.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from experiments.change.spec import DeployPlan, VersionProfile
from experiments.change.suite import score_slos
from twin.control.actions import Failover
from twin.fields import M
from twin.flow.engine import Simulation
from twin.run.slo import SloTracker
from twin.scenario.loader import check_scenario
from twin.scenario.schema import Scenario
from twin.scenario.topology import Topology

WARMUP_S = 600.0
BASELINE_S = 300.0  # the p99 the criterion compares with: the last minutes before the canary
TAIL_S = 300.0  # watched after the plan ends or rolls back
MONTH_S = 30 * 86_400.0


def rehearsal_scenario(
    base: Scenario,
    topology: Topology,
    version: VersionProfile,
    plan: DeployPlan,
    seed: int,
    big_bang: bool = False,
) -> Scenario:
    """The base's steady workload on `topology` with the new version deployed on the primary
    (from t = 0 for a canary; at the end of warm-up for a big-bang deploy)."""
    duration = WARMUP_S + sum(step.bake for step in plan.steps) + TAIL_S
    raw = base.model_dump(by_alias=True)
    workload = dict(raw["workload"], flash_crowds=[], calendar=[])
    fault = version.as_fault(WARMUP_S if big_bang else 0.0).model_dump(by_alias=True)
    raw.update(
        name=f"{base.name}:canary",
        topology=topology.model_dump(by_alias=True),
        duration=duration,
        seed=seed,
        workload=workload,
        faults=[fault],
        telemetry={"plot": False, "traces": False, "logs": False},
    )
    scenario = Scenario.model_validate(raw)
    check_scenario(scenario, scenario.name)
    return scenario


def _failover(service: str, weight: float, shift_s: float) -> Failover:
    return Failover(service=service, share=1.0 - weight, penalty_ms=0.0, shift_s=shift_s)


def _check(plan: DeployPlan, p99: float, err: float, baseline: float) -> list[str]:
    """The criteria this interval broke (empty: it passed)."""
    crit = plan.rollback
    broke = []
    if crit.max_p99_ratio is not None and p99 > crit.max_p99_ratio * baseline:
        broke.append(f"p99 {p99:.1f} ms > {crit.max_p99_ratio:g} x baseline {baseline:.1f} ms")
    if crit.max_p99_ms is not None and p99 > crit.max_p99_ms:
        broke.append(f"p99 {p99:.1f} ms > {crit.max_p99_ms:g} ms")
    if crit.max_error_ratio is not None and err > crit.max_error_ratio:
        broke.append(f"error ratio {err:.2%} > {crit.max_error_ratio:.2%}")
    return broke


def _threshold(plan: DeployPlan, baseline: float) -> float | None:
    """The p99 above which a check fails (the tighter of the two latency criteria)."""
    crit = plan.rollback
    limits = [crit.max_p99_ms] if crit.max_p99_ms is not None else []
    if crit.max_p99_ratio is not None:
        limits.append(crit.max_p99_ratio * baseline)
    return min(limits) if limits else None


def _interval_means(times: np.ndarray, p99: np.ndarray, err: np.ndarray, a: float, b: float):
    inside = (times >= a - 1e-9) & (times < b - 1e-9)
    answered = inside & (p99 > 0)
    p = float(p99[answered].mean()) if answered.any() else float("inf")
    e = float(err[inside].mean()) if inside.any() else 0.0
    return p, e


def rehearse_canary(
    base: Scenario,
    topology: Topology,
    service: str,
    plan: DeployPlan,
    version: VersionProfile,
    seed: int,
    label: str = "",
) -> dict:
    """Play `plan` with `version` on `service`; report whether and when it rolled back, at
    which weight, and what it cost in error budget (a sweep job: module level, picklable)."""
    scenario = rehearsal_scenario(base, topology, version, plan, seed)
    sim = Simulation(scenario, actions=[(0.0, _failover(service, 0.0, 0.0))])
    s_idx = sim.topo.names.index(service)
    slo = SloTracker(scenario, sim.topo.names)
    sim.sinks.append(slo)
    dt = sim.dt
    n = sim.n_ticks
    times, p99s, errs, weights = np.zeros(n), np.zeros(n), np.zeros(n), np.zeros(n)
    starts = WARMUP_S + np.concatenate([[0.0], np.cumsum([s.bake for s in plan.steps])])
    crit = plan.rollback
    step, weight, failures = 0, 0.0, 0
    next_check = WARMUP_S + crit.interval
    baseline = float("nan")
    checks: list[dict] = []
    rolled_back_at: float | None = None
    rollback_weight: float | None = None
    full_at: float | None = None
    for i, frame in enumerate(sim.frames()):
        now = frame.time + dt
        times[i] = frame.time
        p99s[i] = frame.values[s_idx, M["latency_p99_ms"]]
        errs[i] = frame.values[s_idx, M["error_ratio"]]
        weights[i] = weight
        if rolled_back_at is not None:
            continue
        if step < len(plan.steps) and now >= starts[step] - 1e-9:
            if step == 0:
                baseline, _ = _interval_means(times, p99s, errs, WARMUP_S - BASELINE_S, WARMUP_S)
            weight = plan.steps[step].weight
            sim.act(_failover(service, weight, plan.shift_s))
            if weight >= 1.0:
                full_at = now
            step += 1
        if WARMUP_S < now <= starts[-1] + 1e-9 and now >= next_check - 1e-9:
            p, e = _interval_means(times, p99s, errs, now - crit.interval, now)
            broke = _check(plan, p, e, baseline)
            checks.append(
                {
                    "t": now,
                    "weight": weight,
                    "p99_ms": p,
                    "error_ratio": e,
                    "failed": bool(broke),
                    "why": broke,
                }
            )
            failures += bool(broke)
            next_check += crit.interval
            if failures >= crit.failure_limit:
                rolled_back_at, rollback_weight = now, weight
                weight = 0.0
                sim.act(_failover(service, 0.0, crit.rollback_s))
    end = sim.tick_index * dt
    score = score_slos(slo, WARMUP_S, end, [])
    caught = rolled_back_at is not None and full_at is None
    return {
        "label": label or version.name,
        "seed": seed,
        "service": service,
        "baseline_p99_ms": baseline,
        "threshold_p99_ms": _threshold(plan, baseline),
        "rolled_back": rolled_back_at is not None,
        "caught_before_full": caught,
        "reached_full": full_at is not None,
        "rollback_at_s": rolled_back_at,
        "rollback_weight": rollback_weight,
        "time_to_rollback_s": None if rolled_back_at is None else rolled_back_at - WARMUP_S,
        "failed_checks": failures,
        "checks": checks,
        "burn": score["burn"],
        "budget_30d": score["burn"] * (end - WARMUP_S) / MONTH_S,
        "adherence": score["adherence"],
        "p99_by_minute": _per_minute(times, p99s),
        "weight_by_minute": _per_minute(times, weights),
        "step_starts_s": [float(t) for t in starts[:-1]],
    }


def big_bang(
    base: Scenario, topology: Topology, plan: DeployPlan, version: VersionProfile, seed: int
) -> dict:
    """The same version deployed to everyone at once, for the budget a plan saves."""
    scenario = rehearsal_scenario(base, topology, version, plan, seed, big_bang=True)
    sim = Simulation(scenario)
    slo = SloTracker(scenario, sim.topo.names)
    sim.sinks.append(slo)
    sim.run()
    end = sim.tick_index * sim.dt
    score = score_slos(slo, WARMUP_S, end, [])
    return {
        "seed": seed,
        "burn": score["burn"],
        "budget_30d": score["burn"] * (end - WARMUP_S) / MONTH_S,
        "adherence": score["adherence"],
    }


def _per_minute(times: np.ndarray, values: np.ndarray) -> list[float]:
    minute = (times // 60.0).astype(np.int64)
    n = int(minute.max()) + 1 if len(minute) else 0
    count = np.bincount(minute, minlength=n)
    return (np.bincount(minute, values, n) / np.maximum(count, 1)).tolist()


def summarise_rehearsals(runs: Sequence[dict], bangs: Sequence[dict]) -> dict:
    """Seeds of one rehearsal together: how often and how fast it was caught, the budget."""
    n = len(runs)
    caught = sum(r["caught_before_full"] for r in runs)
    rolled = [r for r in runs if r["rolled_back"]]
    times = [r["time_to_rollback_s"] for r in rolled]
    weights = [r["rollback_weight"] for r in rolled]
    burn = float(np.mean([r["budget_30d"] for r in runs])) if runs else 0.0
    bang = float(np.mean([b["budget_30d"] for b in bangs])) if bangs else float("nan")
    return {
        "label": runs[0]["label"] if runs else "",
        "seeds": n,
        "caught_before_full": caught,
        "rolled_back": len(rolled),
        "reached_full": sum(r["reached_full"] for r in runs),
        "mean_time_to_rollback_s": float(np.mean(times)) if times else None,
        "max_rollback_weight": float(max(weights)) if weights else None,
        "budget_30d": burn,
        "big_bang_budget_30d": bang,
    }
