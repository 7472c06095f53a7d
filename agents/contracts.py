"""What the deciding layer sees and says: the records that pass between the operator, the
runbooks, risk-aware selection, the automation levels, the guardrails, the on-call engineer
and the audit log. Plain frozen data, so every decision can be logged and replayed.

The operator builds an `IncidentView` from telemetry only (alerts, correlation, RCA); it never
carries the twin's ground truth. A `SystemView` is the live state the guardrails may read
(replica counts, an SLI for health), never fault labels.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal, Protocol, runtime_checkable

from twin.control.actions import Action

Level = Literal["auto", "approval", "escalate"]
LEVELS: tuple[Level, ...] = ("auto", "approval", "escalate")

# symptom families a signature is built from (see agents.deciding.signature); "deploy" is a change
# event (a rollout) at the top cause shortly before the incident, as change management sees;
# "node": the top cause is a node or a zone (its metrics moved under the incident's
# services); "retries": calls into the top cause per caller request rose (retries amplify)
SYMPTOMS = (
    "latency",
    "errors",
    "saturation",
    "memory",
    "availability",
    "traffic",
    "logs",
    "deploy",
    "node",
    "retries",
)


@dataclass(frozen=True)
class IncidentView:
    """An incident as the remediation layer sees it: from alerts and the RCA, nothing else.

    `signature` names the kind of trouble at the top cause (e.g. ``"memory"`` or
    ``"latency+errors"``); it is what success statistics and runbook rules key on, so it
    must generalise across services. `cause_confidence` is in [0, 1].
    """

    id: str
    opened: float
    now: float
    services: tuple[str, ...]
    signals: tuple[str, ...]
    detectors: tuple[str, ...]
    n_alerts: int
    top_cause: str | None
    cause_confidence: float
    causes: tuple[tuple[str, float], ...] = ()
    signature: str = "unknown"
    evidence: dict[str, Any] = field(default_factory=dict, compare=False)
    cause_kind: str = "service"  # service, node or zone

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["causes"] = [list(c) for c in self.causes]
        return out


@dataclass(frozen=True)
class Candidate:
    """One action a runbook rule proposes, with what selection thinks of it."""

    action: Action
    rule: str
    p_success: float = 0.5
    risk: float = 0.0
    cost: float = 0.0
    score: float = 0.0
    dry_run: dict[str, Any] | None = None
    prior: float | None = None  # the runbook's belief it resolves the incident (Beta prior mean)

    def to_dict(self) -> dict[str, Any]:
        return {
            "action": self.action.to_dict(),
            "rule": self.rule,
            "prior": self.prior,
            "p_success": self.p_success,
            "risk": self.risk,
            "cost": self.cost,
            "score": self.score,
            "dry_run": self.dry_run,
        }


@dataclass(frozen=True)
class Decision:
    """What the deciding layer resolved for an incident, and why."""

    incident_id: str
    time: float
    level: Level
    chosen: Candidate | None
    candidates: tuple[Candidate, ...]
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "incident_id": self.incident_id,
            "time": self.time,
            "level": self.level,
            "chosen": None if self.chosen is None else self.chosen.to_dict(),
            "candidates": [c.to_dict() for c in self.candidates],
            "reason": self.reason,
        }


@runtime_checkable
class SystemView(Protocol):
    """Live state the guardrails and post-checks read (telemetry, never ground truth)."""

    @property
    def now(self) -> float: ...

    def services(self) -> tuple[str, ...]: ...

    def replicas(self, service: str) -> int:
        """Desired replicas of the service's deployment now."""
        ...

    def ready(self, service: str) -> int:
        """Ready replicas now."""
        ...

    def health(self) -> float:
        """System health in [0, 1]: the share of the last minute's requests within SLO."""
        ...
