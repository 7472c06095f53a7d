"""The study suites' objectives leave a healthy system headroom (experiments.impact.suite)."""

from __future__ import annotations

import json

import pandas as pd
import pytest
from conftest import ROOT

from experiments.detection.suite import BASE_LOAD
from experiments.impact.suite import _generated, latency_slo_ms
from twin.run.runner import run_scenario
from twin.scenario.loader import load_scenario


@pytest.mark.parametrize("topology", sorted(BASE_LOAD))
def test_a_healthy_system_meets_its_latency_objective_with_room_to_spare(topology, tmp_path):
    """At base load with no fault, every entry's p99 is at most half its objective: an
    objective at the healthy system's edge fires on noise and hides the faults after it."""
    raw = _generated(topology, f"healthy-{topology}", 1200.0, [])
    raw["seed"] = 5
    raw["topology"] = str(ROOT / "scenarios" / "topologies" / f"{topology}.yaml")
    raw["telemetry"] = {"mode": "ideal", "plot": False, "traces": False, "logs": False}
    path = tmp_path / "healthy.yaml"
    path.write_text(json.dumps(raw))
    run_scenario(load_scenario(path), tmp_path / "run", labels=False)
    metrics = pd.read_parquet(tmp_path / "run" / "metrics.parquet")
    objective = latency_slo_ms(topology)
    assert {slo["latency_ms"] for slo in raw["slos"]} == {objective}
    for entry in BASE_LOAD[topology]:
        p99 = metrics[
            (metrics.service == entry) & (metrics.metric == "latency_p99_ms") & (metrics.time > 300)
        ].value
        assert len(p99) > 100
        assert p99.max() <= 0.5 * objective, (entry, p99.max(), objective)
