"""The closed-loop operator: telemetry view, signatures, analysis, the loop, its scoring."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
from conftest import SCENARIOS

from agents.deciding.analysis import IncidentAnalyst, confidence
from agents.deciding.signature import signature_of
from agents.loop.operator import OperatorConfig
from agents.loop.telemetry_view import TelemetryView, share_within
from agents.safety.guardrail_config import GuardrailConfig
from detectors.anomaly.evaluation import FaultLabel
from detectors.base import Alert
from detectors.rca.randomwalk import RandomWalkRca
from experiments.rehearsal.run import RehearsalError, StackSettings, rehearse
from experiments.rehearsal.score import mttr, unsafe_actions
from twin.scenario.loader import load_scenario
from twin.telemetry.frame import Frame


def short_bad_deploy():
    """bad-deploy.yaml squeezed: 30 min of normal traffic (the RCA's baseline), then the
    regression for 25 min, and 15 min after it."""
    sc = load_scenario(SCENARIOS / "bad-deploy.yaml")
    fault = sc.faults[0].model_copy(update={"start": 1800.0, "duration": 1500.0})
    return sc.model_copy(update={"faults": [fault], "duration": 4200.0})


def _alert(t: float, service: str, signal: str) -> Alert:
    return Alert(t, service, signal, 5.0, "warning", "test")


# --------------------------------------------------------------------------- pieces


def test_share_within_is_monotone_and_bounded():
    quantiles = (20.0, 80.0, 200.0)
    shares = [share_within(x, *quantiles) for x in (1, 20, 80, 150, 200, 500, 5000)]
    assert all(0.0 <= s <= 1.0 for s in shares)
    assert shares == sorted(shares)
    assert shares[1] == pytest.approx(0.5) and shares[2] == pytest.approx(0.95)
    assert shares[4] == pytest.approx(0.99) and shares[-1] == 1.0


def test_signature_reads_symptom_families_of_the_cause():
    alerts = [
        _alert(1, "cart", "memory_mb"),
        _alert(2, "cart", "error_ratio"),
        _alert(3, "frontend", "latency_p99_ms"),
    ]
    assert signature_of(alerts, "cart") == "errors+memory"
    assert signature_of(alerts, "redis") == "latency+errors+memory"  # silent cause: all alerts
    assert signature_of([_alert(1, "x", "mystery")], "x") == "unknown"


def test_confidence_is_how_clearly_the_top_cause_stands_out():
    assert confidence([0.6, 0.2, 0.1]) == pytest.approx(0.75)
    assert confidence([0.3, 0.3]) == pytest.approx(0.5)
    assert confidence([0.4]) == 1.0 and confidence([]) == 0.0


def test_the_view_reads_rollouts_but_never_fault_events():
    sc = load_scenario(SCENARIOS / "bad-deploy.yaml")
    names = tuple(sc.topology.services)
    view = TelemetryView(sc, names, 1.0)
    values = np.zeros((len(names), 17))
    events = [
        {"time": 3600.0, "kind": "fault_start", "service": "productcatalogservice"},
        {"time": 3600.0, "kind": "deploy", "service": "productcatalogservice", "version": "v2"},
    ]
    view.observe(Frame(3600.0, values, np.zeros((0, 4)), names, (), events))
    assert view.deploys == {"productcatalogservice": 3600.0}
    view.observe(Frame(3601.0, values, np.zeros((0, 4)), names, (), events[:1]))
    assert view.deploys == {"productcatalogservice": 3600.0}


def test_suspects_are_the_incident_and_what_it_depends_on():
    sc = load_scenario(SCENARIOS / "bad-deploy.yaml")
    analyst = IncidentAnalyst(RandomWalkRca(), sc.topology.graph(), ["frontend"])
    got = analyst.suspects({"checkoutservice"})
    assert {"checkoutservice", "paymentservice", "emailservice", "cartservice"} <= got
    assert "frontend" not in got and "adservice" not in got


def test_mttr_counts_from_fault_start_to_a_stable_good_stretch():
    good = np.ones(30, bool)
    fault = FaultLabel("f", "latency", "a", start=300.0, end=600.0)
    assert mttr(fault, good, 60.0, 60.0) is None  # no SLO impact
    good[6:12] = False  # violated from 360 s to 720 s
    got = mttr(fault, good, 60.0, 60.0)
    assert got == {"fault": "f", "mttr_s": 720.0 - 300.0, "censored": False}
    good[12:] = False
    assert mttr(fault, good, 60.0, 60.0)["censored"] is True


def test_unsafe_actions_are_recounted_from_the_log():
    cfg = GuardrailConfig(max_restart_share=0.5, max_actions_per_service=1)
    ok = {
        "time": 0.0,
        "by": "auto",
        "action": {"action": "restart_pods", "service": "a", "share": 0.5},
    }
    wide = {
        "time": 10.0,
        "by": "auto",
        "action": {"action": "restart_pods", "service": "b", "share": 1.0},
    }
    again = {
        "time": 20.0,
        "by": "auto",
        "action": {"action": "scale_to", "service": "a", "replicas": 3},
    }
    human = {"time": 30.0, "by": "human", "action": {"action": "restart_pods", "service": "c"}}
    assert unsafe_actions([ok], cfg) == 0
    assert unsafe_actions([ok, wide, again, human], cfg) == 2


# --------------------------------------------------------------------------- the loop


@pytest.fixture(scope="module")
def rehearsals(tmp_path_factory):
    sc = short_bad_deploy()
    out = tmp_path_factory.mktemp("rehearse")
    # every decision pages here (by default the AI files a ticket while users are fine)
    settings = StackSettings(operator=OperatorConfig(page_on_impact_only=False))
    runs = {
        mode: rehearse(sc, mode, out / mode, settings=settings).summary
        for mode in ("traditional", "ai")
    }
    return sc, out, runs


def test_ai_operations_find_and_roll_back_the_bad_deploy(rehearsals):
    _, out, runs = rehearsals
    ai = runs["ai"]["stacks"]["ai"]
    ops = json.loads((out / "ai" / "operations.json").read_text())
    first = ops["decisions"][0]
    assert first["top_cause"] == "productcatalogservice" and "deploy" in first["signature"]
    assert first["action"]["action"] == "rollback"
    # rollback is not trusted yet: the engineer approves it (the approval path)
    assert first["level"] == "approval"
    assert ai["faults_identified"] == 1 and ai["mtti_s"] < 120
    assert ai["unsafe_actions"] == 0
    assert runs["ai"]["events"].get("rollback", 0) >= 1


def test_summary_carries_the_stack_figures(rehearsals):
    _, _, runs = rehearsals
    keys = {
        "alerts",
        "incidents",
        "alerts_per_incident",
        "mttd_s",
        "mtti_s",
        "mttr_s",
        "actions_automated",
        "actions_approved",
        "escalated",
        "unsafe_actions",
        "slo_adherence",
        "replica_hours",
    }
    for mode, summary in runs.items():
        assert keys <= set(summary["stacks"][mode]), mode


def test_audit_log_holds_decisions_approvals_and_outcomes(rehearsals):
    from agents.safety.audit import read_audit

    _, out, _ = rehearsals
    log = read_audit(out / "ai" / "audit.jsonl")
    assert log.intact
    decisions = log.of_type("decision")
    assert decisions and decisions[0]["inputs"]["top_cause"] == "productcatalogservice"
    assert decisions[0]["candidates"] and decisions[0]["level"] == "approval"
    assert log.of_type("approval") and log.outcomes(decisions[0]["id"])


def test_the_operator_never_sees_ground_truth(tmp_path, monkeypatch):
    """Strip every fault event from the stream: the AI decides exactly the same."""
    from twin.flow.engine import Simulation

    sc = short_bad_deploy()
    base = rehearse(sc, "ai", tmp_path / "a")
    frames = Simulation.frames

    def without_truth(self):
        for frame in frames(self):
            kept = [e for e in frame.events if not e["kind"].startswith("fault")]
            yield dataclasses.replace(frame, events=kept)

    monkeypatch.setattr(Simulation, "frames", without_truth)
    blind = rehearse(sc, "ai", tmp_path / "b")
    a = json.loads((tmp_path / "a" / "operations.json").read_text())
    b = json.loads((tmp_path / "b" / "operations.json").read_text())
    assert a["decisions"] == b["decisions"] and a["actions"] == b["actions"]
    assert base.summary["stacks"] == blind.summary["stacks"]


def test_same_seed_same_operations(rehearsals, tmp_path):
    sc, out, runs = rehearsals
    settings = StackSettings(operator=OperatorConfig(page_on_impact_only=False))
    again = rehearse(sc, "ai", tmp_path / "ai", settings=settings).summary
    assert again["stacks"] == runs["ai"]["stacks"]
    assert (tmp_path / "ai" / "audit.jsonl").read_bytes() == (
        out / "ai" / "audit.jsonl"
    ).read_bytes()


def test_guardrails_refusing_an_action_pages_the_engineer(tmp_path, monkeypatch):
    from agents.safety.audit import read_audit
    from agents.safety.guardrails import Guardrails
    from agents.safety.verdict import Verdict

    def refuse(self, action, view):
        if action.kind in ("noop", "escalate"):
            return Verdict(True, action, action)
        return Verdict(False, action, None, (f"{action.kind}: refused by the test",))

    monkeypatch.setattr(Guardrails, "check", refuse)
    out = tmp_path / "g"
    settings = StackSettings(operator=OperatorConfig(page_on_impact_only=False))
    stack = rehearse(short_bad_deploy(), "ai", out, settings=settings).summary["stacks"]["ai"]
    assert stack["actions_automated"] == stack["actions_approved"] == 0
    assert stack["unsafe_actions"] == 0
    log = read_audit(out / "audit.jsonl")
    pages = [r for r in log.of_type("page") if r["reason"].startswith("guardrails refused")]
    assert pages and "refused by the test" in pages[0]["reason"]
    assert any(r["applied"] is False for r in log.of_type("outcome"))


def test_rehearse_cli(tmp_path, capsys):
    from firebreak.cli import main

    out = tmp_path / "cli"
    code = main(
        [
            "rehearse",
            str(SCENARIOS / "bad-deploy.yaml"),
            "--duration",
            "110m",
            "--ops",
            "traditional",
            "--out",
            str(out),
        ]
    )
    assert code == 0
    text = capsys.readouterr().out
    assert "MTTR" in text and "traditional" in text
    assert (out / "summary.json").is_file()
    assert main(["rehearse", str(tmp_path / "missing.yaml")]) == 2
    assert "missing.yaml" in capsys.readouterr().err


def test_unknown_mode_is_a_clear_error(tmp_path):
    sc = short_bad_deploy()
    with pytest.raises(RehearsalError, match="--ops: expected traditional, ai or rl:POLICY_DIR"):
        rehearse(sc, "chaos-monkey", tmp_path)


def test_labels_from_another_mode_are_the_same_labels(rehearsals, tmp_path):
    sc, out, runs = rehearsals
    truth = json.loads((out / "traditional" / "labels.json").read_text())
    assert truth == json.loads((out / "ai" / "labels.json").read_text())
    settings = StackSettings(operator=OperatorConfig(page_on_impact_only=False))
    again = rehearse(sc, "ai", tmp_path / "ai", truth=truth, settings=settings).summary
    assert again["stacks"] == runs["ai"]["stacks"]


def test_a_trained_policy_runs_the_loop(tmp_path, capsys):
    """`--ops rl:DIR`: a (barely) trained policy acts through the guardrails, scored alike."""
    from firebreak.cli import main

    policy = tmp_path / "policy"
    argv = ["train", "--algo", "maskable-ppo", "--env", "firebreak/Remediation-v0"]
    argv += ["--steps", "128", "--eval-episodes", "1", "--out", str(policy), "--quiet"]
    assert main(argv) == 0
    out = tmp_path / "rl"
    stack = rehearse(short_bad_deploy(), f"rl:{policy}", out).summary["stacks"]["rl"]
    assert stack["unsafe_actions"] == 0 and stack["pages"] == 0
    ops = json.loads((out / "operations.json").read_text())
    assert ops["mode"] == "rl" and all(a["by"] == "auto" for a in ops["actions"])
    with pytest.raises(RehearsalError, match="rl:POLICY_DIR"):
        rehearse(short_bad_deploy(), "rl", tmp_path / "x")


def _traditional_operator(config=None):
    """An operator on the short bad deploy with static thresholds and an engineer."""
    from agents.loop.operator import Operator
    from agents.oncall import OnCallEngineer, OnCallProfile
    from detectors.anomaly.static import StaticThresholds
    from detectors.correlation import Correlator
    from twin.flow.engine import Simulation

    sc = short_bad_deploy()
    sim = Simulation(sc)
    op = Operator(
        sim,
        "traditional",
        detector=StaticThresholds.for_scenario(sc, sim.topo.names),
        correlator=Correlator(sc.topology.graph()),
        human=OnCallEngineer(OnCallProfile(), np.random.default_rng(0)),
        truth=(),
        config=config,
    )
    return sim, op


def test_emergency_measures_are_lifted_when_their_incident_ends():
    from agents.loop.operator import Case, OperatorConfig
    from detectors.correlation import Incident
    from twin.control.actions import ShedLoad

    config = OperatorConfig(mitigation_min_hold_s=300.0, calm_s=0.0)
    sim, op = _traditional_operator(config)
    sim.advance(60.0)
    case = Case(Incident(id="inc-x", opened=10.0, updated=20.0, closed=50.0))
    op.cases["inc-x"] = case
    op._act(ShedLoad(entry="frontend", share=0.3), "human", case, 60.0)
    assert op.leftovers.holds(case)
    op._track_incidents(60.0)  # the incident is not open: lifted once held 300 s and calm
    op.leftovers.tick(200.0, set())
    assert op.actions[-1]["by"] == "human" and op.leftovers.holds(case)
    op.leftovers.tick(400.0, set())
    revert = op.actions[-1]
    assert revert["by"] == "revert" and revert["action"]["share"] == 0.0
    assert not op.leftovers.holds(case) and case.state == "closed"


def test_ai_operations_run_the_predictive_scaler(tmp_path, monkeypatch):
    from agents.scaling.predictive import PredictiveScaler

    seen = []
    original = PredictiveScaler.observe
    monkeypatch.setattr(
        PredictiveScaler, "observe", lambda self, frame: (seen.append(1), original(self, frame))
    )
    stack = rehearse(short_bad_deploy(), "ai", tmp_path).summary["stacks"]["ai"]
    assert len(seen) == 4200 and "predictive_scale_actions" in stack


def test_a_rollback_ends_a_misconfiguration():
    from twin.control.actions import Rollback
    from twin.flow.engine import Simulation

    sc = load_scenario(SCENARIOS / "bad-deploy.yaml")
    fault = {
        "kind": "misconfiguration",
        "target": "cartservice",
        "start": 60.0,
        "duration": 3000.0,
        "timeout_ms": 0.5,
    }
    sc = sc.model_validate({**sc.model_dump(), "faults": [fault], "duration": 600.0})
    sim = Simulation(sc)
    sim.advance(120.0)
    assert sim.faults.active
    sim.act(Rollback(service="cartservice", rollout_s=30.0))
    sim.advance(200.0)
    assert not sim.faults.active and not sim.pods.features_lost


def test_emergency_measures_expire_even_while_their_incident_stays_open():
    from agents.loop.operator import Case, OperatorConfig
    from detectors.correlation import Incident
    from twin.control.actions import ShedLoad

    sim, op = _traditional_operator(OperatorConfig(mitigation_ttl_s=120.0))
    sim.advance(60.0)
    case = Case(Incident(id="inc-y", opened=10.0, updated=60.0))
    case.state = "human"
    op.cases["inc-y"] = case
    at = op._act(ShedLoad(entry="frontend", share=0.3), "human", case, 60.0)
    for frame in sim.frames():
        op.view.observe(frame)
        op._run_due(op.view.now)
        if op.view.now > at + 130.0:
            break
    lifted = [a for a in op.actions if a["by"] == "revert"]
    assert lifted and lifted[0]["time"] >= at + 120.0 and not op.leftovers.holds(case)
