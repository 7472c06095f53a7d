"""When a burst tips a service into a retry storm: the flow model's stochastic term.

A pool whose callers time out and retry has two stable states when the retries, at full
amplification, would overload it: healthy (few timeouts) and a storm (every attempt waits
past its timeout, so every call makes all its attempts). The fluid model alone stays in
whichever state it starts in, where the request fidelity leaves the healthy one as soon as
Poisson noise queues enough requests for their retries to feed the queue faster than it
drains: seconds or hours later, depending on how high that barrier is.

The escape is modelled as the birth-death chain of the number N in the pool: births at the
offered rate amplified by the retries an arrival at level N would make (its wait is
Gamma(N - c + 1, c/H) on top of the holding time, a lognormal by its moments), deaths at
min(N, c)/H. The mean first-passage time from empty to the level past the barrier where
arrivals outrun the pool by 20% (or halfway to every call making all its attempts, if that
is less) is exact for that chain (a sum over levels). Each tick the
kernel draws, from the run's own random stream, whether a burst arrived (probability
1 - exp(-dt / T)); if so it moves that many requests into the fluid backlog, whose own
dynamics then carry the storm, or drain it if the pool can take the retries after all.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from twin.fields import (
    E_FAULT_FAIL,
    E_FAULT_LAT,
    E_K,
    E_PARTITION,
    E_RETRIES,
    E_SYNC,
    E_TIMEOUT,
    X_ERRP,
    X_SERVED_INT,
)
from twin.flow.queueing import norm_sf
from twin.flow.service import attempts, breaker_block

MAX_LEVELS = 4000  # levels of the chain walked at most (a barrier that high is never crossed)
BARRIER_NATS = 45.0  # a level e^-45 as likely as the healthy state: never reached, rate 0
COMMIT_OVERLOAD = 1.2  # the storm is committed where arrivals outrun the pool by this much


@njit(cache=True)
def _offered(
    s: int, S: np.ndarray, E: np.ndarray, src: np.ndarray, in_ptr: np.ndarray,
    in_idx: np.ndarray, ext_rate: float,
) -> tuple[float, float]:  # fmt: skip
    """(offered rate without retries, rate if every call made all its attempts); 0, 0 when
    no caller retries or a partition makes the question moot."""
    base = ext_rate
    full = ext_rate
    retrying = False
    for j in range(in_ptr[s], in_ptr[s + 1]):
        e = in_idx[j]
        if E[E_PARTITION, e] > 0.0:
            return 0.0, 0.0
        rate = S[X_SERVED_INT, src[e]] * E[E_K, e] * (1.0 - breaker_block(e, E))
        base += rate
        full += rate * (E[E_RETRIES, e] + 1.0)
        if E[E_RETRIES, e] > 0.0 and E[E_SYNC, e] > 0.0:
            retrying = True
    if not retrying:
        return 0.0, 0.0
    return base, full


@njit(cache=True)
def _arrivals_at(
    level: float, c: float, hold: float, hold_var: float, mu: float, errp: float, s: int,
    S: np.ndarray, E: np.ndarray, src: np.ndarray, in_ptr: np.ndarray, in_idx: np.ndarray,
    ext_rate: float,
) -> float:  # fmt: skip
    """Attempts per second reaching the pool while it holds `level` requests."""
    ahead = level - c + 1.0
    mean = hold
    var = hold_var
    if ahead > 0.0:
        mean += ahead / mu
        var += ahead / (mu * mu)
    s2 = math.log(1.0 + var / (mean * mean))
    loc = math.log(mean) - 0.5 * s2
    sd = math.sqrt(s2)
    lam = ext_rate
    for j in range(in_ptr[s], in_ptr[s + 1]):
        e = in_idx[j]
        rate = S[X_SERVED_INT, src[e]] * E[E_K, e] * (1.0 - breaker_block(e, E))
        if rate <= 0.0:
            continue
        t = E[E_TIMEOUT, e] - E[E_FAULT_LAT, e]
        if t <= 0.0:
            p_to = 1.0
        elif sd <= 1e-12:
            p_to = 1.0 if mean > t else 0.0
        else:
            p_to = norm_sf((math.log(t) - loc) / sd)
        p = 1.0 - (1.0 - p_to) * (1.0 - errp) * (1.0 - E[E_FAULT_FAIL, e])
        lam += rate * attempts(p, E[E_RETRIES, e])
    return lam


@njit(cache=True)
def escape(
    s: int, S: np.ndarray, E: np.ndarray, src: np.ndarray, in_ptr: np.ndarray,
    in_idx: np.ndarray, ext_rate: float, c: float, hold: float, hold_var: float, mu: float,
    room: float,
) -> tuple[float, float, float]:  # fmt: skip
    """(rate 1/s at which the healthy state tips, backlog that commits the storm, offered
    rate the answer holds for). Rate 0 when no storm state exists or its barrier is too
    high ever to be crossed. `mu` is the pool's capacity (workers or CPU), `room` its queue."""
    base, full = _offered(s, S, E, src, in_ptr, in_idx, ext_rate)
    if base <= 0.0 or full <= mu or hold <= 0.0 or mu <= 0.0:
        return 0.0, 0.0, base
    # committed once arrivals outrun the pool by 20%, or halfway to all attempts if less
    commit = min(COMMIT_OVERLOAD * mu, 0.5 * (mu + full))
    servers = min(c, mu * hold)
    errp = S[X_ERRP, s]
    log_pi = 0.0  # log π_n, π_0 = 1
    log_sum = 0.0  # log Σ_{k≤n} π_k
    passage = 0.0
    in_well = False
    past_top = False
    levels = min(servers + room, float(MAX_LEVELS))
    n = 0.0
    while n < levels:
        lam = _arrivals_at(n, servers, hold, hold_var, mu, errp, s, S, E, src, in_ptr, in_idx,
                           ext_rate)  # fmt: skip
        if log_sum - log_pi > BARRIER_NATS:
            return 0.0, 0.0, base
        passage += math.exp(log_sum - log_pi) / lam
        death = min((n + 1.0) / hold, mu)
        if not in_well:
            in_well = lam < death
        elif not past_top:
            past_top = lam >= death
        if past_top and lam >= commit:
            return 1.0 / passage, max(n + 1.0 - servers, 1.0), base
        log_pi += math.log(lam / death)
        top = max(log_sum, log_pi)
        log_sum = top + math.log(math.exp(log_sum - top) + math.exp(log_pi - top))
        n += 1.0
    return 0.0, 0.0, base
