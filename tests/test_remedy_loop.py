"""The closed loop with remedies: right-remedy scoring, no leftovers, the remediable suite."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pandas as pd
import pytest
from conftest import SCENARIOS

from agents.loop.leftovers import Leftovers
from experiments.impact import remediable
from experiments.rehearsal.remedy_score import aimed, score_remedies
from twin.control.actions import Failover, ScaleTo, ShedLoad
from twin.control.mechanisms import MECHANISMS
from twin.run.labels import mitigation_oracle

# ------------------------------------------------------------------------ scoring


def _label(kind: str, target: str, scenario=None, **extra) -> dict:
    fault = SimpleNamespace(kind=kind, target=target, peer=extra.pop("peer", None))
    sc = scenario or SimpleNamespace(infrastructure=None)
    if kind in ("crash", "latency", "errors", "bad_deploy", "retry_storm"):
        remedies = mitigation_oracle(sc, fault)
        roots = [target]
    else:
        from twin.control.mechanisms import oracle

        remedies = oracle(kind, target, zone="zone-a")
        roots = [target, "zone-a"]
    return {
        "id": f"{kind}-0",
        "kind": kind,
        "target": target,
        "start": 100.0,
        "end": 1000.0,
        "roots": roots,
        "affected": [{"service": "front"}],
        "remedies": remedies,
        **extra,
    }


def _act(t: float, action: dict, by: str = "auto", incident: str | None = "i1") -> dict:
    return {"time": t, "by": by, "incident": incident, "action": action}


INC = [SimpleNamespace(id="i1", services={"front", "cart"})]


def test_the_first_response_is_judged_against_the_oracle():
    labels = [_label("crash", "cart"), _label("noisy_neighbour", "node-a1")]
    actions = [
        _act(120, {"action": "scale_to", "service": "cart", "replicas": 4}),  # mitigates
        _act(200, {"action": "rollout_restart", "service": "cart"}),  # ends it
        _act(150, {"action": "drain", "node": "zone-a"}),  # draining its zone ends it too
        _act(160, {"action": "shed_load", "entry": "front", "share": 0.0}, by="revert"),
    ]
    got = score_remedies(labels, actions, INC, grace_s=300.0)
    crash, node = got["per_fault"]
    assert crash["first_action"]["action"] == "scale_to" and not crash["right_first"]
    assert crash["time_to_right_s"] == 100.0
    assert node["right_first"] and node["time_to_right_s"] == 50.0
    assert got["right_remedy_first"] == 1 and got["faults_responded"] == 2


def test_responses_must_touch_the_fault_and_its_time():
    labels = [_label("errors", "cart")]
    elsewhere = [SimpleNamespace(id="i2", services={"payment"})]
    actions = [
        _act(50, {"action": "rollout_restart", "service": "cart"}),  # before the fault
        _act(300, {"action": "rollout_restart", "service": "cart"}, incident="i2"),  # other
        _act(400, {"action": "escalate", "reason": "x"}),  # not a remedy
    ]
    got = score_remedies(labels, actions, INC + elsewhere, grace_s=0.0)
    assert got["faults_responded"] == 0 and got["per_fault"][0]["time_to_right_s"] is None


def test_faults_no_action_ends_are_not_scored():
    leak = _label("crash", "cart")
    leak["kind"], leak["remedies"] = "memory_leak", {"ends": [], "mitigates": []}
    assert score_remedies([leak], [], INC, 300.0)["faults_remediable"] == 0


def test_aim_matters():
    ends = {"action": "rollback", "aim": [{"service": "cart"}]}
    assert aimed({"action": "rollback", "service": "cart"}, ends)
    assert not aimed({"action": "rollback", "service": "front"}, ends)
    assert not aimed({"action": "restart_pods", "service": "cart"}, ends)


# ----------------------------------------------------------------------- leftovers


class FakeView:
    def __init__(self) -> None:
        self.reps = {"cart": 2, "front": 3}
        self.busy = 0.9
        self.ok = 1.0

    def replicas(self, service: str) -> int:
        return self.reps[service]

    def latest(self, service: str, metric: str) -> float:
        return self.busy

    def health(self) -> float:
        return self.ok


def _case(name: str) -> SimpleNamespace:
    return SimpleNamespace(incident=SimpleNamespace(id=name))


def test_scale_outs_standbys_and_shedding_are_undone_once_calm():
    view, acted = FakeView(), []
    left = Leftovers(
        view,
        lambda a, by, case, now: acted.append((now, a)) or now,
        hpa_services=("front",),
        min_hold_s=300.0,
        calm_s=120.0,
    )
    case = _case("i1")
    assert left.taken(case, ScaleTo("cart", 6), 100.0)
    view.reps["cart"] = 6  # as the next frames report it
    assert not left.taken(case, ScaleTo("front", 9), 100.0)  # the HPA owns it
    assert left.taken(case, Failover("cart", 1.0), 100.0)
    assert left.taken(case, ShedLoad("front", 0.3), 100.0)
    left.tick(200.0, {"i1"})
    assert not acted  # its incident is still open
    left.case_ended(case, 250.0, set())
    left.tick(260.0, set())
    left.tick(330.0, set())
    assert not acted  # calm for 70 s only
    left.tick(450.0, set())
    undone = {type(a).__name__: a for _, a in acted}
    assert undone["Failover"].share == 0.0 and undone["ShedLoad"].share == 0.0
    # the scale-out waits until the load fits the old size: 90% busy on 6 is 9 pods' worth
    # at 60%, so it scales in only once the load has fallen
    assert "ScaleTo" not in undone
    view.busy = 0.15
    left.tick(600.0, set())
    assert acted[-1][1] == ScaleTo("cart", 2) and not left.holds(case)


def test_a_scale_in_held_back_by_the_load_is_issued_once_per_check():
    view, acted = FakeView(), []
    left = Leftovers(view, lambda a, *r: acted.append(a) or 1.0, (), min_hold_s=0, calm_s=0)
    case = _case("i1")
    left.taken(case, ScaleTo("cart", 6), 10.0)
    view.reps["cart"], view.busy = 6, 0.3  # 0.3 busy on 6 pods fits 3 at 60%
    left.case_ended(case, 20.0, set())
    left.tick(100.0, set())
    assert acted == [ScaleTo("cart", 3)]  # the view still reads 6 until the next frame
    view.reps["cart"], view.busy = 3, 0.1
    left.tick(200.0, set())
    assert acted == [ScaleTo("cart", 3), ScaleTo("cart", 2)] and not left.holds(case)


def test_a_lifted_measure_whose_trouble_returns_only_mitigated():
    view, acted = FakeView(), []
    left = Leftovers(view, lambda a, *r: acted.append(a) or 1.0, (), min_hold_s=0, calm_s=0)
    case = _case("i1")
    left.taken(case, Failover("cart", 1.0), 10.0)
    left.case_ended(case, 20.0, set())
    left.tick(100.0, set())
    assert acted == [Failover("cart", 0.0)]
    assert left.mitigated_only({"cart"}, 500.0) == {("cart", "failover")}
    assert left.mitigated_only({"cart"}, 5000.0) == set()


# ------------------------------------------------------------------ the suite


def test_the_remediable_suite_builds_every_family_with_its_kind_until_remedied():
    for name, family in remediable.FAMILIES.items():
        for seed in (0, 1):
            sc = remediable.build(name, seed)
            assert sc.infrastructure is not None and sc.name == name
            kinds = [f.kind for f in sc.faults]
            assert family.kind in kinds
            main = next(f for f in sc.faults if f.kind == family.kind)
            ends = MECHANISMS[family.kind].ending()
            assert bool(ends) == family.remediable
            if family.remediable:
                assert main.duration is None  # until remedied
                assert 40 * 60 <= main.start <= 55 * 60
    assert set(remediable.REMEDIABLE) | set(remediable.CONTROLS) == set(remediable.FAMILIES)
    assert remediable.build("zone-outage", 3) == remediable.build("zone-outage", 3)


@pytest.mark.slow
def test_a_remediable_rehearsal_scores_its_remedies(tmp_path):
    from experiments.impact.study import run_job

    row = run_job("disk-pressure", 0, "ai", time_scale=0.5, suite="remediable")
    assert row["error"] is None and row["suite"] == "remediable"
    assert row["faults_remediable"] == 1 and row["fault_kind"] == "disk_pressure"
    (remedy,) = json.loads(row["per_fault"])["remedy"]
    assert remedy["kind"] == "disk_pressure"


def test_the_no_fault_day_command_refuses_a_missing_series(tmp_path, capsys):
    from firebreak.cli import main

    assert main(["no-fault-day", str(tmp_path / "nope.csv"), "--out", str(tmp_path / "o")]) == 2
    assert "nope.csv: series file not found" in capsys.readouterr().err


def test_the_impact_study_refuses_an_unknown_suite(tmp_path, capsys):
    from firebreak.cli import main

    assert main(["impact-study", "--suite", "bogus", "--out", str(tmp_path / "o")]) == 2
    assert "--suite: expected one of classic, remediable, got 'bogus'" in capsys.readouterr().err


def test_a_replayed_day_without_faults(tmp_path):
    from experiments.impact.no_fault_day import run_day, shared_data

    data = shared_data()
    series = data / "nab" / "data" / "realKnownCause" / "nyc_taxi.csv" if data else None
    if series is None or not series.is_file():
        pytest.skip("../shared/data/nab is not here")
    report = run_day(series, tmp_path, hours=1.0)
    assert set(report["runs"]) == {"hpa", "traditional", "ai"}
    assert json.loads((tmp_path / "no_fault_day.json").read_text()) == report
    assert report["ai_replica_ratio"] > 0 and report["runs"]["ai"]["pages"] >= 0
    assert all(0.0 < run["served"] <= 1.0 for run in report["runs"].values())
    ai, hpa = report["runs"]["ai"], report["runs"]["hpa"]
    expected = (ai["replica_hours"] / ai["served"]) / (hpa["replica_hours"] / hpa["served"])
    assert report["ai_replica_ratio_per_served"] == pytest.approx(expected, abs=1e-4)
    assert SCENARIOS.is_dir()


def _entry_view(availability: float):
    import numpy as np
    from conftest import chain_topology, make_scenario

    from agents.loop.telemetry_view import TelemetryView
    from twin.fields import N_SERVICE_METRICS, M
    from twin.telemetry.frame import Frame

    sc = make_scenario(
        chain_topology(),
        slos=[{"availability": availability, "latency_ms": 500, "percentile": 99}],
    )
    names = sc.topology.service_names
    view = TelemetryView(sc, names, 1.0)

    def feed(t: int, error_ratio: float) -> None:
        v = np.zeros((len(names), N_SERVICE_METRICS))
        v[:, M["arrival_rate"]] = 50.0
        v[:, M["latency_p50_ms"]], v[:, M["latency_p95_ms"]], v[:, M["latency_p99_ms"]] = 5, 9, 12
        v[:, M["error_ratio"]] = error_ratio
        view.observe(Frame(float(t), v, np.zeros((0, 4)), names, ()))

    return view, feed


def test_users_are_hit_when_an_objective_burns_fast_not_only_when_health_falls():
    """0.5% errors against a 99.99% objective burn its budget at 50x: users are hit although
    health stays above 0.99, and the SLO burn alert fires after `after_s`, then each minute."""
    import numpy as np

    from agents.loop.leftovers import SloBurn

    view, feed = _entry_view(0.9999)
    burn = SloBurn(["entry"], 0.99, after_s=120.0, every_s=60.0)
    fired = []
    for t in range(700):
        feed(t, 0.005 if t >= 300 else 0.0)
        fired += burn.alerts(float(t), view.health(), view.users_hit(0.99))
        if t == 299:
            assert not view.users_hit(0.99)
    assert view.health() > 0.99 and view.slo_violated() and view.users_hit(0.99)
    times = [a.time for a in fired]
    gaps = np.diff(times)
    assert times and times[0] >= 300 + 120 and (gaps >= 60).all()
    assert {a.signal for a in fired} == {"slo_burn"}


def test_a_slow_burn_is_no_page_and_a_burst_needs_the_long_window_too():
    """Benign errors at 1.5x a 99.9% budget (a low-traffic entry's background) never hit
    users at the page threshold (14.4x), though any-breach (burn 1) would; a burst must
    also burn the 5-minute window."""
    view, feed = _entry_view(0.999)
    for t in range(600):
        feed(t, 0.0015)
        assert not view.users_hit(0.99)
    assert view.slo_violated(burn=1.0)
    view, feed = _entry_view(0.9999)
    for t in range(300):
        feed(t, 0.0)
    for t in range(300, 320):  # 20 s of 0.5%: 16.7x over the minute, 3.3x over 5 minutes
        feed(t, 0.005)
    assert not view.slo_violated()
    for t in range(320, 400):  # 100 s in all: 16.7x over 5 minutes too
        feed(t, 0.005)
    assert view.slo_violated()


def test_a_series_with_a_repeated_stamp_is_replayed_on_its_regular_grid(tmp_path):
    from experiments.impact.no_fault_day import replayable

    stamps = [f"2014-03-09 0{h}:{m:02d}:00" for h in range(4) for m in range(0, 60, 5)]
    stamps.insert(25, stamps[24])  # a clock set back: the same stamp twice
    path = tmp_path / "day.csv"
    pd.DataFrame({"timestamp": stamps, "value": range(len(stamps))}).to_csv(path, index=False)
    replayed, disordered = replayable(path, tmp_path / "out")
    assert disordered == 1 and replayed != path
    regular = pd.read_csv(replayed)
    times = pd.to_datetime(regular["timestamp"])
    assert (times.diff().dropna() == pd.Timedelta(minutes=5)).all()
    assert len(regular) == len(stamps) - 1
    assert regular["value"].iloc[24] == pytest.approx(24.5)  # the two samples' mean
    ordered = tmp_path / "ok.csv"
    pd.DataFrame({"timestamp": stamps[:24], "value": range(24)}).to_csv(ordered, index=False)
    assert replayable(ordered, tmp_path / "out2") == (ordered, 0)
