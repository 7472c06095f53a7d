"""Fault injection: each fault is a SimPy process that perturbs the twin until it ends.

A fault ends on its schedule, when a remedy ends it (`twin.control.mechanisms` says which
action ends which kind, and how surely), or never (no duration: `until-remedied`). Effects
are recomputed from the base parameters and the set of active faults whenever one starts or
stops, or the pods under one change, so overlapping faults compose and ending one undoes
exactly its part.

Pod-state faults live in pods: each pod carries the faults it is sick with, new pods (a
restart, a rollout, an eviction, a scale-out) come up clean unless the fault's trigger
recurs, drawn from the fault's seeded stream once per remedy (`draw_scope`: every pod one
action makes shares the draw, so the remedy's `p_success` is per attempt) or per instant
for pods the control plane makes on its own; the kernel sees the sick share of ready pods,
and the fault ends when no sick pod is left. Node and zone faults are node conditions
(`twin.infra.cluster`).

A what-if fork made `blind` (how the operator dry-runs a remedy) keeps every fault's
physics but lets no remedy end one and no new pod start clean: a fork of the present knows
the system, not the hidden cause, so a dry run cannot tell the operator which remedy cures.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

from twin import fields as f
from twin.control.mechanisms import MECHANISMS, POD_CAUSE
from twin.flow.compiled import reset_fault_rows
from twin.rng import stream
from twin.scenario.schema import (
    INFRA_FAULT_KINDS,
    BadDeployFault,
    BadResponseFault,
    CpuHogFault,
    CrashFault,
    DependencyOutageFault,
    ErrorFault,
    LatencyFault,
    MemoryLeakFault,
    MisconfigurationFault,
    NetworkPartitionFault,
    PacketLossFault,
    RetryStormFault,
)

if TYPE_CHECKING:
    from twin.control.pods import Pod
    from twin.flow.engine import Simulation

RETRANSMIT_S = 0.2  # Linux's minimum TCP retransmission timeout
VERSION_KINDS = ("bad_deploy", "misconfiguration", "memory_leak")  # a rollback reverts them


class _Scope:
    def __init__(self, injector: FaultInjector, key: tuple) -> None:
        self.injector, self.key, self.outer = injector, key, None

    def __enter__(self) -> None:
        self.outer, self.injector.scope = self.injector.scope, self.key

    def __exit__(self, *exc: object) -> None:
        self.injector.scope = self.outer


def _log_effect(fault: object) -> dict:
    """What the log writer needs of a fault that shows only in logs (ground truth: the
    writer turns it into the faulty path's lines and never prints the event)."""
    if isinstance(fault, BadResponseFault):
        return {"share": fault.share, "exception": fault.exception}
    return {}


def fault_label(index: int, fault: object) -> str:
    return getattr(fault, "name", None) or f"{fault.kind}-{index}"  # type: ignore[attr-defined]


class FaultInjector:
    """Holds the active faults and rewrites the kernel's modifier rows from them."""

    def __init__(self, sim: Simulation) -> None:
        self.sim = sim
        self.active: dict[int, object] = {}
        self.blind = False
        self.retry_caps: dict[int, int] = {}  # service -> retries cap (set_retries)
        self._rngs: dict[int, np.random.Generator] = {}
        self._dirty: set[int] = set()  # services whose pod-state faults may be cured
        self.scope: tuple | None = None  # the remedy whose new pods share one draw
        self._draws: dict[tuple, bool] = {}  # (fault, scope) -> the trigger recurs

    def _rng(self, index: int) -> np.random.Generator:
        if index not in self._rngs:
            self._rngs[index] = stream(self.sim.scenario.seed, f"remedy:{index}")
        return self._rngs[index]

    def _target(self, fault: object) -> int:
        return self.sim.topo.service_index(fault.target)  # type: ignore[attr-defined]

    # --------------------------------------------------------------------------- lifecycle
    def schedule(self, index: int, fault: object) -> None:
        self.sim.env.process(self._lifecycle(index, fault))

    def _lifecycle(self, index: int, fault):
        env = self.sim.env
        yield env.timeout(fault.start)  # type: ignore[attr-defined]
        self.start(index, fault)
        duration = fault.duration  # type: ignore[attr-defined]
        if duration is None:
            return
        yield env.timeout(duration)
        self.stop(index, reason="scheduled end")

    def start(self, index: int, fault: object) -> None:
        sim = self.sim
        self.active[index] = fault
        kind = fault.kind  # type: ignore[attr-defined]
        where = "node" if kind in INFRA_FAULT_KINDS else "service"
        sim.events.emit(
            sim.env.now,
            "fault_start",
            fault=fault_label(index, fault),
            fault_kind=kind,
            **{where: fault.target},  # type: ignore[attr-defined]
            **_log_effect(fault),
        )
        if kind in INFRA_FAULT_KINDS:
            cluster = sim.cluster
            cluster.fault_starts(index, fault, cluster.nodes_in(fault.target))  # type: ignore[attr-defined]
            self.apply()
            return
        target = self._target(fault)
        if isinstance(fault, BadDeployFault):
            sim.events.emit(sim.env.now, "deploy", service=fault.target, version=fault.version)
        if isinstance(fault, MisconfigurationFault):  # a config change rolls out like a deploy
            sim.events.emit(sim.env.now, "deploy", service=fault.target, version="config")
        if isinstance(fault, MemoryLeakFault | BadDeployFault):
            sim.pods.set_leak_since(target, sim.env.now)
        if kind in POD_CAUSE:
            self._infect(index, fault, target)
        self.apply()

    def _infect(self, index: int, fault: object, target: int) -> None:
        """The pods live now carry the fault (a crash: `share` of them, which crash)."""
        pods = self.sim.pods
        live = sorted(pods.live_pods(target), key=lambda p: p.pod_id)
        if isinstance(fault, CrashFault):
            count = len(live) if fault.share >= 1.0 else math.ceil(fault.share * len(live))
            live = live[:count]
        for pod in live:
            pod.sick.add(index)
        if isinstance(fault, CrashFault):
            for pod in live:
                pod.crash_looping = True
                if pod.phase in ("ready", "starting"):
                    pods.crash(target, pod, reason="Error")

    def stop(self, index: int, reason: str) -> None:
        """End a fault (its scheduled end, or a remedy such as a rollback or a drain)."""
        sim = self.sim
        fault = self.active.pop(index, None)
        if fault is None:
            return
        kind = fault.kind  # type: ignore[attr-defined]
        if kind in INFRA_FAULT_KINDS:
            sim.cluster.fault_stops(index)
        else:
            dep = sim.pods.deployments[self._target(fault)]
            for pod in dep.pods:
                pod.sick.discard(index)
                pod.crash_looping = self._crash_sick(pod)
        if isinstance(fault, BadDeployFault):
            sim.events.emit(sim.env.now, "rollback", service=fault.target)
        where = "node" if kind in INFRA_FAULT_KINDS else "service"
        sim.events.emit(
            sim.env.now,
            "fault_end",
            fault=fault_label(index, fault),
            fault_kind=kind,
            reason=reason,
            **{where: fault.target},  # type: ignore[attr-defined]
        )
        self.apply()

    # ------------------------------------------------------------------------ pod state
    def _crash_sick(self, pod: Pod) -> bool:
        return any(isinstance(self.active.get(i), CrashFault) for i in pod.sick)

    def _pod_faults(self, service: int) -> list[int]:
        return [
            i
            for i, fault in self.active.items()
            if fault.kind in POD_CAUSE and self._target(fault) == service  # type: ignore[attr-defined]
        ]

    def pod_born(self, service: int, pod: Pod) -> None:
        """A new pod of `service` (or a pod replaced in its slot): sick with each active
        pod-state fault unless its draw says it came up clean."""
        sick: set[int] = set()
        scope = self.scope if self.scope is not None else ("at", self.sim.env.now)
        for i in self._pod_faults(service):
            if self.blind:
                sick.add(i)
                continue
            key = (i, *scope)
            if key not in self._draws:
                p = MECHANISMS[self.active[i].kind].remedy("restart_pods").p_success  # type: ignore[union-attr, attr-defined]
                self._draws[key] = bool(self._rng(i).random() >= p)
                if len(self._draws) > 4096:  # old scopes are never asked again
                    self._draws.pop(next(iter(self._draws)))
            if self._draws[key]:
                sick.add(i)
        pod.sick = sick
        pod.crash_looping = self._crash_sick(pod)
        self._dirty.add(service)

    def draw_scope(self, key: tuple):
        """Within `with injector.draw_scope(key):` every new pod shares one draw per fault
        (one remedy, one chance for the trigger to recur)."""
        return _Scope(self, key)

    def pod_gone(self, service: int) -> None:
        self._dirty.add(service)

    def pods_changed(self, service: int) -> None:
        """Pods of `service` came, went or changed readiness: cure what no pod carries any
        more, and recompute the effects that depend on pods."""
        if service in self._dirty:
            self._dirty.discard(service)
            if not self.blind:
                for i in self._pod_faults(service):
                    dep = self.sim.pods.deployments[service]
                    if not any(i in p.sick for p in dep.pods if p.phase != "terminated"):
                        self.stop(i, reason="remedied: no pod carries it any more")
        cluster = self.sim.cluster
        if self._pod_faults(service) or (cluster is not None and cluster.active()):
            self.apply()

    def _sick_share(self, index: int, service: int) -> float:
        """Share of the service's ready pods sick with the fault (of its live pods if none
        is ready)."""
        pods = [p for p in self.sim.pods.deployments[service].pods if p.phase != "terminated"]
        ready = [p for p in pods if p.phase == "ready"]
        pool = ready or pods
        if not pool:
            return 0.0
        return sum(index in p.sick for p in pool) / len(pool)

    # -------------------------------------------------------------------------- remedies
    def version_faults(self, service: int) -> list[int]:
        """The version faults active at `service` now (what a rollback issued now reverts)."""
        return [
            i
            for i, fault in self.active.items()
            if fault.kind in VERSION_KINDS and self._target(fault) == service  # type: ignore[attr-defined]
        ]

    def rollback_done(self, service: int, reverted: list[int]) -> list[str]:
        """A rollback's rollout finished: the revision before `reverted` (the version
        faults active when it was issued) runs in new pods. Ends those it can (a leak only
        with its remedy's odds); returns their labels."""
        ended = []
        for i, fault in list(self.active.items()):
            kind = fault.kind  # type: ignore[attr-defined]
            if i not in reverted:
                continue
            remedy = MECHANISMS[kind].remedy("rollback")
            if remedy is None or remedy.effect != "ends":
                continue
            if not self.blind and self._rng(i).random() < remedy.p_success:
                ended.append(fault_label(i, fault))
                self.stop(i, reason="rollback")
        self.sim.pods.refresh(service)
        return ended

    def drained(self, nodes: list[int]) -> list[str]:
        """Nodes were drained: the node faults on them (a zone's once all its nodes are
        drained) end; the nodes stay cordoned, out of service, for the rest of the run."""
        cluster = self.sim.cluster
        ended = []
        for i, fault in list(self.active.items()):
            if fault.kind not in INFRA_FAULT_KINDS or self.blind:  # type: ignore[attr-defined]
                continue
            covered = cluster.nodes_in(fault.target)  # type: ignore[attr-defined]
            if all(cluster.cordoned[n] for n in covered):
                ended.append(fault_label(i, fault))
                self.stop(i, reason="drained")
        return ended

    def cap_retries(self, service: int, retries: int | None) -> list[str]:
        """Cap the retries of every call into `service` (None lifts the cap); a cap ends a
        retry storm there."""
        if retries is None:
            self.retry_caps.pop(service, None)
        else:
            self.retry_caps[service] = retries
        ended = []
        if retries is not None and not self.blind:
            for i, fault in list(self.active.items()):
                if isinstance(fault, RetryStormFault) and self._target(fault) == service:
                    ended.append(fault_label(i, fault))
                    self.stop(i, reason="retries capped")
        self.apply()
        return ended

    # --------------------------------------------------------------------------- effects
    def apply(self) -> None:
        """Recompute every modifier row from the base values and the active faults."""
        sim = self.sim
        S, E, base_s, base_e = sim.S, sim.E, sim.topo.base_services, sim.topo.base_edges
        reset_fault_rows(S)
        S[f.P_WORKERS] = base_s[f.P_WORKERS]
        S[f.P_QLIMIT] = base_s[f.P_QLIMIT]
        for row in (f.E_TIMEOUT, f.E_RETRIES, f.E_BACKOFF):
            E[row] = base_e[row]
        E[f.E_FAULT_FAIL] = 0.0
        E[f.E_FAULT_LAT] = 0.0
        E[f.E_PARTITION] = 0.0
        topo = sim.topo
        for index, fault in self.active.items():
            if fault.kind in INFRA_FAULT_KINDS:  # type: ignore[attr-defined]
                continue
            s = topo.service_index(fault.target)  # type: ignore[attr-defined]
            q = self._sick_share(index, s) if fault.kind in POD_CAUSE else 1.0  # type: ignore[attr-defined]
            if isinstance(fault, LatencyFault):
                S[f.F_LAT_FACTOR, s] *= 1.0 + q * (fault.factor - 1.0)
                if fault.network:  # every call into it (its answer) and out of it
                    wired = (topo.dst == s) | (topo.src == s)
                    E[f.E_FAULT_LAT, wired] += q * fault.add_ms / 1000.0
                else:
                    S[f.F_LAT_ADD, s] += q * fault.add_ms / 1000.0
            elif isinstance(fault, ErrorFault):
                S[f.F_ERR, s] = 1.0 - (1.0 - S[f.F_ERR, s]) * (1.0 - q * fault.rate)
            elif isinstance(fault, CpuHogFault):
                S[f.F_CPU_HOG, s] += q * fault.cores
            elif isinstance(fault, MemoryLeakFault):
                S[f.F_LEAK_RATE, s] += fault.mb_per_min / 60.0
            elif isinstance(fault, BadDeployFault):
                S[f.F_LAT_FACTOR, s] *= fault.latency_factor
                S[f.F_ERR, s] = 1.0 - (1.0 - S[f.F_ERR, s]) * (1.0 - fault.error_rate)
                S[f.F_CPU_FACTOR, s] *= fault.cpu_factor
                S[f.F_LEAK_RATE, s] += fault.mb_per_min / 60.0
            elif isinstance(fault, DependencyOutageFault):
                if q >= 1.0 - 1e-9:
                    S[f.F_OUTAGE, s] = 1.0
                elif q > 0.0:  # some pods refuse: those requests fail fast
                    S[f.F_ERR, s] = 1.0 - (1.0 - S[f.F_ERR, s]) * (1.0 - q)
            elif isinstance(fault, NetworkPartitionFault | PacketLossFault):
                peer = topo.service_index(fault.peer)
                for a, b in ((s, peer), (peer, s)):
                    e = topo.edge_index(topo.names[a], topo.names[b])
                    if e is None:
                        continue
                    if isinstance(fault, NetworkPartitionFault):
                        E[f.E_PARTITION, e] = 1.0
                    else:
                        loss = fault.loss
                        E[f.E_FAULT_FAIL, e] = 1.0 - (1.0 - E[f.E_FAULT_FAIL, e]) * (1.0 - loss**2)
                        E[f.E_FAULT_LAT, e] += RETRANSMIT_S * loss / (1.0 - loss)
            elif isinstance(fault, MisconfigurationFault):
                if fault.timeout_ms is not None:
                    outgoing = topo.src == s
                    E[f.E_TIMEOUT, outgoing] = fault.timeout_ms / 1000.0
                if fault.workers is not None:
                    S[f.P_WORKERS, s] = fault.workers
                if fault.queue_limit is not None:
                    S[f.P_QLIMIT, s] = fault.queue_limit
            elif isinstance(fault, RetryStormFault):
                incoming = topo.dst == s
                E[f.E_RETRIES, incoming] = fault.retries
                E[f.E_BACKOFF, incoming] = fault.backoff_ms / 1000.0
        for s, cap in self.retry_caps.items():
            incoming = topo.dst == s
            E[f.E_RETRIES, incoming] = np.minimum(E[f.E_RETRIES, incoming], cap)
        if sim.cluster is not None:
            sim.cluster.apply_effects(S, E)
