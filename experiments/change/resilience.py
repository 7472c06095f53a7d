"""Resilience settings search: client settings for calls to one service that keep the system
out of metastable failure across the suite's stressful scenarios.

A small grid over the settings of every call into the service (timeout as a multiple of the
service's steady p99, retries, back-off, a breaker), each candidate run on the scenarios
that push that service (a flash crowd, latency, errors and a CPU hog on it, and steady
state) with paired seeds. Candidates rank by metastable failures, then runs whose
steady-state hypothesis failed, then mean error-budget burn, then entry p99: a grid is
enough here (the settings are few and discrete), and it shows its whole evidence.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from experiments.change.spec import ChangeError
from experiments.change.suite import (
    FLASH,
    STEADY,
    ValidationConfig,
    build_suite,
    case_scenario,
    run_case,
)
from experiments.sweep import Job, run_sweep
from twin.scenario.schema import Scenario
from twin.scenario.topology import Topology

TIMEOUT_P99_MULTIPLES = (3.0, 10.0, 30.0)
RETRIES = (0, 1, 3)
BACKOFFS_MS = (0.0, 100.0)
BREAKER = {"failure_threshold": 0.5, "window_s": 10.0, "cooldown_s": 30.0, "min_calls": 20.0}
STRESS_KINDS = ("latency", "errors", "cpu_hog")


def candidates(p99_ms: float) -> list[dict]:
    """The grid: each candidate is one client setting for every call into the service."""
    out = []
    timeouts = sorted({max(round(k * p99_ms), 1) for k in TIMEOUT_P99_MULTIPLES})
    for timeout, retries, backoff, breaker in itertools.product(
        timeouts, RETRIES, BACKOFFS_MS, (False, True)
    ):
        if retries == 0 and backoff > 0:
            continue  # back-off without retries is the same candidate
        out.append(
            {
                "timeout_ms": float(timeout),
                "retries": {"max": retries, "backoff_ms": backoff},
                "breaker": dict(BREAKER) if breaker else None,
            }
        )
    return out


def describe(setting: Mapping[str, Any]) -> str:
    r = setting["retries"]
    text = f"timeout {setting['timeout_ms']:g} ms, {r['max']} retr{'y' if r['max'] == 1 else 'ies'}"
    if r["max"]:
        text += f" after {r['backoff_ms']:g} ms"
    return text + (", breaker" if setting.get("breaker") else ", no breaker")


def with_setting(topo: Topology, service: str, setting: Mapping[str, Any] | None) -> Topology:
    """`topo` with every call into `service` set to `setting` (None: unchanged)."""
    if setting is None:
        return topo
    raw = topo.model_dump(by_alias=True)
    for call in raw["calls"]:
        if call["to"] == service:
            call.update(
                timeout_ms=setting["timeout_ms"],
                retries=dict(setting["retries"]),
                breaker=dict(setting["breaker"]) if setting["breaker"] else None,
            )
    return Topology.model_validate(raw)


def current_setting(topo: Topology, service: str) -> dict:
    """The settings of the first call into `service` (what the grid is compared against)."""
    call = next(c for c in topo.calls if c.target == service)
    retries = call.retries or topo.defaults.retries
    breaker = call.breaker or topo.defaults.breaker
    return {
        "timeout_ms": call.timeout_ms or topo.defaults.timeout_ms,
        "retries": {"max": retries.max, "backoff_ms": retries.backoff_ms},
        "breaker": breaker.model_dump() if breaker else None,
    }


def _rank(rows: Sequence[dict]) -> list[dict]:
    return sorted(
        rows,
        key=lambda r: (r["metastable"], r["failed"], round(r["burn"], 6), r["p99_ms"]),
    )


def search_resilience(
    base: Scenario,
    topology: Topology,
    service: str,
    config: ValidationConfig,
    extra_faults: Sequence[Mapping[str, Any]] = (),
    steady_p99_ms: Mapping[str, float] | None = None,
) -> dict:
    """Grid-search the calls into `service` on `topology`; rank; recommend the best."""
    if service not in topology.services:
        raise ChangeError(f"--search: unknown service {service!r}")
    if not any(c.target == service for c in topology.calls):
        raise ChangeError(f"--search: nothing calls {service!r}, so it has no client settings")
    p99 = (steady_p99_ms or {}).get(service) or 10.0
    timing = config.timing
    entries = [c.entry for c in base.workload.classes]
    suite = build_suite("standard", topology, entries, [service], timing)
    cases = [c for c in suite if c.name in (STEADY, FLASH)]
    cases += [c for c in suite if c.target == service and c.kind in STRESS_KINDS]
    current = current_setting(topology, service)
    references = [current]
    if any(c.target == service for c in base.topology.calls):
        before = current_setting(base.topology, service)
        if before != current:
            references.append(before)
    grid = references + [c for c in candidates(p99) if c not in references]
    jobs = []
    for i, setting in enumerate(grid):
        topo = with_setting(topology, service, None if i == 0 else setting)
        for case in cases:
            for k in range(config.search_seeds):
                scenario = case_scenario(base, topo, case, base.seed + k, timing, extra_faults)
                jobs.append(
                    Job(
                        run_case,
                        {
                            "scenario": scenario,
                            "timing": timing,
                            "case": case.name,
                            "system": str(i),
                            "steady": case.kind == "steady",
                        },
                        label=f"candidate {i} {case.name} seed {base.seed + k}",
                    )
                )
    runs = run_sweep(jobs, config.backend, config.jobs_n, config.progress, desc="search")
    rows = []
    for i, setting in enumerate(grid):
        mine = [r for r in runs if r["system"] == str(i)]
        rows.append(
            {
                "candidate": i,
                "current": i == 0,
                "base": len(references) == 2 and i == 1,
                "setting": setting,
                "label": describe(setting),
                "runs": len(mine),
                "metastable": sum(r["metastable"] for r in mine),
                "failed": sum(not r["held"] for r in mine),
                "burn": float(np.mean([r["burn"] for r in mine])),
                "p99_ms": float(np.nanmean([r["p99_ms"] for r in mine])),
                "failing_cases": sorted({r["case"] for r in mine if not r["held"]}),
            }
        )
    ranked = _rank(rows)
    return {
        "service": service,
        "service_p99_ms": p99,
        "cases": [c.name for c in cases],
        "seeds": config.search_seeds,
        "ranked": ranked,
        "best": ranked[0],
        "current": rows[0],
        "base_setting": rows[1] if len(references) == 2 else None,
    }
