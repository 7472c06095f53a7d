"""Does the remedy that worked before shorten the time to the right remedy?

Two steps, on disjoint seeds of the remediable suite (experiments.impact.remediable):

- `learn`: the AI stack rehearses the training seeds with incident memory on (no prior);
  every case it decided is stored, signed at decision time (`dsig-1`), with what its own
  judge said of each automated action (restored and quiet, or not: never labels.json), in
  the library's `decision_incidents` table; the prior's distance threshold is chosen on
  these training cases alone (leave-one-out, `remedy_prior.choose_threshold`).
- `compare`: the AI stack rehearses held-out seeds twice, without and with the prior, on
  the same scenario and dice; pairs are scored as the impact study scores traditional
  against AI (experiments.impact.claims: pooled ratios, family-stratified bootstrap, 95%
  percentile intervals), with "no prior" in the baseline's place.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from agents.deciding.remedy_prior import (
    DSIG_VERSION,
    PastCase,
    RemedyPrior,
    check_case,
    choose_threshold,
)
from detectors.memory.decision_table import read_decision_incidents, write_decision_incidents
from experiments.impact.claims import estimate, resample_weights, units
from experiments.impact.study import ImpactStudyError, rehearse_row, suite_parts
from experiments.rehearsal.run import StackSettings
from experiments.sweep import Job, run_sweep

SUITE = "remediable"
ARMS = ("no_prior", "prior")
# the figures compared (claims.units keys) and how: relative change or difference
FIGURES = (
    ("right_remedy_first", "diff", "right remedy first (share of faults responded to)"),
    ("right_remedy_ever", "diff", "right remedy reached (share of remediable faults)"),
    ("time_to_right_remedy", "change", "time to the right remedy (s, both arms reached it)"),
    ("mttr", "change", "MTTR (s, faults impacted in either arm)"),
)


def load_prior(
    library: str | Path,
    threshold: float | None = None,
    k: int = 3,
    exclude_system: str | None = None,
) -> RemedyPrior:
    """The prior from a library's decision-time incidents (its learnt threshold unless
    `threshold` is given; without the cases of `exclude_system`, for an unseen system)."""
    records, learnt = read_decision_incidents(library, DSIG_VERSION)
    cases = [
        check_case(PastCase(r["name"], tuple(r["features"]), tuple(r["actions"])), str(library))
        for r in records
        if r["system"] != exclude_system
    ]
    return RemedyPrior(cases, learnt if threshold is None else threshold, k=k)


def run_prior_job(
    family: str,
    seed: int,
    arm: str,
    library: str | None = None,
    threshold: float | None = None,
    unseen: bool = False,
) -> dict[str, Any]:
    """One AI rehearsal of a remediable (family, seed), with incident memory recording and,
    for the "prior" arm, the library's prior; one table row (errors are rows too)."""
    build = suite_parts(SUITE)[1]
    scenario = build(family, seed, 1.0)
    exclude = scenario.topology.name if unseen else None
    prior = None
    if arm == "prior" and library:
        prior = load_prior(library, threshold, exclude_system=exclude)
    settings = StackSettings(remember=True, remedy_prior=prior)
    try:
        with tempfile.TemporaryDirectory(prefix="prior-") as tmp:
            row = rehearse_row(scenario, "ai", Path(tmp), settings)
        row["error"] = None
    except Exception as exc:  # a twin or operator failure is a finding, not a lost study
        row = {"error": f"{type(exc).__name__}: {exc}"}
    return {
        "family": family,
        "seed": seed,
        "arm": arm,
        "topology": scenario.topology.name,
        **row,
    }


def _jobs(
    families: Sequence[str], seeds: Sequence[int], arms: Sequence[str], **kw: Any
) -> list[Job]:
    known = suite_parts(SUITE)[0]
    bad = [f for f in families if f not in known]
    if bad:
        raise ImpactStudyError(
            f"--scenarios: unknown scenario {bad[0]!r}; choose from {', '.join(known)}"
        )
    return [
        Job(run_prior_job, {"family": f, "seed": s, "arm": a, **kw}, label=f"{f} seed {s} {a}")
        for f in families
        for s in seeds
        for a in arms
    ]


def remediable_families(families: Sequence[str] | None) -> list[str]:
    """The suite's remediable families (controls left out), or those named."""
    fams = suite_parts(SUITE)[0]
    return list(families) if families else [n for n, f in fams.items() if f.remediable]


def cases_from_rows(rows: Sequence[dict]) -> list[dict]:
    """Library records from rehearsal rows: every decided case that an action was judged on."""
    out = []
    for row in rows:
        if row.get("error") or not row.get("memory_records"):
            continue
        for rec in json.loads(row["memory_records"]):
            if rec["actions"]:
                out.append(
                    {
                        "name": f"{row['family']}/seed-{row['seed']}/{rec['case']}",
                        "system": row["topology"],
                        "features": rec["features"],
                        "actions": rec["actions"],
                    }
                )
    return out


def learn(
    library: str | Path,
    families: Sequence[str],
    seeds: Sequence[int],
    jobs_n: int | None = 1,
    backend: str = "process",
    progress: bool = False,
) -> tuple[pd.DataFrame, int, float]:
    """Rehearse the training seeds, store their cases; (rows, cases stored, threshold)."""
    rows = run_sweep(
        _jobs(families, seeds, ("no_prior",)),
        backend=backend,
        jobs_n=jobs_n,
        progress=progress,
        desc="training rehearsals",
    )
    records = cases_from_rows(rows)
    cases = [
        PastCase(r["name"], tuple(r["features"]), tuple(map(tuple, r["actions"]))) for r in records
    ]
    threshold = choose_threshold(cases)
    write_decision_incidents(library, records, DSIG_VERSION, threshold)
    return pd.DataFrame(rows), len(records), threshold


def compare_table(table: pd.DataFrame, seed: int = 20261205) -> pd.DataFrame:
    """Prior against no prior over paired (family, seed) rows: levels, estimate, 95% CI."""
    ok = table[table["error"].isna()] if "error" in table else table
    base = ok[ok["arm"] == "no_prior"].set_index(["family", "seed"])
    with_prior = ok[ok["arm"] == "prior"].set_index(["family", "seed"])
    index = base.index.intersection(with_prior.index)
    base, with_prior = base.loc[index], with_prior.loc[index]
    weights = resample_weights(base.index.get_level_values("family").to_numpy(), seed=seed)
    rows = []
    for key, kind, label in FIGURES:
        est = estimate(kind, units(key, base, with_prior), weights)
        rows.append(
            {
                "figure": label,
                "no_prior": est["traditional"],
                "prior": est["ai"],
                "kind": "relative change" if kind == "change" else "difference",
                "estimate": est["estimate"],
                "ci_low": est["ci_low"],
                "ci_high": est["ci_high"],
                "pairs": len(base),
            }
        )
    return pd.DataFrame(rows)


def compare(
    library: str | Path,
    families: Sequence[str],
    seeds: Sequence[int],
    jobs_n: int | None = 1,
    backend: str = "process",
    threshold: float | None = None,
    unseen: bool = False,
    progress: bool = False,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Rehearse held-out seeds without and with the prior; (rows, comparison). `unseen`:
    the prior leaves out the library's cases from the scenario's own topology."""
    load_prior(library, threshold)  # a bad library fails here, before any rehearsal
    kw: dict[str, Any] = {"library": str(library), "threshold": threshold, "unseen": unseen}
    rows = run_sweep(
        _jobs(families, seeds, ARMS, **kw),
        backend=backend,
        jobs_n=jobs_n,
        progress=progress,
        desc="held-out rehearsals",
    )
    table = pd.DataFrame(rows).sort_values(["family", "seed", "arm"]).reset_index(drop=True)
    return table, compare_table(table)
