"""The per-service stages of the flow tick: admission, the wait for a worker, conservation,
resources and the latency row.

Each is inlined into the tick's loops (`inline="always"`), so splitting them out costs
nothing at run time (see twin/flow/kernel.py for how that was measured).
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from twin.fields import (
    F_CPU_FACTOR,
    F_CPU_HOG,
    F_LAT_FACTOR,
    F_LEAK_ORIGIN,
    F_LEAK_RATE,
    F_OUTAGE,
    P_CPU_LIMIT,
    P_CPU_PER_REQ,
    P_MEM_BASE,
    P_MEM_LIMIT,
    P_MEM_PER_REQ,
    P_QLIMIT,
    P_READY,
    P_SVC_MEAN,
    P_WORKERS,
    X_ERRP,
    X_HOLD_EFF,
    X_LAM_SETTLED,
    X_LOST,
    X_MU,
    X_NSERV,
    X_QUEUE,
    X_SB_MU,
    X_SB_SHIFT,
    X_SB_SIGMA,
    X_SERVED,
    X_SHEDFRAC,
    X_SHIFT,
    X_SIGMA,
    X_THROTTLE,
)
from twin.flow.queueing import MAX_RHO, Z95, Z99, erlang_c, fit_shifted_lognormal, mixture_quantile
from twin.flow.service import SETTLE_S, cpu_available, cpu_capacity

EVENT_OOM = 1.0
METRICS_WINDOW_S = 15.0  # metrics-server's resolution, the HPA's view of CPU

# counters[s, k]: per-service scratch carried from the arrival stage to the later ones
K_ARRIVALS, K_SHED, K_STANDBY, K_PREV_INFLIGHT, K_DROPPED = 0, 1, 2, 3, 4


@njit(cache=True, inline="always")
def admit(s: int, dt: float, S: np.ndarray, counters: np.ndarray, arrivals: float, dropped: float):
    """Workers, queue and shedding of one service for this tick's arrivals: dN/dt = admitted
    - N/H solved over the tick (so N never exceeds c), a fluid backlog beyond the pool."""
    ready = S[P_READY, s]
    prev_inflight = S[X_QUEUE, s] + S[X_NSERV, s]
    counters[s, K_PREV_INFLIGHT] = prev_inflight
    if ready <= 0.0 or S[F_OUTAGE, s] > 0.0:
        # no endpoint accepts connections: everything is refused, in-flight work is lost
        S[X_LOST, s] += prev_inflight
        counters[s, K_PREV_INFLIGHT] = 0.0
        S[X_QUEUE, s] = 0.0
        S[X_NSERV, s] = 0.0
        S[X_SERVED, s] = 0.0
        counters[s, K_ARRIVALS] = arrivals + dropped
        counters[s, K_SHED] = arrivals + dropped
        return
    c = ready * S[P_WORKERS, s]
    hold = max(S[X_HOLD_EFF, s], 1e-9)
    decay = math.exp(-dt / hold)
    n_prev = min(S[X_NSERV, s], c)
    worker_room = (c - n_prev * decay) / (hold * (1.0 - decay))
    mu_cap = min(worker_room, cpu_capacity(s, S))
    backlog = S[X_QUEUE, s] + arrivals
    limit = mu_cap
    if S[X_QUEUE, s] <= 0.0 and S[X_LAM_SETTLED, s] < MAX_RHO * mu_cap:
        # below capacity, a tick's Poisson excess waits in the stochastic queue that
        # Erlang C already accounts for; only a sustained overload builds a backlog
        limit = mu_cap + 3.0 * math.sqrt(mu_cap / dt)
    served = min(backlog / dt, limit)
    S[X_NSERV, s] = min(n_prev * decay + served * hold * (1.0 - decay), c)
    q = backlog - served * dt
    qmax = ready * S[P_QLIMIT, s]
    shed = 0.0
    if q > qmax:
        shed = q - qmax
        q = qmax
    S[X_QUEUE, s] = q
    S[X_SERVED, s] = served
    counters[s, K_ARRIVALS] = arrivals + dropped
    counters[s, K_SHED] = shed + dropped


@njit(cache=True, inline="always")
def wait_in_pool(
    s: int, dt: float, S: np.ndarray, hold: float, down: bool, var: float, k3: float
) -> tuple[float, float, float, float, float, float, float]:
    """The wait for a worker (Erlang C while stable, the fluid backlog's wait beyond) on top
    of the residence, fitted as a shifted lognormal. Sets the service's fit; returns (mean,
    wait_var, k3, mu, sigma, shift, c)."""
    ready = S[P_READY, s]
    c = ready * S[P_WORKERS, s]
    wait_mean = 0.0
    wait_var = 0.0
    shift = 0.0
    if not down and c > 0.0:
        # the CPU limit caps throughput; below it, CPU contention is in the own time
        # (the quota bucket, see own_time_moments), not in fewer servers
        mu_pool = c / hold
        mu_cap = min(mu_pool, cpu_capacity(s, S))
        # Erlang C already holds Poisson's tick-to-tick noise, so it sees the rate the queue
        # has settled to: an unbiased moving average over SETTLE_S, about the relaxation
        # time of a queue near saturation ((1+√ρ)²/(μ(1-√ρ)²), Odoni and Roth); a
        # sustained overload still builds the fluid backlog at once
        served = S[X_SERVED, s]
        S[X_LAM_SETTLED, s] += (1.0 - math.exp(-dt / SETTLE_S)) * (served - S[X_LAM_SETTLED, s])
        lam_in = min(S[X_LAM_SETTLED, s], MAX_RHO * mu_cap)
        pc = erlang_c(c, lam_in * hold)
        theta = mu_pool - lam_in
        # the wait is 0 with probability 1 - pc, else exponential with rate theta
        wait_mean = pc / theta
        wait_var = (2.0 * pc - pc * pc) / (theta * theta)
        wait_k3 = (6.0 * pc - 6.0 * pc * pc + 2.0 * pc**3) / theta**3
        # a finite queue (M/M/c/K) bounds the wait near saturation; the fluid backlog
        # below carries what is really queued
        bound = ready * S[P_QLIMIT, s] / mu_cap
        if wait_mean > bound:
            wait_var *= (bound / wait_mean) ** 2
            wait_k3 *= (bound / wait_mean) ** 3
            wait_mean = bound
        k3 += wait_k3
        shift = S[X_QUEUE, s] / mu_cap
    mean = hold + wait_mean
    mu, sigma, fit_shift = fit_shifted_lognormal(mean, var + wait_var, k3)
    shift += fit_shift
    mean += shift - fit_shift  # the backlog's wait on top of the residence
    S[X_MU, s] = mu
    S[X_SIGMA, s] = sigma
    S[X_SHIFT, s] = shift
    return mean, wait_var, k3, mu, sigma, shift, c


@njit(cache=True, inline="always")
def conserve(s: int, S: np.ndarray, counters: np.ndarray, down: bool) -> tuple:
    """Stage 3, arrivals = completed + failed + shed + Δ in-flight. Returns (arrivals, shed,
    departures, failed, completed, q, n_target, lost)."""
    arrivals = counters[s, K_ARRIVALS]
    shed = counters[s, K_SHED]
    prev_inflight = counters[s, K_PREV_INFLIGHT]
    lost = S[X_LOST, s]
    S[X_LOST, s] = 0.0
    n_target = 0.0 if down else S[X_NSERV, s]
    q = S[X_QUEUE, s]
    departures = arrivals - shed + prev_inflight - (q + n_target)
    if departures < 0.0:
        departures = 0.0
        n_target = max(prev_inflight + arrivals - shed - q, 0.0)
    S[X_NSERV, s] = n_target
    failed = departures * S[X_ERRP, s] + lost
    completed = departures * (1.0 - S[X_ERRP, s])
    dropped = counters[s, K_DROPPED]
    own_arrivals = arrivals - dropped  # what reached the pods (callers see their shedding)
    # the chance an arriving call is refused: a shrinking queue (pods restarting) can
    # shed more backlog in a tick than arrived in it, so the share is capped at 1
    S[X_SHEDFRAC, s] = (
        min(max((shed - dropped) / own_arrivals, 0.0), 1.0)
        if own_arrivals > 0.0
        else (1.0 if down else 0.0)
    )
    return arrivals, shed, departures, failed, completed, q, n_target, lost


@njit(cache=True, inline="always")
def use_resources(
    s: int, t: float, dt: float, S: np.ndarray, events: np.ndarray, n_events: int, inflight: float
) -> tuple[float, float, int]:
    """Stage 4, CPU used against its limit (a hog's share stretches every request's CPU
    part), memory with in-flight work and any leak, an OOM event past the limit. Returns
    (cpu_used, mem, n_events)."""
    ready = S[P_READY, s]
    cpu_demand = S[X_SERVED, s] * S[P_CPU_PER_REQ, s] * S[F_CPU_FACTOR, s]
    cpu_demand += S[F_CPU_HOG, s] * ready
    cpu_cap = ready * S[P_CPU_LIMIT, s]
    cpu_used = min(cpu_demand, cpu_cap)
    if cpu_cap > 0.0:
        own_base = S[P_SVC_MEAN, s] * S[F_LAT_FACTOR, s]
        share = min(S[P_CPU_PER_REQ, s] * S[F_CPU_FACTOR, s] / own_base, 1.0)
        S[X_THROTTLE, s] = 1.0 + share * (cpu_cap / cpu_available(s, S) - 1.0)
    else:
        S[X_THROTTLE, s] = 1.0
    leak = 0.0
    if S[F_LEAK_RATE, s] > 0.0:
        leak = S[F_LEAK_RATE, s] * max(t - S[F_LEAK_ORIGIN, s], 0.0)
    mem = S[P_MEM_BASE, s] + leak
    if ready > 0.0:
        mem += S[P_MEM_PER_REQ, s] * inflight / ready
    if ready > 0.0 and mem > S[P_MEM_LIMIT, s] and n_events < events.shape[0]:
        events[n_events, 0] = t + dt
        events[n_events, 1] = EVENT_OOM
        events[n_events, 2] = s
        events[n_events, 3] = mem
        n_events += 1
    return cpu_used, mem, n_events


@njit(cache=True, inline="always")
def write_latency(
    s: int, S: np.ndarray, out: np.ndarray, answered: bool, w: float, mean: float,
    mu: float, sigma: float, shift: float,
) -> None:  # fmt: skip
    """Stage 5, mean and p50/p95/p99 latency; with a standby serving a share w, the exact
    quantiles of the two-part mixture."""
    if not answered:
        for m in range(5, 9):
            out[s, m] = 0.0
    elif w > 0.0:
        mu1, sg1, sh1 = S[X_MU, s], S[X_SIGMA, s], S[X_SHIFT, s]
        mu2, sg2, sh2 = S[X_SB_MU, s], S[X_SB_SIGMA, s], S[X_SB_SHIFT, s]
        out[s, 5] = mean * 1000.0
        below = 0.0  # a step CDF (sigma 0) leaves each quantile 1e-7 loose: keep order
        for m, p, z in ((6, 0.5, 0.0), (7, 0.95, Z95), (8, 0.99, Z99)):
            guess = shift + math.exp(mu + z * sigma)  # the moment-matched fit's
            q = mixture_quantile(p, z, w, mu1, sg1, sh1, mu2, sg2, sh2, guess)
            below = max(q, below)
            out[s, m] = below * 1000.0
    else:
        out[s, 5] = mean * 1000.0
        out[s, 6] = (shift + math.exp(mu)) * 1000.0
        out[s, 7] = (shift + math.exp(mu + Z95 * sigma)) * 1000.0
        out[s, 8] = (shift + math.exp(mu + Z99 * sigma)) * 1000.0
