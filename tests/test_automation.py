"""Automation levels: unknown incidents escalate, low confidence, graduation and demotion."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from agents.contracts import Candidate, Decision, IncidentView
from agents.deciding.automation import AutomationError, AutomationPolicy, Trust, stricter
from agents.deciding.decide import decide, record_outcome, summary
from agents.deciding.runbook import runbook_from_mapping
from agents.deciding.selection import OutcomeModel, RiskAwareSelector
from twin.control.actions import RestartPods, Rollback

RUNBOOK = runbook_from_mapping(
    {
        "rules": [
            {
                "name": "memory-restart",
                "when": {"symptoms": {"all": ["memory"]}},
                "actions": [{"kind": "restart_pods", "service": "$cause", "share": 0.5}],
            },
            {
                "name": "deploy-rollback",
                "when": {"signature": "latency+errors"},
                "actions": [{"kind": "rollback", "service": "$cause"}],
                "max_level": "approval",
                "dry_run": True,
            },
        ]
    },
    "test.yaml",
)
REPLICAS = {"cart": 4, "frontend": 2}


def view(signature: str = "memory", confidence: float = 0.9, **kw: Any) -> IncidentView:
    fields: dict[str, Any] = {
        "id": "inc-7",
        "opened": 10.0,
        "now": 40.0,
        "services": ("frontend", "cart"),
        "signals": ("memory_mb",),
        "detectors": ("tier1",),
        "n_alerts": 2,
        "top_cause": "cart",
        "cause_confidence": confidence,
        "signature": signature,
    }
    fields.update(kw)
    return IncidentView(**fields)


RESTART = Candidate(RestartPods("cart", share=0.5), "memory-restart")


def test_levels_order() -> None:
    assert stricter("auto", "approval") == "approval"
    assert stricter("escalate", "auto", "approval") == "escalate"


# --- escalation ---------------------------------------------------------------------------


def test_unknown_signature_escalates() -> None:
    policy = AutomationPolicy()
    level, why = policy.assess(view("unknown"), RESTART)
    assert level == "escalate" and "signature 'unknown'" in why
    decision = decide(view("unknown"), REPLICAS, RUNBOOK, RiskAwareSelector(), policy, now=41.0)
    assert decision.level == "escalate" and decision.chosen is None
    assert decision.time == 41.0 and decision.incident_id == "inc-7"
    assert "not a known symptom family" in decision.reason


def test_no_matching_rule_escalates() -> None:
    decision = decide(view("traffic"), REPLICAS, RUNBOOK, RiskAwareSelector(), AutomationPolicy())
    assert decision.level == "escalate" and decision.candidates == ()
    assert "no runbook rule matches signature 'traffic'" in decision.reason
    assert decision.time == 40.0  # the view's time by default
    no_cause = decide(
        view(top_cause=None), REPLICAS, RUNBOOK, RiskAwareSelector(), AutomationPolicy()
    )
    assert no_cause.level == "escalate" and "none could name a target" in no_cause.reason
    assert AutomationPolicy().level(view(), None) == "escalate"


def test_an_escalate_action_always_escalates() -> None:
    from twin.control.actions import Escalate

    escalate = Escalate(reason="unclear")
    level, why = AutomationPolicy(graduate_after=1).assess(view(), Candidate(escalate, "low"))
    assert level == "escalate" and "hands the incident to a human" in why


# --- confidence ---------------------------------------------------------------------------


def graduated(policy: AutomationPolicy, outcomes: OutcomeModel, n: int) -> None:
    for _ in range(n):
        record_outcome("memory", "restart_pods", True, outcomes, policy)


def test_low_confidence_escalates_and_middling_confidence_asks() -> None:
    policy, outcomes = AutomationPolicy(escalate_below=0.3, approval_below=0.6), OutcomeModel()
    graduated(policy, outcomes, 5)
    assert policy.level(view(confidence=0.9), RESTART, outcomes) == "auto"
    level, why = policy.assess(view(confidence=0.2), RESTART, outcomes)
    assert level == "escalate" and "RCA confidence 0.20 is below 0.30" in why
    level, why = policy.assess(view(confidence=0.45), RESTART, outcomes)
    assert level == "approval" and "below 0.60: at most approval" in why
    assert policy.level(view(confidence=0.3), RESTART, outcomes) == "approval"  # inclusive
    assert policy.level(view(confidence=0.6), RESTART, outcomes) == "auto"


# --- the trust boundary -------------------------------------------------------------------


def test_graduation_from_approval_to_auto_after_n_successes() -> None:
    policy, outcomes = AutomationPolicy(graduate_after=3, graduate_mean=0.75), OutcomeModel()
    levels = [policy.level(view(), RESTART, outcomes)]
    for _ in range(3):
        levels.append(record_outcome("memory", "restart_pods", True, outcomes, policy))
    assert levels == ["approval", "approval", "approval", "auto"]
    level, why = policy.assess(view(), RESTART, outcomes)
    assert level == "auto" and why.startswith("graduated: restart_pods on 'memory'")
    # trust is per signature and per kind
    assert policy.level(view("memory+latency"), RESTART, outcomes) == "approval"
    rollback = Candidate(Rollback("cart"), "memory-restart")
    assert policy.level(view(), rollback, outcomes) == "approval"


def test_graduation_needs_the_posterior_mean_too() -> None:
    policy, outcomes = AutomationPolicy(graduate_after=3, graduate_mean=0.75), OutcomeModel()
    for ok in (False, False, True, True, True):
        record_outcome("memory", "restart_pods", ok, outcomes, policy)
    assert policy.trust_of("memory", "restart_pods").streak == 3
    assert outcomes.mean("memory", "restart_pods") == pytest.approx(4 / 7)
    level, why = policy.assess(view(), RESTART, outcomes)
    assert level == "approval" and "posterior mean 0.57 (need 0.75)" in why
    for _ in range(5):  # 8 successes, 2 failures: Beta(9, 3), mean 0.75
        record_outcome("memory", "restart_pods", True, outcomes, policy)
    assert policy.level(view(), RESTART, outcomes) == "auto"


def test_a_failure_demotes_and_trust_must_be_earned_again() -> None:
    policy, outcomes = AutomationPolicy(graduate_after=3, graduate_mean=0.6), OutcomeModel()
    graduated(policy, outcomes, 4)
    assert policy.level(view(), RESTART, outcomes) == "auto"
    assert record_outcome("memory", "restart_pods", False, outcomes, policy) == "approval"
    trust = policy.trust_of("memory", "restart_pods")
    assert (trust.successes, trust.failures, trust.streak, trust.demotions) == (4, 1, 0, 1)
    levels = [record_outcome("memory", "restart_pods", True, outcomes, policy) for _ in range(3)]
    assert levels == ["approval", "approval", "auto"]


def test_rule_ceiling_and_never_auto_cap_a_graduated_action() -> None:
    policy, outcomes = AutomationPolicy(never_auto={"rollback"}), OutcomeModel()
    graduated(policy, outcomes, 5)
    level, why = policy.assess(view(), RESTART, outcomes, ceiling="approval")
    assert level == "approval" and "caps automation at approval" in why
    for _ in range(5):
        record_outcome("memory", "rollback", True, outcomes, policy)
    rollback = Candidate(Rollback("cart"), "memory-restart")
    level, why = policy.assess(view(), rollback, outcomes)
    assert level == "approval" and "never automatic by policy" in why


def test_without_an_outcome_model_the_policy_uses_its_own_counts() -> None:
    policy = AutomationPolicy(graduate_after=2, graduate_mean=0.7)
    policy.record("memory", "restart_pods", True)
    assert policy.record("memory", "restart_pods", True) == "auto"  # Beta(3, 1): 0.75
    assert policy.level(view(), RESTART) == "auto"


def test_trust_state_json_round_trip(tmp_path: Path) -> None:
    policy = AutomationPolicy(escalate_below=0.2, graduate_after=2, never_auto=("failover",))
    for ok in (True, True, False, True):
        policy.record("errors+latency", "rollback", ok)
    path = tmp_path / "trust.json"
    policy.save(path)
    back = AutomationPolicy.load(path)
    assert back.to_dict() == policy.to_dict()
    assert back.trust_of("latency+errors", "rollback") == Trust(3, 1, 1, 1)
    assert back.never_auto == {"failover"} and back.escalate_below == 0.2


def test_policy_errors(tmp_path: Path) -> None:
    with pytest.raises(AutomationError, match="escalate_below <= approval_below"):
        AutomationPolicy(escalate_below=0.7, approval_below=0.5)
    with pytest.raises(AutomationError, match="graduate_after must be >= 1"):
        AutomationPolicy(graduate_after=0)
    with pytest.raises(AutomationError, match=r"graduate_mean must be in \[0, 1\]"):
        AutomationPolicy(graduate_mean=1.5)
    with pytest.raises(AutomationError, match=r"nope\.json: file not found"):
        AutomationPolicy.load(tmp_path / "nope.json")
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"version": 1, "trust": [{"signature": "memory", "kind": "x"}]}))
    with pytest.raises(AutomationError, match=r"bad\.json: malformed trust state"):
        AutomationPolicy.load(bad)
    bad.write_text(json.dumps({"version": 1, "settings": {"graduate_after": 0}}))
    with pytest.raises(AutomationError, match=r"bad\.json: graduate_after must be >= 1"):
        AutomationPolicy.load(bad)


# --- decide -------------------------------------------------------------------------------


def test_decide_wires_runbook_selection_and_policy() -> None:
    outcomes, policy = OutcomeModel(), AutomationPolicy()
    selector = RiskAwareSelector(outcomes)
    first = decide(view(), REPLICAS, RUNBOOK, selector, policy)
    assert isinstance(first, Decision)
    assert first.level == "approval" and first.chosen is not None
    assert first.chosen.action == RestartPods("cart", share=0.5)
    assert first.reason.startswith("approval: not yet trusted")
    assert "chose restart_pods(service='cart', share=0.5) from rule 'memory-restart'" in (
        first.reason
    )
    for _ in range(3):
        record_outcome(view().signature, first.chosen.action.kind, True, outcomes, policy)
    later = decide(view(), REPLICAS, RUNBOOK, selector, policy)
    assert later.level == "auto"
    assert summary(later) == "inc-7: auto restart_pods(service='cart', share=0.5) [memory-restart]"
    assert json.loads(json.dumps(later.to_dict()))["level"] == "auto"


def test_decide_applies_the_rule_ceiling_and_dry_run_permission() -> None:
    calls = []

    def dry_run(action: Any) -> dict[str, float]:
        calls.append(action)
        return {"health_before": 0.5, "health_after": 0.8}

    outcomes, policy = OutcomeModel(), AutomationPolicy(graduate_after=1, graduate_mean=0.5)
    record_outcome("latency+errors", "rollback", True, outcomes, policy)
    selector = RiskAwareSelector(outcomes, dry_run=dry_run)
    decision = decide(view("errors+latency"), REPLICAS, RUNBOOK, selector, policy)
    assert decision.chosen is not None and decision.chosen.action == Rollback("cart")
    assert decision.level == "approval" and "caps automation at approval" in decision.reason
    assert calls == [Rollback("cart")]
    assert decision.chosen.dry_run is not None and "+0.300" in decision.reason
    decide(view("memory"), REPLICAS, RUNBOOK, selector, policy)
    assert calls == [Rollback("cart")]  # the memory rule does not allow dry runs


def test_decide_is_deterministic() -> None:
    def run() -> dict:
        outcomes, policy = OutcomeModel(), AutomationPolicy()
        for ok in (True, False, True):
            record_outcome("memory", "restart_pods", ok, outcomes, policy)
        return decide(view(), REPLICAS, RUNBOOK, RiskAwareSelector(outcomes), policy).to_dict()

    assert run() == run()
