"""Factories behind the gymnasium ids: the twin's environments with the guardrails wired in.

`twin.envs` cannot import the guardrails (layers point down), so the ids registered here
build the env with a `GuardrailGate` (masks and enforcement) and the twin's streaming
z-score scorer for alert and RCA features. Keyword arguments pass through to the env.
"""

from __future__ import annotations

from typing import Any

from agents.rl.gate import GuardrailGate, autoscale_guardrails
from agents.safety.guardrail_config import GuardrailConfig
from twin.envs import AutoscaleEnv, RemediationEnv, RobustZScorer

REMEDIATION_ID = "firebreak/Remediation-v0"
AUTOSCALE_ID = "firebreak/Autoscale-v0"
ENV_IDS = (REMEDIATION_ID, AUTOSCALE_ID)


def make_remediation(guardrails: GuardrailConfig | dict | None = None, **kwargs: Any):
    """`firebreak/Remediation-v0`: masks and enforcement from the default guardrails."""
    if isinstance(guardrails, dict):
        guardrails = GuardrailConfig.from_mapping(guardrails)
    kwargs.setdefault("gate", GuardrailGate(guardrails))
    kwargs.setdefault("scorer", RobustZScorer())
    return RemediationEnv(**kwargs)


def make_autoscale(guardrails: GuardrailConfig | dict | None = None, **kwargs: Any):
    """`firebreak/Autoscale-v0`: scaling bounds and steps from capacity guardrails."""
    if isinstance(guardrails, dict):
        guardrails = GuardrailConfig.from_mapping(guardrails)
    kwargs.setdefault("gate", GuardrailGate(guardrails or autoscale_guardrails()))
    kwargs.setdefault("scorer", RobustZScorer())
    return AutoscaleEnv(**kwargs)


def register_envs() -> None:
    """Register both ids with gymnasium (idempotent)."""
    import gymnasium as gym

    specs = {
        REMEDIATION_ID: "agents.rl.envs:make_remediation",
        AUTOSCALE_ID: "agents.rl.envs:make_autoscale",
    }
    for env_id, entry in specs.items():
        if env_id not in gym.registry:
            gym.register(id=env_id, entry_point=entry)
