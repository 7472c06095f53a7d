"""A replica's idle CPU (runtime threads, GC, health checks): it shows in cpu_cores and the
HPA's utilisation in both fidelities, takes its share of the limit before requests do, and
calibration fits it as the intercept of CPU on load."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import chain_topology, make_scenario, simulate
from pydantic import ValidationError

from experiments.calibration.fit import idle_and_per_request
from twin.fields import M
from twin.request.engine import RequestSimulation

RATE = 40.0  # requests/s at the entry; each service does 1 CPU-ms per request


def _chain(idle: float, limit: float = 1.0):
    topology = chain_topology()
    for svc in topology["services"].values():
        svc["cpu_idle_cores"] = idle
        svc["cpu_limit"] = limit
    return make_scenario(
        topology,
        duration=300,
        workload={"classes": [{"name": "all", "entry": "entry", "rate": RATE}], "noise": 0.0},
    )


def _request_values(scenario) -> np.ndarray:
    chunks = []

    class Keep:
        def on_chunk(self, chunk) -> None:
            chunks.append(chunk)

        def close(self) -> None:
            pass

    RequestSimulation(scenario, sinks=[Keep()]).run()
    return np.concatenate([c.values for c in chunks])


def test_idle_cpu_adds_replicas_times_idle_in_both_fidelities() -> None:
    idle = 0.05
    flow_base = simulate(_chain(0.0)).values
    flow_idle = simulate(_chain(idle)).values
    request_idle = _request_values(_chain(idle))
    entry, island = 0, 4  # 2 replicas each; the island serves nothing
    added = flow_idle[60:, entry, M["cpu_cores"]] - flow_base[60:, entry, M["cpu_cores"]]
    assert added.mean() == pytest.approx(2 * idle, rel=1e-6)
    assert flow_idle[60:, island, M["cpu_cores"]].mean() == pytest.approx(2 * idle, rel=1e-6)
    # request fidelity: served × 1 ms + idle, within the Poisson noise of 40 req/s
    expected = RATE * 0.001 + 2 * idle
    assert request_idle[60:, entry, M["cpu_cores"]].mean() == pytest.approx(expected, rel=0.05)
    assert request_idle[60:, island, M["cpu_cores"]].mean() == pytest.approx(2 * idle, rel=1e-6)
    # the HPA's denominator is the request (0.5 cores): utilisation counts the idle use too
    util = flow_idle[60:, island, M["cpu_utilization"]].mean()
    assert util == pytest.approx(idle / 0.5, rel=1e-6)


def test_idle_cpu_takes_its_share_of_the_limit_first() -> None:
    """With idle use near the limit, what is left for requests is tight: requests slow."""
    loose = simulate(_chain(0.0, limit=0.06)).values
    tight = simulate(_chain(0.05, limit=0.06)).values
    mean = M["latency_mean_ms"]
    assert tight[60:, 0, mean].mean() > 1.2 * loose[60:, 0, mean].mean()


def test_idle_at_or_over_the_limit_is_refused_naming_the_fields() -> None:
    with pytest.raises(ValidationError, match=r"cpu_idle_cores .* must be below cpu_limit"):
        _chain(0.2, limit=0.2)


def test_calibration_fits_idle_as_the_intercept_of_cpu_on_load() -> None:
    rng = np.random.default_rng(3)
    load = rng.uniform(1.0, 20.0, 400)
    cpu = 0.04 + 0.002 * load + rng.normal(0.0, 0.001, load.size)
    idle, per_req_ms = idle_and_per_request(cpu, load)
    assert idle == pytest.approx(0.04, abs=0.002)
    assert per_req_ms == pytest.approx(2.0, rel=0.05)


def test_calibration_never_fits_a_negative_idle_or_per_request_cost() -> None:
    load = np.linspace(1.0, 10.0, 50)
    idle, per_req_ms = idle_and_per_request(0.05 - 0.001 * load, load)  # falls with load
    assert idle >= 0.0 and per_req_ms >= 0.0
    flat_idle, flat_ms = idle_and_per_request(np.full(3, 0.01), np.zeros(3))  # no traffic
    assert flat_idle == pytest.approx(0.01) and flat_ms == 0.0
