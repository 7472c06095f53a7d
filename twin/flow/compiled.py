"""A scenario's topology turned into the flat arrays the flow kernel reads.

Base values are kept apart from the live matrices so faults and actions can be undone by
recomputing from the base rather than by inverting their effects.
"""

from __future__ import annotations

from dataclasses import dataclass

import networkx as nx
import numpy as np

from twin import fields as f
from twin.scenario.schema import Scenario
from twin.scenario.topology import Breaker, Topology


def evaluation_order(topo: Topology, entries: list[str]) -> np.ndarray:
    """Services ordered callers-first; inside a cycle, by name (back edges use the last tick).

    Strongly connected components are condensed, so the order is topological between them.
    """
    graph = topo.graph()
    names = list(topo.services)
    index = {name: i for i, name in enumerate(names)}
    cond = nx.condensation(graph)
    entry_set = set(entries)

    def key(component: int) -> tuple[int, str]:
        members = cond.nodes[component]["members"]
        return (0 if members & entry_set else 1, min(members))

    order: list[int] = []
    for comp in nx.lexicographical_topological_sort(cond, key=key):
        members = sorted(cond.nodes[comp]["members"], key=lambda m: (m not in entry_set, m))
        order.extend(index[m] for m in members)
    return np.asarray(order, dtype=np.int64)


@dataclass(frozen=True)
class CompiledTopology:
    """Index structures and base parameter matrices for one topology."""

    names: tuple[str, ...]
    edges: tuple[tuple[str, str], ...]
    order: np.ndarray
    src: np.ndarray
    dst: np.ndarray
    in_ptr: np.ndarray
    in_idx: np.ndarray
    out_ptr: np.ndarray
    out_idx: np.ndarray
    base_services: np.ndarray  # N_SERVICE_FIELDS × n
    base_edges: np.ndarray  # N_EDGE_FIELDS × m
    tick: float  # the scenario's tick (breaker windows are at least one)
    entries: tuple[str, ...]  # its classes' entry services (they lead the order)

    def arrays(self) -> tuple[np.ndarray, ...]:
        """Every array it holds (made read-only where runs share it)."""
        return (
            self.order, self.src, self.dst, self.in_ptr, self.in_idx, self.out_ptr,
            self.out_idx, self.base_services, self.base_edges,
        )  # fmt: skip

    @property
    def n_services(self) -> int:
        return len(self.names)

    @property
    def n_edges(self) -> int:
        return len(self.edges)

    def service_index(self, name: str) -> int:
        return self.names.index(name)

    def edge_index(self, source: str, target: str) -> int | None:
        try:
            return self.edges.index((source, target))
        except ValueError:
            return None


def _csr(keys: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    idx = np.argsort(keys, kind="stable").astype(np.int64)
    ptr = np.zeros(n + 1, dtype=np.int64)
    np.add.at(ptr, keys + 1, 1)
    return np.cumsum(ptr), idx


def compile_topology(scenario: Scenario) -> CompiledTopology:
    """Base matrices from the typed topology; the run copies them before mutating."""
    topo = scenario.topology
    names = tuple(topo.services)
    n = len(names)
    index = {name: i for i, name in enumerate(names)}
    S = np.zeros((f.N_SERVICE_FIELDS, n))
    S[f.X_GH_CV] = -1.0  # no cv: the quadrature factors are worked out on first use
    for i, svc in enumerate(topo.services.values()):
        S[f.P_WORKERS, i] = svc.workers
        S[f.P_READY, i] = svc.replicas
        S[f.P_SVC_MEAN, i] = svc.service_time.mean_ms / 1000.0
        S[f.P_SVC_CV, i] = svc.service_time.effective_cv
        S[f.P_SVC_K3, i] = own_time_k3(svc.service_time.dist, svc.service_time.effective_cv)
        S[f.P_CPU_PER_REQ, i] = svc.cpu_per_request_ms / 1000.0
        S[f.P_CPU_LIMIT, i] = svc.cpu_limit
        S[f.P_CPU_IDLE, i] = svc.cpu_idle_cores
        S[f.P_CPU_REQUEST, i] = svc.cpu_request
        S[f.P_MEM_BASE, i] = svc.memory_base_mb
        S[f.P_MEM_PER_REQ, i] = svc.memory_per_request_mb
        S[f.P_MEM_LIMIT, i] = svc.memory_limit_mb
        S[f.P_QLIMIT, i] = svc.queue_limit
        S[f.P_ERR_BASE, i] = svc.error_rate
        S[f.P_PARALLEL, i] = 1.0 if svc.parallel_calls else 0.0
        S[f.X_DESIRED, i] = svc.replicas
    reset_fault_rows(S)
    S[f.X_HOLD] = S[f.P_SVC_MEAN]
    S[f.X_HOLD_EFF] = S[f.P_SVC_MEAN]
    S[f.X_HOLD_VAR] = (S[f.P_SVC_MEAN] * S[f.P_SVC_CV]) ** 2
    S[f.X_THROTTLE] = 1.0
    S[f.X_MU] = np.log(np.maximum(S[f.P_SVC_MEAN], 1e-9))

    m = len(topo.calls)
    E = np.zeros((f.N_EDGE_FIELDS, m))
    src = np.zeros(m, dtype=np.int64)
    dst = np.zeros(m, dtype=np.int64)
    defaults = topo.defaults
    for j, call in enumerate(topo.calls):
        src[j], dst[j] = index[call.source], index[call.target]
        retries = call.retries or defaults.retries
        breaker: Breaker | None = call.breaker or defaults.breaker
        E[f.E_K, j] = call.per_request * call.probability
        E[f.E_SYNC, j] = 1.0 if call.sync else 0.0
        E[f.E_REQUIRED, j] = 1.0 if call.required else 0.0
        E[f.E_TIMEOUT, j] = (call.timeout_ms or defaults.timeout_ms) / 1000.0
        E[f.E_RETRIES, j] = retries.max
        E[f.E_BACKOFF, j] = retries.backoff_ms / 1000.0
        E[f.E_BACKOFF_MULT, j] = retries.multiplier
        if breaker is not None:
            E[f.E_BR_ON, j] = 1.0
            E[f.E_BR_THRESH, j] = breaker.failure_threshold
            E[f.E_BR_WINDOW, j] = max(breaker.window_s, scenario.tick)
            E[f.E_BR_COOLDOWN, j] = breaker.cooldown_s
            E[f.E_BR_MINCALLS, j] = breaker.min_calls
            E[f.E_BR_HALFSHARE, j] = breaker.half_open_share
    E[f.E_FORCED] = -1.0
    in_ptr, in_idx = _csr(dst, n)
    out_ptr, out_idx = _csr(src, n)
    entries = tuple(c.entry for c in scenario.workload.classes)
    return CompiledTopology(
        names=names,
        edges=tuple((c.source, c.target) for c in topo.calls),
        order=evaluation_order(topo, list(entries)),
        src=src,
        dst=dst,
        in_ptr=in_ptr,
        in_idx=in_idx,
        out_ptr=out_ptr,
        out_idx=out_idx,
        base_services=S,
        base_edges=E,
        tick=float(scenario.tick),
        entries=entries,
    )


def own_time_k3(dist: str, cv: float) -> float:
    """Third cumulant of a mean-one service time: an exponential's is 2, a deterministic
    one's 0, a lognormal's cv³(cv² + 3). The tails of a waiting-plus-service sum follow it."""
    if dist == "exponential":
        return 2.0
    if dist == "deterministic":
        return 0.0
    return cv**3 * (cv * cv + 3.0)


def reset_fault_rows(S: np.ndarray) -> None:
    """Neutral values for every fault modifier (no fault active)."""
    S[f.F_LAT_FACTOR] = 1.0
    S[f.F_LAT_ADD] = 0.0
    S[f.F_ERR] = 0.0
    S[f.F_CPU_HOG] = 0.0
    S[f.F_CPU_FACTOR] = 1.0
    S[f.F_LEAK_RATE] = 0.0
    S[f.F_OUTAGE] = 0.0
