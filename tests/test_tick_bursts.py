"""Ticks run several to a compiled call between SimPy events: exactly as tick by tick.

An `on_tick` hook makes the engine run one tick per call (the hook must see every tick), so
the same run with and without a no-op hook compares the burst path against the plain one.
"""

from __future__ import annotations

import numpy as np
import pytest
from conftest import chain_topology, make_scenario

from twin.control.actions import ScaleTo
from twin.flow import burst
from twin.flow.engine import Simulation
from twin.scenario.loader import load_scenario


class _Keep:
    def __init__(self) -> None:
        self.times: list[np.ndarray] = []
        self.values: list[np.ndarray] = []
        self.nodes: list[np.ndarray] = []
        self.events: list[dict] = []

    def on_chunk(self, chunk) -> None:
        self.times.append(chunk.times)
        self.values.append(chunk.values)
        if chunk.node_values is not None:
            self.nodes.append(chunk.node_values)
        self.events.extend(chunk.events)

    def close(self) -> None:
        pass


def _run(scenario, *, hooked: bool, step: float = 7.0, act_at: float | None = None) -> _Keep:
    keep = _Keep()
    sim = Simulation(scenario, sinks=[keep])
    if hooked:
        sim.on_tick.append(lambda _sim: None)
    t = 0.0
    while t < sim.end:
        t = min(t + step, sim.end)
        sim.advance(t)
        if act_at is not None and t >= act_at:
            sim.act(ScaleTo(sim.topo.names[-1], 4))
            act_at = None
    sim.finish()
    return keep


def _same(a: _Keep, b: _Keep) -> None:
    assert a.events == b.events
    for x, y in ((a.times, b.times), (a.values, b.values), (a.nodes, b.nodes)):
        assert len(x) == len(y)
        for u, v in zip(x, y, strict=True):
            np.testing.assert_array_equal(u, v)


def _infra_scenario():
    topo = chain_topology()
    faults = [
        {"kind": "node_down", "target": "node-a1", "start": 300.0},
        {
            "kind": "memory_leak",
            "target": "leaf",
            "start": 200.0,
            "duration": 900.0,
            "mb_per_min": 300.0,
        },
    ]
    return make_scenario(
        topo,
        duration=1800,
        infrastructure={"zones": 2, "nodes_per_zone": 2, "node_cpu": 4.0},
        faults=faults,
    )


@pytest.mark.parametrize("name", ["memory-leak", "retry-storm", "black-friday"])
def test_bursts_equal_tick_by_tick_on_shipped_scenarios(name):
    scenario = load_scenario(f"scenarios/{name}.yaml")
    scenario = scenario.model_copy(update={"duration": min(scenario.duration, 2 * 3600)})
    _same(_run(scenario, hooked=False), _run(scenario, hooked=True))


def test_bursts_equal_tick_by_tick_with_nodes_faults_and_actions():
    scenario = _infra_scenario()
    plain = _run(scenario, hooked=True, step=5.0, act_at=600.0)
    fast = _run(scenario, hooked=False, step=5.0, act_at=600.0)
    _same(fast, plain)
    assert any(e["kind"] == "pod_crash" for e in plain.events)  # OOM kills happened mid-burst


def test_bursts_do_run_several_ticks_per_call(monkeypatch):
    calls: list[int] = []
    compiled = burst.flow_ticks

    def counting(first, count, *args):
        calls.append(count)
        return compiled(first, count, *args)

    monkeypatch.setattr("twin.flow.engine.flow_ticks", counting)
    sim = Simulation(make_scenario(chain_topology(), duration=600))
    sim.advance(600.0)
    assert sum(calls) == sim.tick_index == 600
    assert len(calls) < 600 / 4  # ticks between HPA syncs and advances share calls


def test_one_tick_per_call_where_tick_times_are_not_exact_in_binary(monkeypatch):
    calls: list[int] = []
    compiled = burst.flow_ticks

    def counting(first, count, *args):
        calls.append(count)
        return compiled(first, count, *args)

    monkeypatch.setattr("twin.flow.engine.flow_ticks", counting)
    sim = Simulation(make_scenario(chain_topology(), duration=60, tick=0.1))
    sim.advance(60.0)
    assert set(calls) == {1}
    assert sim.tick_index == 600
