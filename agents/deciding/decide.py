"""One incident in, one Decision out: runbook → risk-aware selection → automation level.

The three parts stay separate so each can be tested and swapped (a learned policy for the
selector, a stricter automation policy in production); this wires them and writes down why,
so the audit log can replay every decision from its record alone.
"""

from __future__ import annotations

from collections.abc import Mapping

from agents.contracts import Decision, IncidentView, Level
from agents.deciding.automation import AutomationPolicy
from agents.deciding.runbook import Runbook, is_known_signature
from agents.deciding.selection import OutcomeModel, RiskAwareSelector, describe


def decide(
    view: IncidentView,
    replicas: Mapping[str, int],
    runbook: Runbook,
    selector: RiskAwareSelector,
    policy: AutomationPolicy,
    now: float | None = None,
) -> Decision:
    """Decide what to do about an incident: the chosen candidate, its level, and the reason.

    No matching rule (or an unknown signature) gives an escalation with no chosen action.
    `replicas` is the current replica count per service (for relative scaling and for risk).
    """
    time = view.now if now is None else now
    candidates = runbook.candidates(view, replicas)
    if not candidates:
        matched = [rule.name for rule in runbook.match(view)]
        if not is_known_signature(view.signature):
            why = f"signature {view.signature!r} is not a known symptom family"
        elif matched:
            why = f"rules {', '.join(matched)} match but none could name a target"
        else:
            why = f"no runbook rule matches signature {view.signature!r}"
        return Decision(view.id, time, "escalate", None, (), f"escalate: {why}")
    ranking = selector.rank(view.signature, candidates, replicas, runbook.dry_run_rules())
    chosen = ranking.chosen
    assert chosen is not None
    level, why = policy.assess(
        view, chosen, selector.outcomes, ceiling=runbook.rule(chosen.rule).max_level
    )
    reason = f"{level}: {why}. {ranking.reason}"
    return Decision(view.id, time, level, chosen, ranking.candidates, reason)


def record_outcome(
    signature: str,
    kind: str,
    success: bool,
    outcomes: OutcomeModel,
    policy: AutomationPolicy,
) -> Level:
    """Learn from an executed action: update its success posterior and its trust together."""
    outcomes.update(signature, kind, success)
    return policy.record(signature, kind, success, outcomes)


def summary(decision: Decision) -> str:
    """A one-line account for logs: level, action and the rule it came from."""
    if decision.chosen is None:
        return f"{decision.incident_id}: {decision.level} (no action)"
    return (
        f"{decision.incident_id}: {decision.level} {describe(decision.chosen.action)} "
        f"[{decision.chosen.rule}]"
    )
