"""Shared helpers: small inline scenarios and running them into memory."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from hypothesis import settings

from twin.fields import M
from twin.flow.engine import Simulation
from twin.scenario.loader import apply_topology_patch, check_scenario, load_scenario
from twin.scenario.schema import Scenario

# CI replays the same examples every run (a red build must be reproducible); the "explore"
# profile draws fresh ones: HYPOTHESIS_PROFILE=explore pytest tests/test_invariants.py
settings.register_profile("ci", derandomize=True, print_blob=True)
settings.register_profile("explore", derandomize=False, print_blob=True)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

ROOT = Path(__file__).resolve().parents[1]
SCENARIOS = ROOT / "scenarios"
TOPOLOGIES = SCENARIOS / "topologies"


class Recorded:
    """A finished in-memory run: times, values (T × services × metrics), events, the sim."""

    def __init__(self, sim: Simulation, chunks: list) -> None:
        self.sim = sim
        self.times = np.concatenate([c.times for c in chunks])
        self.values = np.concatenate([c.values for c in chunks])
        self.edge_values = np.concatenate([c.edge_values for c in chunks])
        self.events = [e for c in chunks for e in c.events]
        self.names = sim.topo.names

    def series(self, service: str, metric: str) -> np.ndarray:
        return self.values[:, self.names.index(service), M[metric]]

    def window(self, service: str, metric: str, start: float, end: float) -> np.ndarray:
        mask = (self.times >= start) & (self.times < end)
        return self.series(service, metric)[mask]


class _Keep:
    def __init__(self) -> None:
        self.chunks: list = []

    def on_chunk(self, chunk) -> None:
        self.chunks.append(chunk)

    def close(self) -> None:
        pass


def simulate(scenario: Scenario, **kwargs: Any) -> Recorded:
    keep = _Keep()
    sim = Simulation(scenario, sinks=[keep], **kwargs)
    sim.run()
    return Recorded(sim, keep.chunks)


def ideal(scenario: Scenario) -> Scenario:
    """The scenario observed exactly, every tick (production-like is the default): for
    checks of per-tick semantics and of theory."""
    telemetry = scenario.telemetry.model_copy(update={"mode": "ideal"})
    return scenario.model_copy(update={"telemetry": telemetry})


def topology_dict(name: str) -> dict:
    return yaml.safe_load((TOPOLOGIES / f"{name}.yaml").read_text())


def make_scenario(topology: dict, *, patch: dict | None = None, **fields: Any) -> Scenario:
    """A validated scenario from plain data (defaults: 1 h, one class at the first service)."""
    if patch:
        topology = apply_topology_patch(topology, patch, "test")
    first = next(iter(topology["services"]))
    raw = {
        "name": "test",
        "topology": topology,
        "duration": 3600,
        "seed": 1,
        "workload": {"classes": [{"name": "all", "entry": first, "rate": 50}], "noise": 0.05},
    }
    raw.update(fields)
    scenario = Scenario.model_validate(raw)
    check_scenario(scenario, "test")
    return scenario


def chain_topology(breaker: bool = False, workers: int = 8, mid_to_leaf_required: bool = True):
    """entry → mid → leaf, entry → other, and an unconnected island."""
    svc = {
        "replicas": 2,
        "workers": workers,
        "service_time": {"mean_ms": 5, "cv": 1.0},
        "cpu_per_request_ms": 1.0,
        "cpu_limit": 1.0,
        "cpu_request": 0.5,
        "queue_limit": 50,
    }
    call = {"from": "mid", "to": "leaf", "timeout_ms": 1000}
    if not mid_to_leaf_required:
        call["required"] = False
    if breaker:
        call["breaker"] = {
            "failure_threshold": 0.5,
            "window_s": 10,
            "cooldown_s": 30,
            "min_calls": 20,
        }
    return {
        "name": "chain",
        "defaults": {"timeout_ms": 2000, "retries": {"max": 0}},
        "services": {name: dict(svc) for name in ("entry", "mid", "leaf", "other", "island")},
        "calls": [{"from": "entry", "to": "mid"}, {"from": "entry", "to": "other"}, call],
    }


@pytest.fixture(scope="session")
def online_boutique() -> dict:
    return topology_dict("online-boutique")


# -- runs with traces and logs (test_traces_and_logs, test_import_traces) --------------------
@pytest.fixture(scope="module")
def steady(tmp_path_factory):
    """An hour of Online Boutique, one request in 200 traced."""
    from trace_runs import run_with

    scenario = load_scenario(SCENARIOS / "steady-state.yaml", duration=3600)
    return run_with(scenario, tmp_path_factory.mktemp("steady"), rate=0.005)


@pytest.fixture(scope="module")
def outage(tmp_path_factory):
    """redis-cart refuses connections from 45 to 60 min."""
    from trace_runs import run_with

    scenario = load_scenario(SCENARIOS / "dependency-outage.yaml", duration=3600)
    return run_with(scenario, tmp_path_factory.mktemp("outage"), rate=0.003)
