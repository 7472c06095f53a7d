"""The guardrails as an environment's action gate: masks and enforcement from one source.

`Guardrails.check` decides; an action it refuses is masked (and never applied), one it
clamps is applied in the clamped form. Applied actions are recorded, so the rate limits
and blast-radius windows see what the policy did, exactly as the operator's would.
"""

from __future__ import annotations

from agents.safety.guardrail_config import GuardrailConfig
from agents.safety.guardrails import Guardrails
from twin.control.actions import Action
from twin.envs.base import GateView


class GuardrailGate:
    """An `ActionGate` over `agents.safety.guardrails.Guardrails` (fresh state every episode)."""

    def __init__(self, config: GuardrailConfig | None = None) -> None:
        self.config = config if config is not None else GuardrailConfig()
        self.guardrails = Guardrails(self.config)

    def reset(self) -> None:
        self.guardrails = Guardrails(self.config)

    def check(self, action: Action, view: GateView) -> Action | None:
        verdict = self.guardrails.check(action, view)
        return verdict.action if verdict.allowed else None

    def permits(self, actions: list[Action], view: GateView) -> list[bool]:
        return self.guardrails.permits(actions, view)

    def record(self, action: Action, view: GateView) -> None:
        self.guardrails.record(action, view)


def autoscale_guardrails(max_replicas: int = 50) -> GuardrailConfig:
    """Limits for a capacity agent: scaling every service every few minutes is its job, so
    the per-window action and service counts are lifted; step and bounds still hold."""
    return GuardrailConfig(
        max_scale_step=4,
        max_replicas=max_replicas,
        min_replicas_after=1,
        max_services=10_000,
        max_actions=100_000,
        max_actions_per_service=10_000,
    )
