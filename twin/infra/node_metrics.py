"""A flow burst's node metrics (one tick or several) as one compiled call.

`Cluster.record` runs every tick of every env step; as a dozen numpy calls on arrays of a
handful of nodes it cost tens of microseconds of dispatch for nanoseconds of work, a
large share of an env step. The arithmetic here is the same as those calls', node by node;
the random draws stay with the caller (the same stream, the same order).
"""

from __future__ import annotations

import numpy as np
from numba import njit


@njit(cache=True)
def fill_node_metrics(
    values: np.ndarray,
    cpu_col: int,
    mem_col: int,
    share: np.ndarray,
    counts: np.ndarray,
    down_since: np.ndarray,
    not_ready: np.ndarray,
    cordoned: np.ndarray,
    disk_pressure: np.ndarray,
    steal: np.ndarray,
    cpu_alloc: np.ndarray,
    mem_pressure: np.ndarray,
    mem_alloc: np.ndarray,
    bound: np.ndarray,
    io_s: np.ndarray,
    loss: np.ndarray,
    oom_kills: np.ndarray,
    daemons: np.ndarray,
    out: np.ndarray,
) -> None:
    """Fill `out` (ticks × nodes × NODE_METRICS) from the ticks' services × metrics
    `values` and the nodes' state, the same for every tick given (the ticks of one flow
    burst, where nothing else runs between them; schedulable as `Cluster.schedulable` says:
    not cordoned, not NotReady, not down, no memory or disk pressure); `daemons` (ticks × 4 ×
    nodes) are the standard normal draws behind the system daemons' noise."""
    for t in range(values.shape[0]):
        _fill_tick(
            values[t], cpu_col, mem_col, share, counts, down_since, not_ready, cordoned,
            disk_pressure, steal, cpu_alloc, mem_pressure, mem_alloc, bound, io_s, loss,
            oom_kills, daemons[t], out[t],
        )  # fmt: skip


@njit(cache=True, inline="always")
def _fill_tick(
    values, cpu_col, mem_col, share, counts, down_since, not_ready, cordoned, disk_pressure,
    steal, cpu_alloc, mem_pressure, mem_alloc, bound, io_s, loss, oom_kills, daemons, out,
):  # fmt: skip
    for j in range(out.shape[0]):
        alive = np.isnan(down_since[j])
        up = not not_ready[j]
        other_cpu = steal[j] * cpu_alloc[j] + max(0.1 + 0.03 * daemons[0, j], 0.0)
        other_mem = (0.9 * mem_alloc[j] if mem_pressure[j] else 0.0) + 1200.0
        other_mem += 15.0 * daemons[1, j]
        cpu = 0.0
        mem = 0.0
        if up:
            for s in range(values.shape[0]):
                cpu += values[s, cpu_col] * share[s, j]
                mem += values[s, mem_col] * counts[s, j]
            cpu += other_cpu
            mem += other_mem
        out[j, 0] = 1.0 if alive else 0.0
        out[j, 1] = 1.0 if up else 0.0
        blocked = cordoned[j] or not up or not alive or mem_pressure[j] or disk_pressure[j]
        out[j, 2] = 0.0 if blocked else 1.0
        out[j, 3] = cpu if alive else 0.0
        out[j, 4] = other_cpu if alive and up else 0.0
        out[j, 5] = out[j, 3] / cpu_alloc[j]
        out[j, 6] = mem if alive else 0.0
        out[j, 7] = other_mem if alive and up else 0.0
        out[j, 8] = out[j, 6] / mem_alloc[j]
        out[j, 9] = bound[j]
        out[j, 10] = io_s[j] * 1000.0 + 0.3 * abs(daemons[2, j])
        out[j, 11] = loss[j] + 1e-4 * abs(daemons[3, j])
        out[j, 12] = oom_kills[j]
