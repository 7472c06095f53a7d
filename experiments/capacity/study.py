"""Capacity study: predictive scaling vs the faithful HPA vs static peak provisioning.

A study is a list of cases, each a scenario with a seed and a warm-up, run under the three
policies (static provisions for the peak the HPA run of the same case saw). Cases come from
the synthetic families (families.py), from a user's own scenario file, or from real traces
replayed as the workload (traces.py). Every metric covers the time after the warm-up (the
forecaster's first day), for every policy alike; a case's `family` groups its seeds.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from experiments.capacity.families import DAY_S, FAMILIES, build_scenario
from experiments.capacity.measure import POLICIES, run_policy, static_replicas
from twin.errors import FirebreakError
from twin.scenario.schema import Scenario

NEVER_WORSE_COST = 1.02
"""Predictive replica-hours may exceed the HPA's by at most 2% where it cannot help."""


@dataclass(frozen=True)
class Case:
    """One scenario and seed, run under every policy; `kind`: family, trace or scenario."""

    family: str
    seed: int
    scenario: Scenario
    warmup_s: float
    kind: str = "family"


def family_cases(
    families: Iterable[str], seeds: int, days: float = 2.0, tick: float = 10.0
) -> list[Case]:
    """The synthetic families, `seeds` seeds each; the first day (or half) is warm-up."""
    return [
        Case(f, s, build_scenario(f, s, days, tick), min(DAY_S, days * DAY_S / 2.0))
        for f in families
        for s in range(seeds)
    ]


def scenario_cases(scenario: Scenario, seeds: int, kind: str = "scenario") -> list[Case]:
    """A user's scenario at its own seed and the next `seeds - 1`; warm-up a day (or half)."""
    if not scenario.slos:
        raise FirebreakError(
            f"{scenario.name}: slos: the capacity study scores SLO-violating minutes; the "
            "scenario declares no SLO"
        )
    if not any(svc.hpa is not None for svc in scenario.topology.services.values()):
        raise FirebreakError(
            f"{scenario.name}: topology: no service has an hpa, so there is nothing to scale"
        )
    warmup = min(DAY_S, scenario.duration / 2.0)
    seeded = [scenario.model_copy(update={"seed": scenario.seed + k}) for k in range(seeds)]
    return [Case(scenario.name, s.seed, s, warmup, kind) for s in seeded]


def run_case(case: Case, scaler: dict | None = None) -> list[dict]:
    """The three policies on one case: rows tagged with the case's family, seed and kind."""
    hpa_row, peak = run_policy(case.scenario, "hpa", case.warmup_s)
    static = static_replicas(case.scenario, peak)
    rows = [
        hpa_row,
        run_policy(case.scenario, "static", case.warmup_s, static=static)[0],
        run_policy(case.scenario, "predictive", case.warmup_s, scaler=scaler)[0],
    ]
    for row in rows:
        row.update(family=case.family, seed=case.seed, kind=case.kind)
    return rows


def run_study(
    cases: list[Case],
    progress: Callable[[], None] | None = None,
    scaler: dict | None = None,
) -> pd.DataFrame:
    """Every case under every policy, one row each."""
    rows = []
    for case in cases:
        rows.extend(run_case(case, scaler))
        if progress is not None:
            progress()
    front = ["family", "kind", "seed", "policy"]
    table = pd.DataFrame(rows)
    return table[front + [c for c in table.columns if c not in front]]


METRICS = (
    "slo_adherence",
    "slo_violating_min",
    "replica_hours",
    "floor_hours",
    "underprovisioned_min",
    "p99_ms_mean",
)


def _ci(x: np.ndarray) -> tuple[float, float, float]:
    """Mean and 95% t-interval."""
    from scipy import stats

    x = x[~np.isnan(x)]
    if len(x) == 0:
        return float("nan"), float("nan"), float("nan")
    m = float(x.mean())
    if len(x) < 2:
        return m, m, m
    h = float(stats.t.ppf(0.975, len(x) - 1) * x.std(ddof=1) / math.sqrt(len(x)))
    return m, m - h, m + h


def summarise(table: pd.DataFrame) -> pd.DataFrame:
    """Per family × policy: each metric's mean with 95% CI, and the paired difference
    against the HPA of the same seed."""
    rows = []
    for (family, policy), g in table.groupby(["family", "policy"], sort=False):
        ref = table[(table.family == family) & (table.policy == "hpa")].set_index("seed")
        g = g.set_index("seed")
        for metric in METRICS:
            m, lo, hi = _ci(g[metric].to_numpy(float))
            d = (g[metric] - ref[metric].reindex(g.index)).to_numpy(float)
            dm, dlo, dhi = _ci(d)
            rows.append(
                {
                    "family": family,
                    "kind": g["kind"].iloc[0] if "kind" in g else "family",
                    "policy": policy,
                    "metric": metric,
                    "mean": m,
                    "ci_low": lo,
                    "ci_high": hi,
                    "diff_vs_hpa": dm,
                    "diff_ci_low": dlo,
                    "diff_ci_high": dhi,
                    "seeds": len(g),
                }
            )
    return pd.DataFrame(rows)


def never_worse(table: pd.DataFrame) -> pd.DataFrame:
    """Per family: predictive against the HPA, run by run (the real-trace check).

    Where the HPA had no SLO-violating minute the predictive scaler cannot help, and its
    replica-hours may be at most NEVER_WORSE_COST × the HPA's; its violating minutes may
    never exceed the HPA's.
    """
    hpa = table[table.policy == "hpa"].set_index(["family", "seed"])
    pred = table[table.policy == "predictive"].set_index(["family", "seed"])
    both = pd.merge(
        hpa, pred, left_index=True, right_index=True, suffixes=("_hpa", "_pred"), how="inner"
    )
    both["cost_ratio"] = both["replica_hours_pred"] / both["replica_hours_hpa"]
    both["can_help"] = both["slo_violating_min_hpa"] > 0
    both["cost_ok"] = both["can_help"] | (both["cost_ratio"] <= NEVER_WORSE_COST + 1e-12)
    both["slo_ok"] = both["slo_violating_min_pred"] <= both["slo_violating_min_hpa"]
    g = both.groupby(level="family", sort=False)
    out = pd.DataFrame(
        {
            "kind": g["kind_hpa"].first(),
            "runs": g.size(),
            "hpa_violating_min": g["slo_violating_min_hpa"].mean(),
            "predictive_violating_min": g["slo_violating_min_pred"].mean(),
            "cost_ratio_mean": g["cost_ratio"].mean(),
            "cost_ratio_max": g["cost_ratio"].max(),
            "take_overs": g["take_overs_pred"].mean() if "take_overs_pred" in both else np.nan,
            "cost_ok": g["cost_ok"].all(),
            "slo_ok": g["slo_ok"].all(),
        }
    )
    return out


def _lower(saving: float, less: str = "lower", more: str = "higher") -> str:
    """A saving as words: '54% lower', or '6% higher' when it is a loss (never '-6% lower')."""
    return f"{saving:.0%} {less}" if not saving < 0 else f"{-saving:.0%} {more}"


def targets(summary: pd.DataFrame) -> list[str]:
    """Plain statements of where the targets and the published claims stand."""

    def get(family: str, policy: str, metric: str) -> float:
        sel = summary[
            (summary.family == family) & (summary.policy == policy) & (summary.metric == metric)
        ]
        return float(sel["mean"].iloc[0]) if len(sel) else float("nan")

    lines = []
    if "calendar" in set(summary.family):
        v_h, v_p = (get("calendar", p, "slo_violating_min") for p in ("hpa", "predictive"))
        c_h, c_p = (get("calendar", p, "replica_hours") for p in ("hpa", "predictive"))
        cut = 1 - v_p / v_h if v_h > 0 else float("nan")
        ok = cut >= 0.5 and c_p <= c_h
        fewer = _lower(cut, "fewer", "more")
        lines.append(
            f"calendar vs HPA: SLO-violating minutes {v_h:.1f} -> {v_p:.1f} ({fewer}; "
            f"target >= 50%), replica-hours {c_h:.1f} -> {c_p:.1f} (target: no more): "
            + ("MET" if ok else "NOT MET")
        )
    synthetic = [f for f in dict.fromkeys(summary.family) if f in FAMILIES]
    for family in synthetic:
        c_s, c_p = (get(family, p, "replica_hours") for p in ("static", "predictive"))
        a_s, a_p = (get(family, p, "slo_adherence") for p in ("static", "predictive"))
        saving = 1 - c_p / c_s if c_s > 0 else float("nan")
        floor = get(family, "static", "floor_hours")
        above = 1 - (c_p - floor) / (c_s - floor) if c_s > floor else float("nan")
        ok = saving >= 0.3 and a_p >= a_s - 0.005
        lines.append(
            f"{family} vs static peak: replica-hours {_lower(saving)} (target >= 30% lower), "
            f"SLO adherence {a_s:.3f} -> {a_p:.3f} (target: equal): "
            + ("MET" if ok else "NOT MET")
            + f"; above the min-replica floor ({floor:.0f} h that every policy keeps) "
            f"{_lower(above)}"
        )
    if synthetic:
        adh = [get(f, "predictive", "slo_adherence") for f in synthetic]
        cost = [
            1 - get(f, "predictive", "replica_hours") / get(f, "static", "replica_hours")
            for f in synthetic
        ]
        lines.append(
            f"published claims: 92% SLO adherence -> ours {np.nanmean(adh):.1%} (mean over "
            f"families); 35% lower cost -> ours {np.nanmean(cost):.0%} vs static peak"
        )
    return lines


def never_worse_lines(check: pd.DataFrame) -> list[str]:
    """One line per family of the never-worse-than-the-HPA check."""
    lines = []
    for family, r in check.iterrows():
        verdict = "MET" if (r.cost_ok and r.slo_ok) else "NOT MET"
        lines.append(
            f"{family}: predictive/HPA replica-hours {r.cost_ratio_mean:.3f} (max "
            f"{r.cost_ratio_max:.3f}; <= {NEVER_WORSE_COST} where the HPA had no violation), "
            f"SLO-violating min {r.hpa_violating_min:.1f} -> {r.predictive_violating_min:.1f} "
            f"(never more), take-overs/run {r.take_overs:.1f}: {verdict}"
        )
    return lines


def plot(summary: pd.DataFrame, path: Path) -> None:
    """Bars with 95% CIs: SLO adherence, replica-hours, violating minutes per family/policy."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    metrics = ("slo_adherence", "replica_hours", "slo_violating_min", "underprovisioned_min")
    families = list(dict.fromkeys(summary.family))
    wide = len(families) > 4
    fig, axes = plt.subplots(
        len(metrics) if wide else 1,
        1 if wide else len(metrics),
        figsize=(max(8, 0.9 * len(families)), 3.2 * len(metrics)) if wide else (16.8, 3.6),
    )
    width = 0.8 / len(POLICIES)
    for ax, metric in zip(np.ravel(axes), metrics, strict=True):
        for k, policy in enumerate(POLICIES):
            sel = summary[(summary.metric == metric) & (summary.policy == policy)]
            sel = sel.set_index("family").reindex(families)
            x = np.arange(len(families)) + (k - 1) * width
            err = [sel["mean"] - sel["ci_low"], sel["ci_high"] - sel["mean"]]
            ax.bar(x, sel["mean"], width, yerr=err, capsize=3, label=policy)
        ax.set_xticks(np.arange(len(families)), families, rotation=60 if wide else 0,
                      ha="right" if wide else "center", fontsize=8)  # fmt: skip
        ax.set_title(metric.replace("_", " "))
    np.ravel(axes)[0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
