"""Operator actions on the twin: typed records the engine applies at the current simulated time.

An action is plain frozen data, validated on construction, so a run stays a pure function of
(scenario, seed, actions): the engine logs every applied action with its time and a what-if
fork replays that log. Each kind knows how to check its targets against a simulation (before
anything changes, so a bad action never half-applies) and how to apply itself; the engine
records each one as an `action` event. New kinds subclass `Action` and register by `kind`.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from . import fields as f
from .errors import FirebreakError
from .faults import fault_label
from .scenario import BadDeployFault

if TYPE_CHECKING:
    from .engine import Simulation

BREAKER_FORCING = {"auto": -1.0, "closed": 0.0, "open": 1.0}
ACTIONS: dict[str, type[Action]] = {}


class ActionError(FirebreakError):
    """An action is malformed or names a service, edge or fault the run does not have."""


def _service_index(sim: Simulation, kind: str, service: str) -> int:
    names = sim.topo.names
    if service not in names:
        raise ActionError(f"{kind}: unknown service {service!r} (services: {', '.join(names)})")
    return names.index(service)


@dataclass(frozen=True)
class Action:
    """Base of every action: `kind` names it in events, logs and serialised form."""

    kind: ClassVar[str] = ""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if cls.kind:
            ACTIONS[cls.kind] = cls

    def check(self, sim: Simulation) -> None:
        """Raise ActionError if a target is unknown to `sim`; change nothing."""

    def apply(self, sim: Simulation) -> dict[str, Any]:
        """Change the simulation now; return what happened, for the action event."""
        raise NotImplementedError

    def params(self) -> dict[str, Any]:
        return {fld.name: getattr(self, fld.name) for fld in dataclasses.fields(self)}

    def to_dict(self) -> dict[str, Any]:
        """Plain data (for audit logs and files); `action_from_dict` reverses it."""
        return {"action": self.kind, **self.params()}


def action_from_dict(data: Mapping[str, Any]) -> Action:
    """Rebuild an action from `Action.to_dict` output, with the same validation."""
    fields_ = dict(data)
    kind = fields_.pop("action", None)
    cls = ACTIONS.get(kind) if isinstance(kind, str) else None
    if cls is None:
        raise ActionError(f"unknown action {kind!r} (actions: {', '.join(sorted(ACTIONS))})")
    try:
        return cls(**fields_)
    except TypeError as exc:
        raise ActionError(f"{kind}: {exc}") from None


@dataclass(frozen=True)
class NoOp(Action):
    """Deliberately do nothing (an agent's explicit choice, still recorded)."""

    kind: ClassVar[str] = "noop"

    def apply(self, sim: Simulation) -> dict[str, Any]:
        return {}


@dataclass(frozen=True)
class ScaleTo(Action):
    """Set a deployment's replica count; new pods go through their start-up delay.

    Like `kubectl scale`, the service's HPA (if any) may change it again at its next sync.
    """

    kind: ClassVar[str] = "scale_to"
    service: str
    replicas: int

    def __post_init__(self) -> None:
        if isinstance(self.replicas, bool) or not isinstance(self.replicas, int):
            raise ActionError(f"scale_to: replicas must be an integer, got {self.replicas!r}")
        if self.replicas < 0:
            raise ActionError(f"scale_to: replicas must be >= 0, got {self.replicas}")

    def check(self, sim: Simulation) -> None:
        _service_index(sim, self.kind, self.service)

    def apply(self, sim: Simulation) -> dict[str, Any]:
        index = _service_index(sim, self.kind, self.service)
        before = sim.pods.deployments[index].spec_replicas
        sim.pods.scale_to(index, self.replicas, reason="action")
        return {"replicas_from": before}


@dataclass(frozen=True)
class RestartPods(Action):
    """Restart some of a service's pods (all when neither share nor count is given).

    Ready pods go first, oldest first: restarting drops their in-flight work and their
    capacity until the start-up delay passes, which is the risk a restart carries.
    """

    kind: ClassVar[str] = "restart_pods"
    service: str
    share: float | None = None
    count: int | None = None

    def __post_init__(self) -> None:
        if self.share is not None and self.count is not None:
            raise ActionError("restart_pods: give share or count, not both")
        if self.share is not None and not (
            isinstance(self.share, int | float) and 0.0 < self.share <= 1.0
        ):
            raise ActionError(f"restart_pods: share must be in (0, 1], got {self.share!r}")
        if self.count is not None and (
            isinstance(self.count, bool) or not isinstance(self.count, int) or self.count < 1
        ):
            raise ActionError(f"restart_pods: count must be an integer >= 1, got {self.count!r}")

    def check(self, sim: Simulation) -> None:
        _service_index(sim, self.kind, self.service)

    def apply(self, sim: Simulation) -> dict[str, Any]:
        index = _service_index(sim, self.kind, self.service)
        live = sim.pods.live_pods(index)
        live.sort(key=lambda p: (p.phase != "ready", p.ready_at, p.pod_id))
        if self.count is not None:
            n = min(self.count, len(live))
        else:
            n = math.ceil((1.0 if self.share is None else self.share) * len(live) - 1e-9)
        chosen = live[:n]
        sim.pods.restart_pods(index, chosen, reason="action")
        return {"pods": [p.pod_id for p in chosen]}


@dataclass(frozen=True)
class Rollback(Action):
    """Roll a service back to its previous version: ends its active bad deploys.

    Rolling back a service with no bad deploy changes nothing in the model (the event
    records an empty list); what a needless rollback costs is for the caller to weigh.
    """

    kind: ClassVar[str] = "rollback"
    service: str

    def check(self, sim: Simulation) -> None:
        _service_index(sim, self.kind, self.service)

    def apply(self, sim: Simulation) -> dict[str, Any]:
        self.check(sim)
        injector = sim.faults
        bad = [
            i
            for i, fault in injector.active.items()
            if isinstance(fault, BadDeployFault) and fault.target == self.service
        ]
        labels = [fault_label(i, injector.active[i]) for i in bad]
        for i in bad:
            injector.stop(i, reason="rollback")
        return {"faults": labels}


@dataclass(frozen=True)
class ForceBreaker(Action):
    """Hold the circuit breaker on a call edge open or closed, or hand it back (`auto`).

    Forcing works on any edge, with or without a configured breaker: open refuses every
    call, closed lets every call through.
    """

    kind: ClassVar[str] = "force_breaker"
    source: str
    target: str
    state: str

    def __post_init__(self) -> None:
        if self.state not in BREAKER_FORCING:
            raise ActionError(
                f"force_breaker: state must be one of open, closed, auto; got {self.state!r}"
            )

    def _edge(self, sim: Simulation) -> int:
        _service_index(sim, self.kind, self.source)
        _service_index(sim, self.kind, self.target)
        edge = sim.topo.edge_index(self.source, self.target)
        if edge is None:
            raise ActionError(
                f"force_breaker: no call edge {self.source!r} -> {self.target!r} in the topology"
            )
        return edge

    def check(self, sim: Simulation) -> None:
        self._edge(sim)

    def apply(self, sim: Simulation) -> dict[str, Any]:
        edge = self._edge(sim)
        previous = float(sim.E[f.E_FORCED, edge])
        sim.E[f.E_FORCED, edge] = BREAKER_FORCING[self.state]
        names = {v: k for k, v in BREAKER_FORCING.items()}
        return {"state_from": names.get(previous, "auto")}


@dataclass(frozen=True)
class StopFault(Action):
    """End a scenario fault early, by index in the scenario's fault list or by its label.

    A fault that has not started yet or has already ended is left alone (`stopped` false).
    """

    kind: ClassVar[str] = "stop_fault"
    fault: int | str

    def __post_init__(self) -> None:
        if isinstance(self.fault, bool) or not isinstance(self.fault, int | str):
            raise ActionError(f"stop_fault: fault must be an index or a name, got {self.fault!r}")

    def index(self, sim: Simulation) -> int:
        """The fault's index in the scenario, or ActionError if this run has no such fault."""
        faults = sim.scenario.faults
        if isinstance(self.fault, int):
            if not 0 <= self.fault < len(faults):
                raise ActionError(
                    f"stop_fault: no fault {self.fault} (the scenario has {len(faults)})"
                )
            index = self.fault
        else:
            labels = [fault_label(i, fault) for i, fault in enumerate(faults)]
            if self.fault not in labels:
                known = ", ".join(labels) or "none"
                raise ActionError(f"stop_fault: unknown fault {self.fault!r} (faults: {known})")
            index = labels.index(self.fault)
        if index in sim.exclude_faults:
            raise ActionError(f"stop_fault: fault {self.fault!r} is excluded from this run")
        return index

    def check(self, sim: Simulation) -> None:
        self.index(sim)

    def apply(self, sim: Simulation) -> dict[str, Any]:
        index = self.index(sim)
        active = index in sim.faults.active
        if active:
            sim.faults.stop(index, reason="action")
        return {"stopped": active}
