"""Fault injection: each fault is a SimPy process that perturbs the twin for an interval.

Effects are recomputed from the base parameters and the set of active faults whenever one
starts or stops, so overlapping faults compose and ending one undoes exactly its part.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from twin import fields as f
from twin.flow.compiled import reset_fault_rows
from twin.scenario.schema import (
    BadDeployFault,
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
    from twin.flow.engine import Simulation

RETRANSMIT_S = 0.2  # Linux's minimum TCP retransmission timeout


def fault_label(index: int, fault: object) -> str:
    return getattr(fault, "name", None) or f"{fault.kind}-{index}"  # type: ignore[attr-defined]


class FaultInjector:
    """Holds the active faults and rewrites the kernel's modifier rows from them."""

    def __init__(self, sim: Simulation) -> None:
        self.sim = sim
        self.active: dict[int, object] = {}

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
        target = sim.topo.service_index(fault.target)  # type: ignore[attr-defined]
        sim.events.emit(
            sim.env.now,
            "fault_start",
            fault=fault_label(index, fault),
            fault_kind=fault.kind,
            service=fault.target,
        )  # type: ignore[attr-defined]
        if isinstance(fault, BadDeployFault):
            sim.events.emit(sim.env.now, "deploy", service=fault.target, version=fault.version)
        if isinstance(fault, MemoryLeakFault | BadDeployFault):
            sim.pods.set_leak_since(target, sim.env.now)
        if isinstance(fault, CrashFault):
            self._start_crash(target, fault)
        self.apply()

    def stop(self, index: int, reason: str) -> None:
        """End a fault (its scheduled end, or a remediation such as a rollback)."""
        sim = self.sim
        fault = self.active.pop(index, None)
        if fault is None:
            return
        target = sim.topo.service_index(fault.target)  # type: ignore[attr-defined]
        if isinstance(fault, CrashFault):
            dep = sim.pods.deployments[target]
            dep.crash_all = False
            for pod in dep.pods:
                pod.crash_looping = False
        if isinstance(fault, BadDeployFault):
            sim.events.emit(sim.env.now, "rollback", service=fault.target)
        sim.events.emit(
            sim.env.now,
            "fault_end",
            fault=fault_label(index, fault),
            fault_kind=fault.kind,
            service=fault.target,
            reason=reason,
        )  # type: ignore[attr-defined]
        self.apply()

    def _start_crash(self, target: int, fault: CrashFault) -> None:
        pods = self.sim.pods
        dep = pods.deployments[target]
        live = sorted(pods.live_pods(target), key=lambda p: p.pod_id)
        if fault.share >= 1.0:
            dep.crash_all = True
        count = len(live) if fault.share >= 1.0 else math.ceil(fault.share * len(live))
        for pod in live[:count]:
            pod.crash_looping = True
            if pod.phase in ("ready", "starting"):
                pods.crash(target, pod, reason="Error")

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
        for fault in self.active.values():
            s = topo.service_index(fault.target)  # type: ignore[attr-defined]
            if isinstance(fault, LatencyFault):
                S[f.F_LAT_FACTOR, s] *= fault.factor
                S[f.F_LAT_ADD, s] += fault.add_ms / 1000.0
            elif isinstance(fault, ErrorFault):
                S[f.F_ERR, s] = 1.0 - (1.0 - S[f.F_ERR, s]) * (1.0 - fault.rate)
            elif isinstance(fault, CpuHogFault):
                S[f.F_CPU_HOG, s] += fault.cores
            elif isinstance(fault, MemoryLeakFault):
                S[f.F_LEAK_RATE, s] += fault.mb_per_min / 60.0
            elif isinstance(fault, BadDeployFault):
                S[f.F_LAT_FACTOR, s] *= fault.latency_factor
                S[f.F_ERR, s] = 1.0 - (1.0 - S[f.F_ERR, s]) * (1.0 - fault.error_rate)
                S[f.F_CPU_FACTOR, s] *= fault.cpu_factor
                S[f.F_LEAK_RATE, s] += fault.mb_per_min / 60.0
            elif isinstance(fault, DependencyOutageFault):
                S[f.F_OUTAGE, s] = 1.0
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
