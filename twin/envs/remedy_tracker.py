"""Right remedy first, and the time to it: an episode's responses scored against the oracle.

The environment knows the fault it drew (the policy never does), so it can say whether the
policy's first response was one of the remedies that end this kind of fault, aimed where
`twin.control.mechanisms.oracle` says, and when the first such action came. A right remedy
need not end the fault at once: a restart of half the pods replaces half the sick ones,
and a new pod may catch the fault again (`p_success`); `resolved_after_s` says when it
ended. The rules are the rehearsal's (`experiments.rehearsal.remedy_score`): a response is
an applied action other than an escalation, taken from the fault's start while the fault
is on; undoing a temporary measure (unshedding, failing back) is not one. Faults no
action ends (a leak, a network fault) are not scored: there is no right remedy to pick.
The tracker also notes when the fault stopped (by its remedy, a human, or the control
plane's own eviction), to the decision: mitigating a fault keeps the SLO but does not
end it.
"""

from __future__ import annotations

from typing import Any

from twin.control.actions import Action
from twin.control.mechanisms import aimed, oracle
from twin.scenario.schema import NODE_FAULT_KINDS, Scenario

NOT_RESPONSES = frozenset({"noop", "escalate"})


def _is_revert(action: dict[str, Any]) -> bool:
    """Unshedding or failing back: the end of a temporary measure, not a response."""
    kind = action.get("action")
    return kind in ("shed_load", "failover") and float(action.get("share") or 0.0) <= 0.0


class RemedyTracker:
    """Scores one episode's responses to its (first) fault."""

    def __init__(self, scenario: Scenario) -> None:
        fault = scenario.faults[0]
        zone = None
        if fault.kind in NODE_FAULT_KINDS and scenario.infrastructure is not None:
            nodes = scenario.infrastructure.node_list()
            zone = next((n.zone for n in nodes if n.name == fault.target), None)
        self.start = float(fault.start)
        self.ending = oracle(fault.kind, fault.target, getattr(fault, "peer", None), zone)["ends"]
        self.responses = 0
        self.first_right: bool | None = None
        self.right_after_s: float | None = None
        self.resolved_after_s: float | None = None

    @property
    def remediable(self) -> bool:
        return bool(self.ending)

    def note(self, action: Action, now: float, fault_on: bool) -> bool | None:
        """Record an applied action; whether it was the right remedy (None: not scored)."""
        as_dict = action.to_dict()
        if (
            not self.remediable
            or not fault_on
            or now < self.start
            or as_dict.get("action") in NOT_RESPONSES
            or _is_revert(as_dict)
        ):
            return None
        right = any(aimed(as_dict, r) for r in self.ending)
        self.responses += 1
        if self.first_right is None:
            self.first_right = right
        if right and self.right_after_s is None:
            self.right_after_s = now - self.start
        return right

    def observe(self, now: float, fault_on: bool) -> None:
        """At a decision: note when the fault, once started, is found stopped."""
        if self.resolved_after_s is None and now > self.start and not fault_on:
            self.resolved_after_s = now - self.start

    def summary(self) -> dict[str, Any]:
        return {
            "remediable": self.remediable,
            "responded": self.responses > 0,
            "right_remedy_first": self.first_right,
            "time_to_right_remedy_s": self.right_after_s,
            "resolved_after_s": self.resolved_after_s,
        }
