"""Who picked the right remedy, and how fast: rehearsals scored against the mitigation oracle.

labels.json carries, per fault, the actions that end it (`remedies.ends`, each an action
kind and where it must be aimed) and those that only mitigate it (twin.control.mechanisms).
Only this scoring reads it; neither stack ever does.

A stack's *responses* to a fault are its own actions (automated, approved or the
engineer's; never the operator's reverts of temporary measures, the guardrails' undos or an
escalation) taken from the fault's start until its labelled end plus the grace, aimed at
one of the fault's names (its roots, a node's zone, the services it affected; shedding at
an entry counts for any fault), on an incident that touched one of them or on no incident
(an RL policy's). The fault's *first* response is right when it is one of
the fault's ending remedies, aimed where the oracle says; *time to the right remedy* runs
from the fault's start to its first right response. Faults no action ends (a leak, a
network fault) are not scored: there is no right remedy to pick.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from twin.control.mechanisms import aimed

RESPONSES = frozenset({"auto", "approved", "human"})
NOT_REMEDIES = frozenset({"noop", "escalate"})
__all__ = ["NOT_REMEDIES", "RESPONSES", "aimed", "responses", "score_remedies"]


def responses(
    label: Mapping[str, Any],
    actions: Sequence[Mapping[str, Any]],
    incident_services: Mapping[str, set[str]],
    grace_s: float,
) -> list[Mapping[str, Any]]:
    """The stack's actions in response to one fault, in time order."""
    names = set(label.get("roots") or [label["target"]])
    names |= {a["service"] for a in label.get("affected") or ()}
    start, end = float(label["start"]), float(label["end"]) + grace_s
    out = []
    for a in actions:
        if a.get("by") not in RESPONSES or "error" in a:
            continue
        if a["action"].get("action") in NOT_REMEDIES or not start <= a["time"] <= end:
            continue
        incident = a.get("incident")
        if incident is not None and not (incident_services.get(incident, set()) & names):
            continue
        act = a["action"]
        aims = {act.get(k) for k in ("service", "source", "target", "node")} - {None}
        if act.get("action") != "shed_load" and not aims & names:
            continue
        out.append(a)
    return sorted(out, key=lambda a: a["time"])


def score_remedies(
    labels: Sequence[Mapping[str, Any]],
    actions: Sequence[Mapping[str, Any]],
    incidents: Sequence[Any],
    grace_s: float,
) -> dict[str, Any]:
    """Per fault: its first response, whether it was right, the time to a right one; and
    the stack's totals (right first among the remediable faults it responded to)."""
    services = {i.id: set(i.services) for i in incidents}
    rows = []
    for label in labels:
        ends = (label.get("remedies") or {}).get("ends") or []
        if not ends:
            continue
        acted = responses(label, actions, services, grace_s)
        right = [a for a in acted if any(aimed(a["action"], r) for r in ends)]
        rows.append(
            {
                "fault": label["id"],
                "kind": label["kind"],
                "responded": bool(acted),
                "first_action": acted[0]["action"] if acted else None,
                "first_by": acted[0]["by"] if acted else None,
                "right_first": bool(acted) and acted[0] in right,
                "time_to_right_s": round(right[0]["time"] - float(label["start"]), 3)
                if right
                else None,
            }
        )
    responded = [r for r in rows if r["responded"]]
    times = [r["time_to_right_s"] for r in rows if r["time_to_right_s"] is not None]
    return {
        "faults_remediable": len(rows),
        "faults_responded": len(responded),
        "right_remedy_first": sum(r["right_first"] for r in responded),
        "right_remedy_any": len(times),
        "time_to_right_remedy_s": round(sum(times) / len(times), 1) if times else None,
        "per_fault": rows,
    }
