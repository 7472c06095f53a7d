"""The impact study's claims: paired estimates, bootstrap intervals and plain verdicts.

Aggregation. Every figure is a ratio of pooled sums over the (family, seed) pairs in which
both modes ran: e.g. MTTR change = Σ AI restore times / Σ traditional restore times − 1,
alerts per incident = (Σ alerts / Σ incidents) per mode. Why pooled ratios rather than the
mean of per-pair relative changes: per-pair baselines are often tiny or zero (a run with one
incident, a fault the traditional stack never let breach an SLO), where a relative change
is undefined or explodes, and a mean of ratios is not the ratio of means an operator
budgets with (total downtime, total pods). SLO adherence is a level: the mean over runs.

Interval. A 95% percentile bootstrap (2,000 resamples, fixed seed) that resamples whole
pairs, stratified by family: seeds are redrawn within each family, so every replicate keeps
the suite's composition (the families are a design choice, not a random sample) and each
pair's two modes stay together (the pairing removes the shared noise of traffic, faults and
the engineer's dice). The interval therefore speaks to seed-to-seed variation within this
suite, not to other suites.

Verdicts compare the interval with the claimed range (a single figure is a range of one
point): "exceed" when the whole interval is better than the range, "fall short" when the
whole interval is worse, "match" when they overlap. The statement beside each says where the
point estimate sits and why, from the runs themselves (what each stack did).

MTTR pairs faults, not runs: over the faults that breached an SLO in either mode, each
mode's restore time, 0 where that mode kept the SLO intact (nothing to restore); censored
restores (never restored by the run's end) count up to the end, as `rehearsal_score` does.
"""

from __future__ import annotations

import json
from collections.abc import Callable

import numpy as np
import pandas as pd

from experiments.impact.claim_defs import (
    CLAIM_KEYS,
    CLAIMS,
    CLAIMS_COLUMNS,
    ENGINEER_MIN_USD,
    REPLICA_HOUR_USD,
    Claim,
)
from experiments.impact.explain import statement

B_RESAMPLES = 2000
CI_LEVEL = 0.95
BOOT_SEED = 20261128


# ------------------------------------------------------------------------ pairing
def paired(table: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Traditional and AI rows of the pairs where both ran without error, aligned."""
    ok = table[table["error"].isna()] if "error" in table else table
    trad = ok[ok["mode"] == "traditional"].set_index(["family", "seed"])
    ai = ok[ok["mode"] == "ai"].set_index(["family", "seed"])
    index = trad.index.intersection(ai.index)
    return trad.loc[index], ai.loc[index]


def _num(frame: pd.DataFrame, col: str) -> np.ndarray:
    return pd.to_numeric(frame[col], errors="coerce").to_numpy(float)


def _mttr_units(trad: pd.DataFrame, ai: pd.DataFrame) -> tuple[np.ndarray, ...]:
    """Per pair: Σ restore time per mode over faults impacted in either, and their count."""
    n = len(trad)
    st, sa, cnt = np.zeros(n), np.zeros(n), np.zeros(n)
    for k, (jt, ja) in enumerate(zip(trad["mttr_by_fault"], ai["mttr_by_fault"], strict=True)):
        mt, ma = json.loads(jt), json.loads(ja)
        for fid in set(mt) | set(ma):
            st[k] += mt.get(fid, [0.0])[0]
            sa[k] += ma.get(fid, [0.0])[0]
            cnt[k] += 1
    return sa, cnt, st, cnt


def _ratio_units(trad: pd.DataFrame, ai: pd.DataFrame, num: str, den: str | None):
    """(A_ai, B_ai, A_trad, B_trad) per pair for Σ num / Σ den (den None: count of pairs)."""
    ones = np.ones(len(trad))
    a_ai, a_tr = _num(ai, num), _num(trad, num)
    b_ai = ones if den is None else _num(ai, den)
    b_tr = ones if den is None else _num(trad, den)
    return a_ai, b_ai, a_tr, b_tr


def _both_defined(trad: pd.DataFrame, ai: pd.DataFrame, col: str):
    """Σ col over pairs where both modes have a value."""
    t, a = _num(trad, col), _num(ai, col)
    keep = np.isfinite(t) & np.isfinite(a)
    return np.where(keep, a, 0.0), keep.astype(float), np.where(keep, t, 0.0), keep.astype(float)


def _cost(frame: pd.DataFrame) -> np.ndarray:
    return (
        _num(frame, "replica_hours") * REPLICA_HOUR_USD
        + _num(frame, "engineer_min") * ENGINEER_MIN_USD
    )


def units(key: str, trad: pd.DataFrame, ai: pd.DataFrame) -> tuple[np.ndarray, ...]:
    """The four per-pair arrays a claim's pooled ratio is made of."""
    ones = np.ones(len(trad))
    if key == "mttr":
        return _mttr_units(trad, ai)
    if key == "incident_frequency":
        return _ratio_units(trad, ai, "slo_episodes", None)
    if key == "alert_fatigue":
        return _ratio_units(trad, ai, "alerts", "incidents")
    if key == "pages_per_incident":
        return _ratio_units(trad, ai, "pages", "slo_episodes")
    if key == "right_remedy_first":
        return _ratio_units(trad, ai, "right_remedy_first", "faults_responded")
    if key == "right_remedy_ever":
        return _ratio_units(trad, ai, "right_remedy_any", "faults_remediable")
    if key == "time_to_right_remedy":
        return _both_defined(trad, ai, "time_to_right_remedy_s")
    if key == "efficiency":
        return _ratio_units(trad, ai, "requests_completed", "replica_hours")
    if key in ("slo_adherence", "slo_adherence_diff"):
        return _ratio_units(trad, ai, "slo_adherence", None)
    if key == "cost":
        return _ratio_units(trad, ai, "replica_hours", None)
    if key == "mttr_stack":
        return _both_defined(trad, ai, "mttr_s")
    if key == "detector_incidents":
        return _ratio_units(trad, ai, "incidents", None)
    if key == "alerts_per_fault":
        return _ratio_units(trad, ai, "alerts", "faults")
    if key in ("mttd", "mtti"):
        return _both_defined(trad, ai, f"{key}_s")
    if key == "operating_cost":
        return _cost(ai), ones, _cost(trad), ones
    if key in ("faults_with_slo_impact", "slo_violating_min", "alerts", "pages"):
        return _ratio_units(trad, ai, key, None)
    if key in ("engineer_min", "features_lost"):
        return _ratio_units(trad, ai, key, None)
    raise KeyError(key)


# ---------------------------------------------------------------------- statistics
def _levels(sums: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Pooled AI and traditional levels from stacked sums (…, 4)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return sums[..., 0] / sums[..., 1], sums[..., 2] / sums[..., 3]


def statistic(kind: str, sums: np.ndarray) -> np.ndarray:
    """The estimate from pooled sums: relative change, AI level, or AI - traditional."""
    ai, tr = _levels(sums)
    with np.errstate(divide="ignore", invalid="ignore"):
        if kind == "change":
            return ai / tr - 1.0
        if kind == "level":
            return ai
        if kind == "diff":
            return ai - tr
    raise ValueError(f"unknown kind {kind!r}")


def resample_weights(strata: np.ndarray, b: int = B_RESAMPLES, seed: int = BOOT_SEED):
    """(b × n) counts: each replicate redraws the units of every stratum with replacement."""
    rng = np.random.default_rng(seed)
    n = len(strata)
    if n == 0 or pd.Series(strata).value_counts().max() < 2:
        return np.zeros((0, n))  # no stratum with two units: nothing to resample, no interval
    w = np.zeros((b, n))
    for s in pd.unique(strata):
        members = np.flatnonzero(strata == s)
        draws = rng.integers(0, len(members), size=(b, len(members)))
        rows = np.repeat(np.arange(b), len(members))
        np.add.at(w, (rows, members[draws].ravel()), 1.0)
    return w


def estimate(kind: str, arrays: tuple[np.ndarray, ...], weights: np.ndarray) -> dict:
    """Point estimate, pooled levels and the percentile interval of a claim."""
    x = np.nan_to_num(np.column_stack(arrays), nan=0.0)
    sums = x.sum(axis=0)
    ai, tr = _levels(sums)
    point = float(statistic(kind, sums))
    boot = statistic(kind, weights @ x) if len(weights) else np.array([])
    boot = boot[np.isfinite(boot)]
    alpha = (1.0 - CI_LEVEL) / 2.0
    if boot.size and np.isfinite(point):
        lo, hi = np.quantile(boot, [alpha, 1.0 - alpha])
    else:
        lo = hi = float("nan")
    return {
        "traditional": float(tr),
        "ai": float(ai),
        "estimate": point,
        "ci_low": float(lo),
        "ci_high": float(hi),
    }


def verdict(claim: Claim, lo: float, hi: float) -> str:
    """exceed / match / fall short: the interval against the claimed range."""
    if claim.role != "claim" or not (np.isfinite(lo) and np.isfinite(hi)):
        return "" if claim.role != "claim" else "undetermined"
    best, worst = (claim.lo, claim.hi) if claim.better == "lower" else (claim.hi, claim.lo)
    if claim.better == "lower":
        if hi < best:
            return "exceed"
        if lo > worst:
            return "fall short"
    else:
        if lo > best:
            return "exceed"
        if hi < worst:
            return "fall short"
    return "match"


# ------------------------------------------------------------------------ the table
def claims_table(table: pd.DataFrame, seed: int = BOOT_SEED) -> pd.DataFrame:
    """One row per claim and context figure: levels, estimate, 95% CI, verdict, statement."""
    trad, ai = paired(table)
    strata = trad.index.get_level_values("family").to_numpy()
    weights = resample_weights(strata, seed=seed)
    rows = []
    for claim in CLAIMS:
        est = estimate(claim.kind, units(claim.key, trad, ai), weights)
        row = {
            "key": claim.key,
            "role": claim.role,
            "claim": claim.label,
            "claimed": claim.claimed,
            "definition": claim.definition,
            **est,
            "pairs": len(trad),
            "verdict": verdict(claim, est["ci_low"], est["ci_high"]),
        }
        row["statement"] = statement(claim, row, trad, ai) if claim.role == "claim" else ""
        rows.append(row)
    return pd.DataFrame(rows, columns=list(CLAIMS_COLUMNS))


def by_family(table: pd.DataFrame, keys: tuple[str, ...] = CLAIM_KEYS) -> pd.DataFrame:
    """Each claim's estimate and interval within each family (seeds resampled)."""
    trad, ai = paired(table)
    rows = []
    for family in pd.unique(trad.index.get_level_values("family")):
        t, a = trad.loc[family], ai.loc[family]
        weights = resample_weights(np.zeros(len(t)))
        for claim in (c for c in CLAIMS if c.key in keys):
            est = estimate(claim.kind, units(claim.key, t, a), weights)
            rows.append({"family": family, "key": claim.key, "pairs": len(t), **est})
    return pd.DataFrame(rows)


def family_spread(fam: pd.DataFrame, key: str) -> tuple[str, float, str, float]:
    """The families with the best and worst estimate for a claim (by its direction)."""
    sel = fam[(fam["key"] == key) & np.isfinite(fam["estimate"])].sort_values("estimate")
    if sel.empty:
        return "", float("nan"), "", float("nan")
    first, last = sel.iloc[0], sel.iloc[-1]
    return first["family"], first["estimate"], last["family"], last["estimate"]


Explainer = Callable[[Claim, dict, pd.DataFrame, pd.DataFrame], str]
