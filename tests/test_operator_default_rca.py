"""The closed loop's RCA, when nobody chooses one, is the project's default (auto)."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import SCENARIOS

from agents.deciding.automation import AutomationPolicy
from agents.deciding.runbook import load_runbook
from agents.deciding.selection import RiskAwareSelector
from agents.loop.operator import Operator
from agents.oncall import OnCallEngineer, OnCallProfile
from agents.safety.guardrail_config import GuardrailConfig
from agents.safety.guardrails import Guardrails
from detectors.anomaly.static import StaticThresholds
from detectors.correlation import Correlator
from detectors.rca.registry import DEFAULT_METHOD
from twin.flow.engine import Simulation
from twin.scenario.loader import load_scenario


def _operator(sim: Simulation, **kwargs) -> Operator:
    sc = sim.scenario
    return Operator(
        sim,
        "ai",
        detector=StaticThresholds.for_scenario(sc, sim.topo.names),
        correlator=Correlator(sc.topology.graph()),
        human=OnCallEngineer(OnCallProfile(), np.random.default_rng(0)),
        truth=(),
        **kwargs,
    )


def test_ai_mode_without_an_analyst_uses_the_default_rca() -> None:
    sim = Simulation(load_scenario(SCENARIOS / "bad-deploy.yaml", duration=6300))
    parts = {
        "runbook": load_runbook(),
        "selector": RiskAwareSelector(),
        "policy": AutomationPolicy(),
        "guardrails": Guardrails(GuardrailConfig()),
    }
    op = _operator(sim, **parts)
    assert op.analyst.rca.name == DEFAULT_METHOD
    assert set(op.analyst.graph.nodes) == set(sim.scenario.topology.services)
    with pytest.raises(ValueError, match="runbook"):
        _operator(Simulation(load_scenario(SCENARIOS / "bad-deploy.yaml", duration=6300)))
