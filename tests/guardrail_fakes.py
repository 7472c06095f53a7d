"""Fakes the guardrail tests share: a SystemView over plain dicts, and an action kind the
guardrails have never heard of."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, ClassVar

from agents.safety.guardrails import Guardrails


# a kind the guardrails do not know: handled by kind and fields, never registered in twin
@dataclass(frozen=True)
class DrainNode:
    kind: ClassVar[str] = "drain_node"
    service: str

    def to_dict(self) -> dict[str, Any]:
        return {"action": self.kind, **dataclasses.asdict(self)}


class FakeView:
    """A SystemView over plain dicts; `apply` changes it the way the twin would."""

    def __init__(
        self,
        replicas: dict[str, int],
        ready: dict[str, int] | None = None,
        now: float = 0.0,
        health: float = 1.0,
    ) -> None:
        self._replicas = dict(replicas)
        self._ready = dict(ready if ready is not None else replicas)
        self._now = now
        self._health = health

    @property
    def now(self) -> float:
        return self._now

    def services(self) -> tuple[str, ...]:
        return tuple(self._replicas)

    def replicas(self, service: str) -> int:
        return self._replicas[service]

    def ready(self, service: str) -> int:
        return self._ready[service]

    def health(self) -> float:
        return self._health

    def advance(self, dt: float) -> None:
        self._now += dt

    def settle(self, service: str) -> None:
        self._ready[service] = self._replicas[service]

    def apply(self, action: Any) -> int:
        """Apply; return the ready pods a restart took out (0 for everything else)."""
        if action.kind == "restart_pods":
            s = action.service
            live = max(self._replicas[s], self._ready[s])
            if action.count is not None:
                n = min(action.count, live)
            elif action.share is not None:
                n = min(math.ceil(action.share * live - 1e-9), live)
            else:
                n = live
            taken = min(n, self._ready[s])
            self._ready[s] -= taken
            return taken
        if action.kind == "scale_to":
            self._replicas[action.service] = action.replicas
            self._ready[action.service] = min(self._ready[action.service], action.replicas)
        return 0


def view4(n: int = 4, **kw: Any) -> FakeView:
    return FakeView({s: n for s in ("a", "b", "c", "d", "e")}, **kw)


def act(g: Guardrails, view: FakeView, action: Any) -> Any:
    """check, apply if allowed, record; return the verdict."""
    verdict = g.check(action, view)
    if verdict.allowed:
        view.apply(verdict.action)
        g.record(verdict.action, view)
    return verdict
