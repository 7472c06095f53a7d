"""More operator actions: a rolling restart, a drain of a node (or a zone), and a cap on the
retries into a service.

Registered like every action (`twin.control.actions.ACTIONS`, by `kind`), so runbooks, the
guardrails, the audit log and forks treat them as the others. They live apart only to keep
`actions.py` to one screenful per kind.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from twin.control.actions import (
    Action,
    ActionError,
    ActionProfile,
    _after,
    _number,
    _service_index,
    _startup_s,
)

if TYPE_CHECKING:
    from twin.flow.engine import Simulation

RETRY_PUSH_S = 10.0  # a mesh retry policy reaching the callers' sidecars
EVICTION_S = 5.0  # cordon, then evict through the API (PodDisruptionBudgets respected)


@dataclass(frozen=True)
class RolloutRestart(Action):
    """`kubectl rollout restart`: every pod of the service is replaced by a new one, in
    batches of `surge` of the replicas (maxSurge), each batch once its new pods are ready,
    so no capacity is lost. New pods are scheduled anew and start clean of pod state (as a
    pod restart's do); the last batch is done `done_at` after the action."""

    kind: ClassVar[str] = "rollout_restart"
    service: str
    surge: float = 0.25

    def __post_init__(self) -> None:
        object.__setattr__(self, "surge", _number("rollout_restart", "surge", self.surge, 0.01, 1))

    def check(self, sim: Simulation) -> None:
        _service_index(sim, self.kind, self.service)

    def _batches(self, n: int) -> tuple[int, int]:
        size = max(1, math.ceil(self.surge * n - 1e-9))
        return size, math.ceil(n / size) if n else 0

    def apply(self, sim: Simulation) -> dict[str, Any]:
        index = _service_index(sim, self.kind, self.service)
        pods = sorted(sim.pods.live_pods(index), key=lambda p: (p.ready_at, p.pod_id))
        size, batches = self._batches(len(pods))
        startup = _startup_s(sim, self.service)
        scope = ("rollout_restart", index, sim.env.now)  # one rollout, one draw

        def replace(batch: list) -> None:
            with sim.faults.draw_scope(scope):
                sim.pods.refresh(index, batch)

        for k in range(batches):
            batch = pods[k * size : (k + 1) * size]
            _after(sim, (k + 1) * startup, None, lambda b=batch: replace(b))
        return {"pods": [p.pod_id for p in pods], "done_at": sim.env.now + batches * startup}

    def profile(self, sim: Simulation | None = None) -> ActionProfile:
        n = 1
        if sim is not None and self.service in sim.topo.names:
            n = len(sim.pods.live_pods(sim.topo.names.index(self.service)))
        _, batches = self._batches(n)
        return ActionProfile(
            delay_s=batches * _startup_s(sim, self.service),
            replicas_added=0.0,
            risk="surge pods need spare capacity; the rollout takes a start-up per batch",
        )


@dataclass(frozen=True)
class Drain(Action):
    """Cordon a node (or every node of a zone) and evict its pods: their ReplicaSets
    recreate them on the other nodes, where capacity allows (the rest stay Pending).

    The node stays cordoned for the rest of the run (handed over for repair, as a node
    auto-repair would), so its capacity is gone: the risk is the capacity the drain takes.
    """

    kind: ClassVar[str] = "drain"
    node: str

    def __post_init__(self) -> None:
        if not isinstance(self.node, str) or not self.node:
            raise ActionError(f"drain: node must be a node or zone name, got {self.node!r}")

    def nodes(self, sim: Simulation) -> list[int]:
        cluster = getattr(sim, "cluster", None)
        if cluster is None:
            raise ActionError("drain: this run has no infrastructure (no nodes to drain)")
        nodes = cluster.nodes_in(self.node)
        if not nodes:
            raise ActionError(
                f"drain: unknown node or zone {self.node!r} (nodes: {', '.join(cluster.names)};"
                f" zones: {', '.join(cluster.zones)})"
            )
        return nodes

    def check(self, sim: Simulation) -> None:
        self.nodes(sim)

    def apply(self, sim: Simulation) -> dict[str, Any]:
        nodes = self.nodes(sim)
        with sim.faults.draw_scope(("drain", self.node, sim.env.now)):
            evicted = sim.cluster.drain(nodes)
        sim.faults.drained(nodes)
        sim.faults.apply()
        return {"nodes": [sim.cluster.names[n] for n in nodes], "evicted": evicted}

    def profile(self, sim: Simulation | None = None) -> ActionProfile:
        lost = 0.0
        startup = 10.0
        if sim is not None and getattr(sim, "cluster", None) is not None:
            try:
                nodes = self.nodes(sim)
            except ActionError:
                nodes = []
            lost = float(sum(len(sim.cluster.pods_on(n)) for n in nodes))
            startup = max((d.startup_s for d in sim.pods.deployments), default=startup)
        return ActionProfile(
            delay_s=EVICTION_S + startup,
            capacity_lost=lost,
            drops_in_flight=True,
            risk="evicted pods drop their work and restart elsewhere; the node's capacity "
            "is gone until it is repaired",
        )


@dataclass(frozen=True)
class SetRetries(Action):
    """Cap the retries of every call into `service` (a mesh retry budget pushed to the
    callers' sidecars); `retries` None lifts the cap. Takes `push_s` to reach them."""

    kind: ClassVar[str] = "set_retries"
    service: str
    retries: int | None = 0
    push_s: float = RETRY_PUSH_S

    def __post_init__(self) -> None:
        r = self.retries
        if r is not None and (isinstance(r, bool) or not isinstance(r, int) or not 0 <= r <= 20):
            raise ActionError(
                f"set_retries: retries must be an integer in [0, 20] or null, got {r!r}"
            )
        ok = isinstance(self.push_s, int | float) and not isinstance(self.push_s, bool)
        if not ok or not self.push_s >= 0:
            raise ActionError(f"set_retries: push_s must be a number >= 0, got {self.push_s!r}")

    def check(self, sim: Simulation) -> None:
        _service_index(sim, self.kind, self.service)

    def apply(self, sim: Simulation) -> dict[str, Any]:
        index = _service_index(sim, self.kind, self.service)
        before = sim.faults.retry_caps.get(index)
        retries = self.retries

        def push() -> None:
            sim.faults.cap_retries(index, retries)

        _after(sim, float(self.push_s), ("set_retries", index), push)
        return {"retries_from": before, "effective_at": sim.env.now + float(self.push_s)}

    def profile(self, sim: Simulation | None = None) -> ActionProfile:
        return ActionProfile(
            delay_s=float(self.push_s),
            risk="calls that a retry would have saved now fail on the first attempt",
        )
