"""What a guardrail pre-check answers, and how actions name the services they act on."""

from __future__ import annotations

import dataclasses
import functools
import math
from dataclasses import dataclass
from typing import Any

from twin.control.actions import Action
from twin.errors import FirebreakError

# fields that name a service an action acts on
TARGET_FIELDS = ("service", "entry", "source", "target")


def plain_action(action: Any) -> Any:
    if action is None:
        return None
    if hasattr(action, "to_dict"):
        return action.to_dict()
    return {"action": getattr(action, "kind", type(action).__name__)}


@dataclass(frozen=True)
class Verdict:
    """The answer to a pre-check: whether to act, and with what.

    `action` is what to apply when allowed (the proposal, or a clamped form of it; see
    `adjusted`) and None when refused. `reasons` says why it was refused or cut.
    """

    allowed: bool
    proposed: Action
    action: Action | None
    reasons: tuple[str, ...] = ()

    @property
    def adjusted(self) -> bool:
        return self.allowed and self.action != self.proposed

    def to_dict(self) -> dict[str, Any]:
        return {
            "allowed": self.allowed,
            "adjusted": self.adjusted,
            "proposed": plain_action(self.proposed),
            "action": plain_action(self.action),
            "reasons": list(self.reasons),
        }


@dataclass(frozen=True)
class Acted:
    time: float
    kind: str
    services: tuple[str, ...]


def targets(action: Any) -> tuple[str, ...]:
    """The services an action names, in field order, each once. Masks ask this of every
    candidate action at every step, so a hashable (frozen) action's answer is kept."""
    try:
        return _targets_of(action)
    except TypeError:  # unhashable: worked out each time
        return _named_services(action)


@functools.lru_cache(maxsize=4096)
def _targets_of(action: Any) -> tuple[str, ...]:
    return _named_services(action)


def _named_services(action: Any) -> tuple[str, ...]:
    out: list[str] = []
    for name in TARGET_FIELDS:
        value = getattr(action, name, None)
        if isinstance(value, str) and value not in out:
            out.append(value)
    return tuple(out)


def setting_key(action: Any) -> tuple[str, ...]:
    """What a setting belongs to: the kind and the services it names (not its tuning)."""
    return (action.kind, *targets(action))


def replace_fields(action: Any, **changes: Any) -> Any | None:
    """A copy with fields changed, or None when the kind refuses those values."""
    try:
        return dataclasses.replace(action, **changes)
    except (FirebreakError, TypeError, ValueError):
        return None


def adds_capacity(action: Any, prior: Any) -> bool:
    """A scale_to above the replicas it found."""
    replicas = getattr(action, "replicas", None)
    return (
        action.kind == "scale_to"
        and prior is not None
        and replicas is not None
        and (replicas > prior)
    )


def planned_restarts(action: Any, live: int) -> int:
    """Pods a restart_pods action restarts out of `live`, the way the twin counts them."""
    count = getattr(action, "count", None)
    share = getattr(action, "share", None)
    if count is not None:
        return min(int(count), live)
    if share is None:
        return live
    return min(math.ceil(float(share) * live - 1e-9), live)
