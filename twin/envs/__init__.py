"""Gymnasium environments over the twin (remediation, autoscaling).

They know nothing of the layers above: guardrail masks and alternative scorers are
injected (`ActionGate`, `Scorer`); `agents.rl` registers the gymnasium ids with both wired in.
"""

from twin.envs.autoscale import AutoscaleEnv, AutoscaleWeights
from twin.envs.base import ActionGate, GateView, TwinEnv, ValidityGate, window_mttr
from twin.envs.distribution import (
    BASE_LOAD,
    TOPOLOGIES,
    AutoscaleDistribution,
    EnvConfigError,
    RemediationDistribution,
)
from twin.envs.encoding import (
    FAMILIES,
    GLOBAL_FEATURES,
    SERVICE_FEATURES,
    ObservationEncoder,
    ObservationLayout,
    RobustZScorer,
    Scorer,
)
from twin.envs.remediation import RemediationEnv, RemediationWeights

__all__ = [
    "BASE_LOAD",
    "FAMILIES",
    "GLOBAL_FEATURES",
    "SERVICE_FEATURES",
    "TOPOLOGIES",
    "ActionGate",
    "AutoscaleDistribution",
    "AutoscaleEnv",
    "AutoscaleWeights",
    "EnvConfigError",
    "GateView",
    "ObservationEncoder",
    "ObservationLayout",
    "RemediationDistribution",
    "RemediationEnv",
    "RemediationWeights",
    "RobustZScorer",
    "Scorer",
    "TwinEnv",
    "ValidityGate",
    "window_mttr",
]
