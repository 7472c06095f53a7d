"""Policies against each other on held-out seeds: MTTR, SLO minutes, actions, unsafe actions.

Every policy meets the same episodes (the same seeds draw the same topology, load and
fault), so differences are paired. Figures are means with 95% confidence intervals
(Student t over episodes). MTTR is the rehearsal's definition (fault start to SLO restored,
censored at the episode's end) over the episodes whose fault broke the SLO. An unsafe
action is one the guardrails refused when the policy chose it: the env never applies it,
and a masked policy never picks one. Right remedy first is the share of episodes with a
remediable fault, among those the policy responded to, whose first response was a remedy
that ends that kind of fault, aimed where the oracle says (`twin.envs.remedy_tracker`,
the rehearsal's rule); time to the right remedy is averaged over the episodes that
reached it, and the time to resolution (the fault stopped, to the decision) over the
episodes whose fault stopped.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import numpy as np
from scipy import stats

EVAL_SEED_BASE = 1_000_000  # evaluation seeds start here; training seeds stay far below
METRICS = ("mttr_s", "slo_violating_min", "actions", "unsafe_actions", "return")


def eval_seeds(n: int, base: int = EVAL_SEED_BASE) -> list[int]:
    return [base + i for i in range(n)]


def mean_ci(values: Sequence[float], level: float = 0.95) -> tuple[float, float, float]:
    """(mean, low, high): a Student-t interval; a single value has a zero-width one."""
    xs = np.asarray([v for v in values if v is not None and math.isfinite(v)], float)
    if len(xs) == 0:
        return (math.nan, math.nan, math.nan)
    m = float(xs.mean())
    if len(xs) < 2:
        return (m, m, m)
    half = float(stats.t.ppf(0.5 + level / 2, len(xs) - 1) * xs.std(ddof=1) / math.sqrt(len(xs)))
    return (m, m - half, m + half)


def run_episode(env, policy, seed: int, masked: bool = True) -> dict[str, Any]:
    """One episode of `policy` on `env` from `seed`; the env's summary plus the seed."""
    obs, _ = env.reset(seed=seed)
    start = True
    while True:
        extra = {"action_masks": env.unwrapped.action_masks()} if masked else {}
        action, _ = policy.predict(
            obs, episode_start=np.array([start]), deterministic=True, **extra
        )
        start = False
        obs, _, terminated, truncated, info = env.step(action)
        if terminated or truncated:
            summary = dict(info["firebreak"])
            summary["seed"] = seed
            summary["unsafe_actions"] = summary.get("refused", 0)
            return summary


def evaluate_policies(
    make_env: Callable[[], Any],
    policies: Mapping[str, tuple[Any, bool]],
    seeds: Iterable[int],
    progress: Callable[[], None] | None = None,
) -> list[dict[str, Any]]:
    """Rows (policy, seed, figures) for every policy (object, uses masks) on every seed."""
    seeds = list(seeds)
    rows = []
    for name, (policy, masked) in policies.items():
        env = make_env()
        for seed in seeds:
            row = run_episode(env, policy, seed, masked)
            row["policy"] = name
            rows.append(row)
            if progress is not None:
                progress()
        env.close()
    return rows


def _remedy_entry(mine: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Right remedy first (share, 95% CI) over responded remediable episodes, the time to
    the right remedy over those that reached it, and the counts behind both."""
    scored = [r for r in mine if r.get("remediable") and r.get("responded")]
    firsts = [float(bool(r.get("right_remedy_first"))) for r in scored]
    times = [
        float(r["time_to_right_remedy_s"])
        for r in mine
        if r.get("time_to_right_remedy_s") is not None
    ]
    m, lo, hi = mean_ci(firsts)
    t, tlo, thi = mean_ci(times)
    ended = [float(r["resolved_after_s"]) for r in mine if r.get("resolved_after_s") is not None]
    e, elo, ehi = mean_ci(ended)
    return {
        "remediable": sum(bool(r.get("remediable")) for r in mine),
        "responded": len(scored),
        "right_remedy_first": m,
        "right_remedy_first_ci": (lo, hi),
        "right_remedy_reached": len(times),
        "time_to_right_remedy_s": t,
        "time_to_right_remedy_s_ci": (tlo, thi),
        "resolved": len(ended),
        "resolved_after_s": e,
        "resolved_after_s_ci": (elo, ehi),
    }


def summarise(rows: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Per policy: each metric's mean and 95% CI (MTTR over SLO-breaking episodes), and the
    right-remedy figures (`_remedy_entry`)."""
    out = []
    for name in dict.fromkeys(r["policy"] for r in rows):
        mine = [r for r in rows if r["policy"] == name]
        entry: dict[str, Any] = {"policy": name, "episodes": len(mine)}
        impacted = [r for r in mine if r.get("mttr_s") is not None]
        entry["with_slo_impact"] = len(impacted)
        entry["censored"] = sum(bool(r.get("censored")) for r in impacted)
        for metric in METRICS:
            values = [r.get(metric) for r in (impacted if metric == "mttr_s" else mine)]
            m, lo, hi = mean_ci([float(v) for v in values if v is not None])
            entry[metric] = m
            entry[f"{metric}_ci"] = (lo, hi)
        entry.update(_remedy_entry(mine))
        out.append(entry)
    return out


def paired_mttr_difference(
    rows: Sequence[Mapping[str, Any]], a: str, b: str
) -> tuple[float, float, float, int]:
    """Mean MTTR of `a` minus `b` over seeds where both broke the SLO, with a 95% CI."""
    by = {(r["policy"], r["seed"]): r for r in rows}
    diffs = []
    for (policy, seed), r in by.items():
        other = by.get((b, seed))
        if policy != a or other is None:
            continue
        if r.get("mttr_s") is None and other.get("mttr_s") is None:
            continue
        # an episode one policy kept inside the SLO restored at once for it
        diffs.append(float(r.get("mttr_s") or 0.0) - float(other.get("mttr_s") or 0.0))
    m, lo, hi = mean_ci(diffs)
    return m, lo, hi, len(diffs)


def plot_summary(suites: Mapping[str, Sequence[Mapping[str, Any]]], path) -> None:
    """MTTR and SLO-violating minutes per policy and suite, with 95% CI error bars."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    metrics = (("mttr_s", "MTTR (s)"), ("slo_violating_min", "SLO-violating minutes"))
    fig, axes = plt.subplots(1, len(metrics), figsize=(11, 4))
    names = list(suites)
    for ax, (metric, label) in zip(axes, metrics, strict=True):
        width = 0.8 / max(len(names), 1)
        policies = [e["policy"] for e in next(iter(suites.values()))]
        x = np.arange(len(policies))
        for k, suite in enumerate(names):
            entries = {e["policy"]: e for e in suites[suite]}
            means = [entries[p][metric] if p in entries else np.nan for p in policies]
            cis = [
                entries[p][f"{metric}_ci"] if p in entries else (np.nan, np.nan) for p in policies
            ]
            err = np.array([[m - lo, hi - m] for m, (lo, hi) in zip(means, cis, strict=True)]).T
            ax.bar(x + k * width, means, width, yerr=np.nan_to_num(err), capsize=3, label=suite)
        ax.set_xticks(x + width * (len(names) - 1) / 2, policies)
        ax.set_ylabel(label)
        ax.grid(axis="y", alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.suptitle("Remediation policies on held-out seeds (means, 95% CI)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
