"""What-if forks and actions: a run is a pure function of (scenario, seed, actions taken).

A fork replays a run to a time and continues; with no change it must reproduce the original
bit for bit, with a change it must diverge only from the fork time, in the expected way.

Over 500 lines because the determinism of forks under every action kind is checked on the
same fixtures.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from conftest import SCENARIOS, Recorded, _Keep, chain_topology, make_scenario, topology_dict
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from benchmarks.bench_fork import fork_cost
from twin.control.actions import (
    ROLLOUT_S,
    ActionError,
    ForceBreaker,
    NoOp,
    RestartPods,
    Rollback,
    ScaleTo,
    StopFault,
    action_from_dict,
)
from twin.control.fork import compare, what_if
from twin.errors import FirebreakError
from twin.fields import M
from twin.flow.engine import Simulation, TimeRangeError
from twin.scenario.loader import load_scenario

BREAKERS = {"failure_threshold": 0.5, "window_s": 10, "cooldown_s": 30, "min_calls": 20}
CATALOG = "productcatalogservice"


def _rehearsal():
    """Online Boutique with breakers everywhere, an HPA-waking flash crowd and three faults:
    breakers trip, pods are OOM-killed and restart, the HPA scales, a bad deploy ships."""
    return make_scenario(
        topology_dict("online-boutique"),
        patch={"defaults": {"breaker": BREAKERS}},
        duration=5400,
        seed=5,
        workload={
            "classes": [
                {"name": "browse", "entry": "frontend", "rate": 90},
                {"name": "checkout", "entry": "frontend", "rate": 10},
            ],
            "noise": 0.05,
            "flash_crowds": [{"start": 1200, "duration": 1200, "multiplier": 2.5, "ramp_s": 60}],
        },
        faults=[
            {
                "kind": "dependency_outage",
                "target": "recommendationservice",
                "start": 600,
                "duration": 300,
            },
            {
                "kind": "bad_deploy",
                "target": CATALOG,
                "start": 2400,
                "duration": 2400,
                "latency_factor": 4,
                "error_rate": 0.05,
                "name": "catalog-v2",
            },
            {
                "kind": "memory_leak",
                "target": "cartservice",
                "start": 300,
                "duration": 4000,
                "mb_per_min": 60,
            },
        ],
    )


def _small(duration: float = 600, **fields):
    """A three-service chain, cheap enough for many runs."""
    return make_scenario(chain_topology(breaker=True), duration=duration, **fields)


def _record(sim: Simulation) -> tuple[Simulation, _Keep]:
    keep = _Keep()
    sim.sinks.append(keep)
    return sim, keep


def _run(sim: Simulation) -> Recorded:
    keep = _Keep()
    sim.sinks.append(keep)
    sim.run()
    return Recorded(sim, keep.chunks)


def _telemetry(keep: _Keep) -> dict:
    """Every telemetry array as bytes, and the events: equal means bit for bit."""
    chunks = keep.chunks
    out = {
        name: np.concatenate([getattr(c, name) for c in chunks]).tobytes() if chunks else b""
        for name in ("times", "values", "edge_values", "dist")
    }
    out["events"] = [e for c in chunks for e in c.events]
    return out


def _from(rec: Recorded, keep: _Keep, at: float) -> dict:
    """The original run's telemetry from `at` on, in the same form as `_telemetry`."""
    sel = rec.times >= at
    dist = np.concatenate([c.dist for c in keep.chunks])
    return {
        "times": rec.times[sel].tobytes(),
        "values": rec.values[sel].tobytes(),
        "edge_values": rec.edge_values[sel].tobytes(),
        "dist": dist[sel].tobytes(),
        "events": [e for e in rec.events if e["time"] >= round(at, 6)],
    }


def _same_counters(a: Simulation, b: Simulation) -> bool:
    ca, cb = a.conservation(), b.conservation()
    return all(ca[k].tobytes() == cb[k].tobytes() for k in ca)


@pytest.fixture(scope="module")
def original():
    """The rehearsal run to its end, with every chunk kept."""
    sim, keep = _record(Simulation(_rehearsal()))
    sim.run()
    return sim, keep, Recorded(sim, keep.chunks)


# -- a fork with no change is the original, bit for bit ------------------------------------


def test_the_rehearsal_exercises_faults_hpa_breakers_and_restarts(original):
    kinds = {e["kind"] for e in original[2].events}
    assert {"breaker", "hpa", "scale", "pod_crash", "pod_ready", "fault_start", "rollback"} <= kinds


@pytest.mark.parametrize("at", [0.0, 1234.5, 2400.0, 3600.0, 4000.0])
def test_a_fork_without_change_reproduces_the_run_bit_for_bit(original, at):
    # 2400: a fault starts at the fork instant; 3600: a telemetry chunk boundary
    sim, keep, rec = original
    fork_keep = _Keep()
    fork = sim.fork(at, sinks=[fork_keep])
    assert fork.now == at
    fork.run()
    got, want = _telemetry(fork_keep), _from(rec, keep, at)
    assert np.frombuffer(got["times"])[0] == math.ceil(at)
    assert got == want
    assert _same_counters(fork, sim)
    assert fork.action_log == sim.action_log == []


@pytest.mark.parametrize(
    ("name", "duration", "at"),
    [("retry-storm", 3 * 3600, 3700.0), ("black-friday", 22 * 3600, 19 * 3600 + 300.0)],
)
def test_forks_of_scenario_files_reproduce_them(name, duration, at):
    # the metastable retry storm amplifies any difference; Black Friday overlaps four faults
    sim, keep = _record(Simulation(load_scenario(SCENARIOS / f"{name}.yaml", duration=duration)))
    sim.run()
    fork_keep = _Keep()
    fork = sim.fork(at, sinks=[fork_keep])
    fork.run()
    assert _telemetry(fork_keep) == _from(Recorded(sim, keep.chunks), keep, at)
    assert _same_counters(fork, sim)


def test_a_fork_at_the_end_has_nothing_left_and_the_same_counters(original):
    sim = original[0]
    fork_keep = _Keep()
    fork = sim.fork(sinks=[fork_keep])  # default: now, which is the end of a finished run
    assert fork.now == sim.end == 5400.0
    fork.run()
    assert fork_keep.chunks == []
    assert _same_counters(fork, sim)


def test_a_fork_of_the_present_of_a_live_run_continues_like_it():
    sim, keep = _record(Simulation(_rehearsal()))
    sim.advance(2000.0)
    fork_keep = _Keep()
    fork = sim.fork(sinks=[fork_keep])
    sim.run()
    fork.run()
    assert _telemetry(fork_keep) == _from(Recorded(sim, keep.chunks), keep, 2000.0)
    assert _same_counters(fork, sim)


def test_a_fork_streams_the_same_frames_as_the_original():
    scenario = load_scenario(SCENARIOS / "bad-deploy.yaml", duration=6300)
    frames = list(Simulation(scenario).frames())
    # the bad deploy starts at 3600 s, the first tick of a new telemetry chunk: its events
    # belong to that tick's frame even though the chunk flush drains them
    starts = [fr.time for fr in frames if any(e["kind"] == "fault_start" for e in fr.events)]
    assert starts == [3600.0]
    parent = Simulation(scenario)
    parent.advance(3500.0)
    forked = list(parent.fork().frames())
    assert len(forked) == 2800
    for a, b in zip(forked, frames[3500:], strict=True):
        assert a.time == b.time and a.events == b.events
        assert a.values.tobytes() == b.values.tobytes()


# -- actions: applied now, logged, replayed ------------------------------------------------


def _bad_deploy():
    return load_scenario(SCENARIOS / "bad-deploy.yaml", duration=7200)


def test_a_rollback_in_a_fork_diverges_only_from_the_fork_time_and_helps():
    scenario = _bad_deploy()
    at = 4200.0  # the bad deploy runs from 3600 s to 6300 s
    base = _run(Simulation(scenario))
    acted = _run(Simulation(scenario, actions=[(at, Rollback(CATALOG))]))
    before, after = base.times < at, base.times >= at
    assert acted.values[before].tobytes() == base.values[before].tobytes()
    assert acted.values[after].tobytes() != base.values[after].tobytes()
    # the fork of the unchanged run, rolled back at `at`, is that run from `at` on
    parent = Simulation(scenario)
    parent.advance(at)
    fork_keep = _Keep()
    fork = parent.fork(sinks=[fork_keep])
    assert fork.act(Rollback(CATALOG)) == at
    fork.run()
    assert np.concatenate([c.values for c in fork_keep.chunks]).tobytes() == (
        acted.values[after].tobytes()
    )
    # and it helps: the catalog and the front end are faster and fail less until 6300 s
    for service in (CATALOG, "frontend"):
        for metric in ("latency_p99_ms", "error_ratio"):
            fixed = acted.window(service, metric, at + 60, 6300).mean()
            broken = base.window(service, metric, at + 60, 6300).mean()
            assert fixed < 0.8 * broken, (service, metric, fixed, broken)
    # the rollback is a rolling update: the bad deploy ends when its rollout (60 s) is done
    done = at + Rollback(CATALOG).rollout_s
    for when, expected in ((at, ["action"]), (done, ["rollback", "fault_end"])):
        kinds = [e["kind"] for e in acted.events if e["time"] == when]
        assert [k for k in kinds if k in ("action", "rollback", "fault_end")] == expected
    action = next(e for e in acted.events if e["kind"] == "action")
    assert action == {
        "time": at,
        "kind": "action",
        "action": "rollback",
        "service": CATALOG,
        "rollout_s": 60.0,
        "done_at": done,
    }


def test_scale_to_in_a_fork_adds_capacity_after_the_start_up_delay():
    scenario = _bad_deploy()
    at = 4000.0
    parent = Simulation(scenario)
    parent.advance(at)
    out = compare(
        parent,
        {"nothing": [], "scale": [ScaleTo("checkoutservice", 6)]},
        horizon=600,
    )
    nothing, scaled = out["nothing"], out["scale"]
    assert len(scaled.times) == len(nothing.times) == 600
    assert scaled.times[0] == at
    ready = scaled.series("checkoutservice", "ready_replicas")
    startup = 5  # checkoutservice's start-up delay in the Online Boutique topology (no HPA)
    assert np.all(ready[:startup] == 2) and np.all(
        nothing.series("checkoutservice", "ready_replicas") == 2
    )
    assert np.all(ready[startup + 1 :] == 6)
    assert scaled.series("checkoutservice", "worker_utilization")[60:].mean() < (
        nothing.series("checkoutservice", "worker_utilization")[60:].mean()
    )
    assert parent.now == at and parent.action_log == []  # the original is untouched


def _with_actions(scenario, moments, actions):
    """Drive a run with act() at given moments (advance, act) and return it recorded."""
    sim, keep = _record(Simulation(scenario))
    for t, action in zip(moments, actions, strict=True):
        sim.advance(t)
        sim.act(action)
    sim.run()
    return sim, keep


def test_constructor_actions_equal_act_calls_at_those_times():
    scenario = _rehearsal()
    plan = [
        (0.0, ScaleTo("frontend", 5)),
        (700.5, ForceBreaker("frontend", "recommendationservice", "open")),
        (700.5, RestartPods("cartservice", count=1)),
        (2400.0, Rollback(CATALOG)),  # the instant the bad deploy ships: it goes first
        (3000.0, ForceBreaker("frontend", "recommendationservice", "auto")),
        (3000.0, StopFault("memory_leak-2")),
    ]
    acted, keep_a = _with_actions(scenario, [t for t, _ in plan], [a for _, a in plan])
    given_ = Simulation(scenario, actions=plan)
    keep_b = _Keep()
    given_.sinks.append(keep_b)
    given_.run()
    assert _telemetry(keep_a) == _telemetry(keep_b)
    assert acted.action_log == given_.action_log == plan
    # the rollback at 2400 s found no bad deploy yet, so the deploy still shipped and the
    # rollback, reverting nothing, cost a feature
    events = _telemetry(keep_a)["events"]
    assert any(e["kind"] == "fault_start" and e["fault_kind"] == "bad_deploy" for e in events)
    assert any(e["kind"] == "feature_lost" for e in events)


def test_forks_replay_the_actions_the_run_took():
    scenario = _rehearsal()
    moments = [500.0, 1500.0, 2600.0]
    actions = [ScaleTo("currencyservice", 6), RestartPods(CATALOG, share=0.5), Rollback(CATALOG)]
    sim, keep = _with_actions(scenario, moments, actions)
    rec = Recorded(sim, keep.chunks)
    for at in (2600.0, 3000.0):  # after every action (2600: the rollback's own instant)
        fork_keep = _Keep()
        fork = sim.fork(at, sinks=[fork_keep])
        assert fork.action_log == sim.action_log
        fork.run()
        assert _telemetry(fork_keep) == _from(rec, keep, at)
        assert _same_counters(fork, sim)
    # a fork before the rollback replays the first two actions, then has its own future:
    # the run that took only those two, not the original
    two, keep_two = _record(Simulation(scenario, actions=sim.action_log[:2]))
    two.run()
    for at in (1500.0, 2000.0):
        fork_keep = _Keep()
        fork = sim.fork(at, sinks=[fork_keep])
        assert fork.action_log == [(t, a) for t, a in sim.action_log if t <= at]
        fork.run()
        got = _telemetry(fork_keep)
        assert got == _from(Recorded(two, keep_two.chunks), keep_two, at)
        values = np.frombuffer(got["values"]).reshape(-1, *rec.values.shape[1:])
        p99 = M["latency_p99_ms"]
        assert values[:, :, p99].tobytes() != rec.values[rec.times >= at][:, :, p99].tobytes()


def test_actions_taken_from_inside_the_run_wait_for_the_next_tick_and_replay():
    scenario = _small(duration=900)
    sim, keep = _record(Simulation(scenario))

    def agent(s: Simulation) -> None:
        if s.tick_index == 300:  # after the tick at 299 s
            assert s.act(ScaleTo("mid", 4)) == 300.0

    sim.on_tick.append(agent)
    sim.advance(400.0)
    assert sim.action_log == [(300.0, ScaleTo("mid", 4))]
    later = sim.schedule(RestartPods("leaf", count=1), 650.0)
    assert later == 650.0
    fork_keep = _Keep()
    fork = sim.fork(sinks=[fork_keep])  # carries the restart that is not yet due
    sim.run()
    fork.run()
    assert fork.action_log == sim.action_log
    assert _telemetry(fork_keep) == _from(Recorded(sim, keep.chunks), keep, 400.0)
    direct = Simulation(scenario, actions=sim.action_log)
    direct_keep = _Keep()
    direct.sinks.append(direct_keep)
    direct.run()
    assert _telemetry(direct_keep) == _telemetry(keep)


# -- the actions themselves ------------------------------------------------------------


def test_each_action_does_what_it_says_and_is_recorded():
    scenario = _rehearsal()
    sim, keep = _record(Simulation(scenario))
    sim.advance(1000.0)
    frontend_pods = len(sim.pods.live_pods(0))
    sim.act(StopFault(2))  # the memory leak, active since 300 s
    sim.act(StopFault("catalog-v2"))  # not started yet: left alone
    sim.act(ForceBreaker("frontend", "adservice", "open"))
    sim.act(NoOp())
    sim.act(RestartPods("frontend", share=0.5))
    sim.act(Rollback("adservice"))  # nothing to roll back
    events = [e for e in sim.events.pending if e["time"] == 1000.0]
    actions = [e for e in events if e["kind"] == "action"]
    assert [a["action"] for a in actions] == [
        "stop_fault",
        "stop_fault",
        "force_breaker",
        "noop",
        "restart_pods",
        "rollback",
    ]
    assert actions[0]["stopped"] is True and actions[1]["stopped"] is False
    assert any(e["kind"] == "fault_end" and e["reason"] == "action" for e in events)
    assert 2 not in sim.faults.active
    assert actions[2]["state_from"] == "auto"
    assert len(actions[4]["pods"]) == math.ceil(frontend_pods / 2)
    assert all(p.startswith("frontend-") for p in actions[4]["pods"])
    assert actions[5]["done_at"] == 1000.0 + ROLLOUT_S
    assert not any(e["kind"] == "rollback" for e in events)
    sim.run()
    rec = Recorded(sim, keep.chunks)
    edge = sim.topo.edges.index(("frontend", "adservice"))
    forced = rec.edge_values[rec.times >= 1000.0, edge]
    assert np.all(forced[:, 3] == 4.0)  # breaker_state reads 3 + forced (1: open)
    assert np.all(forced[:, 0] == 0.0)  # and no call gets through
    assert rec.window("adservice", "arrival_rate", 1010, 1100).max() == 0.0
    assert rec.window("cartservice", "memory_mb", 1100, 1200).max() < (
        rec.window("cartservice", "memory_mb", 900, 1000).max()
    )


def test_actions_serialise_and_come_back_equal():
    for action in (
        NoOp(),
        ScaleTo("frontend", 3),
        RestartPods("cartservice", share=0.25),
        RestartPods("cartservice", count=2),
        Rollback(CATALOG),
        ForceBreaker("frontend", "adservice", "closed"),
        StopFault(1),
        StopFault("catalog-v2"),
    ):
        assert action_from_dict(action.to_dict()) == action
    with pytest.raises(ActionError, match="unknown action 'reboot'"):
        action_from_dict({"action": "reboot"})
    with pytest.raises(ActionError, match=r"scale_to: .*replicas"):
        action_from_dict({"action": "scale_to", "service": "frontend"})


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: ScaleTo("frontend", -1), "scale_to: replicas must be >= 0, got -1"),
        (lambda: ScaleTo("frontend", 2.5), "scale_to: replicas must be an integer, got 2.5"),
        (lambda: RestartPods("frontend", share=0.0), r"share must be in \(0, 1\], got 0.0"),
        (lambda: RestartPods("frontend", count=0), "count must be an integer >= 1, got 0"),
        (lambda: RestartPods("frontend", share=0.5, count=1), "give share or count, not both"),
        (lambda: ForceBreaker("a", "b", "half"), "state must be one of open, closed, auto"),
        (lambda: StopFault(1.5), "fault must be an index or a name, got 1.5"),
    ],
)
def test_malformed_actions_are_refused(make, message):
    with pytest.raises(ActionError, match=message):
        make()


@pytest.mark.parametrize(
    ("action", "message"),
    [
        (ScaleTo("cartt", 2), "scale_to: unknown service 'cartt' \\(services: frontend, "),
        (RestartPods("cartt"), "restart_pods: unknown service 'cartt'"),
        (Rollback("cartt"), "rollback: unknown service 'cartt'"),
        (ForceBreaker("cartt", "frontend", "open"), "force_breaker: unknown service 'cartt'"),
        (
            ForceBreaker("adservice", "frontend", "open"),
            "force_breaker: no call edge 'adservice' -> 'frontend' in the topology",
        ),
        (StopFault(3), "stop_fault: no fault 3 \\(the scenario has 3\\)"),
        (StopFault(-1), "stop_fault: no fault -1"),
        (StopFault("leak"), "stop_fault: unknown fault 'leak' \\(faults: dependency_outage-0, "),
        ("scale frontend", "not an action: 'scale frontend'"),
    ],
)
def test_actions_on_unknown_targets_fail_clearly_and_change_nothing(action, message):
    sim = Simulation(_rehearsal())
    sim.advance(10.0)
    before = (sim.S.tobytes(), sim.E.tobytes(), len(sim.events.pending))
    with pytest.raises(ActionError, match=message) as err:
        sim.act(action)
    assert isinstance(err.value, FirebreakError)
    assert (sim.S.tobytes(), sim.E.tobytes(), len(sim.events.pending)) == before
    assert sim.action_log == []
    with pytest.raises(ActionError, match=message):
        Simulation(_rehearsal(), actions=[(100.0, action)])


def test_stopping_an_excluded_fault_is_refused():
    sim = Simulation(_rehearsal(), exclude_faults=[1])
    with pytest.raises(ActionError, match="stop_fault: fault 'catalog-v2' is excluded"):
        sim.act(StopFault("catalog-v2"))
    # and a fork keeps the exclusion
    assert sim.fork(0.0).exclude_faults == (1,)


# -- times outside the run -------------------------------------------------------------


def test_times_outside_the_run_are_refused_clearly():
    sim = Simulation(_small())
    sim.advance(300.0)
    with pytest.raises(TimeRangeError, match="cannot fork at t=-1 s: times start at 0"):
        sim.fork(-1.0)
    with pytest.raises(TimeRangeError, match="cannot fork at t=301 s: this run has only reached"):
        sim.fork(301.0)
    with pytest.raises(TimeRangeError, match="cannot fork at t=700 s: the run ends at t=600 s"):
        sim.fork(700.0)
    with pytest.raises(TimeRangeError, match="cannot fork at t=nan s"):
        sim.fork(float("nan"))
    with pytest.raises(TimeRangeError, match=r"cannot advance to t=200 s: .* already at t=300 s"):
        sim.advance(200.0)
    with pytest.raises(TimeRangeError, match="cannot schedule an action at t=100 s"):
        sim.schedule(NoOp(), 100.0)
    with pytest.raises(TimeRangeError, match="the run ends at t=600 s"):
        Simulation(_small(), actions=[(601.0, NoOp())])
    with pytest.raises(ActionError, match=r"expected \(time, action\) pairs"):
        Simulation(_small(), actions=[NoOp()])
    sim.run()
    with pytest.raises(TimeRangeError, match="the run is finished"):
        sim.act(NoOp())
    with pytest.raises(TimeRangeError, match="the run is finished"):
        sim.advance(600.0)
    assert sim.fork(600.0).now == 600.0
    assert isinstance(TimeRangeError("x"), FirebreakError)


# -- determinism -----------------------------------------------------------------------

_ACTION = st.one_of(
    st.builds(NoOp),
    st.builds(ScaleTo, st.sampled_from(["entry", "mid", "leaf"]), st.integers(0, 5)),
    st.builds(RestartPods, st.sampled_from(["mid", "leaf"]), count=st.integers(1, 3)),
    st.builds(ForceBreaker, st.just("mid"), st.just("leaf"), st.sampled_from(["open", "auto"])),
    st.builds(StopFault, st.just(0)),
)
_PLAN = st.lists(
    st.tuples(st.sampled_from([0.0, 50.0, 120.0, 120.5, 200.0, 299.0]), _ACTION), max_size=5
)


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(plan=_PLAN, seed=st.integers(0, 2**31 - 1))
def test_same_scenario_seed_and_actions_give_the_same_bytes(plan, seed):
    plan = sorted(plan, key=lambda e: e[0])
    fault = {"kind": "latency", "target": "leaf", "start": 100, "duration": 150, "factor": 30}
    scenario = _small(duration=300, seed=seed, faults=[fault])
    runs = []
    for _ in range(2):
        sim = Simulation(scenario, actions=plan)
        keep = _Keep()
        sim.sinks.append(keep)
        sim.run()
        runs.append((_telemetry(keep), sim.action_log))
    acted, keep = _with_actions(scenario, [t for t, _ in plan], [a for _, a in plan])
    assert runs[0] == runs[1] == (_telemetry(keep), acted.action_log)
    other = Simulation(scenario.model_copy(update={"seed": seed + 1}), actions=plan)
    other_keep = _Keep()
    other.sinks.append(other_keep)
    other.run()
    assert _telemetry(other_keep)["values"] != runs[0][0]["values"]


# -- helpers and the benchmark ---------------------------------------------------------


def test_what_if_leaves_the_original_alone_and_spans_its_horizon():
    scenario = _small(duration=600)
    sim = Simulation(scenario)
    sim.advance(200.0)
    snapshot = (sim.S.tobytes(), sim.E.tobytes(), sim.now)
    out = what_if(sim, [ScaleTo("mid", 1)], horizon=100)
    assert list(out.times) == [float(t) for t in range(200, 300)]
    assert out.series("mid", "ready_replicas")[-1] == 1.0
    assert out.events[0]["kind"] == "action" and out.events[0]["time"] == 200.0
    assert (sim.S.tobytes(), sim.E.tobytes(), sim.now) == snapshot
    rest = what_if(sim, at=100.0)
    assert rest.times[0] == 100.0 and rest.times[-1] == 599.0
    with pytest.raises(ValueError, match="horizon must be >= 0"):
        what_if(sim, horizon=-1)


def test_the_fork_benchmark_runs_and_reports():
    result = fork_cost(SCENARIOS / "steady-state.yaml", at=600.0, repeats=2, duration=1200)
    assert result["at_s"] == 600.0 and result["duration_s"] == 1200.0
    assert result["fork_s"] > 0 and result["scratch_s"] > 0 and result["inputs_s"] > 0
    assert result["meets_target"] == (result["fork_s"] <= result["target_s"])


def test_an_action_scheduled_mid_run_lands_where_a_replay_puts_it():
    # due at the instant a fault starts: it goes first (urgent), in the run and in replays
    fault = {"kind": "latency", "target": "leaf", "start": 300, "duration": 100, "factor": 30}
    scenario = _small(duration=600, faults=[fault])
    sim, keep = _record(Simulation(scenario))
    sim.advance(100.0)
    sim.schedule(StopFault(0), 300.0)
    sim.run()
    record = next(e for c in keep.chunks for e in c.events if e["kind"] == "action")
    assert record["time"] == 300.0 and record["stopped"] is False
    replay, replay_keep = _record(Simulation(scenario, actions=sim.action_log))
    replay.run()
    assert _telemetry(replay_keep) == _telemetry(keep)
