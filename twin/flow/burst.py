"""Several flow ticks in one compiled call.

Why: the flow kernel's own work for a small topology is a few microseconds a tick, but a
call from Python to a numba function with nineteen array arguments costs about as much
again in argument unboxing, and the SimPy event that paces each tick a few more. Between
two SimPy events other than the ticker's own (an HPA sync, a pod becoming ready, a fault
starting, an action, the end of an `advance`) nothing but the kernel runs, so those ticks
are computed here in one call, exactly as one call per tick would compute them.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from twin.flow.kernel import flow_tick


@njit(cache=True)
def flow_ticks(
    first: int,
    count: int,
    row0: int,
    dt: float,
    S: np.ndarray,
    E: np.ndarray,
    order: np.ndarray,
    src: np.ndarray,
    dst: np.ndarray,
    in_ptr: np.ndarray,
    in_idx: np.ndarray,
    out_ptr: np.ndarray,
    out_idx: np.ndarray,
    ext: np.ndarray,
    ext_int: np.ndarray,
    draws: np.ndarray,
    out: np.ndarray,
    eout: np.ndarray,
    dist: np.ndarray,
    times: np.ndarray,
    events: np.ndarray,
    counters: np.ndarray,
) -> tuple[int, int]:
    """Ticks `first`, `first + 1`, … (chunk rows from `row0`), at most `count` of them;
    stops after the first tick that raises kernel events, since those need Python (an OOM
    kill, a breaker event) before the next tick. Returns (ticks done, that tick's events)."""
    for j in range(count):
        row = row0 + j
        t = (first + j) * dt
        times[row] = t
        n_ev = flow_tick(
            t, dt, S, E, order, src, dst, in_ptr, in_idx, out_ptr, out_idx, ext[row],
            ext_int[row], draws[row], out[row], eout[row], dist[row], events, counters,
        )  # fmt: skip
        if n_ev:
            return j + 1, n_ev
    return count, 0
