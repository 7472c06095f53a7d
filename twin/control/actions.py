"""Operator actions on the twin: typed records the engine applies at the current simulated time.

An action is plain frozen data, validated on construction, so a run stays a pure function of
(scenario, seed, actions): the engine logs every applied action with its time and a what-if
fork replays that log. Each kind knows how to check its targets against a simulation (before
anything changes, so a bad action never half-applies) and how to apply itself; the engine
records each one as an `action` event. New kinds subclass `Action` and register by `kind`.

Every kind also declares an `ActionProfile` (`Action.profile`): how long it takes to act,
what it costs and the risk it carries, for callers to weigh before acting. The twin makes
the same things real when the action is applied: pods come back after their start-up delay,
a rollback ends a bad deploy only once its rollout is done (and, with no bad deploy, loses
a feature), a failover's traffic shifts over `shift_s` and its standby costs replica-hours,
shedding starts once the ingress has the rule.

Over 500 lines because every action kind sits with its validation, profile and apply, in one
registry.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from twin import fields as f
from twin.control.faults import fault_label
from twin.errors import FirebreakError
from twin.flow.service import failover_share
from twin.scenario.schema import BadDeployFault, MisconfigurationFault

if TYPE_CHECKING:
    from twin.flow.engine import Simulation

BREAKER_FORCING = {"auto": -1.0, "closed": 0.0, "open": 1.0}
ACTIONS: dict[str, type[Action]] = {}

# Declared defaults (seconds unless named otherwise); each is a field of its action, so a
# caller who knows better (a faster pipeline, a nearer region) can say so per action.
ROLLOUT_S = 60.0  # a rolling update back to the previous image: pull, start, drain, per batch
FAILOVER_SHIFT_S = 30.0  # DNS TTL / load-balancer weights: traffic moves linearly over this
FAILOVER_PENALTY_MS = 20.0  # one cross-cluster (same-region, other zone/cluster) round trip
SHED_DELAY_S = 5.0  # a rate-limit rule reaching the ingress proxies
ESCALATE_ACK_S = 300.0  # a paged human acknowledges (the twin changes nothing meanwhile)
ESCALATE_HUMAN_MIN = 30.0  # an engineer's attention an escalation costs
NOMINAL_STARTUP_S = 10.0  # a pod's start-up when no simulation is given to read it from


@dataclass(frozen=True)
class ActionProfile:
    """What an action takes, costs and risks, declared so a caller can estimate before acting.

    `delay_s` runs from the action until its effect is fully in place; `replicas_added` is
    the pods it keeps running (times hours held: replica-hours; negative frees them);
    `capacity_lost` the replicas out of service for up to `delay_s`; `human_minutes` the
    on-call time it takes. The flags and `risk` name the harm the twin makes real.
    """

    delay_s: float
    replicas_added: float = 0.0
    capacity_lost: float = 0.0
    human_minutes: float = 0.0
    drops_in_flight: bool = False
    loses_feature: bool = False
    pages_human: bool = False
    risk: str = ""


class ActionError(FirebreakError):
    """An action is malformed or names a service, edge or fault the run does not have."""


def _service_index(sim: Simulation, kind: str, service: str) -> int:
    names = sim.topo.names
    if service not in names:
        raise ActionError(f"{kind}: unknown service {service!r} (services: {', '.join(names)})")
    return names.index(service)


def _number(kind: str, name: str, value: object, low: float, high: float = math.inf) -> float:
    """`value` as a float in [low, high], or ActionError naming the field."""
    ok = isinstance(value, int | float) and not isinstance(value, bool)
    if not ok or not (low <= value <= high) or not math.isfinite(value):  # type: ignore[operator]
        bounds = f"in [{low:g}, {high:g}]" if math.isfinite(high) else f">= {low:g}"
        raise ActionError(f"{kind}: {name} must be a number {bounds}, got {value!r}")
    return float(value)  # type: ignore[arg-type]


def _startup_s(sim: Simulation | None, service: str) -> float:
    if sim is None or service not in sim.scenario.topology.services:
        return NOMINAL_STARTUP_S
    return float(sim.scenario.topology.services[service].startup_s)


def _after(sim: Simulation, delay: float, key: tuple[str, int] | None, effect: Callable) -> None:
    """Run `effect` `delay` seconds from now (at once if 0). With a `key`, a later action on
    the same key supersedes one still waiting: the last decision wins, whatever its delay."""
    plan = 0
    if key is not None:
        plan = sim.action_generations.get(key, 0) + 1
        sim.action_generations[key] = plan
    if delay <= 0.0:
        effect()
        return

    def fire(_event: object) -> None:
        if key is None or sim.action_generations.get(key) == plan:
            effect()

    sim.env.timeout(delay).callbacks.append(fire)


@dataclass(frozen=True)
class Action:
    """Base of every action: `kind` names it in events, logs and serialised form."""

    kind: ClassVar[str] = ""
    fidelities: ClassVar[tuple[str, ...]] = ("flow", "request")  # where the twin models it

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if cls.__dict__.get("kind"):  # its own kind only: a subclass must not take over its base's
            ACTIONS[cls.kind] = cls

    def check(self, sim: Simulation) -> None:
        """Raise ActionError if a target is unknown to `sim`; change nothing."""

    def apply(self, sim: Simulation) -> dict[str, Any]:
        """Change the simulation now; return what happened, for the action event."""
        raise NotImplementedError

    def profile(self, sim: Simulation | None = None) -> ActionProfile:
        """Declared delay, cost and risk; `sim` (if given) supplies start-up delays, replica
        counts and whether there is a bad deploy to roll back, else nominal values."""
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

    def profile(self, sim: Simulation | None = None) -> ActionProfile:
        return ActionProfile(0.0, risk="the incident runs its course")


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
        with sim.faults.draw_scope(("scale_to", index, sim.env.now)):
            sim.pods.scale_to(index, self.replicas, reason="action")
        return {"replicas_from": before}

    def profile(self, sim: Simulation | None = None) -> ActionProfile:
        """Without `sim` the direction is unknown: the start-up delay, no replica count."""
        added = 0
        if sim is not None and self.service in sim.topo.names:
            deployment = sim.pods.deployments[sim.topo.names.index(self.service)]
            added = self.replicas - deployment.spec_replicas
        return ActionProfile(
            delay_s=_startup_s(sim, self.service) if added > 0 or sim is None else 0.0,
            replicas_added=float(added),
            risk="scaled in below its load the pods left overload; the HPA may undo it",
        )


@dataclass(frozen=True)
class RestartPods(Action):
    """Restart (delete, so their ReplicaSet recreates them) some of a service's pods, all
    when neither share nor count is given.

    Pods that are not serving go first (crash-looping, or lost on a NotReady node: what an
    engineer deletes first, `kubectl get pods` shows them), then ready pods, oldest first:
    restarting a ready pod drops its in-flight work and its capacity until the start-up
    delay passes, which is the risk a restart carries.
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
        rank = {"backoff": 0, "lost": 0, "ready": 1}
        live.sort(key=lambda p: (rank.get(p.phase, 2), p.ready_at, p.pod_id))
        if self.count is not None:
            n = min(self.count, len(live))
        else:
            n = math.ceil((1.0 if self.share is None else self.share) * len(live) - 1e-9)
        chosen = live[:n]
        with sim.faults.draw_scope(("restart_pods", index, sim.env.now)):
            sim.pods.restart_pods(index, chosen, reason="action")
        return {"pods": [p.pod_id for p in chosen]}

    def profile(self, sim: Simulation | None = None) -> ActionProfile:
        if sim is not None and self.service in sim.topo.names:
            live = len(sim.pods.live_pods(sim.topo.names.index(self.service)))
        else:
            live = 1
        if self.count is not None:
            n = min(self.count, live)
        else:
            n = math.ceil((1.0 if self.share is None else self.share) * live - 1e-9)
        return ActionProfile(
            delay_s=_startup_s(sim, self.service),
            capacity_lost=float(n),
            drops_in_flight=True,
            risk="restarted pods drop their in-flight work and serve nothing until ready",
        )


@dataclass(frozen=True)
class Rollback(Action):
    """Roll a service back to its previous version: a rolling update, done `rollout_s`
    later (0: at once). Then every pod is new, and the version faults end as their
    mechanisms say (`twin.control.mechanisms`: a bad deploy or a misconfiguration surely,
    a leak with its odds).

    A rollback that ended no fault replaced a good version: the feature it shipped is lost
    (a `feature_lost` event, counted in the run summary with the hours the run went without
    it).
    """

    kind: ClassVar[str] = "rollback"
    service: str
    rollout_s: float = ROLLOUT_S

    def __post_init__(self) -> None:
        object.__setattr__(self, "rollout_s", _number("rollback", "rollout_s", self.rollout_s, 0))

    def check(self, sim: Simulation) -> None:
        _service_index(sim, self.kind, self.service)

    def _bad(self, sim: Simulation) -> list[int]:
        return [
            i
            for i, fault in sim.faults.active.items()
            if isinstance(fault, BadDeployFault | MisconfigurationFault)
            and fault.target == self.service
        ]

    def apply(self, sim: Simulation) -> dict[str, Any]:
        index = _service_index(sim, self.kind, self.service)
        injector = sim.faults
        reverted = injector.version_faults(index)

        scope = ("rollback", index, sim.env.now)

        def done() -> None:
            with injector.draw_scope(scope):
                ended = injector.rollback_done(index, reverted)
            if not ended:
                sim.pods.lose_feature(index, reason="rollback")

        _after(sim, self.rollout_s, None, done)
        return {"done_at": sim.env.now + self.rollout_s}

    def profile(self, sim: Simulation | None = None) -> ActionProfile:
        loses = sim is not None and self.service in sim.topo.names and not self._bad(sim)
        return ActionProfile(
            delay_s=self.rollout_s,
            loses_feature=loses,
            risk="the regression lasts until the rollout ends; a good deploy loses its feature",
        )


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

    def profile(self, sim: Simulation | None = None) -> ActionProfile:
        risk = {
            "open": "every call on the edge fails fast: the caller loses what the callee gives",
            "closed": "a failing callee gets every call, retries included",
            "auto": "the breaker's own thresholds decide again",
        }[self.state]
        return ActionProfile(0.0, risk=risk)


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

    def profile(self, sim: Simulation | None = None) -> ActionProfile:
        return ActionProfile(0.0, risk="none in the twin: an oracle repair, not a real action")


@dataclass(frozen=True)
class Failover(Action):
    """Send a share of the calls to `service` to its standby deployment in another cluster
    (share 0 hands them back).

    The standby runs the service's declared profile, untouched by faults on the primary or
    on the primary's links, sized to its share (ceil(share × declared replicas), costing
    replica-hours while it runs); a call to it pays `penalty_ms` more. Traffic moves over
    `shift_s` seconds, linearly, as DNS TTLs expire and load-balancer weights change.
    """

    kind: ClassVar[str] = "failover"
    fidelities: ClassVar[tuple[str, ...]] = ("flow",)
    service: str
    share: float
    penalty_ms: float = FAILOVER_PENALTY_MS
    shift_s: float = FAILOVER_SHIFT_S

    def __post_init__(self) -> None:
        object.__setattr__(self, "share", _number("failover", "share", self.share, 0, 1))
        penalty = _number("failover", "penalty_ms", self.penalty_ms, 0)
        object.__setattr__(self, "penalty_ms", penalty)
        object.__setattr__(self, "shift_s", _number("failover", "shift_s", self.shift_s, 0))

    def check(self, sim: Simulation) -> None:
        _service_index(sim, self.kind, self.service)

    def standby_replicas(self, sim: Simulation) -> int:
        """Replicas the standby needs for this share of the service's declared load."""
        if self.share <= 0.0:
            return 0
        declared = sim.scenario.topology.services[self.service].replicas
        return max(math.ceil(self.share * declared - 1e-9), 1)

    def apply(self, sim: Simulation) -> dict[str, Any]:
        i = _service_index(sim, self.kind, self.service)
        S, now = sim.S, sim.env.now
        current = float(failover_share(i, now, S))
        if current <= 0.0:
            S[f.X_SB_LAM, i] = 0.0  # a cold start of the standby's queue
        S[f.A_FO_FROM, i] = current
        S[f.A_FO_TO, i] = self.share
        S[f.A_FO_T0, i] = now
        S[f.A_FO_T1, i] = now + self.shift_s
        S[f.A_SB_PENALTY, i] = self.penalty_ms / 1000.0
        replicas = self.standby_replicas(sim)
        sim.pods.plan_standby(i, replicas, self.shift_s, reason="failover")
        return {"share_from": current, "done_at": now + self.shift_s, "standby": replicas}

    def profile(self, sim: Simulation | None = None) -> ActionProfile:
        added = 0.0
        if sim is not None and self.service in sim.topo.names:
            now = sim.pods.standby[sim.topo.names.index(self.service)]
            added = float(self.standby_replicas(sim) - now)
        return ActionProfile(
            delay_s=self.shift_s,
            replicas_added=added,
            risk=f"the shifted share pays {self.penalty_ms:g} ms a call; the standby has only "
            "its own replicas' capacity",
        )


@dataclass(frozen=True)
class ShedLoad(Action):
    """Drop a share of the external arrivals at an entry service (share 0 stops), once the
    ingress has the rule (`delay_s`). Dropped requests fail fast, counted as shed there."""

    kind: ClassVar[str] = "shed_load"
    entry: str
    share: float
    delay_s: float = SHED_DELAY_S

    def __post_init__(self) -> None:
        object.__setattr__(self, "share", _number("shed_load", "share", self.share, 0, 1))
        object.__setattr__(self, "delay_s", _number("shed_load", "delay_s", self.delay_s, 0))

    def check(self, sim: Simulation) -> None:
        _service_index(sim, self.kind, self.entry)
        entries = sorted({c.entry for c in sim.scenario.workload.classes})
        if self.entry not in entries:
            raise ActionError(
                f"shed_load: {self.entry!r} is not an entry service (entries: {', '.join(entries)})"
            )

    def apply(self, sim: Simulation) -> dict[str, Any]:
        self.check(sim)
        i = sim.topo.names.index(self.entry)
        share = self.share

        def push() -> None:
            sim.S[f.A_SHED, i] = share

        _after(sim, self.delay_s, ("shed_load", i), push)
        return {"share_from": float(sim.S[f.A_SHED, i]), "effective_at": sim.env.now + self.delay_s}

    def profile(self, sim: Simulation | None = None) -> ActionProfile:
        return ActionProfile(
            delay_s=self.delay_s,
            risk=f"{self.share:.0%} of the users arriving at {self.entry} are refused",
        )


@dataclass(frozen=True)
class Escalate(Action):
    """Page a human: changes nothing in the twin, but is recorded (and costs their time)."""

    kind: ClassVar[str] = "escalate"
    reason: str
    service: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.reason, str) or not self.reason.strip():
            raise ActionError(f"escalate: reason must be a non-empty string, got {self.reason!r}")
        if self.service is not None and not isinstance(self.service, str):
            raise ActionError(f"escalate: service must be a name or None, got {self.service!r}")

    def check(self, sim: Simulation) -> None:
        if self.service is not None:
            _service_index(sim, self.kind, self.service)

    def apply(self, sim: Simulation) -> dict[str, Any]:
        return {"paged": True}

    def profile(self, sim: Simulation | None = None) -> ActionProfile:
        return ActionProfile(
            delay_s=ESCALATE_ACK_S,
            human_minutes=ESCALATE_HUMAN_MIN,
            pages_human=True,
            risk="nothing changes until the human acts",
        )
