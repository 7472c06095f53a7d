"""The operator's record-keeping: decisions, approvals and outcomes, as operations.json and
the audit log (agents.safety.audit) keep them. A mixin, so the loop reads as what it does."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from agents.contracts import Candidate, Decision

if TYPE_CHECKING:
    from agents.loop.operator import Case


class Recording:
    """Needs `decisions` (a list), `audit` (an AuditLog or None) and `guardrails`."""

    def _record_decision(
        self, case: Case, time: float, level: str, chosen: Candidate | None, reason: str
    ) -> None:
        view = case.view
        self.decisions.append(
            {
                "time": time,
                "incident": case.incident.id,
                "level": level,
                "action": None if chosen is None else chosen.action.to_dict(),
                "signature": view.signature if view else None,
                "top_cause": view.top_cause if view else None,
                "confidence": view.cause_confidence if view else None,
                "reason": reason,
            }
        )

    def _log_decision(self, case: Case, decision: Decision) -> str | None:
        self._record_decision(case, decision.time, decision.level, decision.chosen, decision.reason)
        if self.audit is None:
            return None
        return self.audit.decision(decision, case.view, guardrails=self.guardrails.state())

    def _record_approval(self, decision_id: str | None, approval: Any) -> None:
        if self.audit is not None and decision_id is not None:
            what = {"decision": decision_id, "approved": approval.approved}
            self.audit.append("approval", approval.at, {**what, "reason": approval.reason})

    def _outcome(self, decision_id: str | None, now: float, **kw: Any) -> None:
        if self.audit is not None and decision_id is not None:
            self.audit.outcome(decision_id, now, **kw)
