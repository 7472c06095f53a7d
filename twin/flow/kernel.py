"""The flow fidelity's tick: one compiled pass over the services of a topology.

Queueing model per service (see ../shared/reference/flow-model.md): a worker pool of
c = replicas × workers servers held for a request's whole residence (own work plus its
synchronous calls). Stable load waits as M/M/c (Erlang C); overload builds a fluid backlog
capped by the queue limit, beyond which requests are shed. Timeouts fail the caller while
the callee still does the work; retries multiply the callee's load; breakers stop calls.
Nothing about cascades is scripted: they follow from these couplings.

Order of a tick: arrivals flow top-down (callers first, back edges of cycles use the last
tick's rates), then latencies and failure probabilities flow bottom-up (callees first).
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
    A_SHED,
    C_ARRIVED,
    C_COMPLETED,
    C_FAILED,
    C_SHED,
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
    E_FAULT_FAIL,
    E_FAULT_LAT,
    E_FORCED,
    E_K,
    E_P_ATTEMPT,
    E_PARTITION,
    E_REQUIRED,
    E_RETRIES,
    E_SYNC,
    E_TIMEOUT,
    F_CPU_FACTOR,
    F_CPU_HOG,
    F_ERR,
    F_LAT_ADD,
    F_LAT_FACTOR,
    F_LEAK_ORIGIN,
    F_LEAK_RATE,
    F_OUTAGE,
    P_CPU_LIMIT,
    P_CPU_PER_REQ,
    P_CPU_REQUEST,
    P_ERR_BASE,
    P_MEM_BASE,
    P_MEM_LIMIT,
    P_MEM_PER_REQ,
    P_PARALLEL,
    P_QLIMIT,
    P_READY,
    P_SVC_CV,
    P_SVC_MEAN,
    P_WORKERS,
    X_CPU_AVG,
    X_DESIRED,
    X_ERRP,
    X_FO,
    X_HOLD,
    X_HOLD_EFF,
    X_LAM_SETTLED,
    X_LOST,
    X_MU,
    X_NSERV,
    X_QUEUE,
    X_SB_ERRP,
    X_SB_LAM,
    X_SB_MU,
    X_SB_RATE,
    X_SB_SHIFT,
    X_SB_SIGMA,
    X_SERVED,
    X_SHEDFRAC,
    X_SHIFT,
    X_SIGMA,
    X_THROTTLE,
)

Z95 = 1.6448536269514722
Z99 = 2.3263478740408408
SQRT2 = math.sqrt(2.0)
SQRT_2PI = math.sqrt(2.0 * math.pi)
CONNECT_REFUSED_S = 0.001  # a refused connection costs the caller about a millisecond
MAX_RHO = 0.995  # the Erlang-C term is capped here; beyond it the fluid backlog takes over
EVENT_BREAKER = 0.0
EVENT_OOM = 1.0
SETTLE_S = 30.0
MAX_CPU_RHO = 0.98  # the CPU wait formula stops here; the cap on throughput does the rest
CFS_PERIOD_S = 0.1  # the kernel's default cpu.cfs_period_us
_GH = np.polynomial.hermite_e.hermegauss(20)
GH_NODES = _GH[0]
GH_WEIGHTS = _GH[1] / _GH[1].sum()  # expectations over a standard normal
METRICS_WINDOW_S = 15.0  # metrics-server's resolution, the HPA's view of CPU


@njit(cache=True, fastmath=False)
def erlang_c(c: float, a: float) -> float:
    """Probability of waiting in M/M/c with offered load a (Erlang B recursion, then C)."""
    n = int(c)
    if n <= 0:
        return 1.0
    if a <= 0.0:
        return 0.0
    b = 1.0
    for k in range(1, n + 1):
        b = a * b / (k + a * b)
        if b < 1e-300:
            return 0.0
        if k > a and b < 1e-14:
            return 0.0
    rho = a / n
    return b / (1.0 - rho * (1.0 - b))


@njit(cache=True)
def _norm_sf(x: float) -> float:
    return 0.5 * math.erfc(x / SQRT2)


@njit(cache=True)
def truncated_moments(
    mu: float, sigma: float, shift: float, t: float
) -> tuple[float, float, float]:
    """P(residence > t), E[min(residence, t)] and Var[min(residence, t)] in one pass (the
    three share a logarithm and their normal tails): what a call with timeout t costs. A
    moment-matched fit may put a negative shift under a mildly skewed lognormal; its mass
    below zero is a call that costs nothing, never a negative time."""
    x = t - shift
    if x <= 0.0:
        return 1.0, t, 0.0
    if sigma <= 1e-12:
        body = math.exp(mu)
        return (1.0 if body > x else 0.0), max(shift + min(body, x), 0.0), 0.0
    lx = math.log(x)
    z = (lx - mu) / sigma
    tail = _norm_sf(z)
    s2 = sigma * sigma
    if shift >= 0.0:
        m1 = math.exp(mu + 0.5 * s2) * (1.0 - _norm_sf(z - sigma))
        m2 = math.exp(2.0 * mu + 2.0 * s2) * (1.0 - _norm_sf(z - 2.0 * sigma))
        first = m1 + x * tail
        second = m2 + x * x * tail
        return tail, shift + first, max(second - first * first, 0.0)
    # clip at zero: Y = min(max(shift + L, 0), t); L below -shift contributes nothing
    z0 = (math.log(-shift) - mu) / sigma
    p_body = _norm_sf(z0) - tail
    l1 = math.exp(mu + 0.5 * s2) * (_norm_sf(z0 - sigma) - _norm_sf(z - sigma))
    l2 = math.exp(2.0 * mu + 2.0 * s2) * (_norm_sf(z0 - 2.0 * sigma) - _norm_sf(z - 2.0 * sigma))
    first = max(shift * p_body + l1 + t * tail, 0.0)
    second = shift * shift * p_body + 2.0 * shift * l1 + l2 + t * t * tail
    return tail, first, max(second - first * first, 0.0)


@njit(cache=True)
def _breaker_block(e: int, E: np.ndarray) -> float:
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
def _cpu_available(s: int, S: np.ndarray) -> float:
    """Cores left to the service's requests once a CPU hog has taken its share."""
    cap = S[P_READY, s] * S[P_CPU_LIMIT, s]
    return max(cap - S[F_CPU_HOG, s] * S[P_READY, s], 0.02 * cap)


@njit(cache=True)
def own_time_moments(
    x_mean: float, cv: float, work_per_own: float, rho: float
) -> tuple[float, float, float]:
    """Mean, variance and third cumulant of a request's own time X plus its wait for CPU
    quota (the CFS bucket of the request fidelity). X is lognormal; its CPU work takes
    S = work_per_own · X at the cores left, and must fit in the backlog V an arrival finds
    plus one period's quota: D = max(0, V + S - period). V is the M/G/1 workload: 0 with
    probability 1 - rho, else exponential with mean E[S²] / (2 E[S] (1 - rho)). Given X,
    X + D is b, or b plus that exponential with probability pi; X is integrated by
    Gauss-Hermite quadrature, so the correlation of X and D is kept."""
    sigma2 = math.log(1.0 + cv * cv)
    sigma = math.sqrt(sigma2)
    rho = min(max(rho, 0.0), MAX_CPU_RHO)
    s_mean = work_per_own * x_mean
    m = s_mean * (1.0 + cv * cv) / (2.0 * (1.0 - rho)) if rho > 0.0 else 1.0
    # no wait worth computing: even a request 4 sd long fits its period's quota, and the
    # backlog it would need to meet is e^-25 unlikely
    s_high = s_mean * math.exp(4.0 * sigma - 0.5 * sigma2)
    if s_high < CFS_PERIOD_S and (rho <= 0.0 or CFS_PERIOD_S - s_high > 25.0 * m):
        var = (cv * x_mean) ** 2
        return x_mean, var, lognormal_k3(x_mean, var)
    e1 = 0.0
    e2 = 0.0
    e3 = 0.0
    for i in range(GH_NODES.shape[0]):
        x = x_mean * math.exp(sigma * GH_NODES[i] - 0.5 * sigma2)
        a = work_per_own * x - CFS_PERIOD_S
        b = x + max(a, 0.0)
        pi = rho if a >= 0.0 else rho * math.exp(a / m)
        w = GH_WEIGHTS[i]
        e1 += w * (b + pi * m)
        e2 += w * (b * b + pi * (2.0 * b * m + 2.0 * m * m))
        e3 += w * (b**3 + pi * (3.0 * b * b * m + 6.0 * b * m * m + 6.0 * m**3))
    var = max(e2 - e1 * e1, 0.0)
    k3 = e3 - 3.0 * e1 * e2 + 2.0 * e1**3
    return e1, var, k3


@njit(cache=True)
def lognormal_k3(mean: float, var: float) -> float:
    """Third cumulant of a lognormal with this mean and variance (skewness × sd³)."""
    if mean <= 0.0 or var <= 0.0:
        return 0.0
    w = 1.0 + var / (mean * mean)
    return (w + 2.0) * math.sqrt(w - 1.0) * var**1.5


@njit(cache=True)
def fit_shifted_lognormal(mean: float, var: float, k3: float) -> tuple[float, float, float]:
    """(mu, sigma, shift) of shift + lognormal with this mean, variance and skewness: sums of
    a few skewed parts (a quota wait, a retry) have heavier tails than a two-parameter fit
    gives. The skewness equation (w+2)²(w-1) = γ² has a closed-form root."""
    if var <= 1e-24 * mean * mean:
        return math.log(max(mean, 1e-12)), 0.0, 0.0
    gamma = k3 / var**1.5
    if gamma <= 1e-6:
        sigma2 = math.log(1.0 + var / (mean * mean))
        return math.log(mean) - 0.5 * sigma2, math.sqrt(sigma2), 0.0
    u = (1.0 + 0.5 * gamma * gamma + gamma * math.sqrt(1.0 + 0.25 * gamma * gamma)) ** (1.0 / 3.0)
    w = max(u + 1.0 / u - 1.0, 1.0 + 1e-12)
    scale = math.sqrt(var / (w * (w - 1.0)))  # e^mu
    shift = mean - scale * math.sqrt(w)
    if shift < -0.9 * scale:
        # very skewed sums (cv above ~3) would put the median near or below zero: keep the
        # mean and the skewness, give up some variance, hold the median at a tenth of e^mu
        scale = mean / (math.sqrt(w) - 0.9)
        shift = -0.9 * scale
    return math.log(scale), math.sqrt(math.log(w)), shift


@njit(cache=True)
def _own_moments(s: int, S: np.ndarray) -> tuple[float, float, float]:
    """Own time plus CPU-quota wait of service s under its current slowdowns and load."""
    base = S[P_SVC_MEAN, s] * S[F_LAT_FACTOR, s]
    x_mean = base * S[X_THROTTLE, s]
    per_req = S[P_CPU_PER_REQ, s] * S[F_CPU_FACTOR, s]
    cap = S[P_READY, s] * S[P_CPU_LIMIT, s]
    work_per_own = 0.0
    rho = 0.0
    if cap > 0.0 and per_req > 0.0 and x_mean > 0.0:
        available = _cpu_available(s, S)
        share = min(per_req / base, 1.0)
        work_per_own = base * share / available / x_mean
        rho = S[X_LAM_SETTLED, s] * per_req / available
    return own_time_moments(x_mean, S[P_SVC_CV, s], work_per_own, rho)


@njit(cache=True)
def _cpu_capacity(s: int, S: np.ndarray) -> float:
    """Requests/s the CPU limit allows: a CPU-bound service saturates here, not at its pool."""
    per_req = S[P_CPU_PER_REQ, s] * S[F_CPU_FACTOR, s]
    if per_req <= 0.0:
        return 1e18
    return _cpu_available(s, S) / per_req


@njit(cache=True)
def _attempts(p: float, n: float) -> float:
    """Expected attempts with per-attempt failure p and n retries: Σ_{i=0..n} p^i."""
    total = 1.0
    term = 1.0
    for _ in range(int(n)):
        term *= p
        total += term
    return total


@njit(cache=True)
def _retry_moments(
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
def mixture_moments(
    w: float, m1: float, v1: float, k1: float, m2: float, v2: float, k2: float
) -> tuple[float, float, float]:
    """Mean, variance and third cumulant of a mixture: weight 1 - w on the first part, w on
    the second (raw moments mix linearly; the cumulants are rebuilt from them)."""
    r1 = (1.0 - w) * m1 + w * m2
    r2 = (1.0 - w) * (v1 + m1 * m1) + w * (v2 + m2 * m2)
    r3 = (1.0 - w) * (k1 + 3.0 * m1 * v1 + m1**3) + w * (k2 + 3.0 * m2 * v2 + m2**3)
    var = max(r2 - r1 * r1, 0.0)
    return r1, var, r3 - 3.0 * r1 * r2 + 2.0 * r1**3


@njit(cache=True)
def _shifted_lognormal_cdf_pdf(
    x: float, mu: float, sigma: float, shift: float
) -> tuple[float, float]:
    y = x - shift
    if y <= 0.0:
        return 0.0, 0.0
    if sigma <= 1e-12:
        return (1.0 if math.log(y) >= mu else 0.0), 0.0
    z = (math.log(y) - mu) / sigma
    return 1.0 - _norm_sf(z), math.exp(-0.5 * z * z) / (y * sigma * SQRT_2PI)


@njit(cache=True)
def mixture_quantile(
    p: float,
    z: float,
    w: float,
    mu1: float,
    sigma1: float,
    shift1: float,
    mu2: float,
    sigma2: float,
    shift2: float,
    guess: float,
) -> float:
    """The p-quantile (z its normal score) of a mixture of two shifted lognormals, weight
    1 - w and w. A fitted single lognormal misplaces the median of a two-humped mixture (a
    slow primary beside a fast standby), so its quantile is only the `guess`: the parts' own
    quantiles bracket the mixture's, and Newton's method on the exact CDF, kept inside the
    bracket by bisection, finds it to 1e-7 relative in about six steps."""
    a = max(shift1 + math.exp(mu1 + z * sigma1), 0.0)
    b = max(shift2 + math.exp(mu2 + z * sigma2), 0.0)
    lo = min(a, b)
    hi = max(a, b)
    x = guess if lo < guess < hi else 0.5 * (lo + hi)
    for _ in range(60):
        c1, d1 = _shifted_lognormal_cdf_pdf(x, mu1, sigma1, shift1)
        c2, d2 = _shifted_lognormal_cdf_pdf(x, mu2, sigma2, shift2)
        gap = (1.0 - w) * c1 + w * c2 - p
        if gap < 0.0:
            lo = x
        else:
            hi = x
        density = (1.0 - w) * d1 + w * d2
        step = x - gap / density if density > 0.0 else lo - 1.0
        if not lo < step < hi:
            step = 0.5 * (lo + hi)
        if abs(step - x) <= 1e-7 * x or hi - lo <= 1e-7 * hi:
            return step
        x = step
    return x


@njit(cache=True)
def _standby_tick(
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
    penalty. Sets its residence fit and error probability; returns (mean, var, k3)."""
    base = S[P_SVC_MEAN, s]
    per_req = S[P_CPU_PER_REQ, s]
    replicas = S[A_SB_REPLICAS, s]
    cores = replicas * S[P_CPU_LIMIT, s]
    S[X_SB_LAM, s] += (1.0 - math.exp(-dt / SETTLE_S)) * (S[X_SB_RATE, s] - S[X_SB_LAM, s])
    lam = S[X_SB_LAM, s]
    work_per_own = 0.0
    rho = 0.0
    cpu_cap = 1e18
    if cores > 0.0 and per_req > 0.0 and base > 0.0:
        work_per_own = min(per_req / base, 1.0) / cores
        rho = lam * per_req / cores
        cpu_cap = cores / per_req
    own, var, k3 = own_time_moments(base, S[P_SVC_CV, s], work_per_own, rho)
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
def flow_tick(
    t: float,
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
    out: np.ndarray,
    eout: np.ndarray,
    dist: np.ndarray,
    events: np.ndarray,
    counters: np.ndarray,
) -> int:
    """Advance one tick [t, t+dt). Writes telemetry rows; returns the number of events.

    `events` rows are (time, kind, index, value): kind 0 a breaker transition of edge
    `index` to state `value`, kind 1 a replica of service `index` above its memory limit.
    `counters` is scratch space (services × 5) so the tick allocates nothing.

    Operator actions enter through rows of S: a share of external arrivals shed at an entry
    (A_SHED) and a failover share (A_FO_*) of a service's calls served by a standby.
    """
    n = S.shape[1]
    n_events = 0

    # operator actions in effect anywhere? (a sequential scan; without any, the loops below
    # skip the reads a shed rule or a standby would need)
    shedding = False
    failing_over = False
    for s in range(n):
        if S[A_SHED, s] > 0.0:
            shedding = True
        if S[A_FO_TO, s] > 0.0 or S[A_FO_FROM, s] > 0.0:
            failing_over = True

    # ---- 1. arrivals, top-down -------------------------------------------------------
    for oi in range(n):
        s = order[oi]
        lam = ext[s] / dt
        dropped = 0.0
        if shedding:
            dropped = ext[s] * S[A_SHED, s]  # shed at the entry before anything else sees them
            lam = (ext[s] - dropped) / dt
        counters[s, 4] = dropped
        for j in range(in_ptr[s], in_ptr[s + 1]):
            e = in_idx[j]
            u = src[e]
            block = _breaker_block(e, E)
            if block >= 1.0:
                continue
            att = _attempts(E[E_P_ATTEMPT, e], E[E_RETRIES, e])
            calling = S[X_SERVED, u]
            if failing_over:
                calling += S[X_SB_RATE, u]  # the standby's requests make the calls too
            lam += calling * E[E_K, e] * att * (1.0 - block)
        counters[s, 2] = 0.0
        if failing_over:
            mid = t + 0.5 * dt
            phi = failover_share(s, mid, S)
            if mid >= S[A_FO_T1, s]:
                S[A_FO_FROM, s] = phi  # the shift is over (once both are 0, no more scans)
            S[X_FO, s] = phi
            S[X_SB_RATE, s] = phi * lam
            if phi > 0.0:
                counters[s, 2] = phi * lam * dt
                lam -= phi * lam
        arrivals = lam * dt
        ready = S[P_READY, s]
        prev_inflight = S[X_QUEUE, s] + S[X_NSERV, s]
        counters[s, 3] = prev_inflight
        if ready <= 0.0 or S[F_OUTAGE, s] > 0.0:
            # no endpoint accepts connections: everything is refused, in-flight work is lost
            S[X_LOST, s] += prev_inflight
            counters[s, 3] = 0.0
            S[X_QUEUE, s] = 0.0
            S[X_NSERV, s] = 0.0
            S[X_SERVED, s] = 0.0
            counters[s, 0] = arrivals + dropped
            counters[s, 1] = arrivals + dropped
            continue
        # workers: dN/dt = admitted - N/H solved over the tick, so N never exceeds c
        c = ready * S[P_WORKERS, s]
        hold = max(S[X_HOLD_EFF, s], 1e-9)
        decay = math.exp(-dt / hold)
        n_prev = min(S[X_NSERV, s], c)
        worker_room = (c - n_prev * decay) / (hold * (1.0 - decay))
        mu_cap = min(worker_room, _cpu_capacity(s, S))
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
        counters[s, 0] = arrivals + dropped
        counters[s, 1] = shed + dropped

    # ---- 2. latencies and failures, bottom-up ----------------------------------------
    for oi in range(n - 1, -1, -1):
        s = order[oi]
        ready = S[P_READY, s]
        down = ready <= 0.0 or S[F_OUTAGE, s] > 0.0
        own, var, k3 = _own_moments(s, S)
        own += S[F_LAT_ADD, s]
        sum_cost = 0.0
        max_cost = 0.0
        calls_var = 0.0  # what the calls alone add (a standby makes the same calls)
        calls_k3 = 0.0
        p_ok = 1.0
        served = S[X_SERVED, s]
        calling = served + S[X_SB_RATE, s] if failing_over else served
        for j in range(out_ptr[s], out_ptr[s + 1]):
            e = out_idx[j]
            d = dst[e]
            timeout = E[E_TIMEOUT, e]
            if E[E_PARTITION, e] > 0.0:
                p_att = 1.0
                c_att = timeout
                v_att = 0.0
            elif S[P_READY, d] <= 0.0 or S[F_OUTAGE, d] > 0.0:
                p_att = 1.0
                c_att = CONNECT_REFUSED_S
                v_att = 0.0
            else:
                mu_d = S[X_MU, d]
                sg_d = S[X_SIGMA, d]
                sh_d = S[X_SHIFT, d]
                loss = E[E_FAULT_FAIL, e]
                t_eff = timeout - E[E_FAULT_LAT, e]
                p_to, t_mean, t_var = truncated_moments(mu_d, sg_d, sh_d, t_eff)
                shed_d = S[X_SHEDFRAC, d]
                p_att = 1.0 - (1.0 - shed_d) * (1.0 - p_to) * (1.0 - S[X_ERRP, d]) * (1.0 - loss)
                wait = t_mean + E[E_FAULT_LAT, e]
                c_att = shed_d * CONNECT_REFUSED_S + (1.0 - shed_d) * wait
                v_att = (1.0 - shed_d) * t_var
            phi = S[X_FO, d] if failing_over else 0.0
            if phi > 0.0:
                # a share phi of attempts goes to the standby, past this link's faults: the
                # exact mixture of the two attempts' failure, mean and variance
                p_sb, m_sb, v_sb = truncated_moments(
                    S[X_SB_MU, d], S[X_SB_SIGMA, d], S[X_SB_SHIFT, d], timeout
                )
                p_sb = 1.0 - (1.0 - p_sb) * (1.0 - S[X_SB_ERRP, d])
                c_mix = (1.0 - phi) * c_att + phi * m_sb
                v_att = (1.0 - phi) * (v_att + c_att * c_att) + phi * (v_sb + m_sb * m_sb)
                v_att = max(v_att - c_mix * c_mix, 0.0)
                p_att = (1.0 - phi) * p_att + phi * p_sb
                c_att = c_mix
            retries = E[E_RETRIES, e]
            att = _attempts(p_att, retries)
            backoff, retry_var = _retry_moments(
                p_att, retries, E[E_BACKOFF, e], E[E_BACKOFF_MULT, e], c_att
            )
            block = _breaker_block(e, E)
            cost = (1.0 - block) * (att * c_att + backoff)
            fail = block + (1.0 - block) * p_att ** (retries + 1.0)
            k = E[E_K, e]
            if E[E_SYNC, e] > 0.0:
                sum_cost += k * cost
                if k * cost > max_cost:
                    max_cost = k * cost
                # Var of a random sum: E[N]·Var(call) + Var(N)·E[call]², N the calls made
                frac = k - math.floor(k)
                e_var = k * (1.0 - block) * (att * v_att + retry_var)
                e_var += frac * (1.0 - frac) * cost * cost
                var += e_var
                e_k3 = lognormal_k3(k * cost, e_var)
                k3 += e_k3
                calls_var += e_var
                calls_k3 += e_k3
                if E[E_REQUIRED, e] > 0.0:
                    # k < 1 is a call made by a share k of requests, k ≥ 1 is k calls each
                    p_ok *= (1.0 - k * fail) if k < 1.0 else (1.0 - fail) ** k
            # breaker bookkeeping and edge telemetry
            calls = calling * k * att * (1.0 - block) * dt
            fails = calls * p_att
            E[E_P_ATTEMPT, e] = p_att
            n_events = _breaker_step(t, dt, e, E, calls, fails, events, n_events)
            eout[e, 0] = calls / dt
            eout[e, 1] = calling * k * fail
            eout[e, 2] = c_att * 1000.0
            eout[e, 3] = E[E_BR_STATE, e] if E[E_FORCED, e] < 0.0 else 3.0 + E[E_FORCED, e]

        hold = own + (max_cost if S[P_PARALLEL, s] > 0.0 else sum_cost)
        # the pool feels a new holding time only as requests started under it finish
        S[X_HOLD_EFF, s] += (1.0 - math.exp(-dt / hold)) * (hold - S[X_HOLD_EFF, s])
        err_own = 1.0 - (1.0 - S[P_ERR_BASE, s]) * (1.0 - S[F_ERR, s])
        S[X_ERRP, s] = 1.0 - (1.0 - err_own) * p_ok
        S[X_HOLD, s] = hold

        # waiting: Erlang C while stable, fluid backlog beyond
        c = ready * S[P_WORKERS, s]
        wait_mean = 0.0
        wait_var = 0.0
        shift = 0.0
        if not down and c > 0.0:
            # the CPU limit caps throughput; below it, CPU contention is in the own time
            # (the quota bucket, see own_time_moments), not in fewer servers
            mu_pool = c / hold
            mu_cap = min(mu_pool, _cpu_capacity(s, S))
            # Erlang C already holds Poisson's tick-to-tick noise, so it sees the rate the queue
            # has settled to: an unbiased moving average over SETTLE_S, about the relaxation
            # time of a queue near saturation ((1+√ρ)²/(μ(1-√ρ)²), Odoni and Roth); a
            # sustained overload still builds the fluid backlog at once
            S[X_LAM_SETTLED, s] += (1.0 - math.exp(-dt / SETTLE_S)) * (served - S[X_LAM_SETTLED, s])
            lam_in = min(S[X_LAM_SETTLED, s], MAX_RHO * mu_cap)
            a = lam_in * hold
            pc = erlang_c(c, a)
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

        # ---- 3. conservation: arrivals = completed + failed + shed + Δ in-flight -----
        arrivals = counters[s, 0]
        shed = counters[s, 1]
        prev_inflight = counters[s, 3]
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
        dropped = counters[s, 4]
        own_arrivals = arrivals - dropped  # what reached the pods (callers see their shedding)
        # the chance an arriving call is refused: a shrinking queue (pods restarting) can
        # shed more backlog in a tick than arrived in it, so the share is capped at 1
        S[X_SHEDFRAC, s] = (
            min(max((shed - dropped) / own_arrivals, 0.0), 1.0)
            if own_arrivals > 0.0
            else (1.0 if down else 0.0)
        )
        answered = not down
        w = 0.0  # share of this tick's served requests the standby served
        phi = S[X_FO, s] if failing_over else 0.0
        if phi > 0.0:
            # the standby's requests, done within the tick. Callers mix the two sides exactly
            # per attempt; the service's latency telemetry is the exact mixture of what each
            # side served (mean, and percentiles by mixture_quantile), its distribution for
            # the SLO the mixture moment-matched into one shifted lognormal
            calls = max_cost if S[P_PARALLEL, s] > 0.0 else sum_cost
            sb_mean, sb_var, sb_k3 = _standby_tick(s, dt, S, calls, calls_var, calls_k3, p_ok)
            sb = counters[s, 2]
            sb_failed = sb * S[X_SB_ERRP, s]
            arrivals += sb
            failed += sb_failed
            completed += sb - sb_failed
            departures += sb
            w = sb / departures if departures > 0.0 else phi
            mean, mix_var, mix_k3 = mixture_moments(
                w, mean, var + wait_var, k3, sb_mean, sb_var, sb_k3
            )
            mu, sigma, shift = fit_shifted_lognormal(mean, mix_var, mix_k3)
            answered = True
        dist[s, 0] = mu
        dist[s, 1] = sigma
        dist[s, 2] = shift
        S[C_ARRIVED, s] += arrivals
        S[C_COMPLETED, s] += completed
        S[C_FAILED, s] += failed
        S[C_SHED, s] += shed

        # ---- 4. resources ------------------------------------------------------------
        inflight = q + n_target
        cpu_demand = served * S[P_CPU_PER_REQ, s] * S[F_CPU_FACTOR, s] + S[F_CPU_HOG, s] * ready
        cpu_cap = ready * S[P_CPU_LIMIT, s]
        cpu_used = min(cpu_demand, cpu_cap)
        if cpu_cap > 0.0:
            # a hog's share of the quota stretches the CPU part of every request's own time
            own_base = S[P_SVC_MEAN, s] * S[F_LAT_FACTOR, s]
            share = min(S[P_CPU_PER_REQ, s] * S[F_CPU_FACTOR, s] / own_base, 1.0)
            S[X_THROTTLE, s] = 1.0 + share * (cpu_cap / _cpu_available(s, S) - 1.0)
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

        # ---- 5. telemetry row ----------------------------------------------------------
        finished = departures + shed + lost
        out[s, 0] = arrivals / dt
        out[s, 1] = completed / dt
        out[s, 2] = failed / dt
        out[s, 3] = shed / dt
        out[s, 4] = (failed + shed) / finished if finished > 0.0 else 0.0
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
        out[s, 9] = cpu_used
        util = cpu_used / (ready * S[P_CPU_REQUEST, s]) if ready > 0.0 else 0.0
        alpha = min(dt / METRICS_WINDOW_S, 1.0)
        S[X_CPU_AVG, s] += alpha * (util - S[X_CPU_AVG, s])
        out[s, 10] = util
        out[s, 11] = mem if ready > 0.0 else 0.0
        out[s, 12] = q
        out[s, 13] = inflight
        out[s, 14] = n_target / c if c > 0.0 else 0.0
        out[s, 15] = ready
        out[s, 16] = S[X_DESIRED, s]
    return n_events


@njit(cache=True)
def _breaker_step(
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
