"""The per-service stages of the flow tick: admission, handing back what the callers' pools
cannot have sent, the wait for a worker, conservation, resources and the latency row.

Each is inlined into the tick's loops (`inline="always"`), so splitting them out costs
nothing at run time (see twin/flow/kernel.py for how that was measured).
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from twin.fields import (
    E_K,
    E_P_ATTEMPT,
    E_RETRIES,
    F_CPU_FACTOR,
    F_CPU_HOG,
    F_LAT_FACTOR,
    F_LEAK_ORIGIN,
    F_LEAK_RATE,
    F_OUTAGE,
    P_CPU_IDLE,
    P_CPU_LIMIT,
    P_CPU_PER_REQ,
    P_MEM_BASE,
    P_MEM_LIMIT,
    P_MEM_PER_REQ,
    P_QLIMIT,
    P_READY,
    P_SVC_MEAN,
    P_WORKERS,
    X_CALLER_CAP,
    X_ERRP,
    X_ESC_LEVEL,
    X_ESC_RATE,
    X_HOLD_EFF,
    X_LOST,
    X_MU,
    X_NSERV,
    X_QUEUE,
    X_SB_MU,
    X_SB_SHIFT,
    X_SB_SIGMA,
    X_SERVED,
    X_SERVED_INT,
    X_SHEDFRAC,
    X_SHIFT,
    X_SIGMA,
    X_SPILL_P,
    X_SPILL_RATE,
    X_SPILL_X,
    X_THROTTLE,
    X_WAITING,
)
from twin.flow.queueing import (
    MAX_RHO,
    Z95,
    Z99,
    backlog_wait_moments,
    fit_shifted_lognormal,
    level_wait_moments,
    lognormal_through_p99,
    mixture_quantile,
    pool_wait_params,
)
from twin.flow.service import attempts, breaker_block, cpu_available, cpu_capacity

EVENT_OOM = 1.0
UNBOUNDED = 1e15  # the callers' pools put no bound on a service (an entry, an async call)
METRICS_WINDOW_S = 15.0  # metrics-server's resolution, the HPA's view of CPU

# counters[s, k]: per-service scratch carried from the arrival stage to the later ones
K_ARRIVALS, K_SHED, K_STANDBY, K_PREV_INFLIGHT, K_DROPPED, K_INTENSITY = 0, 1, 2, 3, 4, 5
K_DONE = 6  # 1 once the bottom-up stages have accounted for the service this tick
N_COUNTERS = 7


@njit(cache=True, inline="always")
def admit(
    s: int, dt: float, S: np.ndarray, counters: np.ndarray, arrivals: float, dropped: float,
    intensity: float, draw: float,
) -> None:  # fmt: skip
    """Workers, queue and shedding of one service for this tick's arrivals: dN/dt = admitted
    - N/H solved over the tick (so N never exceeds c), a fluid backlog beyond the pool.

    `intensity` is the Poisson rate behind the `arrivals` counted this tick; it decides the
    regime (a tick's Poisson excess below capacity waits in the stationary queue, only a
    sustained overload builds a backlog) and is what the callees' queueing formulas see.
    `draw` is this tick's uniform from the run's stream: whether a burst tips the pool into
    its retry storm (twin/flow/tipping.py)."""
    ready = S[P_READY, s]
    prev_inflight = S[X_QUEUE, s] + S[X_NSERV, s] + S[X_WAITING, s]
    counters[s, K_PREV_INFLIGHT] = prev_inflight
    if ready <= 0.0 or S[F_OUTAGE, s] > 0.0:
        # no endpoint accepts connections: everything is refused, in-flight work is lost
        S[X_LOST, s] += prev_inflight
        counters[s, K_PREV_INFLIGHT] = 0.0
        S[X_QUEUE, s] = 0.0
        S[X_NSERV, s] = 0.0
        S[X_WAITING, s] = 0.0
        S[X_SERVED, s] = 0.0
        S[X_SERVED_INT, s] = 0.0
        counters[s, K_ARRIVALS] = arrivals + dropped
        counters[s, K_SHED] = arrivals + dropped
        return
    c = ready * S[P_WORKERS, s]
    hold = max(S[X_HOLD_EFF, s], 1e-9)
    decay = math.exp(-dt / hold)
    n_prev = min(S[X_NSERV, s], c)
    worker_room = (c - n_prev * decay) / (hold * (1.0 - decay))
    cpu_cap = cpu_capacity(s, S)
    mu_cap = min(worker_room, cpu_cap)
    q_prev = S[X_QUEUE, s]
    backlog = q_prev + arrivals
    limit = mu_cap
    stable = intensity < MAX_RHO * min(c / hold, cpu_cap)
    if stable:
        # below capacity, the tick's Poisson excess over the intensity waits in the
        # stationary queue the wait formula already holds; a backlog left by an overload
        # still drains at the pool's own pace
        excess = max(arrivals / dt - intensity, 0.0)
        limit = mu_cap + min(excess, 3.0 * math.sqrt(mu_cap / dt))
    served = min(backlog / dt, limit)
    kick = 0.0
    rate = S[X_ESC_RATE, s]
    if stable and rate > 0.0 and draw < -math.expm1(-rate * dt):
        # a burst queued past the barrier: the fluid backlog takes it from here
        kick = min(S[X_ESC_LEVEL, s], served * dt)
        served -= kick / dt
    S[X_NSERV, s] = min(n_prev * decay + served * hold * (1.0 - decay), c)
    q = backlog - served * dt
    qmax = ready * S[P_QLIMIT, s]
    shed = 0.0
    if q > qmax:
        shed = q - qmax
        q = qmax
    S[X_QUEUE, s] = q
    S[X_SERVED, s] = served
    # what callees see: the intensity, plus a backlog's drain; the count once overloaded
    S[X_SERVED_INT, s] = intensity + max(q_prev - q, 0.0) / dt if stable else served
    counters[s, K_INTENSITY] = intensity
    counters[s, K_ARRIVALS] = arrivals + dropped
    counters[s, K_SHED] = shed + dropped


@njit(cache=True, inline="always")
def hold_back(
    s: int, dt: float, S: np.ndarray, E: np.ndarray, counters: np.ndarray, src: np.ndarray,
    in_ptr: np.ndarray, in_idx: np.ndarray,
) -> None:  # fmt: skip
    """Callees first: a service cannot queue more than its callers' held workers can send
    (thread-per-request: a caller waits on one call at a time). What this tick's admission
    queued beyond that cap never left the callers: it goes back to their queues, shared in
    proportion to the calls each sent, where their own cap may send it further up. A caller
    on a cycle's back edge, already accounted for this tick, keeps its share here."""
    counters[s, K_DONE] = 1.0
    room = S[X_CALLER_CAP, s] - S[P_READY, s] * S[P_WORKERS, s]
    excess = S[X_QUEUE, s] - max(room, 0.0)
    if excess <= 1e-9 or S[X_CALLER_CAP, s] >= UNBOUNDED:
        return
    total = 0.0
    for j in range(in_ptr[s], in_ptr[s + 1]):
        e = in_idx[j]
        total += S[X_SERVED, src[e]] * E[E_K, e] * (1.0 - breaker_block(e, E))
    if total <= 0.0:
        return
    moved = 0.0
    for j in range(in_ptr[s], in_ptr[s + 1]):
        e = in_idx[j]
        u = src[e]
        per_request = E[E_K, e] * attempts(E[E_P_ATTEMPT, e], E[E_RETRIES, e])
        calls = S[X_SERVED, u] * E[E_K, e] * (1.0 - breaker_block(e, E))
        if calls <= 0.0 or per_request <= 0.0 or counters[u, K_DONE] > 0.0:
            continue
        back = min(excess * calls / total / per_request, S[X_SERVED, u] * dt)
        S[X_SERVED, u] -= back / dt
        S[X_SERVED_INT, u] = max(S[X_SERVED_INT, u] - back / dt, 0.0)
        S[X_QUEUE, u] += back
        moved += back * per_request
    moved = min(moved, excess)
    S[X_QUEUE, s] -= moved
    counters[s, K_ARRIVALS] -= moved
    counters[s, K_INTENSITY] = max(counters[s, K_INTENSITY] - moved / dt, 0.0)


@njit(cache=True, inline="always")
def wait_in_pool(
    s: int,
    S: np.ndarray,
    counters: np.ndarray,
    hold: float,
    down: bool,
    var: float,
    k3: float,
    spill_p: float,
    spill_x: float,
    spill_rate: float,
    own: float,
    own_var: float,
    own_k3: float,
    calls_max: float,
) -> tuple[float, float, float, float, float, float, float]:
    """The wait for a worker on top of the residence, fitted as a shifted lognormal.

    Stable load waits as G/G/c at this tick's arrival intensity (queueing.pool_wait_params),
    its queue truncated at the room the fluid backlog leaves and capped by the callers'
    pools; a backlog beyond it waits for its completions on top. What a callee's cap keeps
    out of its queue (`spill_*`, the most congested callee's) waits here instead, in this
    pool's queue, up to this pool's own callers' cap; the rest spills on upstream.
    Overload waits behind the fluid backlog. A residence cannot pass its own time plus every
    call's last timeout (`calls_max`): the fit's p99 is held there when the moments, made of
    refused attempts and timeouts, would put it beyond.

    Sets the service's fit, its stationary queue (Little: λ·W) and what it spills upstream;
    returns (mean, wait_var, k3, mu, sigma, shift, c)."""
    ready = S[P_READY, s]
    c = ready * S[P_WORKERS, s]
    wait_mean = 0.0
    wait_var = 0.0
    wait_k3 = 0.0
    extra = 0.0
    S[X_WAITING, s] = 0.0
    S[X_SPILL_P, s] = 0.0
    if not down and c > 0.0:
        # the CPU limit caps throughput; below it, CPU contention is in the own time
        # (the quota bucket, see own_time_moments), not in fewer servers
        mu_cap = min(c / hold, cpu_capacity(s, S))
        offered = counters[s, K_INTENSITY]
        q = S[X_QUEUE, s]
        if offered >= MAX_RHO * mu_cap:
            # overloaded: the queue is the fluid backlog, give or take its fluctuation
            wait_mean, wait_var, wait_k3 = backlog_wait_moments(q, offered, mu_cap)
        else:
            room = ready * S[P_QLIMIT, s] - q
            cap = max(S[X_CALLER_CAP, s] - c, 0.0)  # queue places the callers can fill
            pc, x, rate = pool_wait_params(c, hold, offered, var / (hold * hold))
            _, wait_mean, wait_var, wait_k3 = level_wait_moments(pc, x, rate, room, cap)
            out_p = pc * x**cap if cap < room else 0.0
            out_x = x
            out_rate = rate
            if spill_p > 0.0:
                _, in_mean, in_var, in_k3 = level_wait_moments(
                    spill_p, spill_x, spill_rate, room, cap
                )
                if in_mean > wait_mean:
                    wait_mean, wait_var, wait_k3 = in_mean, in_var, in_k3
                rest = spill_p * spill_x**cap
                if rest / ((1.0 - spill_x) * spill_rate) > out_p / ((1.0 - x) * rate + 1e-300):
                    out_p, out_x, out_rate = rest, spill_x, spill_rate
            S[X_SPILL_P, s] = out_p
            S[X_SPILL_X, s] = out_x
            S[X_SPILL_RATE, s] = out_rate
            S[X_WAITING, s] = max(offered * wait_mean - q, 0.0)
            # a backlog beyond the stationary queue (an overload draining, a burst) waits
            # for its Gamma-distributed completions on top
            ahead = max(q - offered * wait_mean, 0.0)
            extra = ahead / mu_cap
            wait_var += ahead / mu_cap**2
            wait_k3 += 2.0 * ahead / mu_cap**3
        k3 += wait_k3
    mean = hold + wait_mean + extra
    mu, sigma, shift = fit_shifted_lognormal(mean, var + wait_var, k3)
    p99 = shift + math.exp(mu + Z99 * sigma)
    if calls_max > 0.0 and p99 > calls_max:  # the bound below is at least calls_max
        b_mu, b_sigma, b_shift = fit_shifted_lognormal(
            own + wait_mean + extra, own_var + wait_var, own_k3 + wait_k3
        )
        bound = b_shift + math.exp(b_mu + Z99 * b_sigma) + calls_max
        if p99 > bound:
            mu, sigma, shift = lognormal_through_p99(mean, bound)
    S[X_MU, s] = mu
    S[X_SIGMA, s] = sigma
    S[X_SHIFT, s] = shift
    return mean, wait_var, k3, mu, sigma, shift, c


@njit(cache=True, inline="always")
def conserve(s: int, S: np.ndarray, counters: np.ndarray, down: bool) -> tuple:
    """Stage 3, arrivals = completed + failed + shed + Δ in-flight (the fluid backlog, the
    stationary queue and the workers). Returns (arrivals, shed, departures, failed,
    completed, q, n_target, lost), q the whole queue."""
    arrivals = counters[s, K_ARRIVALS]
    shed = counters[s, K_SHED]
    prev_inflight = counters[s, K_PREV_INFLIGHT]
    lost = S[X_LOST, s]
    S[X_LOST, s] = 0.0
    n_target = 0.0 if down else S[X_NSERV, s]
    waiting = S[X_WAITING, s]
    q = S[X_QUEUE, s]
    departures = arrivals - shed + prev_inflight - (q + waiting + n_target)
    if departures < 0.0:
        # the queue the formula wants is not there yet: it builds from what arrives
        departures = 0.0
        left = max(prev_inflight + arrivals - shed - q, 0.0)
        waiting = min(waiting, left)
        n_target = min(n_target, left - waiting)
        S[X_WAITING, s] = waiting
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
    return arrivals, shed, departures, failed, completed, q + waiting, n_target, lost


@njit(cache=True, inline="always")
def use_resources(
    s: int, t: float, dt: float, S: np.ndarray, events: np.ndarray, n_events: int, inflight: float
) -> tuple[float, float, int]:
    """Stage 4, CPU used against its limit (a hog's share stretches every request's CPU
    part), memory with in-flight work and any leak, an OOM event past the limit. Returns
    (cpu_used, mem, n_events)."""
    ready = S[P_READY, s]
    cpu_demand = S[X_SERVED, s] * S[P_CPU_PER_REQ, s] * S[F_CPU_FACTOR, s]
    cpu_demand += (S[F_CPU_HOG, s] + S[P_CPU_IDLE, s]) * ready
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
