"""Runbooks: schema errors name file, rule and field; placeholders; relative scaling; matching."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest

from agents.contracts import SYMPTOMS, IncidentView
from agents.deciding.runbook import (
    DEFAULT_RUNBOOK,
    Runbook,
    RunbookError,
    callers_of,
    canonical_signature,
    load_runbook,
    resolve_replicas,
    runbook_from_mapping,
)
from twin.control.actions import ACTIONS, Action, ForceBreaker, RestartPods, Rollback, ScaleTo
from twin.control.remedy_actions import Drain, RolloutRestart, SetRetries


@dataclasses.dataclass(frozen=True)
class _Failover(Action):
    service: str
    share: float = 1.0


@dataclasses.dataclass(frozen=True)
class _ShedLoad(Action):
    entry: str
    share: float = 0.1


@dataclasses.dataclass(frozen=True)
class _Escalate(Action):
    reason: str
    service: str | None = None


_PENDING: dict[str, type[Action]] = {
    "failover": _Failover,
    "shed_load": _ShedLoad,
    "escalate": _Escalate,
}


@pytest.fixture
def action_kinds(monkeypatch: pytest.MonkeyPatch) -> None:
    """Stand-ins for action kinds the twin may not register yet (real ones win if present).

    The stand-ins carry no `kind` at class creation, so they never register themselves;
    monkeypatch removes them from the registry after the test.
    """
    for kind, cls in _PENDING.items():
        if kind not in ACTIONS:
            monkeypatch.setattr(cls, "kind", kind, raising=False)
            monkeypatch.setitem(ACTIONS, kind, cls)


def view(signature: str = "memory", confidence: float = 0.9, **kw: Any) -> IncidentView:
    fields: dict[str, Any] = {
        "id": "inc-1",
        "opened": 100.0,
        "now": 130.0,
        "services": ("frontend", "cart"),
        "signals": ("memory_mb", "p99_ms"),
        "detectors": ("tier1",),
        "n_alerts": 3,
        "top_cause": "cart",
        "cause_confidence": confidence,
        "signature": signature,
    }
    fields.update(kw)
    return IncidentView(**fields)


def one_rule(**rule: Any) -> dict:
    base: dict[str, Any] = {"name": "r", "actions": [{"kind": "rollback", "service": "$cause"}]}
    base.update(rule)
    return {"rules": [base]}


def write(tmp_path: Path, text: str, name: str = "rb.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


# --- schema errors ------------------------------------------------------------------------


def test_unknown_action_kind_names_file_rule_and_field(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "rules:\n"
        "  - name: ok\n    actions: [{kind: rollback, service: $cause}]\n"
        "  - name: typo\n    actions: [{kind: restat, service: $cause}]\n",
    )
    with pytest.raises(RunbookError, match=r"rb\.yaml: rules\[1\]\.actions\[0\]\.kind: unknown "):
        load_runbook(path)
    with pytest.raises(RunbookError, match="unknown action 'restat'"):
        load_runbook(path)


@pytest.mark.parametrize(
    ("rule", "message"),
    [
        ({"when": {"signature": "memroy"}}, r"rules\[0\]\.when\.signature\[0\]: unknown symptom"),
        (
            {"when": {"symptoms": {"all": ["cpu"]}}},
            r"rules\[0\]\.when\.symptoms\.all\[0\]: unknown",
        ),
        ({"when": {"min_cause_confidence": 1.5}}, r"rules\[0\]\.when\.min_cause_confidence: "),
        (
            {"when": {"min_cause_confidence": 0.8, "max_cause_confidence": 0.2}},
            r"rules\[0\]\.when: min_cause_confidence 0\.8 is above max_cause_confidence 0\.2",
        ),
        ({"when": {"sigature": "memory"}}, r"rules\[0\]\.when\.sigature: Extra inputs"),
        ({"max_level": "sometimes"}, r"rules\[0\]\.max_level: .*'sometimes'"),
        ({"actions": []}, r"rules\[0\]\.actions: needs at least one entry$"),
        (
            {"actions": [{"kind": "rollback", "service": ["a"]}]},
            r"rules\[0\]\.actions\[0\]\.service: expected a single value",
        ),
        (
            {"actions": [{"kind": "rollback", "service": "$cuase"}]},
            r"rules\[0\]\.actions\[0\]\.service: unknown placeholder '\$cuase'",
        ),
        (
            {"actions": [{"kind": "scale_to", "service": "$cause", "replicas": "twice"}]},
            r"rules\[0\]\.actions\[0\]\.replicas: expected an integer, '\+N', '-N' or 'xF'",
        ),
        (
            {"actions": [{"kind": "restart_pods", "service": "$cause", "share": 1.5}]},
            r"rules\[0\]\.actions\[0\]: restart_pods: share must be in \(0, 1\]",
        ),
        (
            {"actions": [{"kind": "rollback", "service": "$cause", "force": True}]},
            r"rules\[0\]\.actions\[0\]\.force: unknown parameter 'force' for rollback",
        ),
        ({"actions": [{"service": "$cause"}]}, r"rules\[0\]\.actions\[0\]\.kind: Field required"),
    ],
)
def test_schema_errors_have_paths(rule: dict, message: str) -> None:
    data = one_rule(**rule)
    with pytest.raises(RunbookError, match=rf"^mine\.yaml: {message}"):
        runbook_from_mapping(data, "mine.yaml")


def test_duplicate_rule_names_are_rejected() -> None:
    data = {"rules": one_rule()["rules"] * 2}
    with pytest.raises(RunbookError, match=r"rules\[1\]\.name: duplicate rule 'r' \(also rules"):
        runbook_from_mapping(data, "x.yaml")


def test_file_level_errors(tmp_path: Path) -> None:
    with pytest.raises(RunbookError, match=r"nope\.yaml: file not found"):
        load_runbook(tmp_path / "nope.yaml")
    with pytest.raises(RunbookError, match=r"bad\.yaml: malformed YAML \(line \d+"):
        load_runbook(write(tmp_path, "rules:\n  - [unclosed\n", "bad.yaml"))
    with pytest.raises(RunbookError, match=r"list\.yaml: expected a mapping with 'rules'"):
        load_runbook(write(tmp_path, "- a\n- b\n", "list.yaml"))
    with pytest.raises(RunbookError, match=r"empty\.yaml: rules: Field required"):
        load_runbook(write(tmp_path, "description: nothing\n", "empty.yaml"))


# --- placeholders and relative scaling ----------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "current", "expected"),
    [("+2", 3, 5), ("-1", 3, 2), ("-5", 3, 1), ("x1.5", 3, 5), ("x2", 4, 8), ("x0.1", 3, 1)],
)
def test_relative_replicas(spec: str, current: int, expected: int) -> None:
    assert resolve_replicas(spec, current) == expected


def test_signed_integers_in_yaml_stay_relative(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "rules:\n  - name: up\n    actions:\n"
        "      - {kind: scale_to, service: $cause, replicas: +2}\n"
        "      - {kind: scale_to, service: $cause, replicas: -1}\n"
        "      - {kind: scale_to, service: $cause, replicas: x2}\n"
        "      - {kind: scale_to, service: frontend, replicas: 7}\n",
    )
    runbook = load_runbook(path)
    got = [c.action for c in runbook.candidates(view(), {"cart": 3, "frontend": 2})]
    assert got == [
        ScaleTo("cart", 5),
        ScaleTo("cart", 2),
        ScaleTo("cart", 6),
        ScaleTo("frontend", 7),
    ]


def test_relative_replicas_need_the_current_count() -> None:
    runbook = runbook_from_mapping(
        one_rule(actions=[{"kind": "scale_to", "service": "$cause", "replicas": "+1"}])
    )
    with pytest.raises(RunbookError, match="current replica count of 'cart'"):
        runbook.candidates(view(), {"frontend": 2})


def test_cause_placeholder_binds_the_top_cause_and_rule_name() -> None:
    runbook = runbook_from_mapping(
        one_rule(
            name="mem",
            actions=[{"kind": "restart_pods", "service": "$cause", "share": 0.5}],
        )
    )
    (cand,) = runbook.candidates(view(), {"cart": 4})
    assert cand.action == RestartPods("cart", share=0.5)
    assert cand.rule == "mem"


def test_no_top_cause_drops_cause_actions() -> None:
    runbook = runbook_from_mapping(one_rule())
    assert runbook.candidates(view(top_cause=None), {}) == []


def test_caller_placeholder_from_evidence_and_absent_gracefully() -> None:
    runbook = runbook_from_mapping(
        one_rule(
            actions=[
                {"kind": "force_breaker", "source": "$caller", "target": "$cause", "state": "open"}
            ]
        )
    )
    assert runbook.candidates(view(), {}) == []  # no caller known: nothing to propose
    by_map = view(evidence={"callers": {"cart": ["checkout", "frontend"]}})
    assert callers_of(by_map, "cart") == ["frontend", "checkout"]  # involved callers first
    got = [c.action for c in runbook.candidates(by_map, {})]
    assert got == [
        ForceBreaker("frontend", "cart", "open"),
        ForceBreaker("checkout", "cart", "open"),
    ]
    by_edges = view(evidence={"edges": [["frontend", "cart"], ["cart", "redis"]]})
    assert [c.action for c in runbook.candidates(by_edges, {})] == [
        ForceBreaker("frontend", "cart", "open")
    ]


def test_same_action_from_two_rules_is_proposed_once() -> None:
    rule = {"actions": [{"kind": "rollback", "service": "$cause"}]}
    runbook = runbook_from_mapping({"rules": [{"name": "a", **rule}, {"name": "b", **rule}]})
    (cand,) = runbook.candidates(view(), {})
    assert cand.rule == "a"


# --- matching -----------------------------------------------------------------------------


def test_signature_matches_as_a_symptom_set() -> None:
    runbook = runbook_from_mapping(one_rule(when={"signature": ["errors+latency", "memory"]}))
    assert canonical_signature("errors+latency") == "latency+errors"
    assert runbook.match(view("latency+errors"))
    assert runbook.match(view("errors+latency"))
    assert runbook.match(view("memory"))
    assert not runbook.match(view("latency"))
    assert not runbook.match(view("latency+errors+logs"))


def test_symptom_any_all_none() -> None:
    when = {"symptoms": {"any": ["saturation", "traffic"], "none": ["memory"]}}
    runbook = runbook_from_mapping(one_rule(when=when))
    assert runbook.match(view("saturation"))
    assert runbook.match(view("latency+traffic"))
    assert not runbook.match(view("latency"))
    assert not runbook.match(view("saturation+memory"))


def test_signals_detectors_confidence_and_cause_conditions() -> None:
    when = {
        "signals": {"all": ["*p99*"], "any": ["memory_mb", "cpu"]},
        "detectors": {"any": ["tier*"]},
        "min_cause_confidence": 0.5,
        "max_cause_confidence": 0.95,
        "cause_in": ["cart", "check*"],
        "cause_not_in": ["checkout-db"],
    }
    runbook = runbook_from_mapping(one_rule(when=when))
    assert runbook.match(view())
    assert not runbook.match(view(signals=("memory_mb",)))
    assert not runbook.match(view(detectors=("static",)))
    assert not runbook.match(view(confidence=0.4))
    assert runbook.match(view(confidence=0.5))  # inclusive
    assert not runbook.match(view(confidence=0.96))
    assert not runbook.match(view(top_cause="frontend"))
    assert runbook.match(view(top_cause="checkout"))
    assert not runbook.match(view(top_cause="checkout-db"))
    assert not runbook.match(view(top_cause=None))


def test_unknown_signature_matches_no_rule() -> None:
    runbook = runbook_from_mapping(one_rule())  # an empty `when` matches any known signature
    assert runbook.match(view("memory"))
    assert runbook.candidates(view("unknown"), {}) == []
    assert runbook.candidates(view("memory+gremlins"), {}) == []


def test_stop_ends_matching() -> None:
    runbook = runbook_from_mapping(
        {
            "rules": [
                {"name": "first", "stop": True, "actions": [{"kind": "noop"}]},
                {"name": "second", "actions": [{"kind": "rollback", "service": "$cause"}]},
            ]
        }
    )
    assert [r.name for r in runbook.match(view())] == ["first"]


def test_rules_are_frozen() -> None:
    runbook = runbook_from_mapping(one_rule())
    with pytest.raises(ValueError, match="frozen"):
        runbook.rules[0].name = "other"  # type: ignore[misc]
    assert isinstance(runbook, Runbook)


# --- the default runbook ------------------------------------------------------------------

REPLICAS = {"frontend": 2, "checkout": 2, "cart": 3}
EVIDENCE = {"callers": {"cart": ["checkout"]}, "entries": ["frontend"]}


@pytest.mark.usefixtures("action_kinds")
def test_default_runbook_loads_by_path_and_name() -> None:
    runbook = load_runbook()
    assert load_runbook("default") == runbook == load_runbook(DEFAULT_RUNBOOK)
    assert runbook.dry_run_rules() <= set(runbook.rule_names())


@pytest.mark.usefixtures("action_kinds")
@pytest.mark.parametrize("symptom", SYMPTOMS)
def test_default_runbook_covers_each_symptom(symptom: str) -> None:
    got = load_runbook().candidates(view(symptom, evidence=EVIDENCE), REPLICAS)
    kinds = {c.action.kind for c in got}
    assert kinds and "escalate" not in kinds


@pytest.mark.usefixtures("action_kinds")
@pytest.mark.parametrize(
    ("signature", "expected"),
    [
        ("memory", RestartPods("cart", share=0.5)),
        ("memory", RolloutRestart("cart")),
        ("latency+errors", RolloutRestart("cart")),
        ("latency+errors+deploy", Rollback("cart")),
        ("errors+logs", RolloutRestart("cart")),
        ("logs", Rollback("cart")),
        ("node", Drain("cart")),
        ("retries", SetRetries("cart", 1)),
        ("saturation", ScaleTo("cart", 5)),
        ("traffic", ScaleTo("cart", 5)),
        ("availability", RestartPods("cart", share=1.0)),
        ("errors", ForceBreaker("checkout", "cart", "open")),
    ],
)
def test_default_runbook_proposes_the_usual_fix(signature: str, expected: Action) -> None:
    got = load_runbook().candidates(view(signature, evidence=EVIDENCE), REPLICAS)
    assert expected in [c.action for c in got]


@pytest.mark.usefixtures("action_kinds")
def test_default_runbook_failover_shed_and_low_confidence() -> None:
    runbook = load_runbook()
    kinds = {c.action.kind for c in runbook.candidates(view("errors", evidence={}), REPLICAS)}
    assert "failover" in kinds and "force_breaker" not in kinds  # no caller: no breaker
    shed = [c.action for c in runbook.candidates(view("traffic", evidence=EVIDENCE), REPLICAS)]
    assert any(a.kind == "shed_load" and a.params()["entry"] == "frontend" for a in shed)
    low = runbook.candidates(view("memory", confidence=0.2), REPLICAS)
    assert [c.action.kind for c in low] == ["escalate"]
    assert low[0].rule == "low-confidence"


def test_pending_stand_ins_do_not_leak() -> None:
    for kind, cls in _PENDING.items():
        assert ACTIONS.get(kind) is not cls
