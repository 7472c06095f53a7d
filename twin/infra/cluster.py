"""Nodes and zones under the deployments: placement, node conditions, and what they do to pods.

The scheduler follows kube-scheduler's default plugins in order: filter out nodes that are
cordoned, tainted NoSchedule (NotReady, disk or memory pressure) or too full for the pod's
requests; then prefer the zone holding the fewest pods of the deployment, then the node
holding the fewest (PodTopologySpread), then the least allocated CPU (LeastAllocated);
exact ties are broken by a seeded draw, as the real scheduler samples among equal scores.
A pod that fits nowhere stays Pending until capacity frees up.

Node conditions come from the active node and zone faults (`twin.control.faults` starts
and stops them here):

- down: the node's pods stop at once but stay in the Service's endpoints until the node
  is marked NotReady (`NODE_MONITOR_GRACE_S`): requests routed there fail. Then the pods
  are lost (not ready, still counted by their ReplicaSet) and the node is tainted; after
  `NOT_READY_TOLERATION_S` more the node controller evicts them and their ReplicaSets
  recreate them elsewhere. A node that comes back restarts the pods it still holds.
- noisy neighbour: each pod there loses `steal` of its CPU (as extra demand per replica).
- disk pressure: every request of a pod there waits `io_ms` more; the node is tainted.
- memory pressure: the kernel OOM-kills one container there per `oom_interval_s`; it
  restarts in place (same pod, same node); the node is tainted.
- NIC loss: every call to or from a pod there loses packets (retransmissions, failures).

The kernel sees services, not pods, so node effects enter the service rows weighted by the
share of each service's ready pods on the node (a mean-field view of mixed pods).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from twin import fields as f
from twin.control.mechanisms import NODE_MONITOR_GRACE_S, NOT_READY_TOLERATION_S
from twin.infra.node_metrics import fill_node_metrics
from twin.rng import stream
from twin.scenario.infrastructure import Infrastructure

if TYPE_CHECKING:
    from twin.control.pods import Deployment, Pod
    from twin.flow.engine import Simulation

RETRANSMIT_S = 0.2  # Linux's minimum TCP retransmission timeout
CPU_COL, MEM_COL = f.M["cpu_cores"], f.M["memory_mb"]


class Cluster:
    """The nodes of one run and the pods bound to them."""

    def __init__(self, sim: Simulation, spec: Infrastructure) -> None:
        self.sim = sim
        self.spec = spec
        nodes = spec.node_list()
        self.names: tuple[str, ...] = tuple(n.name for n in nodes)
        self.zone_of: tuple[str, ...] = tuple(n.zone for n in nodes)
        self.zones: tuple[str, ...] = tuple(dict.fromkeys(self.zone_of))
        self.cpu_alloc = np.array([n.cpu for n in nodes], dtype=float)
        self.mem_alloc = np.array([n.memory_mb for n in nodes], dtype=float)
        n = len(nodes)
        self.cpu_req = np.zeros(n)
        self.mem_req = np.zeros(n)
        self.cordoned = np.zeros(n, dtype=bool)
        self.down_since = np.full(n, np.nan)  # time the node stopped (nan: running)
        self.not_ready = np.zeros(n, dtype=bool)
        self.steal = np.zeros(n)
        self.io_s = np.zeros(n)
        self.loss = np.zeros(n)
        self.mem_pressure = np.zeros(n, dtype=bool)
        self.disk_pressure = np.zeros(n, dtype=bool)
        self.oom_kills = np.zeros(n)
        self._down_gen = np.zeros(n, dtype=np.int64)
        self.rng = stream(sim.scenario.seed, "scheduler")
        services = sim.scenario.topology.services
        self.cpu_request = np.array([s.cpu_request for s in services.values()], dtype=float)
        self.mem_request = np.array(
            [s.memory_request_mb or s.memory_limit_mb for s in services.values()], dtype=float
        )
        self.cpu_limit = np.array([s.cpu_limit for s in services.values()], dtype=float)
        self._share: np.ndarray | None = None  # services × nodes: ready pods' share, cached
        self._counts = np.zeros((sim.topo.n_services, n))
        self._bound = np.zeros(n)
        self.conditions: dict[int, tuple[object, list[int]]] = {}  # fault index -> (fault, nodes)
        self._oom_gen = 0
        # node metrics only: the system daemons' own usage (kubelet, containerd, exporters),
        # never a time-constant line; drawn from its own stream so the run is untouched
        self._noise = stream(sim.scenario.seed, "node-metrics")

    # ----------------------------------------------------------------------------- queries
    def node_index(self, name: str) -> int:
        return self.names.index(name)

    def nodes_in(self, name: str) -> list[int]:
        """The nodes a name covers: one node, or every node of a zone."""
        if name in self.names:
            return [self.names.index(name)]
        return [i for i, z in enumerate(self.zone_of) if z == name]

    def schedulable(self) -> np.ndarray:
        """Nodes that accept new pods: not cordoned, not tainted NoSchedule."""
        down = ~np.isnan(self.down_since)
        return ~(self.cordoned | self.not_ready | down | self.mem_pressure | self.disk_pressure)

    def pods_on(self, node: int) -> list[tuple[Deployment, Pod]]:
        return [
            (dep, pod)
            for dep in self.sim.pods.deployments
            for pod in dep.pods
            if pod.node == node and pod.phase != "terminated"
        ]

    # --------------------------------------------------------------------------- placement
    def place(self, dep: Deployment, pod: Pod) -> bool:
        """Bind the pod to the best node (see the module's rules); False if none fits."""
        s = dep.index
        cpu, mem = self.cpu_request[s], self.mem_request[s]
        ok = self.schedulable()
        ok &= self.cpu_req + cpu <= self.cpu_alloc + 1e-9
        ok &= self.mem_req + mem <= self.mem_alloc + 1e-9
        candidates = np.flatnonzero(ok)
        if candidates.size == 0:
            return False
        zone_count: dict[str, int] = {}
        node_count = np.zeros(len(self.names), dtype=np.int64)
        for other in dep.pods:
            if other.node >= 0 and other.phase != "terminated" and other is not pod:
                node_count[other.node] += 1
                z = self.zone_of[other.node]
                zone_count[z] = zone_count.get(z, 0) + 1
        free = (self.cpu_alloc - self.cpu_req) / self.cpu_alloc
        keys = [
            (zone_count.get(self.zone_of[i], 0), int(node_count[i]), -round(float(free[i]), 9))
            for i in candidates
        ]
        best = min(keys)
        tied = [int(i) for i, k in zip(candidates, keys, strict=True) if k == best]
        node = tied[0] if len(tied) == 1 else tied[int(self.rng.integers(len(tied)))]
        self.bind(dep, pod, node)
        return True

    def bind(self, dep: Deployment, pod: Pod, node: int) -> None:
        pod.node = node
        self.cpu_req[node] += self.cpu_request[dep.index]
        self.mem_req[node] += self.mem_request[dep.index]
        self.changed()
        self.sim.events.emit(
            self.sim.env.now,
            "pod_scheduled",
            service=dep.name,
            pod=pod.pod_id,
            node=self.names[node],
            zone=self.zone_of[node],
        )

    def unbind(self, dep: Deployment, pod: Pod) -> None:
        if pod.node < 0:
            return
        node = pod.node
        self.cpu_req[node] = max(self.cpu_req[node] - self.cpu_request[dep.index], 0.0)
        self.mem_req[node] = max(self.mem_req[node] - self.mem_request[dep.index], 0.0)
        pod.node = -1
        self.changed()

    def changed(self) -> None:
        """Placement or readiness moved: the cached shares are stale."""
        self._share = None

    # ------------------------------------------------------------------- node conditions
    def fault_starts(self, index: int, fault: object, nodes: list[int]) -> None:
        """A node or zone fault begins on `nodes`."""
        self.conditions[index] = (fault, nodes)
        kind = fault.kind  # type: ignore[attr-defined]
        if kind in ("node_down", "zone_outage"):
            for node in nodes:
                self.node_stops(node)
        self._refresh_conditions()
        if kind == "memory_pressure":
            self.sim.env.process(self._oom_killer(index, fault, nodes[0]))

    def fault_stops(self, index: int) -> None:
        """A node or zone fault ends (its schedule, or a drain took its nodes out)."""
        fault, nodes = self.conditions.pop(index)
        if fault.kind in ("node_down", "zone_outage"):  # type: ignore[attr-defined]
            still = {
                n
                for other, covered in self.conditions.values()
                if other.kind in ("node_down", "zone_outage")  # type: ignore[attr-defined]
                for n in covered
            }
            for node in nodes:
                if node not in still:
                    self.node_recovers(node)
        self._refresh_conditions()
        self.sim.pods.retry_pending()

    def _refresh_conditions(self) -> None:
        for arr in (self.steal, self.io_s, self.loss):
            arr[:] = 0.0
        self.mem_pressure[:] = False
        self.disk_pressure[:] = False
        for fault, nodes in self.conditions.values():
            kind = fault.kind  # type: ignore[attr-defined]
            for node in nodes:
                if kind == "noisy_neighbour":
                    self.steal[node] = max(self.steal[node], fault.steal)  # type: ignore[attr-defined]
                elif kind == "disk_pressure":
                    self.io_s[node] = max(self.io_s[node], fault.io_ms / 1000.0)  # type: ignore[attr-defined]
                    self.disk_pressure[node] = True
                elif kind == "nic_loss":
                    self.loss[node] = 1.0 - (1.0 - self.loss[node]) * (1.0 - fault.loss)  # type: ignore[attr-defined]
                elif kind == "memory_pressure":
                    self.mem_pressure[node] = True

    def _oom_killer(self, index: int, fault: object, node: int):
        """The kernel's OOM killer on a node under memory pressure: one container per
        interval, the one with the largest memory request; it restarts in place."""
        env = self.sim.env
        while True:
            yield env.timeout(fault.oom_interval_s)  # type: ignore[attr-defined]
            if index not in self.conditions:
                return
            ready = [(d, p) for d, p in self.pods_on(node) if p.phase == "ready"]
            if not ready:
                continue
            dep, pod = max(ready, key=lambda dp: (self.mem_request[dp[0].index], dp[1].pod_id))
            self.oom_kills[node] += 1.0
            self.sim.pods.crash(dep.index, pod, reason="OOMKilled")

    # --------------------------------------------------------------------- node lifecycle
    def node_stops(self, node: int) -> None:
        """A node goes down: its pods stop now; NotReady after the grace, eviction later."""
        if not np.isnan(self.down_since[node]):
            return
        now = self.sim.env.now
        self.down_since[node] = now
        self._down_gen[node] += 1
        gen = int(self._down_gen[node])
        pods = self.sim.pods
        for dep, pod in self.pods_on(node):
            if pod.phase == "ready":
                pods.drop_inflight_of(dep.index)
        self.sim.events.emit(now, "node_condition", node=self.names[node], condition="Unknown")
        env = self.sim.env

        def not_ready(_event: object) -> None:
            if self._down_gen[node] == gen and not np.isnan(self.down_since[node]):
                self.not_ready[node] = True
                self.sim.events.emit(
                    env.now, "node_condition", node=self.names[node], condition="NotReady"
                )
                for dep, pod in self.pods_on(node):
                    pods.lose(dep, pod)
                self.sim.faults.apply()

        def evict(_event: object) -> None:
            if self._down_gen[node] == gen and not np.isnan(self.down_since[node]):
                self.evict_all(node, reason="NodeNotReady")

        env.timeout(NODE_MONITOR_GRACE_S).callbacks.append(not_ready)
        env.timeout(NODE_MONITOR_GRACE_S + NOT_READY_TOLERATION_S).callbacks.append(evict)

    def node_recovers(self, node: int) -> None:
        """A down node is back: Ready again, the pods it still holds restart."""
        if np.isnan(self.down_since[node]):
            return
        self.down_since[node] = np.nan
        self.not_ready[node] = False
        self._down_gen[node] += 1
        self.sim.events.emit(
            self.sim.env.now, "node_condition", node=self.names[node], condition="Ready"
        )
        for dep, pod in self.pods_on(node):
            if pod.phase in ("lost", "ready", "starting", "backoff"):
                self.sim.pods.restart_in_place(dep, pod)
        self.sim.pods.retry_pending()

    def evict_all(self, node: int, reason: str) -> int:
        """Evict every pod bound to the node; their ReplicaSets recreate them elsewhere."""
        victims = self.pods_on(node)
        for dep, pod in victims:
            self.sim.pods.evict(dep, pod, reason=reason)
        self.sim.pods.retry_pending()
        return len(victims)

    def drain(self, nodes: list[int]) -> int:
        """Cordon the nodes, then evict their pods (kubectl drain); returns pods evicted."""
        for node in nodes:
            if not self.cordoned[node]:
                self.cordoned[node] = True
                self.sim.events.emit(self.sim.env.now, "cordon", node=self.names[node])
        return sum(self.evict_all(node, reason="Drained") for node in nodes)

    # -------------------------------------------------------------------- kernel effects
    def shares(self) -> tuple[np.ndarray, np.ndarray]:
        """(share, counts): services × nodes, each service's ready pods on each node."""
        if self._share is None:
            counts = np.zeros_like(self._counts)
            bound = np.zeros_like(self._bound)
            for dep in self.sim.pods.deployments:
                for pod in dep.pods:
                    if pod.node >= 0 and pod.phase != "terminated":
                        bound[pod.node] += 1.0
                        if pod.phase == "ready":
                            counts[dep.index, pod.node] += 1.0
            ready = counts.sum(axis=1, keepdims=True)
            self._counts, self._bound = counts, bound
            self._share = np.divide(counts, ready, out=np.zeros_like(counts), where=ready > 0)
        return self._share, self._counts

    def apply_effects(self, S: np.ndarray, E: np.ndarray) -> None:
        """Add the node conditions' effects to the service and edge rows (after faults')."""
        if not self.active():
            return
        share, _ = self.shares()
        failing = ~np.isnan(self.down_since) & ~self.not_ready  # still in the endpoints
        fail_share = share[:, failing].sum(axis=1)
        S[f.F_ERR] = 1.0 - (1.0 - S[f.F_ERR]) * (1.0 - np.minimum(fail_share, 1.0))
        S[f.F_CPU_HOG] += (share @ self.steal) * self.cpu_limit
        S[f.F_LAT_ADD] += share @ self.io_s
        if self.loss.any():
            touched = share @ (self.loss > 0)
            per_node = share @ (self.loss**2)
            wait = share @ (RETRANSMIT_S * self.loss / (1.0 - self.loss))
            topo = self.sim.topo
            for e in range(topo.n_edges):
                a, b = topo.src[e], topo.dst[e]
                if touched[a] <= 0 and touched[b] <= 0:
                    continue
                fail = 1.0 - (1.0 - per_node[a]) * (1.0 - per_node[b])
                E[f.E_FAULT_FAIL, e] = 1.0 - (1.0 - E[f.E_FAULT_FAIL, e]) * (1.0 - fail)
                E[f.E_FAULT_LAT, e] += wait[a] + wait[b]

    def active(self) -> bool:
        """Whether any node condition is in effect (else node effects cost nothing)."""
        return bool(
            (~np.isnan(self.down_since)).any()
            or self.steal.any()
            or self.io_s.any()
            or self.loss.any()
            or self.mem_pressure.any()
        )

    # --------------------------------------------------------------------------- metrics
    def record(self, values: np.ndarray, out: np.ndarray) -> None:
        """Fill nodes × NODE_METRICS from services × metrics, for one tick or (with a
        leading ticks axis) for ticks between which nothing else ran (a flow burst)."""
        share, counts = self.shares()
        if values.ndim == 2:  # one tick
            values, out = values[None], out[None]
        daemons = self._noise.normal(size=(len(values), 4, len(self.names)))
        fill_node_metrics(
            values,
            CPU_COL,
            MEM_COL,
            share,
            counts,
            self.down_since,
            self.not_ready,
            self.cordoned,
            self.disk_pressure,
            self.steal,
            self.cpu_alloc,
            self.mem_pressure,
            self.mem_alloc,
            self._bound,
            self.io_s,
            self.loss,
            self.oom_kills,
            daemons,
            out,
        )
