"""The impact study: traditional vs AI-driven operations, paired, over a suite of scenarios.

Every (family, seed) of `experiments.impact.suite` is rehearsed twice, once per operations
mode, on the same scenario and seed: the same traffic, the same faults at the same times,
the same simulated engineer's dice. Differences between the two rows of a pair are the
operations' doing. One job of the sweep (`experiments.sweep`) is one (family, seed, mode)
rehearsal into a temporary (or kept) run directory; it returns one row of the tidy table:
identifiers, every figure of the stack block, the run's request counts and costs, and a few
figures the study adds from the same run (`StudyController`):

- `slo_episodes`: customer-facing incidents: maximal runs of SLO-violating windows, two
  runs closer than `rehearsal_score.STABLE_S` of good windows counting as one (the rule by
  which MTTR calls an SLO restored). Unlike the stack's `incidents` (correlated alert
  groups, which depend on the detector), it is measured the same way for both modes.
- `engineer_min`: expected on-call minutes of work: each diagnosis the engineer made (first
  or repeated) and each approval reviewed, at the on-call profile's mean durations
  (lognormal: median·exp(σ²/2)); waiting for an ack is not counted as work.
- `mttr_by_fault`, `faults_json`, `action_kinds`: what the claims' pairing and explanations
  need (per-fault restore times, fault kinds and lengths, actions by kind).

`experiments.impact.claims` turns the table into the claims table; `impact_outputs` writes
the files. Results are identical whichever sweep backend ran them (no wall times in rows).
"""

from __future__ import annotations

import json
import math
import tempfile
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from experiments.impact import remediable
from experiments.impact import suite as classic
from experiments.observed import TelemetryChoice, check_telemetry
from experiments.rehearsal.run import RehearsalController, StackSettings, loop_scenario
from experiments.rehearsal.score import STABLE_S, slo_good_windows
from experiments.sweep import BACKENDS, Job, run_sweep
from twin.control.faults import fault_label
from twin.errors import FirebreakError
from twin.run.runner import run_scenario
from twin.run.slo import SloTracker
from twin.scenario.schema import Scenario

MODES = ("traditional", "ai")
# the scenario suites: "classic" (faults run their scheduled length) and "remediable"
# (faults last until a remedy ends them); each a family registry and a builder
SUITES = {
    "classic": (classic.FAMILIES, classic.build),
    "remediable": (remediable.FAMILIES, remediable.build),
}
FAMILIES = classic.FAMILIES  # the default suite's families (kept for callers)


def suite_parts(suite: str):
    """(families, build) of a suite, or ImpactStudyError naming the choices."""
    if suite not in SUITES:
        raise ImpactStudyError(f"--suite: expected one of {', '.join(SUITES)}, got {suite!r}")
    return SUITES[suite]


ID_COLUMNS = ("family", "topology", "seed", "mode", "scenario_seed")
SUMMARY_FIELDS = ("sim_seconds", "standby_replica_hours", "features_lost", "feature_loss_hours")


class ImpactStudyError(FirebreakError):
    """The study cannot run as asked (unknown family, bad backend, no seeds)."""


def slo_episodes(good: np.ndarray, width: float, stable_s: float = STABLE_S) -> int:
    """Runs of bad windows; a gap of fewer than `stable_s` of good windows joins two runs."""
    bad = np.flatnonzero(~good)
    if bad.size == 0:
        return 0
    stable = max(1, int(math.ceil(stable_s / width)))
    gaps = np.diff(bad) - 1
    return 1 + int(np.sum(gaps >= stable))


def _lognormal_mean(median: float, sigma: float) -> float:
    return median * math.exp(sigma * sigma / 2.0)


class StudyController(RehearsalController):
    """The rehearsal's controller, also keeping what the study measures beyond the stack."""

    extra: dict[str, Any]

    def finish(self, truth: dict, slo: SloTracker, summary: dict) -> dict[str, Any]:
        stack = super().finish(truth, slo, summary)
        op = self.operator
        good, width = slo_good_windows(slo)
        p = self.settings.oncall
        by_incident = Counter(i["incident"] for i in op.identifications if i["by"] == "human")
        first = len(by_incident)
        again = sum(by_incident.values()) - first
        approvals = sum(d["level"] == "approval" for d in op.decisions)
        minutes = (
            first * _lognormal_mean(p.diagnosis_median_s, p.diagnosis_sigma)
            + again * _lognormal_mean(p.rediagnosis_median_s, p.diagnosis_sigma)
            + approvals * _lognormal_mean(p.approval_median_s, p.approval_sigma)
        ) / 60.0
        kinds = Counter(
            f"{a['by']}:{a['action']['action']}" for a in op.actions if "error" not in a
        )
        self.extra = {
            "slo_episodes": slo_episodes(good, width),
            "human_diagnoses": int(sum(by_incident.values())),
            "approvals_asked": int(approvals),
            "engineer_min": round(minutes, 2),
            "action_kinds": json.dumps(dict(sorted(kinds.items()))),
        }
        if getattr(op, "memory", None) is not None:  # incident memory's cases and verdicts
            self.extra["memory_records"] = json.dumps(op.memory.records())
        return stack


def rehearse_row(scenario: Scenario, mode: str, out: Path, settings: StackSettings) -> dict:
    """One rehearsal (as `rehearsal.rehearse`) and its row's figures."""
    out.mkdir(parents=True, exist_ok=True)
    controller = StudyController(scenario, mode, out, settings)
    result = run_scenario(scenario, out, controller=controller)
    summary = result.summary
    stack = dict(summary["stacks"][mode])
    per_fault = stack.pop("per_fault", {})
    row: dict[str, Any] = dict(stack)
    row["mttr_by_fault"] = json.dumps(
        {r["fault"]: [r["mttr_s"], bool(r["censored"])] for r in per_fault.get("mttr", [])}
    )
    row["per_fault"] = json.dumps(per_fault, sort_keys=True, default=str)
    for key in ("arrived", "completed", "failed", "shed"):
        row[f"requests_{key}"] = summary["requests"][key]
    for key in SUMMARY_FIELDS:
        row[key] = summary[key]
    row.update(controller.extra)
    return row


def _faults_json(scenario: Scenario) -> str:
    return json.dumps(
        [
            {
                "id": fault_label(i, f),
                "kind": f.kind,
                "target": f.target,
                "start": f.start,
                "duration": f.duration if f.duration is not None else scenario.duration - f.start,
            }
            for i, f in enumerate(scenario.faults)
        ]
    )


def run_job(
    family: str,
    seed: int,
    mode: str,
    time_scale: float = 1.0,
    keep_dir: str | None = None,
    suite: str = "classic",
    telemetry: TelemetryChoice = "ideal",
) -> dict[str, Any]:
    """One job of the sweep: the (family, seed) scenario under one mode, as a table row;
    `telemetry` is what the operator sees (experiments.rehearsal.run.StackSettings)."""
    families, build = suite_parts(suite)
    scenario = loop_scenario(build(family, seed, time_scale), telemetry)
    settings = StackSettings(telemetry=telemetry)
    try:
        if keep_dir is not None:
            out = Path(keep_dir) / family / f"seed-{seed}" / mode
            row = rehearse_row(scenario, mode, out, settings)
        else:
            with tempfile.TemporaryDirectory(prefix="impact-") as tmp:
                row = rehearse_row(scenario, mode, Path(tmp), settings)
        row["error"] = None
    except Exception as exc:  # a twin or operator failure is a finding, not a lost study
        row = {"error": f"{type(exc).__name__}: {exc}"}
    ids = {
        "family": family,
        "topology": scenario.topology.name,
        "suite": suite,
        "fault_kind": getattr(families[family], "kind", None),
        "remediable": getattr(families[family], "remediable", None),
        "seed": seed,
        "mode": mode,
        "telemetry": telemetry,
        "scenario_seed": scenario.seed,
        "duration_s": scenario.duration,
        "n_faults": len(scenario.faults),
        "faults_json": _faults_json(scenario),
    }
    return {**ids, **row}


def estimate_job_s(
    family: str, mode: str, time_scale: float = 1.0, suite: str = "classic"
) -> float:
    """Rough wall seconds of one job on one core: the engine, the detectors and the labels'
    replays grow with hours × services × faults (fitted to the full study's 15 minutes on
    two cores of the development machine, 2026-11-28)."""
    scenario = suite_parts(suite)[1](family, 0, time_scale)
    hours = scenario.duration / 3600.0
    n = len(scenario.topology.services)
    per_hour = 0.35 + 0.043 * n
    return 1.0 + hours * per_hour * (1.0 + len(scenario.faults) * 0.3) * (
        1.8 if mode == "ai" else 1.0
    )


def make_jobs(
    families: Sequence[str],
    seeds: int,
    time_scale: float = 1.0,
    keep_dir: str | None = None,
    suite: str = "classic",
    first_seed: int = 0,
    telemetry: TelemetryChoice = "ideal",
) -> list[Job]:
    """Every (family, seed, mode) for seeds first_seed .. first_seed + seeds - 1, the
    longest first so that a pool's workers end together."""
    known = suite_parts(suite)[0]
    unknown = [f for f in families if f not in known]
    if unknown:
        raise ImpactStudyError(
            f"--scenarios: unknown scenario {unknown[0]!r}; choose from {', '.join(known)}"
        )
    if seeds < 1:
        raise ImpactStudyError(f"--seeds: must be at least 1, got {seeds}")
    if first_seed < 0:
        raise ImpactStudyError(f"--first-seed: must be at least 0, got {first_seed}")
    if not time_scale > 0:
        raise ImpactStudyError(f"time scale: must be positive, got {time_scale}")
    check_telemetry(telemetry)
    cost = {(f, m): estimate_job_s(f, m, time_scale, suite) for f in families for m in MODES}
    jobs = [
        Job(
            run_job,
            {
                "family": f,
                "seed": s,
                "mode": m,
                "time_scale": time_scale,
                "keep_dir": keep_dir,
                "suite": suite,
                "telemetry": telemetry,
            },
            label=f"{f} seed {s} {m}",
        )
        for f in families
        for s in range(first_seed, first_seed + seeds)
        for m in MODES
    ]
    order = sorted(
        range(len(jobs)), key=lambda i: -cost[(jobs[i].kwargs["family"], jobs[i].kwargs["mode"])]
    )
    return [jobs[i] for i in order]


def estimate_wall_s(jobs: Sequence[Job], workers: int) -> float:
    """Estimated wall time of a sweep: the total over workers, at least the longest job."""
    costs = [
        estimate_job_s(
            j.kwargs["family"],
            j.kwargs["mode"],
            j.kwargs["time_scale"],
            j.kwargs.get("suite", "classic"),
        )
        for j in jobs
    ]
    return max(sum(costs) / max(workers, 1), max(costs, default=0.0))


def tidy(rows: Sequence[dict], suite: str = "classic") -> pd.DataFrame:
    """One row per family × seed × mode, in suite order."""
    table = pd.DataFrame(list(rows))
    if table.empty:
        return table
    order = {f: i for i, f in enumerate(suite_parts(suite)[0])}
    table["_f"] = table["family"].map(order)
    table["_m"] = table["mode"].map({m: i for i, m in enumerate(MODES)})
    table = table.sort_values(["_f", "seed", "_m"]).drop(columns=["_f", "_m"])
    return table.reset_index(drop=True)


def run_study(
    families: Sequence[str] | None = None,
    seeds: int = 10,
    *,
    time_scale: float = 1.0,
    backend: str = "process",
    jobs_n: int | None = None,
    keep_dir: str | None = None,
    progress: bool = True,
    suite: str = "classic",
    first_seed: int = 0,
    telemetry: TelemetryChoice = "ideal",
) -> pd.DataFrame:
    """Rehearse every (family, seed) under both modes and return the tidy table."""
    if backend not in BACKENDS:
        raise ImpactStudyError(f"--backend: expected one of {', '.join(BACKENDS)}, got {backend!r}")
    known = suite_parts(suite)[0]
    jobs = make_jobs(
        list(families or known), seeds, time_scale, keep_dir, suite, first_seed, telemetry
    )
    rows = run_sweep(jobs, backend=backend, jobs_n=jobs_n, progress=progress, desc="rehearsals")
    return tidy(rows, suite)
