"""The report's plain-text "what happened": per fault, then the actions, from the data alone.

Every sentence is derived from the run directory (labels, the scored stack, the operations
log), so the story and the table can never disagree.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from detectors.anomaly.evaluation import DEFAULT_GRACE_S, FaultLabel
from experiments.report.data import RunData

WHO = {
    "auto": "automated",
    "approved": "approved by the engineer",
    "human": "by the engineer",
    "undo": "undo",
}


def clock(t: float) -> str:
    """Scenario time as a wall clock (day 0 is omitted): 19:02:05 or d1 03:00:00."""
    t = max(0.0, float(t))
    day, rest = divmod(int(round(t)), 86400)
    h, rest = divmod(rest, 3600)
    m, s = divmod(rest, 60)
    return (f"d{day} " if day else "") + f"{h:02d}:{m:02d}:{s:02d}"


def span(seconds: float | None) -> str:
    """A duration for people: 37 s, 18 min 3 s, 1 h 55 min."""
    if seconds is None:
        return "-"
    s = int(round(float(seconds)))
    if s < 60:
        return f"{s} s"
    if s < 3600:
        m, s = divmod(s, 60)
        return f"{m} min" + (f" {s} s" if s else "")
    h, rest = divmod(s, 3600)
    return f"{h} h" + (f" {rest // 60} min" if rest // 60 else "")


def describe_action(action: Mapping[str, Any]) -> str:
    """`rollback productcatalogservice`, `scale_to cartservice (6 replicas)`, ..."""
    kind = str(action.get("action", "?"))
    target = action.get("service") or action.get("entry") or ""
    extra = []
    if action.get("replicas") is not None:
        extra.append(f"{action['replicas']} replicas")
    if action.get("share") is not None and kind != "restart_pods":
        extra.append(f"share {float(action['share']):g}")
    text = f"{kind} {target}".strip()
    return text + (f" ({', '.join(extra)})" if extra else "")


def _by_fault(rows: Sequence[Mapping[str, Any]], key: str) -> dict[str, Any]:
    return {r["fault"]: r.get(key) for r in rows}


def _fault_line(fault: FaultLabel, run: RunData) -> str:
    per = run.stack.get("per_fault", {})
    mttd = _by_fault(per.get("mttd", []), "mttd_s")
    mtti = _by_fault(per.get("mtti", []), "mtti_s")
    mttr = {r["fault"]: r for r in per.get("mttr", [])}
    where = fault.target + (f"↔{fault.peer}" if fault.peer else "")
    head = f"{clock(fault.start)}–{clock(fault.end)} {fault.kind} on {where} ({fault.id}):"
    parts = []
    delay = mttd.get(fault.id)
    if delay is None:
        parts.append("not detected")
    else:
        first = _first_alert(run, fault, fault.start + delay)
        parts.append(f"detected {clock(fault.start + delay)} (+{span(delay)}{first})")
    found = mtti.get(fault.id)
    if found is not None:
        by = _identifier(run, fault, fault.start + found)
        parts.append(f"identified {clock(fault.start + found)} (+{span(found)}{by})")
    else:
        named = _named_instead(run, fault)
        parts.append("not identified" + (f" (named {named})" if named else ""))
    restore = mttr.get(fault.id)
    if restore is None:
        parts.append("no SLO window violated")
    elif restore.get("censored"):
        parts.append(f"SLO not restored by the end of the run ({span(restore['mttr_s'])}+)")
    else:
        t = fault.start + restore["mttr_s"]
        parts.append(f"SLO restored {clock(t)} (+{span(restore['mttr_s'])})")
    return head + " " + "; ".join(parts)


def _first_alert(run: RunData, fault: FaultLabel, t: float) -> str:
    for a in run.alerts:
        if abs(a["time"] - t) < 1e-6 and a["service"] in fault.services:
            return f", {a['signal']} on {a['service']}"
    return ""


def _identifier(run: RunData, fault: FaultLabel, t: float) -> str:
    roots = {fault.target, fault.peer}
    for i in run.operations.get("identifications", []):
        if abs(i["time"] - t) < 1e-6 and i.get("service") in roots:
            who = "RCA" if i.get("by") == "rca" else "the engineer"
            return f", by {who}: {i['service']}"
    return ""


def _named_instead(run: RunData, fault: FaultLabel) -> str:
    end = fault.end + DEFAULT_GRACE_S
    named = {
        i.get("service")
        for i in run.operations.get("identifications", [])
        if fault.start <= i["time"] <= end and i.get("service")
    }
    return ", ".join(sorted(named))


def action_lines(actions: Sequence[Mapping[str, Any]]) -> list[str]:
    """Actions in time order; a run of the same action by the same hand is one line."""
    groups: list[dict[str, Any]] = []
    for a in sorted(actions, key=lambda a: a["time"]):
        what = describe_action(a.get("action", {}))
        who = WHO.get(a.get("by", ""), a.get("by", "?"))
        failed = "error" in a
        last = groups[-1] if groups else None
        if last and last["what"] == what and last["who"] == who and last["failed"] == failed:
            last["n"] += 1
            last["end"] = a["time"]
            continue
        groups.append(
            {"what": what, "who": who, "failed": failed, "n": 1, "t0": a["time"], "end": a["time"]}
        )
    out = []
    for g in groups:
        when = clock(g["t0"]) if g["n"] == 1 else f"{clock(g['t0'])}–{clock(g['end'])}"
        times = f" ×{g['n']}" if g["n"] > 1 else ""
        failed = " — refused" if g["failed"] else ""
        out.append(f"{when} {g['what']}{times} ({g['who']}){failed}")
    return out


def overview_line(run: RunData) -> str:
    """Alerts, incidents, actions by hand and the SLO in one sentence."""
    s = run.stack
    if not s:
        return "This run was not scored (no operations stack)."
    adherence = s.get("slo_adherence")
    slo = f"{100 * adherence:.1f}%" if adherence is not None else "-"
    text = (
        f"{s.get('alerts', 0)} alerts in {s.get('incidents', 0)} incidents; "
        f"{s.get('actions', 0)} actions ({s.get('actions_automated', 0)} automated, "
        f"{s.get('actions_approved', 0)} approved, {s.get('actions_by_human', 0)} by the "
        f"engineer, {s.get('actions_undone', 0)} undone), {s.get('unsafe_actions', 0)} unsafe; "
        f"SLO adherence {slo} with {s.get('slo_violating_min', 0):g} SLO-violating minutes."
    )
    if s.get("escalated"):
        text += f" {s['escalated']} decisions escalated to the engineer."
    return text


def story(run: RunData) -> dict[str, list[str]]:
    """The "what happened" list of one mode: overview, faults in time order, actions."""
    faults = sorted(run.faults, key=lambda f: (f.start, f.id))
    return {
        "overview": [overview_line(run)],
        "faults": [_fault_line(f, run) for f in faults],
        "actions": action_lines(run.operations.get("actions", [])),
    }
