"""The Kubernetes HorizontalPodAutoscaler (autoscaling/v2 defaults), as a SimPy process.

Every sync period: desired = ceil(ready × utilisation / target), unchanged inside the
tolerance band; scale-up limited to max(+100 %, +4 pods) per period; scale-down takes the
highest recommendation of the stabilisation window (5 min), so it waits before shrinking.
"""

from __future__ import annotations

import math
from collections import deque
from typing import TYPE_CHECKING

from twin import fields as f
from twin.scenario.topology import Hpa

if TYPE_CHECKING:
    from twin.flow.engine import Simulation


def hpa_recommendation(
    ready: int, utilization: float, target: float, tolerance: float, current_spec: int
) -> int:
    """The HPA formula alone: ceil(replicas × metric / target), or no change in tolerance."""
    if ready <= 0:
        return current_spec
    ratio = utilization / target
    if abs(ratio - 1.0) <= tolerance:
        return current_spec
    return max(math.ceil(ready * ratio - 1e-9), 1)


def hpa_process(sim: Simulation, index: int, spec: Hpa):
    """Generator for env.process: one HPA controller for one deployment."""
    env = sim.env
    history: deque[tuple[float, int]] = deque()
    pods = sim.pods
    name = sim.topo.names[index]
    while True:
        yield env.timeout(spec.sync_s)
        if sim.hpa_paused.get(index):
            continue
        dep = pods.deployments[index]
        ready = pods.ready(index)
        util = float(sim.S[f.X_CPU_AVG, index])
        current = dep.spec_replicas
        raw = hpa_recommendation(ready, util, spec.target_cpu, spec.tolerance, current)
        now = env.now
        history.append((now, raw))
        while history and history[0][0] < now - spec.scale_down_window_s:
            history.popleft()
        if raw < current:
            desired = max(r for _, r in history)
        else:
            desired = raw
        if desired > current:
            desired = min(desired, max(2 * current, current + 4))
        desired = min(max(desired, spec.min_replicas), spec.max_replicas)
        if desired != current:
            sim.events.emit(
                now,
                "hpa",
                service=name,
                utilization=round(util, 4),
                target=spec.target_cpu,
                ready=ready,
                desired=desired,
            )
            pods.scale_to(index, desired, reason="hpa")
