"""Invariants of every run: requests conserved, nothing negative, deterministic, bounded."""

from __future__ import annotations

import math

import numpy as np
import pytest
from conftest import SCENARIOS, make_scenario, simulate
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from twin.fields import M
from twin.flow.queueing import erlang_c
from twin.scenario.loader import load_scenario

FAULT_KINDS = {
    "latency": {"factor": 20.0},
    "errors": {"rate": 0.3},
    "cpu_hog": {"cores": 0.5},
    "memory_leak": {"mb_per_min": 200.0},
    "bad_deploy": {"latency_factor": 5.0, "error_rate": 0.1},
    "dependency_outage": {},
    "crash": {"share": 0.5},
    "misconfiguration": {"timeout_ms": 5.0},
    "retry_storm": {"retries": 4},
}


def _check_invariants(run) -> None:
    cons = run.sim.conservation()
    balance = (
        cons["arrived"] - cons["completed"] - cons["failed"] - cons["shed"] - cons["in_flight"]
    )
    assert np.all(np.abs(balance) <= 1e-6 * np.maximum(cons["arrived"], 1.0))
    for key in ("completed", "failed", "shed", "in_flight"):
        assert np.all(cons[key] >= -1e-9), key
    assert np.all(np.isfinite(run.values))
    assert np.all(run.values >= -1e-9)
    ratio = run.values[:, :, M["error_ratio"]]
    assert np.all(ratio <= 1.0 + 1e-9)
    util = run.values[:, :, M["worker_utilization"]]
    assert np.all(util <= 1.0 + 1e-9)
    p50, p95, p99 = (
        run.values[:, :, M[m]] for m in ("latency_p50_ms", "latency_p95_ms", "latency_p99_ms")
    )
    assert np.all(p50 <= p95 + 1e-9) and np.all(p95 <= p99 + 1e-9)


@st.composite
def random_system(draw):
    """Random topologies (cycles allowed), loads and one fault of any kind."""
    n = draw(st.integers(2, 7))
    names = [f"s{i}" for i in range(n)]
    services = {
        name: {
            "replicas": draw(st.integers(1, 3)),
            "workers": draw(st.integers(1, 32)),
            "service_time": {"mean_ms": draw(st.floats(0.5, 50)), "cv": draw(st.floats(0, 2))},
            "cpu_per_request_ms": draw(st.floats(0, 20)),
            "queue_limit": draw(st.integers(0, 100)),
            "memory_limit_mb": 256,
            "startup_s": draw(st.floats(1, 30)),
        }
        for name in names
    }
    pairs = draw(st.sets(st.tuples(st.sampled_from(names), st.sampled_from(names)), max_size=3 * n))
    calls = []
    for a, b in sorted(pairs):
        if a == b:
            continue
        call = {
            "from": a,
            "to": b,
            "per_request": draw(st.floats(0.1, 3)),
            "probability": draw(st.floats(0.05, 1)),
            "required": draw(st.booleans()),
            "sync": draw(st.booleans()),
            "retries": {"max": draw(st.integers(0, 3))},
        }
        if draw(st.booleans()):
            call["breaker"] = {"window_s": 5, "cooldown_s": 10, "min_calls": 5}
        calls.append(call)
    kind = draw(st.sampled_from(sorted(FAULT_KINDS)))
    fault = {
        "kind": kind,
        "target": draw(st.sampled_from(names)),
        "start": 120,
        "duration": 240,
        **FAULT_KINDS[kind],
    }
    rate = draw(st.floats(1, 2000))
    return {"name": "random", "services": services, "calls": calls}, fault, rate


def _cpu_bound_pair(cpu_ms: float) -> dict:
    """s0 calls a worker whose CPU work outlasts its service time: a CPU hog starves it."""

    def svc(cpu: float, queue: int) -> dict:
        return {
            "replicas": 1,
            "workers": 1,
            "service_time": {"mean_ms": 1.0, "cv": 0.0},
            "cpu_per_request_ms": cpu,
            "queue_limit": queue,
            "memory_limit_mb": 256,
            "startup_s": 1.0,
        }

    call = {"per_request": 1.0, "probability": 1.0, "required": False, "retries": {"max": 0}}
    return {
        "name": "random",
        "services": {"s0": svc(0.0, 0), "s1": svc(cpu_ms, 28), "s2": svc(0.0, 0)},
        "calls": [
            {"from": "s0", "to": "s1", "sync": True, **call},
            {"from": "s0", "to": "s2", "sync": False, **call},
        ],
    }


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(random_system(), st.integers(0, 2**31 - 1))
# found in CI: the starved worker's residence fit had mass below zero, its caller a
# negative call cost
@example(
    (
        _cpu_bound_pair(3.0),
        {
            **FAULT_KINDS["cpu_hog"],
            "kind": "cpu_hog",
            "target": "s1",
            "start": 120,
            "duration": 240,
        },
        1.0,
    ),
    0,
)
def test_invariants_hold_on_random_systems_under_faults(system, seed):
    topology, fault, rate = system
    sc = make_scenario(
        topology,
        duration=600,
        seed=seed,
        faults=[fault],
        workload={"classes": [{"name": "all", "entry": "s0", "rate": rate}], "noise": 0.2},
    )
    _check_invariants(simulate(sc))


@pytest.mark.parametrize(
    "name", ["retry-storm", "memory-leak", "dependency-outage", "network-partition", "bad-deploy"]
)
def test_invariants_hold_on_the_scenario_library(name):
    sc = load_scenario(SCENARIOS / f"{name}.yaml")
    _check_invariants(simulate(sc))


def test_same_seed_identical_other_seed_differs():
    path = SCENARIOS / "memory-leak.yaml"
    a = simulate(load_scenario(path))
    b = simulate(load_scenario(path))
    c = simulate(load_scenario(path, seed=99))
    assert a.values.tobytes() == b.values.tobytes()
    assert a.edge_values.tobytes() == b.edge_values.tobytes()
    assert a.events == b.events
    assert a.values.tobytes() != c.values.tobytes()


def _erlang_c_factorial(c: int, a: float) -> float:
    """The textbook formula, computed independently of the kernel's recursion."""
    top = a**c / math.factorial(c) * c / (c - a)
    return top / (sum(a**k / math.factorial(k) for k in range(c)) + top)


@pytest.mark.parametrize(("c", "a"), [(1, 0.5), (2, 1.5), (8, 6.0), (16, 15.5), (40, 30.0)])
def test_kernel_erlang_c_matches_the_formula(c, a):
    assert erlang_c(float(c), a) == pytest.approx(_erlang_c_factorial(c, a), rel=1e-9)


@pytest.mark.parametrize(("workers", "rho"), [(1, 0.5), (1, 0.8), (4, 0.7), (16, 0.9)])
def test_flow_mode_single_station_is_mmc_and_obeys_little(workers, rho):
    """A lone exponential station: mean residence = W_q (Erlang C) + S; L = λ·W."""
    mean_s = 0.05
    rate = rho * workers / mean_s
    topo = {
        "name": "mmc",
        "services": {
            "q": {
                "replicas": 1,
                "workers": workers,
                "queue_limit": 10_000,
                "service_time": {"dist": "exponential", "mean_ms": mean_s * 1000},
                "cpu_per_request_ms": 0.0,
                "memory_limit_mb": 10_000,
            }
        },
        "calls": [],
    }
    sc = make_scenario(
        topo,
        duration=1800,
        workload={"classes": [{"name": "all", "entry": "q", "rate": rate}], "noise": 0.0},
    )
    run = simulate(sc)
    steady = run.times > 600
    lam = run.series("q", "arrival_rate")[steady].mean()
    a = lam * mean_s
    expected = _erlang_c_factorial(workers, a) / (workers / mean_s - lam) + mean_s
    mean_latency = run.series("q", "latency_mean_ms")[steady].mean() / 1000
    assert mean_latency == pytest.approx(expected, rel=0.03)
    # Little's law on the whole station and on its queue: in flight counts the requests
    # waiting for a worker too (it once counted only those holding one)
    in_flight = run.series("q", "in_flight")[steady].mean()
    queue = run.series("q", "queue")[steady].mean()
    assert in_flight == pytest.approx(lam * expected, rel=0.03)
    assert queue == pytest.approx(lam * (expected - mean_s), rel=0.03, abs=1e-3)
    assert in_flight - queue == pytest.approx(lam * mean_s, rel=0.03)  # and on the workers


def test_restarts_shrinking_a_queue_never_make_a_call_cost_negative():
    """Found by RL training: restarts shrink a queue, the tick sheds more backlog than
    arrived, and a share of refused calls above 1 made its callers' call cost negative."""
    from twin.control.actions import action_from_dict
    from twin.envs.distribution import QUIET_TELEMETRY, topology
    from twin.flow.engine import Simulation
    from twin.scenario.schema import NetworkPartitionFault, RequestClass, Scenario, Slo, Workload

    sc = Scenario(
        name="repro",
        topology=topology("social-network"),
        duration=1200,
        tick=2.0,
        seed=1432689218,
        workload=Workload(
            classes=[
                RequestClass(name="nginx-thrift-requests", entry="nginx-thrift", rate=219.237),
                RequestClass(name="media-frontend-requests", entry="media-frontend", rate=21.924),
            ],
            noise=0.05,
        ),
        faults=[
            NetworkPartitionFault(
                kind="network_partition",
                target="home-timeline-service",
                peer="post-storage-service",
                start=194.0,
            )
        ],
        slos=[Slo()],
        telemetry=QUIET_TELEMETRY,
    )
    acts = [
        (20.0, {"action": "rollback", "service": "user-timeline-service"}),
        (40.0, {"action": "restart_pods", "service": "user-timeline-service", "share": 0.5}),
        (50.0, {"action": "scale_to", "service": "home-timeline-service", "replicas": 4}),
        (60.0, {"action": "restart_pods", "service": "media-frontend", "share": 0.5}),
        (80.0, {"action": "scale_to", "service": "media-frontend", "replicas": 4}),
    ]
    sim = Simulation(sc, actions=[(t, action_from_dict(a)) for t, a in acts])
    sim.advance(sim.end)
    assert np.all(np.isfinite(sim.S))
