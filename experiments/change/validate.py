"""Pre-production validation: will this change survive production?

`validate_change` runs the chaos suite (`change_suite`) on the base system and on the
changed one with the same seeds, so each pair sees identical traffic and the same trigger;
compares them per scenario; rehearses the change's deploy plan (`canary`); optionally
searches resilience settings (`resilience_search`); and reaches one verdict:

- **unsafe**: in some scenario the steady-state hypothesis (the SLOs before and after the
  trigger) held on the base but fails on the change for at least half of the seeds, a
  metastable failure included (the change turns something the base survives into
  something it does not). Exit code 3 from the command line.
- **risky**: nothing unsafe, but some scenario breaks the hypothesis for fewer seeds, or is
  materially worse with a 95% confidence interval that excludes no change (error-budget
  burn up by at least `BURN_MARGIN` budgets and `BURN_REL` of the base's, SLO adherence
  down by at least `ADHERENCE_MARGIN`, entry p99 up by at least `P99_REL`); or a new
  timeout sits below its callee's p99; or the deploy plan lets a rehearsed regression reach
  100% or rolls back a version the suite finds harmless.
- **safe**: none of these. Cost (replica-hours) is reported, never a reason.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from experiments.change import canary as canary_mod
from experiments.change.resilience import search_resilience
from experiments.change.spec import Change, Regression, VersionProfile, apply_change, version_faults
from experiments.change.suite import (
    STEADY,
    SuiteCase,
    ValidationConfig,
    build_suite,
    case_scenario,
    run_case,
)
from experiments.sweep import Job, run_sweep
from twin.scenario.schema import Scenario
from twin.scenario.topology import Topology

VERDICTS = ("safe", "risky", "unsafe")
BURN_MARGIN = 0.25  # budgets of the scored period
BURN_REL = 0.2
ADHERENCE_MARGIN = 0.01
P99_REL = 0.2
DEFAULT_REGRESSION = Regression(name="5x latency", latency_factor=5.0)


def ci95(x: Sequence[float]) -> tuple[float, float, float]:
    """Mean and 95% t-interval (a single value is its own interval)."""
    from scipy import stats

    a = np.asarray([v for v in x if not math.isnan(v)], float)
    if len(a) == 0:
        return float("nan"), float("nan"), float("nan")
    m = float(a.mean())
    if len(a) < 2:
        return m, m, m
    h = float(stats.t.ppf(0.975, len(a) - 1) * a.std(ddof=1) / math.sqrt(len(a)))
    return m, m - h, m + h


METRICS = ("adherence", "p99_ms", "burn", "replica_hours")


def compare_case(case: str, base: Sequence[dict], change: Sequence[dict]) -> dict:
    """One scenario, paired by seed: hypothesis per side, differences with CIs, status."""
    by_seed = {r["seed"]: r for r in base}
    pairs = [(by_seed[r["seed"]], r) for r in change if r["seed"] in by_seed]
    n = len(pairs)
    broken = sum(b["held"] and not c["held"] for b, c in pairs)
    fixed = sum(c["held"] and not b["held"] for b, c in pairs)
    metastable = sum(c["metastable"] and not b["metastable"] for b, c in pairs)
    row: dict[str, Any] = {
        "case": case,
        "seeds": n,
        "held_base": sum(b["held"] for b, _ in pairs),
        "held_change": sum(c["held"] for _, c in pairs),
        "broken": broken,
        "fixed": fixed,
        "metastable": metastable,
    }
    for metric in METRICS:
        row[f"{metric}_base"] = float(np.nanmean([b[metric] for b, _ in pairs]))
        row[f"{metric}_change"] = float(np.nanmean([c[metric] for _, c in pairs]))
        m, lo, hi = ci95([c[metric] - b[metric] for b, c in pairs])
        row[f"d_{metric}"], row[f"d_{metric}_lo"], row[f"d_{metric}_hi"] = m, lo, hi
    row["status"], row["reasons"] = _status(row)
    return row


def _status(r: Mapping[str, Any]) -> tuple[str, list[str]]:
    reasons = []
    n = r["seeds"]
    if r["broken"]:
        what = "metastable failure" if r["metastable"] else "SLOs no longer hold"
        reasons.append(
            f"{what}: the hypothesis held on the base but not on the change in "
            f"{r['broken']}/{n} seeds"
        )
    if r["d_burn_lo"] > 0 and r["d_burn"] >= max(BURN_MARGIN, BURN_REL * r["burn_base"]):
        reasons.append(
            f"error-budget burn {r['burn_base']:.2f} -> {r['burn_change']:.2f} budgets "
            f"(+{r['d_burn']:.2f} [{r['d_burn_lo']:.2f}, {r['d_burn_hi']:.2f}])"
        )
    if r["d_adherence_hi"] < 0 and r["d_adherence"] <= -ADHERENCE_MARGIN:
        reasons.append(
            f"SLO adherence {r['adherence_base']:.1%} -> {r['adherence_change']:.1%} "
            f"({r['d_adherence']:+.1%} [{r['d_adherence_lo']:+.1%}, {r['d_adherence_hi']:+.1%}])"
        )
    base_p99 = r["p99_ms_base"]
    if r["d_p99_ms_lo"] > 0 and base_p99 > 0 and r["d_p99_ms"] >= P99_REL * base_p99:
        reasons.append(
            f"entry p99 {base_p99:.0f} -> {r['p99_ms_change']:.0f} ms "
            f"(+{r['d_p99_ms']:.0f} ms [{r['d_p99_ms_lo']:.0f}, {r['d_p99_ms_hi']:.0f}], "
            f"+{r['d_p99_ms'] / base_p99:.0%})"
        )
    if n and 2 * r["broken"] >= n:
        return "unsafe", reasons
    if reasons:
        return "risky", reasons
    better = r["fixed"] or (r["d_burn_hi"] < 0 and -r["d_burn"] >= BURN_MARGIN)
    return ("improved" if better else "same"), reasons


def static_findings(topo: Topology, p99_ms: Mapping[str, float]) -> list[dict]:
    """Call edges whose timeout sits below the callee's steady-state p99: more than 1% of
    attempts time out before any fault (and their retries add load)."""
    out = []
    for call in topo.calls:
        timeout = call.timeout_ms if call.timeout_ms is not None else topo.defaults.timeout_ms
        p99 = p99_ms.get(call.target)
        if p99 is not None and call.sync and timeout < p99:
            out.append(
                {"edge": f"{call.source} -> {call.target}", "timeout_ms": timeout, "p99_ms": p99}
            )
    return out


def _suite_jobs(
    base: Scenario,
    topologies: Mapping[str, Topology],
    cases: Sequence[SuiteCase],
    config: ValidationConfig,
    extra: Mapping[str, list],
) -> list[Job]:
    jobs = []
    for case in cases:
        for system, topo in topologies.items():
            for k in range(config.seeds):
                seed = base.seed + k
                scenario = case_scenario(base, topo, case, seed, config.timing, extra[system])
                jobs.append(
                    Job(
                        run_case,
                        {
                            "scenario": scenario,
                            "timing": config.timing,
                            "case": case.name,
                            "system": system,
                            "steady": case.kind == "steady",
                            "service_p99": case.name == STEADY,
                        },
                        label=f"{case.name} {system} seed {seed}",
                    )
                )
    return jobs


def _rehearsals(change: Change) -> list[tuple[str, VersionProfile]]:
    """What the deploy plan is played against: the change's version (when the twin can
    play it: a regression) and the plan's declared regressions (default: 5x latency)."""
    service = change.deploy_service()
    if change.deploy is None or service is None:
        return []
    out = []
    if change.version is not None and change.version.is_regression:
        out.append(("this change's version", change.version))
    regressions = list(change.deploy.regressions)
    if not regressions and change.version is None:
        regressions = [DEFAULT_REGRESSION]
    out += [(f"regression: {r.label()}", r.profile(service)) for r in regressions]
    return out


def _search_service(change: Change, config: ValidationConfig) -> str | None:
    if config.search in (None, "none"):
        return None
    if config.search != "auto":
        return config.search
    calls = (change.topology_patch or {}).get("calls") or []
    for call in calls:
        if isinstance(call, Mapping) and ({"retries", "timeout_ms", "breaker"} & set(call)):
            return str(call["to"])
    return None


def validate_change(
    base: Scenario,
    change: Change,
    config: ValidationConfig | None = None,
    source: str = "change",
    status: Callable[[str], None] | None = None,
) -> dict:
    """Everything the verdict rests on, as plain data (the report is written from it)."""
    config = config or ValidationConfig()
    say = status or (lambda _msg: None)
    changed = apply_change(base, change, source)
    entries = [c.entry for c in base.workload.classes]
    cases = build_suite(config.suite, changed, entries, change.touched_services(), config.timing)
    topologies = {"base": base.topology, "change": changed}
    extra = {"base": [], "change": version_faults(change)}
    result: dict[str, Any] = {
        "base": base.name,
        "change": change.name,
        "description": change.description,
        "suite": config.suite,
        "seeds": config.seeds,
        "timing": config.timing,
        "cases": [c.name for c in cases],
        "critical": sorted({c.target for c in cases if c.target}),
        "runs": [],
        "comparison": [],
        "findings": [],
        "canary": [],
        "search": None,
    }
    if change.changes_system:
        say(f"suite: {len(cases)} scenarios x {config.seeds} seeds x base and change")
        jobs = _suite_jobs(base, topologies, cases, config, extra)
        runs = run_sweep(jobs, config.backend, config.jobs_n, config.progress, desc="suite")
        result["runs"] = runs
        for case in cases:
            side = {
                s: [r for r in runs if r["case"] == case.name and r["system"] == s]
                for s in topologies
            }
            result["comparison"].append(compare_case(case.name, side["base"], side["change"]))
        steady = {
            r["system"]: r["service_p99_ms"]
            for r in runs
            if r["case"] == STEADY and r["seed"] == base.seed
        }
        base_edges = {f["edge"] for f in static_findings(base.topology, steady["base"])}
        for finding in static_findings(changed, steady["change"]):
            finding["new"] = finding["edge"] not in base_edges
            result["findings"].append(finding)
        result["steady_p99_ms"] = steady
    result["canary"] = _run_canaries(base, change, config, say)
    service = _search_service(change, config)
    if service is not None:
        say(f"resilience search for calls to {service}")
        result["search"] = search_resilience(
            base,
            changed,
            service,
            config,
            extra["change"],
            result.get("steady_p99_ms", {}).get("change"),
        )
    result["verdict"], result["deciding"] = verdict(result)
    return result


def _run_canaries(
    base: Scenario, change: Change, config: ValidationConfig, say: Callable[[str], None]
) -> list[dict]:
    plan, service = change.deploy, change.deploy_service()
    rehearsals = _rehearsals(change)
    if plan is None or service is None or not rehearsals:
        return []
    # the stable side is the system without the new version: the change minus its version
    stable = apply_change(base, change.model_copy(update={"version": None, "deploy": None}))
    say(f"canary: {len(rehearsals)} rehearsal(s) x {config.seeds} seeds")
    jobs = []
    for label, version in rehearsals:
        for k in range(config.seeds):
            seed = base.seed + k
            args = {
                "base": base,
                "topology": stable,
                "plan": plan,
                "version": version,
                "seed": seed,
            }
            jobs.append(
                Job(
                    canary_mod.rehearse_canary,
                    {**args, "service": service, "label": label},
                    label=label,
                )
            )
            jobs.append(Job(canary_mod.big_bang, args, label=f"{label} big bang"))
    out = run_sweep(jobs, config.backend, config.jobs_n, config.progress, desc="canary")
    summaries = []
    for i, (label, version) in enumerate(rehearsals):
        chunk = out[2 * i * config.seeds : 2 * (i + 1) * config.seeds]
        runs, bangs = chunk[0::2], chunk[1::2]
        summary = canary_mod.summarise_rehearsals(runs, bangs)
        summary.update(
            label=label, version=version.model_dump(), own=label.startswith("this"), runs=runs
        )
        summaries.append(summary)
    return summaries


def verdict(result: Mapping[str, Any]) -> tuple[str, list[str]]:
    """safe / risky / unsafe, and the scenarios (or findings) that decide it."""
    rows = result["comparison"]
    unsafe = [f"{r['case']}: " + "; ".join(r["reasons"]) for r in rows if r["status"] == "unsafe"]
    if unsafe:
        return "unsafe", unsafe
    # steady state first (a change that hurts a quiet day says most), then the worst burn
    worst = sorted(
        (r for r in rows if r["status"] == "risky"),
        key=lambda r: (r["case"] != STEADY, -r["broken"], -r["d_burn"]),
    )
    risky = [f"{r['case']}: " + "; ".join(r["reasons"]) for r in worst]
    for f in result["findings"]:
        if f["new"]:
            risky.append(
                f"timeout {f['edge']} {f['timeout_ms']:g} ms is below the callee's p99 "
                f"{f['p99_ms']:.1f} ms"
            )
    own_harmless = not any(r["status"] == "risky" for r in rows)
    for c in result["canary"]:
        missed = c["seeds"] - c["caught_before_full"]
        if c["own"] and own_harmless and c["rolled_back"]:
            risky.append(
                f"canary: the plan rolled back this change's version in {c['rolled_back']}/"
                f"{c['seeds']} seeds though the suite finds it harmless"
            )
        elif missed and not (c["own"] and own_harmless):
            risky.append(
                f"canary ({c['label']}): reached 100% before any rollback in {missed}/"
                f"{c['seeds']} seeds"
            )
    if risky:
        return "risky", risky
    return "safe", []
