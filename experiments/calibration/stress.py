"""Minutes in which a pod ran an injected CPU stress, to leave out of anything fitted as
normal behaviour.

Why: Nezha's metric folders cover whole days, so even the "fault-free" `construct_data`
holds the day's CPU-stress injections (and some the fault list omits): runs of three or
four minutes at 42-100% of a 500 m limit at no load. Fitted as a pod's idle CPU or
resampled as its noise, they make a quiet pod look busy or drop a fault-sized burst on a
service the fault never touched. No other series of the development day (2023-01-29)
exceeds 46% of its limit (the gateway's busiest minute).
"""

from __future__ import annotations

import numpy as np

STRESS_PERCENT = 50.0  # of the pod's CPU limit: a minute at or above it is a stress


def stress_mask(cpu_percent: np.ndarray) -> np.ndarray:
    """Minutes at or above `STRESS_PERCENT` of the limit, and the minute either side (the
    stress's ramp), for one pod's series in time order."""
    hot = np.asarray(cpu_percent, dtype=float) >= STRESS_PERCENT
    out = hot.copy()
    out[1:] |= hot[:-1]
    out[:-1] |= hot[1:]
    return out
