"""The simulated on-call engineer: delays, accuracy, blame, remedies, approvals, determinism."""

from __future__ import annotations

import math

import numpy as np
import pytest
from conftest import chain_topology, make_scenario

from agents.contracts import Candidate, Decision, IncidentView
from agents.oncall import (
    REMEDIES,
    Diagnosis,
    FaultTruth,
    OnCallEngineer,
    OnCallError,
    OnCallProfile,
    action_fits,
    truths_from_labels,
)
from twin.control.actions import ACTIONS, Action, action_from_dict
from twin.errors import FirebreakError
from twin.flow.engine import Simulation
from twin.scenario.infrastructure import Infrastructure
from twin.scenario.schema import FAULT_KINDS, INFRA_FAULT_KINDS

N = 4000


def view(
    services: tuple[str, ...] = ("entry", "mid", "leaf", "other"),
    causes: tuple[tuple[str, float], ...] = (("mid", 0.9), ("leaf", 0.6), ("other", 0.2)),
    n_alerts: int = 1,
    signature: str = "latency+errors",
) -> IncidentView:
    return IncidentView(
        id="inc-1",
        opened=100.0,
        now=120.0,
        services=services,
        signals=("latency_p99",),
        detectors=("z",),
        n_alerts=n_alerts,
        top_cause=causes[0][0] if causes else None,
        cause_confidence=0.7,
        causes=causes,
        signature=signature,
    )


LEAF = (FaultTruth("bad_deploy", "leaf", 50.0, 1000.0),)


def engineer(seed: int = 0, **profile) -> OnCallEngineer:
    return OnCallEngineer(OnCallProfile(**profile), np.random.default_rng(seed))


def assert_median(samples: np.ndarray, median: float) -> None:
    """The configured median lies inside a ~4-sigma order-statistic interval of the sample's."""
    x = np.sort(samples)
    n = len(x)
    half = 4.0 * math.sqrt(n) / 2.0
    lo, hi = x[int(n / 2 - half)], x[int(n / 2 + half)]
    assert lo <= median <= hi, (lo, median, hi)


def assert_rate(hits: int, n: int, p: float) -> None:
    """A binomial count within 4 standard deviations of n·p."""
    sd = math.sqrt(n * p * (1 - p))
    assert abs(hits - n * p) <= 4 * sd + 1e-9, (hits, n * p, sd)


# ------------------------------------------------------------------------------- delays
@pytest.mark.parametrize("shift", ["business_hours", "off_hours"])
def test_ack_delay_median_follows_profile_and_shift(shift):
    eng = engineer(1, shift=shift)
    delays = np.array([eng.page(view(), 10.0) - 10.0 for _ in range(N)])
    factor = 3.0 if shift == "off_hours" else 1.0
    assert (delays > 0).all()
    assert_median(delays, 300.0 * factor)


def test_more_alerts_per_page_slow_the_ack_up_to_the_cap():
    eng = engineer(2, fatigue_per_alert=0.1, fatigue_cap=2.0)
    assert eng.ack_median(1) == pytest.approx(300.0)
    assert eng.ack_median(6) == pytest.approx(450.0)
    assert eng.ack_median(500) == pytest.approx(600.0)
    delays = np.array([eng.page(view(n_alerts=6), 0.0) for _ in range(N)])
    assert_median(delays, 450.0)
    # the page's shift can be overridden per call (a page at 3 am on a business-hours rota)
    assert eng.ack_median(1, "off_hours") == pytest.approx(900.0)
    with pytest.raises(OnCallError, match="shift must be one of"):
        eng.page(view(), 0.0, shift="night")  # type: ignore[arg-type]


def test_diagnosis_rediagnosis_and_approval_delays_follow_profile():
    eng = engineer(3)
    first = [eng.diagnose(view(), LEAF, 200.0) for _ in range(N)]
    assert all(d.started_at == 200.0 and d.attempt == 1 for d in first)
    assert_median(np.array([d.finished_at - 200.0 for d in first]), 1200.0)
    again = [eng.rediagnose(first[0], view(), LEAF, 500.0) for _ in range(N)]
    assert all(d.attempt == 2 for d in again)
    assert_median(np.array([d.finished_at - 500.0 for d in again]), 600.0)
    good = action_from_dict({"action": "rollback", "service": "leaf"})
    answers = [eng.review(good, LEAF, 300.0).at - 300.0 for _ in range(N)]
    assert_median(np.array(answers), 180.0)


# ---------------------------------------------------------------------------- accuracy
@pytest.mark.parametrize("accuracy", [0.8, 0.5])
def test_accuracy_matches_configured_rate(accuracy):
    eng = engineer(4, accuracy=accuracy)
    found = [eng.diagnose(view(), LEAF, 200.0) for _ in range(N)]
    hits = sum(d.correct for d in found)
    assert_rate(hits, N, accuracy)
    for d in found:
        assert d.correct == (d.service == "leaf" and d.kind == "bad_deploy")
        assert d.fault == LEAF[0]


def test_wrong_diagnoses_blame_a_non_root_service():
    eng = engineer(5, accuracy=0.3)
    link = (FaultTruth("network_partition", "leaf", 0.0, 500.0, peer="mid"),)
    for truth in (LEAF, link):
        roots = truth[0].roots
        wrong = [
            d for d in (eng.diagnose(view(), truth, 200.0) for _ in range(500)) if not d.correct
        ]
        assert len(wrong) > 200
        assert all(d.service not in roots and d.service in view().services for d in wrong)


def test_misled_engineer_mostly_blames_the_loudest_non_root():
    eng = engineer(6, accuracy=0.0, loudest_bias=0.7)
    blamed = [eng.diagnose(view(), LEAF, 200.0).service for _ in range(N)]
    # mid is the loudest non-root: 0.7 + 0.3 / 3 (picked also among the uniform draws)
    assert_rate(blamed.count("mid"), N, 0.7 + 0.3 / 3)
    assert set(blamed) == {"mid", "entry", "other"}
    d = eng.diagnose(view(signature="memory"), LEAF, 200.0)
    assert d.kind == "memory_leak" and not d.correct


def test_rediagnosis_drops_the_wrong_lead_and_is_more_accurate():
    eng = engineer(7, accuracy=0.0, rediagnosis_accuracy=0.0, loudest_bias=1.0)
    first = eng.diagnose(view(), LEAF, 200.0)
    assert first.service == "mid" and not first.correct
    second = eng.rediagnose(first, view(), LEAF, 1500.0)
    assert second.service != "mid" and second.attempt == 2
    eng = engineer(8, accuracy=0.8, rediagnosis_accuracy=0.95)
    again = [eng.rediagnose(first, view(), LEAF, 1500.0).correct for _ in range(N)]
    assert_rate(sum(again), N, 0.95)


def test_false_alarm_and_root_only_incidents():
    eng = engineer(9, accuracy=1.0)
    quiet = eng.diagnose(view(), (), 200.0)  # no fault at all
    assert quiet.service is None and quiet.kind == "none" and quiet.correct
    ended = (FaultTruth("crash", "leaf", 0.0, 10.0),)  # long over: explains nothing now
    assert eng.diagnose(view(), ended, 5000.0).kind == "none"
    # the misled engineer blames someone for a false alarm
    assert not engineer(9, accuracy=0.0).diagnose(view(), (), 200.0).correct
    # only the root alerts: a wrong diagnosis names it with the wrong kind
    alone = view(services=("leaf",), causes=(("leaf", 1.0),), signature="errors")
    wrong = [engineer(s, accuracy=0.0).diagnose(alone, LEAF, 200.0) for s in range(30)]
    assert all(d.service == "leaf" and d.kind != "bad_deploy" and not d.correct for d in wrong)


# ----------------------------------------------------------------------------- remedies
@pytest.fixture(scope="module")
def sim() -> Simulation:
    scenario = make_scenario(chain_topology(), duration=60)
    return Simulation(scenario.model_copy(update={"infrastructure": Infrastructure()}))


@pytest.mark.parametrize("kind", sorted(REMEDIES))
@pytest.mark.parametrize("context", [True, False])
def test_remedy_for_every_kind_is_a_valid_twin_action(kind, context, sim):
    assert set(FAULT_KINDS) <= set(REMEDIES)
    service = None if kind == "none" else "leaf"
    if kind in INFRA_FAULT_KINDS:
        service = "zone-a" if kind == "zone_outage" else "node-a1"
    diagnosis = Diagnosis(service, kind, 0.0, 10.0, True)
    extra = {"callers": {"leaf": ["mid"]}, "entries": ["entry"]} if context else {}
    action = engineer().remedy(diagnosis, {"leaf": 2}, **extra)
    assert isinstance(action, Action) and action.kind in ACTIONS
    assert action_from_dict(action.to_dict()) == action
    action.check(sim)  # every target exists in the twin
    if kind in FAULT_KINDS and context:  # what the human does for the true kind fits it
        peer = "mid" if "net" in kind and kind not in INFRA_FAULT_KINDS else None
        truth = (FaultTruth(kind, service, 0.0, 100.0, peer=peer),)
        assert action_fits(action, truth, 50.0), action


def test_remedy_table_choices():
    eng = engineer(scale_out_factor=1.5)
    act = eng.remedy(Diagnosis("leaf", "traffic", 0, 1, False), {"leaf": 4})
    assert act.to_dict() == {"action": "scale_to", "service": "leaf", "replicas": 6}
    act = eng.remedy(Diagnosis("leaf", "traffic", 0, 1, False), {"leaf": 1})
    assert act.to_dict()["replicas"] == 2  # always at least one more
    # the remedy that ends the diagnosed kind (twin.control.mechanisms), gentlest first
    for kind in ("crash", "latency", "errors", "cpu_hog", "dependency_outage"):
        assert eng.remedy(Diagnosis("leaf", kind, 0, 1, True), {}).kind == "rollout_restart"
    assert eng.remedy(Diagnosis("leaf", "bad_deploy", 0, 1, True), {}).kind == "rollback"
    assert eng.remedy(Diagnosis("leaf", "misconfiguration", 0, 1, True), {}).kind == "rollback"
    storm = eng.remedy(Diagnosis("leaf", "retry_storm", 0, 1, True), {})
    assert storm.to_dict() == {
        "action": "set_retries",
        "service": "leaf",
        "retries": 1,
        "push_s": 10.0,
    }
    node = eng.remedy(Diagnosis("node-a1", "noisy_neighbour", 0, 1, True), {})
    assert node.to_dict() == {"action": "drain", "node": "node-a1"}
    # nothing ends a leak or a link fault: the first remedy that mitigates it
    assert eng.remedy(Diagnosis("leaf", "memory_leak", 0, 1, True), {}).kind == "rollout_restart"
    cut = eng.remedy(Diagnosis("leaf", "network_partition", 0, 1, True), {}, callers={})
    assert cut.kind == "failover"
    with pytest.raises(OnCallError, match="unknown diagnosed kind 'gremlins'"):
        eng.remedy(Diagnosis("leaf", "gremlins", 0, 1, True), {})


# ---------------------------------------------------------------------------- approvals
def test_approvals_catch_wrong_proposals_more_often_than_they_reject_correct_ones():
    eng = engineer(10)
    right = action_from_dict({"action": "rollback", "service": "leaf"})
    wrong = action_from_dict({"action": "restart_pods", "service": "mid"})
    ok = [eng.review(right, LEAF, 300.0) for _ in range(N)]
    bad = [eng.review(wrong, LEAF, 300.0) for _ in range(N)]
    assert all(a.correct for a in ok) and not any(a.correct for a in bad)
    rejected_correct = sum(not a.approved for a in ok)
    caught_wrong = sum(not a.approved for a in bad)
    assert_rate(rejected_correct, N, 0.05)
    assert_rate(caught_wrong, N, 0.5)
    assert caught_wrong > rejected_correct
    assert all(a.at > 300.0 for a in ok + bad)


def test_review_accepts_decisions_candidates_and_actions():
    eng = engineer(11, p_approve_correct=1.0, p_catch_wrong=1.0)
    right = Candidate(action_from_dict({"action": "rollback", "service": "leaf"}), rule="r1")
    decision = Decision("inc-1", 300.0, "approval", right, (right,), "best score")
    assert eng.review(decision, LEAF, 300.0).approved
    assert eng.review(right, LEAF, 300.0).approved
    empty = Decision("inc-1", 300.0, "approval", None, (), "nothing fits")
    answer = eng.review(empty, LEAF, 300.0)
    assert not answer.approved and answer.at == 300.0 and "nothing" in answer.reason
    # a noop is right only when no fault is live; the wrong fix for the right service is wrong
    noop = action_from_dict({"action": "noop"})
    assert eng.review(noop, (), 300.0).approved
    assert not eng.review(noop, LEAF, 300.0).approved
    assert not eng.review(
        action_from_dict({"action": "restart_pods", "service": "leaf"}), LEAF, 300.0
    ).approved
    with pytest.raises(OnCallError, match="expected a Decision, Candidate or Action"):
        eng.review("rollback leaf", LEAF, 300.0)  # type: ignore[arg-type]


# --------------------------------------------------------------------------- validation
@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("accuracy", 1.5, r"OnCallProfile.accuracy: must be in \[0, 1\], got 1.5"),
        ("p_catch_wrong", -0.1, r"OnCallProfile.p_catch_wrong: must be in \[0, 1\]"),
        ("ack_median_s", 0.0, r"OnCallProfile.ack_median_s: must be > 0, got 0.0"),
        ("approval_median_s", -3, r"OnCallProfile.approval_median_s: must be > 0"),
        ("diagnosis_sigma", -1.0, r"OnCallProfile.diagnosis_sigma: must be >= 0"),
        ("off_hours_ack_factor", 0.5, r"OnCallProfile.off_hours_ack_factor: must be >= 1"),
        ("shed_share", 0.0, r"OnCallProfile.shed_share: must be in \(0, 1\]"),
        ("rediagnosis_median_s", math.nan, r"rediagnosis_median_s: must be finite, got nan"),
        ("accuracy", "high", r"OnCallProfile.accuracy: must be a number, got 'high'"),
        ("accuracy", True, r"OnCallProfile.accuracy: must be a number, got True"),
        ("shift", "night", r"OnCallProfile.shift: must be one of business_hours, off_hours"),
    ],
)
def test_bad_profiles_fail_with_clear_messages(field, value, message):
    with pytest.raises(OnCallError, match=message) as info:
        OnCallProfile(**{field: value})
    assert isinstance(info.value, FirebreakError)


def test_bad_engineer_inputs_and_fault_truths():
    with pytest.raises(OnCallError, match=r"rng must be a numpy\.random\.Generator"):
        OnCallEngineer(OnCallProfile(), np.random.RandomState(0))  # type: ignore[arg-type]
    with pytest.raises(OnCallError, match="profile must be an OnCallProfile"):
        OnCallEngineer({"accuracy": 0.8}, np.random.default_rng(0))  # type: ignore[arg-type]
    with pytest.raises(OnCallError, match="unknown fault kind 'gremlins'"):
        FaultTruth("gremlins", "leaf", 0.0, 1.0)
    with pytest.raises(OnCallError, match=r"end 1\.0 is before start 5\.0"):
        FaultTruth("crash", "leaf", 5.0, 1.0)


def test_truths_from_labels_json():
    labels = {
        "faults": [
            {"id": "f0", "kind": "crash", "target": "leaf", "start": 10, "end": 70, "params": {}},
            {
                "id": "f1",
                "kind": "network_partition",
                "target": "mid",
                "start": 20.0,
                "end": 3600.0,
                "params": {"peer": "leaf"},
                "affected": [],
            },
        ]
    }
    crash, link = truths_from_labels(labels)
    assert crash == FaultTruth("crash", "leaf", 10.0, 70.0)
    assert link.roots == frozenset({"mid", "leaf"})
    assert truths_from_labels({}) == ()


# -------------------------------------------------------------------------- determinism
def _episode(seed: int) -> list:
    eng = engineer(seed, accuracy=0.6)
    out: list = []
    for i in range(50):
        ack = eng.page(view(n_alerts=i % 7 + 1), float(i))
        d = eng.diagnose(view(), LEAF, ack)
        act = eng.remedy(d, {"mid": 2, "leaf": 2, "entry": 1, "other": 1})
        out += [ack, d, act, eng.review(act, LEAF, d.finished_at)]
    return out


def test_same_seed_same_choices_different_seed_differs():
    assert _episode(42) == _episode(42)
    assert _episode(42) != _episode(43)
