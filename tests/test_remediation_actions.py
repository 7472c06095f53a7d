"""Remediation actions on the twin: failover, load shedding, escalation, and the time, cost
and risk every action kind declares and the twin makes real (a rollback's rollout, the
feature a needless rollback loses, a standby's replica-hours).

Chain topology (conftest): entry → mid → leaf, entry → other; mid's call to leaf is
required, with no retries, so a fault on leaf reaches mid's errors one for one.

Over 500 lines because every action kind's time, cost and risk is checked on the same chain
scenario.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from conftest import Recorded, _Keep, chain_topology, make_scenario, simulate
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_invariants import _check_invariants, random_system

from twin.control.actions import (
    ACTIONS,
    FAILOVER_PENALTY_MS,
    FAILOVER_SHIFT_S,
    ROLLOUT_S,
    SHED_DELAY_S,
    ActionError,
    ActionProfile,
    Escalate,
    Failover,
    ForceBreaker,
    NoOp,
    RestartPods,
    Rollback,
    ScaleTo,
    ShedLoad,
    StopFault,
    action_from_dict,
)
from twin.control.remedy_actions import Drain, RolloutRestart, SetRetries
from twin.errors import FirebreakError
from twin.fields import M
from twin.flow.engine import Simulation
from twin.flow.queueing import Z95, Z99, mixture_quantile
from twin.request.engine import RequestSimulation
from twin.run.runner import run_scenario

RATE = 100.0  # requests/s entering at `entry`
FAULT_START, FAULT_END = 300.0, 1500.0
AT = 600.0  # when the tests act


def _chain(*faults: dict, duration: float = 1800, seed: int = 3):
    return make_scenario(
        chain_topology(),
        duration=duration,
        seed=seed,
        faults=list(faults),
        workload={"classes": [{"name": "all", "entry": "entry", "rate": RATE}], "noise": 0.05},
    )


def _fault(kind: str, target: str = "leaf", **params) -> dict:
    return {
        "kind": kind,
        "target": target,
        "start": FAULT_START,
        "duration": FAULT_END - FAULT_START,
        **params,
    }


def _mean(run: Recorded, service: str, metric: str, start: float = AT + 60, end: float = 1400):
    return float(run.window(service, metric, start, end).mean())


def _actions(run: Recorded, kind: str) -> list[dict]:
    return [e for e in run.events if e["kind"] == "action" and e["action"] == kind]


# -- failover ------------------------------------------------------------------------------


@pytest.mark.parametrize("share", [0.25, 0.5, 1.0])
def test_failover_of_an_erroring_service_cuts_its_callers_errors_by_the_share(share):
    scenario = _chain(_fault("errors", rate=0.6))
    broken = simulate(scenario)
    moved = simulate(scenario, actions=[(AT, Failover("leaf", share))])
    before = _mean(broken, "mid", "error_ratio")
    assert before == pytest.approx(0.6, abs=0.02)
    # the standby runs the declared profile: its share of calls no longer fails
    assert _mean(moved, "mid", "error_ratio") == pytest.approx((1 - share) * before, abs=0.02)
    assert _mean(moved, "leaf", "error_ratio") == pytest.approx((1 - share) * 0.6, abs=0.02)
    # the shifted calls pay the cross-cluster penalty
    healthy = _mean(broken, "mid", "latency_mean_ms", 100, FAULT_START)
    expected = healthy + share * FAILOVER_PENALTY_MS
    assert _mean(moved, "mid", "latency_mean_ms") == pytest.approx(expected, rel=0.1)
    _check_invariants(moved)


def test_failover_of_a_slow_service_brings_its_callers_latency_back_by_about_the_share():
    scenario = _chain(_fault("latency", factor=20.0))
    broken = simulate(scenario)
    half = simulate(scenario, actions=[(AT, Failover("leaf", 0.5))])
    full = simulate(scenario, actions=[(AT, Failover("leaf", 1.0))])
    healthy = _mean(broken, "mid", "latency_mean_ms", 100, FAULT_START)
    slow = _mean(broken, "mid", "latency_mean_ms")
    assert slow > 5 * healthy
    # all of it: the healthy latency plus one cross-cluster penalty
    assert _mean(full, "mid", "latency_mean_ms") == pytest.approx(
        healthy + FAILOVER_PENALTY_MS, rel=0.1
    )
    # half of it: about halfway between (the mean of a mixture is the mixture of means)
    midway = 0.5 * (slow + healthy + FAILOVER_PENALTY_MS)
    assert _mean(half, "mid", "latency_mean_ms") == pytest.approx(midway, rel=0.1)
    p50, p95, p99 = (
        half.window("leaf", m, AT, 1400)
        for m in ("latency_p50_ms", "latency_p95_ms", "latency_p99_ms")
    )
    assert np.all(p50 < p95) and np.all(p95 < p99)
    for run in (half, full):  # the tail follows
        assert _mean(run, "mid", "latency_p99_ms") < _mean(broken, "mid", "latency_p99_ms")
        # the leaf's own row is what its callers saw: primary and standby mixed
        assert _mean(run, "leaf", "latency_mean_ms") < _mean(broken, "leaf", "latency_mean_ms")


def test_queue_telemetry_stays_the_queue_during_a_failover():
    """Regression: the latency quantiles of a failing-over service were computed in a
    variable that also held its queue, so the queue column read the p99 in seconds."""
    scenario = _chain(_fault("latency", factor=20.0))
    run = simulate(scenario, actions=[(AT, Failover("leaf", 0.5))])
    s = run.names.index("leaf")
    t = (run.times >= AT) & (run.times < 1400)
    queue = run.values[t, s, M["queue"]]
    in_flight = run.values[t, s, M["in_flight"]]
    p99_s = run.values[t, s, M["latency_p99_ms"]] / 1000.0
    assert np.all(queue <= in_flight + 1e-9)
    assert not np.allclose(queue, p99_s)


def test_failover_shifts_over_its_shift_time_and_share_zero_hands_traffic_back():
    scenario = _chain(_fault("errors", rate=0.6))
    back = AT + 300.0
    run = simulate(scenario, actions=[(AT, Failover("leaf", 1.0)), (back, Failover("leaf", 0.0))])
    err = run.series("mid", "error_ratio")
    t = run.times
    shift = FAILOVER_SHIFT_S
    assert err[t == AT - 1][0] == pytest.approx(0.6, abs=0.02)
    # linear over the shift (each tick sees the share at its middle)
    assert err[t == AT + 10][0] == pytest.approx(0.6 * (1 - 10.5 / shift), abs=0.01)
    assert np.all(np.diff(err[(t >= AT) & (t <= AT + shift)]) <= 1e-9)
    assert np.all(err[(t >= AT + shift) & (t < back)] < 0.01)
    # handing back takes the same shift, then the primary's errors are back
    assert np.all(np.diff(err[(t >= back) & (t <= back + shift)]) >= -1e-9)
    assert np.all(np.abs(err[(t >= back + shift) & (t < FAULT_END)] - 0.6) < 0.02)
    standby = [e for e in run.events if e["kind"] == "standby"]
    assert [(e["time"], e["replicas_from"], e["replicas_to"]) for e in standby] == [
        (AT, 0, 2),  # sized for all of leaf's declared 2 replicas
        (back + shift, 2, 0),  # kept until the traffic has moved back
    ]
    first, second = _actions(run, "failover")
    assert first["share_from"] == 0.0 and first["done_at"] == AT + shift
    assert first["standby"] == 2 and second["standby"] == 0
    assert second["share_from"] == 1.0


def _lognormal_cdf(x: float, mu: float, sigma: float, shift: float) -> float:
    return 0.5 * math.erfc(-(math.log(x - shift) - mu) / (sigma * math.sqrt(2))) if x > shift else 0


@pytest.mark.parametrize("w", [0.05, 0.5, 0.9, 1.0])
def test_the_mixture_percentiles_are_exact_where_one_fitted_lognormal_is_not(w):
    """A slow primary (100 ms, cv 1) beside a fast standby (5 ms + 20 ms penalty): two humps."""
    slow = (math.log(0.1) - 0.5 * math.log(2), math.sqrt(math.log(2)), 0.0)
    fast = (math.log(0.005) - 0.5 * math.log(2), math.sqrt(math.log(2)), 0.02)
    for p, z in ((0.5, 0.0), (0.95, Z95), (0.99, Z99)):
        q = mixture_quantile(p, z, w, *slow, *fast, 0.05)  # any guess will do
        cdf = (1 - w) * _lognormal_cdf(q, *slow) + w * _lognormal_cdf(q, *fast)
        assert cdf == pytest.approx(p, abs=1e-6)


def test_a_failover_rescues_a_service_in_outage_and_conserves_requests():
    scenario = _chain(_fault("dependency_outage"))
    broken = simulate(scenario)
    moved = simulate(scenario, actions=[(AT, Failover("leaf", 0.5))])
    assert _mean(broken, "mid", "error_ratio") == pytest.approx(1.0, abs=1e-6)
    assert _mean(moved, "mid", "error_ratio") == pytest.approx(0.5, abs=0.02)
    # while the primary refuses everything, the latency the leaf reports is the standby's
    assert _mean(broken, "leaf", "latency_mean_ms") == 0.0
    assert _mean(moved, "leaf", "latency_mean_ms") > FAILOVER_PENALTY_MS
    _check_invariants(moved)


def test_standby_replicas_cost_replica_hours_in_the_run_summary(tmp_path):
    scenario = _chain(_fault("errors", rate=0.6))
    plain = run_scenario(scenario, tmp_path / "plain", labels=False).summary
    action = Failover("leaf", 0.5)  # ceil(0.5 × 2 declared replicas) = 1 standby replica
    moved = run_scenario(scenario, tmp_path / "moved", labels=False, actions=[(AT, action)])
    summary = moved.summary
    standby_h = (scenario.duration - AT) / 3600.0
    assert summary["standby_replica_hours"] == pytest.approx(standby_h, abs=1e-3)
    assert summary["replica_hours"] == pytest.approx(plain["replica_hours"] + standby_h, abs=2e-3)
    assert summary["events"]["standby"] == 1
    assert json.loads((tmp_path / "moved" / "summary.json").read_text()) == summary
    sim = Simulation(scenario, actions=[(AT, action)])
    sim.run()
    assert sim.standby_replica_hours() == pytest.approx(standby_h)
    assert action.profile(Simulation(scenario)).replicas_added == 1.0


# -- shedding --------------------------------------------------------------------------------


def test_shedding_at_the_entry_drops_that_share_counts_it_and_relieves_downstream():
    scenario = _chain()
    base = simulate(scenario)
    stop = AT + 400.0
    run = simulate(scenario, actions=[(AT, ShedLoad("entry", 0.4)), (stop, ShedLoad("entry", 0))])
    start = AT + SHED_DELAY_S  # the ingress has the rule
    arriving = _mean(base, "entry", "arrival_rate", start, stop)
    assert _mean(run, "entry", "arrival_rate", start, stop) == pytest.approx(arriving)
    assert _mean(run, "entry", "shed_rate", start, stop) == pytest.approx(0.4 * arriving)
    assert _mean(run, "entry", "error_ratio", start, stop) == pytest.approx(0.4, abs=0.01)
    for downstream in ("mid", "leaf", "other"):
        ratio = _mean(run, downstream, "arrival_rate", start, stop) / _mean(
            base, downstream, "arrival_rate", start, stop
        )
        assert ratio == pytest.approx(0.6, abs=0.01)
        assert _mean(run, downstream, "shed_rate", start, stop) == 0.0  # not theirs
    # not before the rule lands, and not after it is lifted
    shed = run.series("entry", "shed_rate")
    assert np.all(shed[run.times < start] == 0.0)
    assert np.all(shed[(run.times >= start) & (run.times < stop)] > 0.0)
    assert np.all(shed[run.times >= stop + SHED_DELAY_S] == 0.0)
    _check_invariants(run)
    cons = run.sim.conservation()
    entry = run.names.index("entry")
    total = run.series("entry", "shed_rate").sum() * scenario.tick
    assert cons["shed"][entry] == pytest.approx(total)
    offered = base.window("entry", "arrival_rate", start, stop + SHED_DELAY_S).sum()
    assert cons["shed"][entry] == pytest.approx(0.4 * offered * scenario.tick)


def test_shed_requests_are_errors_in_the_slo_and_the_summary(tmp_path):
    scenario = _chain()
    plain = run_scenario(scenario, tmp_path / "plain", labels=False).summary
    shed = run_scenario(
        scenario, tmp_path / "shed", labels=False, actions=[(AT, ShedLoad("entry", 0.5))]
    ).summary
    assert plain["requests"]["shed"] == 0.0
    assert shed["requests"]["shed"] == pytest.approx(
        0.5 * RATE * (scenario.duration - AT - SHED_DELAY_S), rel=0.05
    )
    assert shed["slo_adherence"] < plain["slo_adherence"]


# -- escalation ------------------------------------------------------------------------------


def test_escalating_changes_nothing_but_is_recorded():
    scenario = _chain(_fault("errors", rate=0.6))
    base = simulate(scenario)
    paged = simulate(scenario, actions=[(AT, Escalate("errors at mid", service="leaf"))])
    assert paged.values.tobytes() == base.values.tobytes()
    assert paged.edge_values.tobytes() == base.edge_values.tobytes()
    assert _actions(paged, "escalate") == [
        {
            "time": AT,
            "kind": "action",
            "action": "escalate",
            "reason": "errors at mid",
            "service": "leaf",
            "paged": True,
        }
    ]
    assert paged.sim.action_log == [(AT, Escalate("errors at mid", "leaf"))]
    profile = Escalate("x").profile()
    assert profile.pages_human and profile.human_minutes > 0 and profile.delay_s > 0


# -- rollback: a rolling update, and the feature a needless one loses ---------------------


def test_a_rollback_ends_the_bad_deploy_only_when_its_rollout_is_done():
    scenario = _chain(_fault("bad_deploy", error_rate=0.5, latency_factor=4.0))
    run = simulate(scenario, actions=[(AT, Rollback("leaf"))])
    end = next(e for e in run.events if e["kind"] == "fault_end")
    assert end["time"] == AT + ROLLOUT_S and end["reason"] == "rollback"
    assert any(e["kind"] == "rollback" and e["time"] == AT + ROLLOUT_S for e in run.events)
    err = run.series("leaf", "error_ratio")
    assert np.all(np.abs(err[(run.times >= AT) & (run.times < AT + ROLLOUT_S)] - 0.5) < 0.02)
    assert np.all(err[run.times >= AT + ROLLOUT_S + 1] < 0.01)
    (action,) = _actions(run, "rollback")
    assert not any(e["kind"] == "feature_lost" for e in run.events)
    assert action["done_at"] == AT + ROLLOUT_S
    # a faster pipeline says so per action; 0 is at once
    quick = simulate(scenario, actions=[(AT, Rollback("leaf", rollout_s=0))])
    assert next(e for e in quick.events if e["kind"] == "fault_end")["time"] == AT
    assert Rollback("leaf", rollout_s=90).profile().delay_s == 90.0


def test_rolling_back_a_good_deploy_loses_its_feature(tmp_path):
    scenario = _chain(_fault("bad_deploy", error_rate=0.5))
    good = Rollback("mid")  # nothing wrong with mid
    assert good.profile(Simulation(scenario)).loses_feature is True
    run = simulate(scenario, actions=[(AT, good)])
    (action,) = _actions(run, "rollback")
    assert action["done_at"] == AT + ROLLOUT_S
    lost = [e for e in run.events if e["kind"] == "feature_lost"]
    assert lost == [
        {"time": AT + ROLLOUT_S, "kind": "feature_lost", "service": "mid", "reason": "rollback"}
    ]
    assert run.sim.pods.features_lost == [(AT + ROLLOUT_S, "mid")]
    # the bad deploy elsewhere is untouched
    assert not any(e["kind"] == "fault_end" and e["time"] < FAULT_END for e in run.events)
    summary = run_scenario(scenario, tmp_path, labels=False, actions=[(AT, good)]).summary
    assert summary["features_lost"] == 1
    assert summary["feature_loss_hours"] == pytest.approx(
        (scenario.duration - AT - ROLLOUT_S) / 3600.0, abs=1e-3
    )
    assert summary["events"]["feature_lost"] == 1
    # a rollback of the bad deploy itself costs no feature
    sim = Simulation(scenario)
    sim.advance(AT)
    assert Rollback("leaf").profile(sim).loses_feature is False


# -- declared profiles -------------------------------------------------------------------


def test_every_kind_declares_its_delay_cost_and_risk():
    scenario = _chain(_fault("bad_deploy", error_rate=0.5))
    sim = Simulation(scenario)
    sim.advance(AT)
    examples = {
        "noop": NoOp(),
        "scale_to": ScaleTo("mid", 5),
        "restart_pods": RestartPods("mid", count=1),
        "rollback": Rollback("leaf"),
        "force_breaker": ForceBreaker("mid", "leaf", "open"),
        "stop_fault": StopFault(0),
        "failover": Failover("leaf", 0.5),
        "shed_load": ShedLoad("entry", 0.3),
        "escalate": Escalate("unknown signature"),
        "drain": Drain("node-a1"),
        "set_retries": SetRetries("leaf", 0),
        "rollout_restart": RolloutRestart("mid"),
    }
    assert set(examples) == set(ACTIONS)
    startup = scenario.topology.services["mid"].startup_s
    for kind, action in examples.items():
        for profile in (action.profile(), action.profile(sim)):
            assert isinstance(profile, ActionProfile), kind
            assert profile.delay_s >= 0.0 and profile.risk, kind
    assert examples["scale_to"].profile(sim) == ActionProfile(
        delay_s=startup, replicas_added=3.0, risk=examples["scale_to"].profile(sim).risk
    )
    assert ScaleTo("mid", 1).profile(sim).delay_s == 0.0  # scaling in is at once
    restart = examples["restart_pods"].profile(sim)
    assert restart.delay_s == startup and restart.capacity_lost == 1.0 and restart.drops_in_flight
    assert examples["rollback"].profile(sim).delay_s == ROLLOUT_S
    failover = examples["failover"].profile(sim)
    assert failover.delay_s == FAILOVER_SHIFT_S and failover.replicas_added == 1.0
    assert examples["shed_load"].profile(sim).delay_s == SHED_DELAY_S
    with pytest.raises(AttributeError):
        failover.delay_s = 0.0  # type: ignore[misc]  # frozen


# -- validation ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: Failover("leaf", 1.5), r"failover: share must be a number in \[0, 1\], got 1.5"),
        (lambda: Failover("leaf", -0.1), r"failover: share must be a number in \[0, 1\]"),
        (lambda: Failover("leaf", True), r"failover: share must be a number .*got True"),
        (lambda: Failover("leaf", "half"), r"failover: share must be a number .*got 'half'"),
        (lambda: Failover("leaf", math.nan), r"failover: share must be a number .*got nan"),
        (lambda: Failover("leaf", 0.5, penalty_ms=-1), "penalty_ms must be a number >= 0, got -1"),
        (lambda: Failover("leaf", 0.5, shift_s=math.inf), "shift_s must be a number >= 0, got inf"),
        (lambda: ShedLoad("entry", 2), r"shed_load: share must be a number in \[0, 1\], got 2"),
        (lambda: ShedLoad("entry", 0.5, delay_s=-1), "shed_load: delay_s must be a number >= 0"),
        (lambda: Escalate(""), "escalate: reason must be a non-empty string, got ''"),
        (lambda: Escalate("x", service=3), "escalate: service must be a name or None, got 3"),
        (lambda: Rollback("leaf", rollout_s=-5), "rollback: rollout_s must be a number >= 0"),
    ],
)
def test_malformed_new_actions_are_refused(make, message):
    with pytest.raises(ActionError, match=message) as err:
        make()
    assert isinstance(err.value, FirebreakError)


@pytest.mark.parametrize(
    ("action", "message"),
    [
        (Failover("cartt", 0.5), r"failover: unknown service 'cartt' \(services: entry, mid, "),
        (ShedLoad("cartt", 0.5), "shed_load: unknown service 'cartt'"),
        (ShedLoad("mid", 0.5), r"shed_load: 'mid' is not an entry service \(entries: entry\)"),
        (Escalate("x", service="cartt"), "escalate: unknown service 'cartt'"),
    ],
)
def test_new_actions_on_unknown_targets_fail_clearly_and_change_nothing(action, message):
    sim = Simulation(_chain())
    sim.advance(10.0)
    before = (sim.S.tobytes(), sim.E.tobytes(), len(sim.events.pending))
    with pytest.raises(ActionError, match=message) as err:
        sim.act(action)
    assert isinstance(err.value, FirebreakError)
    assert (sim.S.tobytes(), sim.E.tobytes(), len(sim.events.pending)) == before
    assert sim.action_log == []
    with pytest.raises(ActionError, match=message):
        Simulation(_chain(), actions=[(100.0, action)])


def test_new_actions_serialise_and_come_back_equal():
    for action in (
        Failover("leaf", 0.5),
        Failover("leaf", 0, penalty_ms=5.0, shift_s=0.0),
        ShedLoad("entry", 0.25),
        ShedLoad("entry", 1, delay_s=0),
        Escalate("page"),
        Escalate("page", service="mid"),
        Rollback("leaf"),
        Rollback("leaf", rollout_s=120.0),
    ):
        data = action.to_dict()
        assert action_from_dict(json.loads(json.dumps(data))) == action
    assert Failover("leaf", 1).to_dict() == {
        "action": "failover",
        "service": "leaf",
        "share": 1.0,
        "penalty_ms": FAILOVER_PENALTY_MS,
        "shift_s": FAILOVER_SHIFT_S,
    }
    with pytest.raises(ActionError, match=r"failover: .*share"):
        action_from_dict({"action": "failover", "service": "leaf"})
    with pytest.raises(ActionError, match=r"shed_load: share must be a number"):
        action_from_dict({"action": "shed_load", "entry": "entry", "share": "all"})


# -- determinism and forks -----------------------------------------------------------------


PLAN = [
    (400.0, Failover("leaf", 0.6)),
    (450.0, ShedLoad("entry", 0.3)),
    (452.0, ShedLoad("entry", 0.1, delay_s=1.0)),  # lands first, so it wins
    (500.0, Escalate("still failing", service="mid")),
    (700.0, Rollback("leaf")),
    (900.0, Failover("leaf", 0.0, shift_s=60.0)),
    (950.0, Rollback("mid", rollout_s=30.0)),
]


def _planned(seed: int = 3):
    return _chain(
        _fault("bad_deploy", error_rate=0.4, latency_factor=3.0),
        _fault("latency", target="other", factor=5.0),
        duration=1500,
        seed=seed,
    )


def _telemetry(keep: _Keep, since: float = 0.0) -> tuple[bytes, bytes, list]:
    times = np.concatenate([c.times for c in keep.chunks])
    values = np.concatenate([c.values for c in keep.chunks])[times >= since]
    edges = np.concatenate([c.edge_values for c in keep.chunks])[times >= since]
    events = [e for c in keep.chunks for e in c.events if e["time"] >= since]
    return values.tobytes(), edges.tobytes(), events


def test_the_same_seed_and_actions_give_the_same_bytes_and_a_different_seed_differs():
    runs = [simulate(_planned(), actions=PLAN) for _ in range(2)]
    assert runs[0].values.tobytes() == runs[1].values.tobytes()
    assert runs[0].events == runs[1].events
    assert runs[0].sim.standby_replica_hours() == runs[1].sim.standby_replica_hours() > 0
    assert simulate(_planned(seed=4), actions=PLAN).values.tobytes() != runs[0].values.tobytes()
    # the later shed rule (1 s) landed before the earlier one (5 s) and won
    shed = runs[0].series("entry", "shed_rate") / runs[0].series("entry", "arrival_rate")
    assert shed[runs[0].times == 460.0][0] == pytest.approx(0.1)


@pytest.mark.parametrize("at", [410.0, 451.0, 452.0, 730.0, 920.0, 960.0, 1200.0])
def test_forks_replay_the_new_actions_bit_for_bit(at):
    """Forks mid-shift, with a shed rule in flight, mid-rollout and after everything."""
    scenario = _planned()
    keep = _Keep()
    original = Simulation(scenario, sinks=[keep], actions=PLAN)
    original.advance(at)
    fork_keep = _Keep()
    fork = original.fork(sinks=[fork_keep])
    original.run()
    fork.run()
    assert fork.action_log == original.action_log == PLAN
    assert _telemetry(fork_keep) == _telemetry(keep, since=at)
    assert fork.standby_replica_hours() == original.standby_replica_hours()
    assert fork.pods.features_lost == original.pods.features_lost == [(980.0, "mid")]
    for key in ("arrived", "completed", "failed", "shed"):
        assert fork.conservation()[key].tobytes() == original.conservation()[key].tobytes()


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(random_system(), st.data())
def test_invariants_hold_on_random_systems_with_failover_and_shedding(system, data):
    """Conservation, no negatives, ordered percentiles, under any fault, on any topology
    (cycles included), with a failover and shedding switched on and off mid-fault."""
    topology, fault, rate = system
    names = sorted(topology["services"])
    target = data.draw(st.sampled_from(names))
    share = data.draw(st.floats(0.0, 1.0))
    plan = [
        (150.0, Failover(target, share, shift_s=data.draw(st.sampled_from([0.0, 30.0])))),
        (180.0, ShedLoad("s0", data.draw(st.floats(0.0, 1.0)))),
        (300.0, Failover(target, data.draw(st.floats(0.0, 1.0)))),
        (330.0, ShedLoad("s0", 0.0, delay_s=0.0)),
    ]
    scenario = make_scenario(
        topology,
        duration=480,
        seed=data.draw(st.integers(0, 2**31 - 1)),
        faults=[fault],
        workload={"classes": [{"name": "all", "entry": "s0", "rate": rate}], "noise": 0.2},
    )
    _check_invariants(simulate(scenario, actions=plan))


def test_acting_between_advances_equals_scheduling_up_front():
    scenario = _planned()
    keep = _Keep()
    sim = Simulation(scenario, sinks=[keep])
    for t, action in PLAN:
        sim.advance(t)
        sim.act(action)
    sim.run()
    planned = _Keep()
    Simulation(scenario, sinks=[planned], actions=PLAN).run()
    assert _telemetry(keep) == _telemetry(planned)


# -- request fidelity --------------------------------------------------------------------


def test_the_request_fidelity_refuses_a_failover_by_name(tmp_path):
    sim = RequestSimulation(_chain(duration=60), trace_rate=0.0)
    with pytest.raises(ActionError, match="failover: needs flow fidelity") as err:
        sim.act(Failover("leaf", 0.5))
    assert isinstance(err.value, FirebreakError)
    assert sim.action_log == [] and not sim.events.pending
    with pytest.raises(ActionError, match=r"actions: scheduled actions.* need flow fidelity"):
        run_scenario(_chain(duration=60), tmp_path, fidelity="request", actions=[(1.0, NoOp())])


def test_the_request_fidelity_sheds_and_escalates():
    scenario = _chain(duration=120)
    sim = RequestSimulation(scenario, trace_rate=0.0)
    applied = []

    def operator(s: RequestSimulation) -> None:
        if s.tick_index == 30:
            applied.append(s.act(ShedLoad("entry", 0.5, delay_s=0)))
            s.act(Escalate("look", service="mid"))

    sim.on_tick.append(operator)
    sim.run()
    assert applied == [30.0]
    cons = sim.conservation()
    balance = cons["arrived"] - cons["completed"] - cons["failed"] - cons["shed"]
    assert np.array_equal(balance, cons["in_flight"])
    entry = sim.topo.names.index("entry")
    expected = 0.5 * RATE * 90.0
    assert abs(cons["shed"][entry] - expected) < 4 * math.sqrt(expected) + 0.05 * expected
    assert [a.kind for _, a in sim.action_log] == ["shed_load", "escalate"]
