"""Scoring a rehearsal against its ground truth: the figures `summary.json` carries per stack.

Labels are read here, and only here, to score what an operations mode did:

- **MTTD**: fault start → its first qualifying alert (detectors.anomaly.evaluation's rule).
- **MTTI**: fault start → the first identification (an RCA verdict or a human diagnosis)
  naming one of the fault's roots (its target, or either end of a broken link), made while
  the fault is live or within the grace after it.
- **MTTR**: fault start → SLO restored, for faults during which an SLO window was violated:
  the end of the last violating window before `stable_s` of good windows in a row. A fault
  whose violation never clears by the end of the run counts up to the end (censored; the
  count is reported). Faults with no violating window have no MTTR (no SLO impact).
- **Unsafe actions**: automated actions that broke a guardrail limit, recounted here
  independently of the guardrails' own bookkeeping (blast radius, services per window,
  actions per service per window, scaling bounds).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from agents.safety.guardrail_config import GuardrailConfig
from detectors.anomaly.evaluation import DEFAULT_GRACE_S, FaultLabel, evaluate
from detectors.base import Alert
from experiments.rehearsal.remedy_score import score_remedies
from twin.run.slo import SloTracker

STABLE_S = 300.0


def _mean(xs: Sequence[float]) -> float | None:
    return round(float(np.mean(xs)), 1) if xs else None


def slo_good_windows(slo: SloTracker) -> tuple[np.ndarray, float]:
    """Per window (of the first SLO's length): did every SLO hold? And the window length."""
    width = slo.slos[0].window_s
    done = int(math.ceil(slo.last_time / width - 1e-9))
    good = np.ones(done, bool)
    for k, objective in enumerate(slo.slos):
        n = min(done, len(slo.total[k]))
        total, failed = slo.total[k][:n], slo.failed[k][:n]
        served, slow = slo.served[k][:n], slo.slow[k][:n]
        avail = np.where(total > 0, 1.0 - failed / np.where(total > 0, total, 1.0), 1.0)
        fast = np.where(served > 0, 1.0 - slow / np.where(served > 0, served, 1.0), 1.0)
        ok = (avail >= objective.availability) & (fast >= objective.percentile / 100.0)
        good[:n] &= ok
    return good, width


def mttr(fault: FaultLabel, good: np.ndarray, width: float, grace_s: float) -> dict | None:
    """Restore time of one fault, or None when no SLO window failed while it was live.

    From the first violating window after the fault began, the SLO counts as restored at
    the start of the first run of `STABLE_S` of good windows.
    """
    first = int(fault.start // width)
    last = min(int(math.ceil((fault.end + grace_s) / width)), len(good))
    bad = np.flatnonzero(~good[first:last])
    if bad.size == 0:
        return None
    stable = max(1, int(math.ceil(STABLE_S / width)))
    i = first + int(bad[0]) + 1
    while i + stable <= len(good):
        if good[i : i + stable].all():
            return {"fault": fault.id, "mttr_s": i * width - fault.start, "censored": False}
        i += 1
    return {"fault": fault.id, "mttr_s": len(good) * width - fault.start, "censored": True}


def mtti(
    faults: Sequence[FaultLabel],
    identifications: Sequence[Mapping[str, Any]],
    grace_s: float,
    roots_of: Mapping[str, Sequence[str]] | None = None,
) -> list[dict]:
    """Per fault, the first identification naming one of its roots while it mattered
    (`roots_of`: fault id -> labels.json's `roots`, a node's zone or a zone's nodes)."""
    out = []
    for f in faults:
        roots = {f.target} | ({f.peer} if f.peer else set())
        roots |= set((roots_of or {}).get(f.id, ()))
        hits = [
            i["time"]
            for i in identifications
            if i.get("service") in roots and f.start <= i["time"] <= f.end + grace_s
        ]
        out.append({"fault": f.id, "mtti_s": min(hits) - f.start if hits else None})
    return out


def unsafe_actions(
    actions: Sequence[Mapping[str, Any]],
    config: GuardrailConfig,
    replicas_before: Mapping[int, Mapping[str, int]] | None = None,
) -> int:
    """Automated actions that break a limit, recounted from the action log alone."""
    auto = [
        a
        for a in actions
        if a.get("by") in ("auto", "approved")
        and "error" not in a
        and a["action"]["action"] not in ("noop", "escalate")  # always allowed, never counted
    ]
    bad = 0
    for i, a in enumerate(auto):
        act, t = a["action"], a["time"]
        kind = act["action"]
        # a restart by share (or of every pod) is checked here; one by count was sized by the
        # guardrails against the live replicas, which the log does not hold
        if kind == "restart_pods" and act.get("count") is None:
            share = 1.0 if act.get("share") is None else act["share"]
        else:
            share = 0.0
        if kind == "restart_pods" and share > config.max_restart_share + 1e-9:
            bad += 1
            continue
        if kind == "shed_load" and act.get("share", 0.0) > config.max_shed_share + 1e-9:
            bad += 1
            continue
        recent = [b for b in auto[: i + 1] if t - b["time"] < config.window_s]
        services = {b["action"].get("service") or b["action"].get("entry") for b in recent}
        same = [
            b
            for b in auto[: i + 1]
            if t - b["time"] < config.service_window_s
            and (b["action"].get("service") or b["action"].get("entry"))
            == (act.get("service") or act.get("entry"))
        ]
        if (
            len(services - {None}) > config.max_services
            or len(recent) > config.max_actions
            or len(same) > config.max_actions_per_service
        ):
            bad += 1
    return bad


def score_stack(
    *,
    alerts: Sequence[Alert],
    incidents: Sequence[Any],
    faults: Sequence[FaultLabel],
    slo: SloTracker,
    identifications: Sequence[Mapping[str, Any]],
    actions: Sequence[Mapping[str, Any]],
    decisions: Sequence[Mapping[str, Any]],
    pages: int,
    n_services: int,
    duration_s: float,
    replica_hours: float,
    guardrails: GuardrailConfig,
    grace_s: float = DEFAULT_GRACE_S,
    oracle: Sequence[Mapping[str, Any]] = (),
    tickets: int = 0,
) -> dict[str, Any]:
    """The per-stack block of summary.json; `oracle` is labels.json's faults (with their
    `remedies`), for the right-remedy figures (experiments.rehearsal.remedy_score)."""
    ev = evaluate(alerts, faults, n_services=n_services, duration_s=duration_s, incidents=incidents)
    delays = [d for _, d in ev.alerts.delays]
    good, width = slo_good_windows(slo)
    restores = [r for f in faults if (r := mttr(f, good, width, grace_s)) is not None]
    ident = mtti(faults, identifications, grace_s, {o["id"]: o.get("roots", ()) for o in oracle})
    found = [i["mtti_s"] for i in ident if i["mtti_s"] is not None]
    levels = [d["level"] for d in decisions]
    by = [a["by"] for a in actions if "error" not in a]
    slo_rep = slo.report()
    remedies = score_remedies(oracle, actions, incidents, grace_s)
    return {
        "alerts": len(alerts),
        "incidents": len(incidents),
        "alerts_per_incident": round(len(alerts) / len(incidents), 2) if incidents else None,
        "faults": len(faults),
        "faults_detected": ev.alerts.detected,
        "mttd_s": _mean(delays),
        "faults_identified": len(found),
        "mtti_s": _mean(found),
        "faults_with_slo_impact": len(restores),
        "mttr_s": _mean([r["mttr_s"] for r in restores]),
        "mttr_censored": sum(r["censored"] for r in restores),
        "per_fault": {
            "mttr": restores,
            "mtti": ident,
            "mttd": [{"fault": f, "mttd_s": d} for f, d in ev.alerts.delays],
            "remedy": remedies.pop("per_fault"),
        },
        **remedies,
        "tickets": tickets,
        "slo_adherence": slo_rep["slo_adherence"],
        "slo_violating_min": round(float((~good).sum() * width / 60.0), 1),
        "replica_hours": replica_hours,
        "pages": pages,
        "decisions": len(decisions),
        "actions": len(by),
        "actions_automated": by.count("auto"),
        "actions_approved": by.count("approved"),
        "actions_by_human": by.count("human"),
        "actions_undone": by.count("undo"),
        "mitigations_lifted": by.count("revert"),
        "escalated": levels.count("escalate"),
        "unsafe_actions": unsafe_actions(actions, guardrails),
        "incident_precision": round(ev.incidents.precision, 3) if ev.incidents else None,
    }
