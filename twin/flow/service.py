"""What one service and one call edge give this tick, read from the flow state rows.

Small compiled helpers the tick calls per service or per edge: CPU left after a hog, own
time with its quota wait, a breaker's refused share and its state machine, retry attempts and
their back-off and what a call costs with them, a failover's ramp and the standby deployment
that takes its share.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from twin.fields import (
    A_FO_FROM,
    A_FO_T0,
    A_FO_T1,
    A_FO_TO,
    A_SB_PENALTY,
    A_SB_REPLICAS,
    A_SB_WORKERS,
    E_BACKOFF,
    E_BACKOFF_MULT,
    E_BR_CALLS,
    E_BR_COOLDOWN,
    E_BR_FAILS,
    E_BR_HALFSHARE,
    E_BR_MINCALLS,
    E_BR_ON,
    E_BR_SINCE,
    E_BR_STATE,
    E_BR_THRESH,
    E_BR_WINDOW,
    E_CDF_HALF_S2,
    E_CDF_LOGMEAN,
    E_CDF_SQRT_S2,
    E_COST,
    E_COST_VAR,
    E_FORCED,
    E_K,
    E_RETRIES,
    E_SYNC,
    E_TIMEOUT,
    F_CPU_FACTOR,
    F_CPU_HOG,
    F_LAT_FACTOR,
    P_CPU_IDLE,
    P_CPU_LIMIT,
    P_CPU_PER_REQ,
    P_ERR_BASE,
    P_QLIMIT,
    P_READY,
    P_SVC_CV,
    P_SVC_K3,
    P_SVC_MEAN,
    X_GH_CV,
    X_GH_FACTOR,
    X_SB_ERRP,
    X_SB_LAM,
    X_SB_MU,
    X_SB_RATE,
    X_SB_SHIFT,
    X_SB_SIGMA,
    X_SERVED_INT,
    X_THROTTLE,
)
from twin.flow.queueing import (
    MAX_RHO,
    erlang_c,
    fit_shifted_lognormal,
    lognormal_cdf,
    norm_sf,
    own_time_moments,
    quadrature_factors,
)

EVENT_BREAKER = 0.0
CONNECT_REFUSED_S = 0.001  # a refused connection costs the caller about a millisecond
SETTLE_S = 30.0


@njit(cache=True)
def breaker_block(e: int, E: np.ndarray) -> float:
    """Share of calls the breaker refuses."""
    forced = E[E_FORCED, e]
    if forced == 1.0:
        return 1.0
    if forced == 0.0 or E[E_BR_ON, e] == 0.0:
        return 0.0
    state = E[E_BR_STATE, e]
    if state == 1.0:
        return 1.0
    if state == 2.0:
        return 1.0 - E[E_BR_HALFSHARE, e]
    return 0.0


@njit(cache=True)
def breaker_step(
    t: float,
    dt: float,
    e: int,
    E: np.ndarray,
    calls: float,
    fails: float,
    events: np.ndarray,
    n_events: int,
) -> int:
    """Advance one edge's breaker; record a transition as (time, edge, new state)."""
    if E[E_BR_ON, e] == 0.0 or E[E_FORCED, e] >= 0.0:
        return n_events
    state = E[E_BR_STATE, e]
    new_state = state
    if state == 0.0:
        alpha = min(dt / E[E_BR_WINDOW, e], 1.0)
        E[E_BR_CALLS, e] = (1.0 - alpha) * E[E_BR_CALLS, e] + calls
        E[E_BR_FAILS, e] = (1.0 - alpha) * E[E_BR_FAILS, e] + fails
        w_calls = E[E_BR_CALLS, e]
        if w_calls >= E[E_BR_MINCALLS, e] and w_calls > 0.0:
            if E[E_BR_FAILS, e] / w_calls >= E[E_BR_THRESH, e]:
                new_state = 1.0
    elif state == 1.0:
        if t + dt - E[E_BR_SINCE, e] >= E[E_BR_COOLDOWN, e]:
            new_state = 2.0
    else:
        E[E_BR_CALLS, e] += calls
        E[E_BR_FAILS, e] += fails
        trial = max(min(E[E_BR_MINCALLS, e], 10.0), 1.0)
        if E[E_BR_CALLS, e] >= trial:
            if E[E_BR_FAILS, e] / E[E_BR_CALLS, e] >= E[E_BR_THRESH, e]:
                new_state = 1.0
            else:
                new_state = 0.0
    if new_state != state:
        E[E_BR_STATE, e] = new_state
        E[E_BR_SINCE, e] = t + dt
        E[E_BR_CALLS, e] = 0.0
        E[E_BR_FAILS, e] = 0.0
        if n_events < events.shape[0]:
            events[n_events, 0] = t + dt
            events[n_events, 1] = EVENT_BREAKER
            events[n_events, 2] = e
            events[n_events, 3] = new_state
            n_events += 1
    return n_events


@njit(cache=True)
def cpu_available(s: int, S: np.ndarray) -> float:
    """Cores left to the service's requests once the runtime's idle use and a CPU hog have
    taken their share."""
    cap = S[P_READY, s] * S[P_CPU_LIMIT, s]
    return max(cap - (S[F_CPU_HOG, s] + S[P_CPU_IDLE, s]) * S[P_READY, s], 0.02 * cap)


@njit(cache=True)
def own_moments(s: int, S: np.ndarray) -> tuple[float, float, float]:
    """Own time plus CPU-quota wait of service s under its current slowdowns and load.
    Writes S's quadrature factor rows for s when its cv is new (so S must be writable)."""
    base = S[P_SVC_MEAN, s] * S[F_LAT_FACTOR, s]
    x_mean = base * S[X_THROTTLE, s]
    per_req = S[P_CPU_PER_REQ, s] * S[F_CPU_FACTOR, s]
    cap = S[P_READY, s] * S[P_CPU_LIMIT, s]
    work_per_own = 0.0
    rho = 0.0
    if cap > 0.0 and per_req > 0.0 and x_mean > 0.0:
        available = cpu_available(s, S)
        share = min(per_req / base, 1.0)
        work_per_own = base * share / available / x_mean
        rho = S[X_SERVED_INT, s] * per_req / available
    cv = _current_factors(s, S)
    return own_time_moments(
        x_mean, cv, work_per_own, rho, S[P_SVC_K3, s], S, X_GH_FACTOR, s
    )  # fmt: skip


@njit(cache=True)
def _current_factors(s: int, S: np.ndarray) -> float:
    """Service s's quadrature factor rows for its cv (returned), worked out again only when
    the cv is new."""
    cv = S[P_SVC_CV, s]
    if S[X_GH_CV, s] != cv:  # -1 (never worked out) or another cv
        quadrature_factors(cv, S, X_GH_FACTOR, s)
        S[X_GH_CV, s] = cv
    return cv


@njit(cache=True)
def cpu_capacity(s: int, S: np.ndarray) -> float:
    """Requests/s the CPU limit allows: a CPU-bound service saturates here, not at its pool."""
    per_req = S[P_CPU_PER_REQ, s] * S[F_CPU_FACTOR, s]
    if per_req <= 0.0:
        return 1e18
    return cpu_available(s, S) / per_req


@njit(cache=True)
def attempts(p: float, n: float) -> float:
    """Expected attempts with per-attempt failure p and n retries: Σ_{i=0..n} p^i."""
    total = 1.0
    term = 1.0
    for _ in range(int(n)):
        term *= p
        total += term
    return total


@njit(cache=True)
def retry_moments(
    p: float, retries: float, backoff: float, multiplier: float, attempt_cost: float
) -> tuple[float, float]:
    """Mean back-off, and the variance of what retries add to a call: retry i happens with
    probability p^i (every earlier attempt failed) and costs its back-off plus an attempt.
    The events are nested, so E[X²] = Σ a_i² p^i + 2 Σ_{j<i} a_j a_i p^i exactly."""
    mean_backoff = 0.0
    ex = 0.0
    ex2 = 0.0
    cum = 0.0
    p_i = 1.0
    delay = backoff
    for _ in range(int(retries)):
        p_i *= p
        mean_backoff += p_i * delay
        a_i = delay + attempt_cost
        ex += a_i * p_i
        ex2 += a_i * a_i * p_i + 2.0 * a_i * p_i * cum
        cum += a_i
        delay *= multiplier
    return mean_backoff, max(ex2 - ex * ex, 0.0)


@njit(cache=True)
def failover_share(s: int, t: float, S: np.ndarray) -> float:
    """Share of calls to s going to its standby at time t: a linear ramp from the share when
    the last shift began to its target, as DNS TTLs expire and load-balancer weights move."""
    to = S[A_FO_TO, s]
    start = S[A_FO_FROM, s]
    if to == start or t >= S[A_FO_T1, s]:
        return to
    t0 = S[A_FO_T0, s]
    if t <= t0:
        return start
    return start + (to - start) * (t - t0) / (S[A_FO_T1, s] - t0)


@njit(cache=True)
def standby_tick(
    s: int,
    dt: float,
    S: np.ndarray,
    calls: float,
    calls_var: float,
    calls_k3: float,
    p_ok: float,
) -> tuple[float, float, float]:
    """The standby deployment of s in another cluster, on the service's declared profile
    (no fault on the primary touches it): own time with its CPU-quota wait at its load, the
    same calls as the primary, an Erlang-C wait on its own pool, plus the cross-cluster
    penalty. Sets its residence fit and error probability (and, when the cv is new, the
    quadrature factor rows); returns (mean, var, k3)."""
    base = S[P_SVC_MEAN, s]
    per_req = S[P_CPU_PER_REQ, s]
    replicas = S[A_SB_REPLICAS, s]
    limit = S[P_CPU_LIMIT, s]
    cores = replicas * max(limit - S[P_CPU_IDLE, s], 0.02 * limit)  # the runtime's share first
    S[X_SB_LAM, s] += (1.0 - math.exp(-dt / SETTLE_S)) * (S[X_SB_RATE, s] - S[X_SB_LAM, s])
    lam = S[X_SB_LAM, s]
    work_per_own = 0.0
    rho = 0.0
    cpu_cap = 1e18
    if cores > 0.0 and per_req > 0.0 and base > 0.0:
        work_per_own = min(per_req / base, 1.0) / cores
        rho = lam * per_req / cores
        cpu_cap = cores / per_req
    cv = _current_factors(s, S)
    own, var, k3 = own_time_moments(
        base, cv, work_per_own, rho, S[P_SVC_K3, s], S, X_GH_FACTOR, s
    )  # fmt: skip
    hold = max(own + calls, 1e-9)
    var += calls_var
    k3 += calls_k3
    c = replicas * S[A_SB_WORKERS, s]
    wait_mean = 0.0
    if c > 0.0:
        mu_pool = c / hold
        lam_in = min(lam, MAX_RHO * min(mu_pool, cpu_cap))
        pc = erlang_c(c, lam_in * hold)
        theta = mu_pool - lam_in
        wait_mean = pc / theta
        wait_var = (2.0 * pc - pc * pc) / (theta * theta)
        wait_k3 = (6.0 * pc - 6.0 * pc * pc + 2.0 * pc**3) / theta**3
        bound = replicas * S[P_QLIMIT, s] / min(mu_pool, cpu_cap)
        if wait_mean > bound:  # a finite queue, as the primary's
            wait_var *= (bound / wait_mean) ** 2
            wait_k3 *= (bound / wait_mean) ** 3
            wait_mean = bound
        var += wait_var
        k3 += wait_k3
    mean = hold + wait_mean
    mu, sigma, shift = fit_shifted_lognormal(mean, var, k3)
    penalty = S[A_SB_PENALTY, s]
    S[X_SB_MU, s] = mu
    S[X_SB_SIGMA, s] = sigma
    S[X_SB_SHIFT, s] = shift + penalty
    S[X_SB_ERRP, s] = 1.0 - (1.0 - S[P_ERR_BASE, s]) * p_ok
    return mean + penalty, var, k3


@njit(cache=True)
def call_moments(
    p_att: float, c_att: float, v_att: float, retries: float, backoff: float,
    multiplier: float, block: float, k: float,
) -> tuple[float, float, float, float]:  # fmt: skip
    """What one call costs its caller with retries, back-off and the breaker's refused
    share `block`: (expected attempts, mean cost, failure probability, variance of the cost
    of the k calls a request makes). Scalars only, so the compiler inlines it."""
    att = attempts(p_att, retries)
    mean_backoff, retry_var = retry_moments(p_att, retries, backoff, multiplier, c_att)
    cost = (1.0 - block) * (att * c_att + mean_backoff)
    fail = block + (1.0 - block) * p_att ** (retries + 1.0)
    # Var of a random sum: E[N]·Var(call) + Var(N)·E[call]², N the calls made
    frac = k - math.floor(k)
    e_var = k * (1.0 - block) * (att * v_att + retry_var)
    e_var += frac * (1.0 - frac) * cost * cost
    return att, cost, fail, e_var


FANOUT_NODES = 48  # quadrature points over the slowest branch's range


@njit(cache=True)
def _all_done_by(
    x: float, s: int, E: np.ndarray, out_ptr: np.ndarray, out_idx: np.ndarray
) -> float:
    """P(every parallel call of s has returned by x > 0): a call made k ≥ 1 times returns
    when its slowest copy does; one made by a share k < 1 of requests is absent otherwise.
    Each call's cdf is lognormal_cdf's arithmetic with its per-call logarithms and root
    taken once a tick (fanout_moments), since they are most of its cost at 48 nodes."""
    lx = math.log(x)
    prob = 1.0
    for j in range(out_ptr[s], out_ptr[s + 1]):
        e = out_idx[j]
        k = E[E_K, e]
        if E[E_SYNC, e] <= 0.0 or k <= 0.0:
            continue
        sq = E[E_CDF_SQRT_S2, e]
        if sq > 0.0:
            f = 1.0 - norm_sf((lx - E[E_CDF_LOGMEAN, e] + E[E_CDF_HALF_S2, e]) / sq)
        else:
            f = lognormal_cdf(x, E[E_COST, e], E[E_COST_VAR, e])
        whole = math.floor(k)
        frac = k - whole
        prob *= f**whole * (1.0 - frac + frac * f)
    return prob


@njit(cache=True)
def fanout_moments(
    s: int, E: np.ndarray, out_ptr: np.ndarray, out_idx: np.ndarray
) -> tuple[float, float, float]:
    """Mean, variance and third cumulant of the slowest of the parallel calls (their costs
    set this tick in E_COST and E_COST_VAR, each a lognormal by its moments): E[M^r] =
    ∫ r x^(r-1) P(M > x) dx by the midpoint rule over [0, the slowest call's 1 - 1e-7
    quantile]. The largest mean alone misses that the slowest of several random calls is
    slower than any one of them on average."""
    top = 0.0
    for j in range(out_ptr[s], out_ptr[s + 1]):
        e = out_idx[j]
        if E[E_SYNC, e] <= 0.0 or E[E_K, e] <= 0.0:
            continue
        mean = E[E_COST, e]
        var = E[E_COST_VAR, e]
        E[E_CDF_SQRT_S2, e] = 0.0
        if mean <= 0.0:
            continue
        s2 = math.log(1.0 + var / (mean * mean))
        high = mean * math.exp(5.2 * math.sqrt(s2) - 0.5 * s2)
        top = max(top, high)
        if var > 1e-24 * mean * mean and s2 > 0.0:  # lognormal_cdf's lognormal path
            E[E_CDF_LOGMEAN, e] = math.log(mean)
            E[E_CDF_HALF_S2, e] = 0.5 * s2
            E[E_CDF_SQRT_S2, e] = math.sqrt(s2)
    if top <= 0.0:
        return 0.0, 0.0, 0.0
    h = top / FANOUT_NODES
    r1 = 0.0
    r2 = 0.0
    r3 = 0.0
    for i in range(FANOUT_NODES):
        x = (i + 0.5) * h
        tail = 1.0 - _all_done_by(x, s, E, out_ptr, out_idx)
        r1 += tail
        r2 += 2.0 * x * tail
        r3 += 3.0 * x * x * tail
    r1 *= h
    r2 *= h
    r3 *= h
    var = max(r2 - r1 * r1, 0.0)
    return r1, var, r3 - 3.0 * r1 * r2 + 2.0 * r1**3


@njit(cache=True)
def longest_call(e: int, E: np.ndarray) -> float:
    """The most one call on edge e can cost its caller: every attempt to its timeout, with
    every back-off between them."""
    retries = E[E_RETRIES, e]
    if retries <= 0.0:
        return E[E_TIMEOUT, e]
    mult = E[E_BACKOFF_MULT, e]
    if mult == 1.0:
        backoff = E[E_BACKOFF, e] * retries
    else:
        backoff = E[E_BACKOFF, e] * (mult**retries - 1.0) / (mult - 1.0)
    return (retries + 1.0) * E[E_TIMEOUT, e] + backoff
