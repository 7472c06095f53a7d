"""The telemetry stream contract, and SLO adherence measured against known outages."""

from __future__ import annotations

import numpy as np
from conftest import SCENARIOS, simulate

from twin.fields import EDGE_METRICS, SERVICE_METRICS
from twin.flow.engine import Simulation
from twin.run.runner import run_scenario
from twin.scenario.loader import load_scenario


def test_frames_stream_tick_by_tick_and_match_the_batch_run():
    scenario = load_scenario(SCENARIOS / "dependency-outage.yaml", duration=3600)
    batch = simulate(scenario)
    sim = Simulation(scenario)
    frames = list(sim.frames())
    assert len(frames) == 3600
    assert [f.time for f in frames[:3]] == [0.0, 1.0, 2.0]
    first = frames[0]
    assert first.metrics == SERVICE_METRICS and first.edge_metrics == EDGE_METRICS
    assert first.values.shape == (len(first.services), len(SERVICE_METRICS))
    assert first.edge_values.shape == (len(first.edges), len(EDGE_METRICS))
    streamed = np.stack([f.values for f in frames])
    assert streamed.tobytes() == batch.values.tobytes()
    starts = [f for f in frames if any(e["kind"] == "fault_start" for e in f.events)]
    assert len(starts) == 1 and starts[0].time == 2700.0
    assert first.get("frontend", "ready_replicas") == 3.0


def test_slo_adherence_counts_the_outage_minutes(tmp_path):
    scenario = load_scenario(SCENARIOS / "dependency-outage.yaml")
    summary = run_scenario(scenario, tmp_path / "run", labels=False).summary
    outage_min = scenario.faults[0].duration / 60
    for slo in summary["slos"]:
        # every page shows the cart, so the whole outage violates availability, and little else
        assert outage_min <= slo["violating_minutes"] <= outage_min + 3
    assert summary["slo_adherence"] < 1.0
    steady = run_scenario(
        load_scenario(SCENARIOS / "steady-state.yaml", duration=6 * 3600),
        tmp_path / "steady",
        labels=False,
    ).summary
    assert steady["slo_adherence"] == 1.0
    req = summary["requests"]
    assert (
        abs(req["arrived"] - req["completed"] - req["failed"] - req["shed"] - req["in_flight"])
        < 1e-6 * req["arrived"]
    )
