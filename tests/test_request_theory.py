"""The request fidelity against queueing theory: M/M/1, M/M/c (Erlang C), Little's law and a
tandem (Jackson) network. Each check replicates the run over independent seeds and asks
that the exact formula lies inside the replications' 99.9% confidence interval; nothing is
pinned to a seeded number.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from conftest import make_scenario, topology_dict
from scipy import stats

from twin.request.engine import RequestSimulation

WARMUP_S = 20.0
CONFIDENCE = 0.999


def station(workers: int = 1, mean_ms: float = 10.0) -> dict:
    """A service with exponential service, no CPU or memory pressure, a deep queue."""
    return {
        "replicas": 1,
        "workers": workers,
        "service_time": {"dist": "exponential", "mean_ms": mean_ms},
        "cpu_per_request_ms": 0.0,
        "memory_per_request_mb": 0.0,
        "queue_limit": 100_000,
    }


def run_visits(topology: dict, rate: float, seed: int, duration: float) -> RequestSimulation:
    scenario = make_scenario(
        topology,
        duration=duration,
        seed=seed,
        workload={
            "classes": [{"name": "all", "entry": next(iter(topology["services"])), "rate": rate}],
            "noise": 0.0,
        },
    )
    sim = RequestSimulation(scenario, trace_rate=0.0, record_visits=True)
    sim.run()
    return sim


def per_replication(topology: dict, rate: float, duration: float, reps: int, measure) -> np.ndarray:
    """One estimate per independent replication (after the warm-up)."""
    values = []
    for seed in range(reps):
        sim = run_visits(topology, rate, seed + 101, duration)
        visits = np.asarray(sim.visits)
        visits = visits[visits[:, 1] >= WARMUP_S]
        values.append(measure(sim, visits))
    return np.asarray(values, dtype=float)


def confidence_interval(samples: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and half-width (Student t) per column of replication estimates."""
    samples = np.atleast_2d(samples.T).T
    n = samples.shape[0]
    half = stats.t.ppf(0.5 + CONFIDENCE / 2, n - 1) * samples.std(axis=0, ddof=1) / math.sqrt(n)
    return samples.mean(axis=0), half


def assert_in_ci(samples: np.ndarray, expected: float | np.ndarray, what: str) -> None:
    """The theoretical value must lie in the replications' confidence interval (per column)."""
    mean, half = confidence_interval(samples)
    expected = np.broadcast_to(np.asarray(expected, dtype=float), mean.shape)
    inside = np.abs(mean - expected) <= half
    assert inside.all(), f"{what}: theory {expected}, simulated {mean} ± {half}"
    # and the interval is tight enough to mean something
    assert (half <= 0.25 * np.abs(expected) + 1e-9).all(), f"{what}: CI too wide ({half})"


def erlang_c(c: int, a: float) -> float:
    """P(wait > 0) in M/M/c with offered load a, from the textbook sum (independent of the
    kernel's recursion)."""
    top = a**c / math.factorial(c) * c / (c - a)
    return top / (sum(a**k / math.factorial(k) for k in range(c)) + top)


def one_station(workers: int, mean_ms: float) -> dict:
    return {"name": "mmc", "services": {"station": station(workers, mean_ms)}, "calls": []}


def test_mm1_mean_wait_residence_and_number_in_system():
    lam, mu = 70.0, 100.0
    rho = lam / mu
    est = per_replication(
        one_station(1, 1000.0 / mu),
        lam,
        duration=240.0,
        reps=8,
        measure=lambda sim, v: [
            (v[:, 2] - v[:, 1]).mean(),
            (v[:, 3] - v[:, 1]).mean(),
        ],
    )
    assert_in_ci(est, [rho / (mu - lam), 1.0 / (mu - lam)], "M/M/1 Wq and W")
    # the check has power: deterministic service (M/D/1 waits half as long) is rejected
    mean, half = confidence_interval(est[:, 0])
    assert abs(mean[0] - rho / (2.0 * (mu - lam))) > half[0]


@pytest.mark.parametrize(("workers", "lam"), [(4, 300.0), (8, 560.0)])
def test_mmc_probability_of_waiting_and_mean_wait_follow_erlang_c(workers, lam):
    mu = 100.0
    a = lam / mu
    pc = erlang_c(workers, a)
    est = per_replication(
        one_station(workers, 1000.0 / mu),
        lam,
        duration=120.0,
        reps=8,
        measure=lambda sim, v: [
            ((v[:, 2] - v[:, 1]) > 1e-12).mean(),
            (v[:, 2] - v[:, 1]).mean(),
        ],
    )
    assert_in_ci(est, [pc, pc / (workers * mu - lam)], f"M/M/{workers} P(wait), Wq")


def test_tandem_stations_behave_as_independent_mm1_queues():
    """Jackson: A → B (the request moves on, A's worker is free), each an M/M/1 at rate λ."""
    topology = {
        "name": "tandem",
        "services": {"a": station(1, 10.0), "b": station(1, 1000.0 / 120.0)},
        "calls": [{"from": "a", "to": "b", "sync": False}],
    }
    lam = 60.0

    def measure(sim, v):
        a, b = v[v[:, 0] == 0], v[v[:, 0] == 1]
        wa, wb = (a[:, 3] - a[:, 1]).mean(), (b[:, 3] - b[:, 1]).mean()
        return [wa, wb, wa + wb]

    est = per_replication(topology, lam, duration=240.0, reps=8, measure=measure)
    wa, wb = 1.0 / (100.0 - lam), 1.0 / (120.0 - lam)
    assert_in_ci(est, [wa, wb, wa + wb], "tandem W_a, W_b, end-to-end")


def test_littles_law_holds_on_every_service_of_online_boutique():
    """L (time-average in the service) = λ (arrival rate) × W (mean residence), per service."""
    scenario = make_scenario(
        topology_dict("online-boutique"),
        duration=300,
        seed=7,
        workload={"classes": [{"name": "all", "entry": "frontend", "rate": 100}], "noise": 0.0},
    )
    sim = RequestSimulation(scenario, trace_rate=0.0, record_visits=True)
    sim.run()
    visits = np.asarray(sim.visits)
    horizon = sim.env.now
    L = sim.littles_law()
    for s, name in enumerate(sim.topo.names):
        mine = visits[visits[:, 0] == s]
        lam = len(mine) / horizon
        W = (mine[:, 3] - mine[:, 1]).mean()
        assert lam > 1.0, name
        assert L[s] == pytest.approx(lam * W, rel=0.02), name
