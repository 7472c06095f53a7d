"""Plain statements beside the impact study's claims: where the figure sits, and why.

Each "why" is computed from the runs (what each stack did: how many faults it restored while
they were still live, how often it paged a person, which actions it took), never written
in advance, so a rerun with other seeds or another operator says what that run showed.
"""

from __future__ import annotations

import json
from collections import Counter

import numpy as np
import pandas as pd

from experiments.impact.claim_defs import Claim


def _pct(x: float) -> str:
    return f"{x:+.0%}" if np.isfinite(x) else "n/a"


def _share(x: float) -> str:
    return f"{x:.0%}" if np.isfinite(x) else "n/a"


def _level(x: float) -> str:
    return f"{x:.1%}" if np.isfinite(x) else "n/a"


def _seconds(x: float) -> str:
    return f"{x:.0f} s" if np.isfinite(x) else "n/a"


def _figure(claim: Claim, row: dict) -> str:
    f = _level if claim.kind == "level" else _pct
    return f"{f(row['estimate'])} [{f(row['ci_low'])}, {f(row['ci_high'])}]"


def _position(claim: Claim, value: float) -> str:
    """Where the point estimate sits relative to the claimed range."""
    if not np.isfinite(value):
        return "no estimate"
    lo, hi = sorted((claim.lo, claim.hi))
    if lo <= value <= hi:
        return "inside the claimed range"
    better = value < lo if claim.better == "lower" else value > hi
    return "beyond the claim" if better else "short of the claim"


def restored_while_live(frame: pd.DataFrame) -> tuple[int, int]:
    """Faults with SLO impact, and how many of them the stack restored before they ended."""
    impacted = restored = 0
    for faults_js, mttr_js in zip(frame["faults_json"], frame["mttr_by_fault"], strict=True):
        length = {f["id"]: f["duration"] for f in json.loads(faults_js)}
        for fid, (mttr, censored) in json.loads(mttr_js).items():
            impacted += 1
            restored += int(not censored and mttr < length.get(fid, np.inf) - 1.0)
    return impacted, restored


def fault_time_share(frame: pd.DataFrame) -> float:
    """Share of run time with at least one fault live (overlaps counted once)."""
    live = total = 0.0
    for faults_js, duration in zip(frame["faults_json"], frame["duration_s"], strict=True):
        spans = sorted((f["start"], f["start"] + f["duration"]) for f in json.loads(faults_js))
        end = -np.inf
        for a, b in spans:
            live += max(0.0, b - max(a, end))
            end = max(end, b)
        total += float(duration)
    return live / total if total else float("nan")


def action_mix(frame: pd.DataFrame) -> Counter:
    counts: Counter = Counter()
    for js in frame["action_kinds"]:
        counts.update(json.loads(js))
    return counts


def _per_run(frame: pd.DataFrame, col: str) -> float:
    return float(pd.to_numeric(frame[col], errors="coerce").mean())


def _mttr(row: dict, trad: pd.DataFrame, ai: pd.DataFrame) -> str:
    n_t, r_t = restored_while_live(trad)
    n_a, r_a = restored_while_live(ai)
    cens_t, cens_a = int(trad["mttr_censored"].sum()), int(ai["mttr_censored"].sum())
    mix = action_mix(ai)
    auto = sum(v for k, v in mix.items() if k.startswith(("auto:", "approved:")))
    human = sum(v for k, v in mix.items() if k.startswith("human:"))
    return (
        f"mean restore {row['traditional'] / 60:.1f} -> {row['ai'] / 60:.1f} min per impacted "
        f"fault. The SLO was restored while the fault was still live for {r_t}/{n_t} impacted "
        f"faults under traditional operations and {r_a}/{n_a} under AI (a fault ends on its "
        f"schedule or when its remedy is applied, twin.control.mechanisms). Censored "
        f"restores: {cens_t} vs {cens_a}. AI actions: {auto} automated or "
        f"approved, {human} by the engineer after a page; MTTI "
        f"{_seconds(_per_run(trad, 'mtti_s'))} vs {_seconds(_per_run(ai, 'mtti_s'))} (mean "
        f"over runs that identified a root)."
    )


def _incidents(row: dict, trad: pd.DataFrame, ai: pd.DataFrame) -> str:
    pred = (
        int(ai["predictive_scale_actions"].fillna(0).sum())
        if "predictive_scale_actions" in ai
        else 0
    )
    return (
        f"SLO-violation episodes per run {row['traditional']:.2f} -> {row['ai']:.2f}; faults "
        f"that breached an SLO per run {_per_run(trad, 'faults_with_slo_impact'):.2f} -> "
        f"{_per_run(ai, 'faults_with_slo_impact'):.2f}. Faults are scheduled by the scenario, so "
        f"fewer incidents can only come from preventing a breach or from not re-breaching "
        f"after a fix; predictive scale actions in the AI runs: {pred} (the predictive scaler "
        f"takes over only after a day of history, longer than these 1.5-3 h runs, so "
        f"prediction-driven prevention is not exercised here)."
    )


def _alert_fatigue(row: dict, trad: pd.DataFrame, ai: pd.DataFrame) -> str:
    pages_t, pages_a = _per_run(trad, "pages"), _per_run(ai, "pages")
    return (
        f"alerts per incident {row['traditional']:.2f} -> {row['ai']:.2f}: alerts per run "
        f"{_per_run(trad, 'alerts'):.1f} -> {_per_run(ai, 'alerts'):.1f}, incidents per run "
        f"{_per_run(trad, 'incidents'):.1f} -> {_per_run(ai, 'incidents'):.1f}. The static "
        f"thresholds fire one alert per rule and episode, the tiered detectors one per "
        f"confirmed signal, so a ratio of the two compares detectors as much as fatigue; what "
        f"reaches a person is pages: {pages_t:.1f} -> {pages_a:.1f} per run "
        f"({_pct(pages_a / pages_t - 1.0) if pages_t else 'n/a'}; a context row, not the "
        f"claim's definition)."
    )


def _efficiency(row: dict, trad: pd.DataFrame, ai: pd.DataFrame) -> str:
    served = ai["requests_completed"].sum() / trad["requests_completed"].sum() - 1.0
    pods = ai["replica_hours"].sum() / trad["replica_hours"].sum() - 1.0
    return (
        f"served requests {_pct(served)}, replica-hours {_pct(pods)}: both stacks run the same "
        f"HPA on the same traffic, so efficiency moves only by the requests a faster fix "
        f"saves and the pods an action adds (scale-outs, failover standbys) or frees."
    )


def _slo(row: dict, trad: pd.DataFrame, ai: pd.DataFrame) -> str:
    share = fault_time_share(trad)
    return (
        f"traditional {row['traditional']:.1%}, AI {row['ai']:.1%}. The suite is dense in "
        f"faults by design (a fault is live {_share(share)} of the time, 1.5-3 h runs each "
        f"built around its faults), so both levels sit far below a production month's; "
        f"the claimed 92% is a long-run level, and the paired difference (context row) is "
        f"the comparable figure."
    )


def _cost(row: dict, trad: pd.DataFrame, ai: pd.DataFrame) -> str:
    mix = action_mix(ai)
    scale = mix.get("auto:scale_to", 0) + mix.get("approved:scale_to", 0)
    failover = sum(v for k, v in mix.items() if k.endswith(":failover"))
    standby = float(ai["standby_replica_hours"].sum())
    eng_t, eng_a = _per_run(trad, "engineer_min"), _per_run(ai, "engineer_min")
    return (
        f"replica-hours per run {row['traditional']:.1f} -> {row['ai']:.1f}. The AI stack "
        f"scaled out {scale} times on its own or with approval and failed over {failover} "
        f"times ({standby:.1f} standby replica-hours in all); nothing in it scales in ahead of "
        f"the HPA in runs this short. People are the other cost: expected engineer minutes "
        f"per run {eng_t:.0f} -> {eng_a:.0f} (see the operating-cost context row)."
    )


def _pages(row: dict, trad: pd.DataFrame, ai: pd.DataFrame) -> str:
    tickets = _per_run(ai, "tickets") if "tickets" in ai else float("nan")
    return (
        f"pages per SLO-violation episode {row['traditional']:.2f} -> {row['ai']:.2f}; pages "
        f"per run {_per_run(trad, 'pages'):.1f} -> {_per_run(ai, 'pages'):.1f}, episodes per "
        f"run {_per_run(trad, 'slo_episodes'):.2f} -> {_per_run(ai, 'slo_episodes'):.2f}. The "
        f"AI pages only while users feel an incident (otherwise it files a ticket: "
        f"{tickets:.1f} per run) and when its automation fails or is not trusted; every "
        f"static-threshold incident pages the engineer."
    )


def _right_first(row: dict, trad: pd.DataFrame, ai: pd.DataFrame) -> str:
    def share(frame: pd.DataFrame, num: str, den: str) -> str:
        n = pd.to_numeric(frame[num], errors="coerce").sum()
        d = pd.to_numeric(frame[den], errors="coerce").sum()
        return f"{int(n)}/{int(d)}"

    return (
        f"first action right on {share(ai, 'right_remedy_first', 'faults_responded')} faults "
        f"acted on under AI, {share(trad, 'right_remedy_first', 'faults_responded')} under "
        f"traditional operations (the engineer diagnoses right 80% of the time, then knows "
        f"the remedy); right remedy ever taken: AI "
        f"{share(ai, 'right_remedy_any', 'faults_remediable')}, traditional "
        f"{share(trad, 'right_remedy_any', 'faults_remediable')}. The AI reads telemetry "
        f"only: deploy events, node metrics, retry amplification, symptoms at the RCA's top "
        f"cause; the oracle is read only here."
    )


WHY = {
    "pages_per_incident": _pages,
    "right_remedy_first": _right_first,
    "mttr": _mttr,
    "incident_frequency": _incidents,
    "alert_fatigue": _alert_fatigue,
    "efficiency": _efficiency,
    "slo_adherence": _slo,
    "cost": _cost,
}


def statement(claim: Claim, row: dict, trad: pd.DataFrame, ai: pd.DataFrame) -> str:
    """`verdict: figure [CI] vs claimed (position); why`."""
    head = (
        f"{row['verdict']}: {_figure(claim, row)} against the claimed {claim.claimed} "
        f"({_position(claim, row['estimate'])}, over {row['pairs']} pairs)"
    )
    return f"{head}. {WHY[claim.key](row, trad, ai)}"


def _applied(kinds_js: str, kind: str) -> tuple[bool, bool]:
    """Whether an action kind was applied (by anyone) in a run, and whether it was taken
    back (a guardrail undo, or the operator lifting an emergency measure)."""
    kinds = json.loads(kinds_js)
    back = ("undo:", "revert:")
    applied = any(k.endswith(f":{kind}") and not k.startswith(back) for k in kinds)
    return applied, any(f"{b}{kind}" in kinds for b in back)


def observations(table: pd.DataFrame) -> list[str]:
    """What the runs show about the stacks beyond the claims (for the summary)."""
    ok = table[table["error"].isna()] if "error" in table else table
    lines = []
    for mode, frame in ok.groupby("mode", sort=False):
        flags = [_applied(js, "shed_load") for js in frame["action_kinds"]]
        kept = np.array([a and not u for a, u in flags])
        if kept.any():
            cens_kept = int(frame["mttr_censored"][kept].sum())
            cens_rest = int(frame["mttr_censored"][~kept].sum())
            lines.append(
                f"{mode}: load shedding was applied and never taken back in {int(kept.sum())} of "
                f"{len(frame)} runs; {cens_kept} of the {cens_kept + cens_rest} censored "
                f"restores (SLO never restored by the run's end) are in those runs: refusing a "
                f"share of traffic breaks the availability objective for as long as it lasts."
            )
    lost = ok.groupby("mode", sort=False)["features_lost"].sum()
    if lost.sum():
        lines.append(
            "features lost to rollbacks while no bad deploy was live: "
            + ", ".join(f"{m} {int(v)}" for m, v in lost.items())
            + " (a rollback ends a bad deploy or a misconfiguration; otherwise it replaces a "
            "good version and changes nothing else)."
        )
    ai = ok[ok["mode"] == "ai"]
    if len(ai):
        unsafe = int(ai["unsafe_actions"].fillna(0).sum())
        lines.append(
            f"AI operations: {unsafe} automated or approved actions broke a guardrail limit "
            f"in the independent recount, in {int((ai['unsafe_actions'] > 0).sum())} of "
            f"{len(ai)} runs."
        )
        if "predictive_scale_actions" in ai:
            n = int(ai["predictive_scale_actions"].fillna(0).sum())
            lines.append(f"predictive scale actions in the AI runs: {n}.")
    return lines
