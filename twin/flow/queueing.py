"""The flow model's distribution algebra: Erlang C, timed-out calls, quota waits, fits.

Pure functions of numbers (no state rows), compiled with numba and cached on disk. They carry
a service's residence as a shifted lognormal matched by mean, variance and skewness, so sums
of skewed parts (a CPU-quota wait, a retry) keep their tails; see
../shared/reference/flow-model.md for the mathematics.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from twin.fields import GH_N

Z95 = 1.6448536269514722
Z99 = 2.3263478740408408
SQRT2 = math.sqrt(2.0)
SQRT_2PI = math.sqrt(2.0 * math.pi)
MAX_RHO = 0.995  # the Erlang-C term is capped here; beyond it the fluid backlog takes over
MAX_CPU_RHO = 0.98  # the CPU wait formula stops here; the cap on throughput does the rest
CFS_PERIOD_S = 0.1  # the kernel's default cpu.cfs_period_us
_GH = np.polynomial.hermite_e.hermegauss(GH_N)
GH_NODES = _GH[0]
GH_WEIGHTS = _GH[1] / _GH[1].sum()  # expectations over a standard normal


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
def norm_sf(x: float) -> float:
    """Upper tail of the standard normal."""
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
    tail = norm_sf(z)
    s2 = sigma * sigma
    if shift >= 0.0:
        m1 = math.exp(mu + 0.5 * s2) * (1.0 - norm_sf(z - sigma))
        m2 = math.exp(2.0 * mu + 2.0 * s2) * (1.0 - norm_sf(z - 2.0 * sigma))
        first = m1 + x * tail
        second = m2 + x * x * tail
        return tail, shift + first, max(second - first * first, 0.0)
    # clip at zero: Y = min(max(shift + L, 0), t); L below -shift contributes nothing
    z0 = (math.log(-shift) - mu) / sigma
    p_body = norm_sf(z0) - tail
    l1 = math.exp(mu + 0.5 * s2) * (norm_sf(z0 - sigma) - norm_sf(z - sigma))
    l2 = math.exp(2.0 * mu + 2.0 * s2) * (norm_sf(z0 - 2.0 * sigma) - norm_sf(z - 2.0 * sigma))
    first = max(shift * p_body + l1 + t * tail, 0.0)
    second = shift * shift * p_body + 2.0 * shift * l1 + l2 + t * t * tail
    return tail, first, max(second - first * first, 0.0)


@njit(cache=True)
def quadrature_factors(cv: float, out: np.ndarray, row0: int, col: int) -> None:
    """own_time_moments' node factors for this cv (they depend on nothing else), into
    out[row0 + i, col]."""
    sigma2 = math.log(1.0 + cv * cv)
    sigma = math.sqrt(sigma2)
    for i in range(GH_NODES.shape[0]):
        out[row0 + i, col] = math.exp(sigma * GH_NODES[i] - 0.5 * sigma2)


@njit(cache=True)
def own_time_moments(
    x_mean: float,
    cv: float,
    work_per_own: float,
    rho: float,
    k3_unit: float,
    factors: np.ndarray,
    row0: int,
    col: int,
) -> tuple[float, float, float]:
    """Mean, variance and third cumulant of a request's own time X plus its wait for CPU
    quota (the CFS bucket of the request fidelity). With no quota wait to speak of, X keeps its
    own shape (`k3_unit`, the third cumulant per mean³); otherwise X is taken as lognormal,
    its CPU work takes
    S = work_per_own · X at the cores left, and must fit in the backlog V an arrival finds
    plus one period's quota: D = max(0, V + S - period). V is the M/G/1 workload: 0 with
    probability 1 - rho, else exponential with mean E[S²] / (2 E[S] (1 - rho)). Given X,
    X + D is b, or b plus that exponential with probability pi; X is integrated by
    Gauss-Hermite quadrature, so the correlation of X and D is kept; its node factors for
    this cv are factors[row0 + i, col] (quadrature_factors): X at node i is x_mean times it."""
    sigma2 = math.log(1.0 + cv * cv)
    sigma = math.sqrt(sigma2)
    rho = min(max(rho, 0.0), MAX_CPU_RHO)
    s_mean = work_per_own * x_mean
    m = s_mean * (1.0 + cv * cv) / (2.0 * (1.0 - rho)) if rho > 0.0 else 1.0
    # no wait worth computing: even a request 4 sd long fits its period's quota, and the
    # backlog it would need to meet is e^-25 unlikely
    s_high = s_mean * math.exp(4.0 * sigma - 0.5 * sigma2)
    if s_high < CFS_PERIOD_S and (rho <= 0.0 or CFS_PERIOD_S - s_high > 25.0 * m):
        return x_mean, (cv * x_mean) ** 2, k3_unit * x_mean**3
    e1 = 0.0
    e2 = 0.0
    e3 = 0.0
    for i in range(GH_NODES.shape[0]):
        x = x_mean * factors[row0 + i, col]
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
    return 1.0 - norm_sf(z), math.exp(-0.5 * z * z) / (y * sigma * SQRT_2PI)


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
def _geometric_tail(x: float, a: float) -> tuple[float, float, float, float]:
    """Σ_{n>a} x^(n-1)·n^p for p = 0..3 in closed form (0 ≤ x < 1, a ≥ 0 a whole number):
    x^a · Σ_{i≥1} x^(i-1)·(a+i)^p, expanded in the power sums of a geometric series."""
    xa = x**a
    if xa == 0.0:
        return 0.0, 0.0, 0.0, 0.0
    d = 1.0 - x
    s0 = 1.0 / d
    s1 = s0 * s0
    s2 = (1.0 + x) * s1 * s0
    s3 = (1.0 + 4.0 * x + x * x) * s1 * s1
    return (
        xa * s0,
        xa * (a * s0 + s1),
        xa * (a * a * s0 + 2.0 * a * s1 + s2),
        xa * (a**3 * s0 + 3.0 * a * a * s1 + 3.0 * a * s2 + s3),
    )


@njit(cache=True)
def _power_sums(x: float, lo: float, hi: float) -> tuple[float, float, float, float]:
    """Σ_{lo<n≤hi} x^(n-1)·n^p for p = 0..3 (whole lo ≤ hi; hi ≥ 1e12 is no bound). The
    closed-form tails cancel badly when x is near 1 and the range short, so a short range
    whose far end still carries weight is summed term by term."""
    x = min(x, 1.0 - 1e-9)
    if hi >= 1e12:
        return _geometric_tail(x, lo)
    if hi - lo <= 512.0 and x ** (hi - lo) > 0.5:
        s0 = 0.0
        s1 = 0.0
        s2 = 0.0
        s3 = 0.0
        w = x**lo
        n = lo + 1.0
        while n <= hi:
            s0 += w
            s1 += w * n
            s2 += w * n * n
            s3 += w * n * n * n
            w *= x
            n += 1.0
        return s0, s1, s2, s3
    # a long range with x near 1 (a queue hundreds deep, arrivals at capacity) has no
    # stationary shape to speak of: hold its decay to e^-4 over the range
    x = min(x, 1.0 - 4.0 / (hi - lo)) if hi - lo > 512.0 else x
    f0, f1, f2, f3 = _geometric_tail(x, lo)
    g0, g1, g2, g3 = _geometric_tail(x, hi)
    return f0 - g0, f1 - g1, f2 - g2, f3 - g3


@njit(cache=True)
def pool_wait_params(c: float, hold: float, lam: float, scv: float) -> tuple[float, float, float]:
    """(P(wait), ratio x, rate) of a G/G/c pool's wait: Erlang C gives the chance of waiting;
    a waiting arrival has a geometric number m of requests to see finish before its turn
    (P(m > j) = x^j, each a 1/(c/H) exponential step at `rate` = c/H), so its wait is
    Gamma(m, c/H). The ratio x is set so the mean wait is Allen-Cunneen's (1 + cs²)/2 times
    M/M/c's (Poisson arrivals, cs² the holding time's squared cv), and the tail decays like
    Kingman's exponential."""
    n = math.floor(c)
    if n <= 0.0 or lam <= 0.0:
        return 0.0, 0.0, 0.0
    a = min(lam * hold, MAX_RHO * n)
    pc = erlang_c(n, a)
    g = 0.5 * (1.0 + scv)
    return pc, max(1.0 - (1.0 - a / n) / g, 0.0), n / hold


@njit(cache=True)
def level_wait_moments(
    pc: float, x: float, rate: float, room: float, cap_levels: float
) -> tuple[float, float, float, float]:
    """(P(wait), mean, variance, third cumulant) of Gamma(m, rate) waits with probability pc,
    m geometric (P(m > j) = x^j) under two bounds: the queue limit `room` truncates it
    (arrivals beyond are refused, so never wait), the callers' pools cap it at `cap_levels`
    (a caller holding its worker cannot send more: the excess waits upstream, in the
    caller's own queue). The moments are closed-form sums (twin.flow.queueing._power_sums)."""
    if pc <= 0.0 or rate <= 0.0 or room < 1.0 or cap_levels < 1.0:
        return 0.0, 0.0, 0.0, 0.0
    room = float(math.floor(min(room, 1e15)))
    cap = float(math.floor(min(cap_levels, 1e15)))
    top = min(cap, room)
    total, _, _, _ = _power_sums(x, 0.0, room)  # the truncated geometric's mass
    if total <= 0.0:
        return 0.0, 0.0, 0.0, 0.0
    _, t1, t2, t3 = _power_sums(x, 0.0, top)
    capped = 0.0  # mass of levels past the cap, held at the cap
    if room > cap:
        capped, _, _, _ = _power_sums(x, cap, room)
    e1 = (t1 + cap * capped) / total
    e2 = (t2 + cap * cap * capped) / total
    e3 = (t3 + cap**3 * capped) / total
    xr = x**room
    pw = pc * (1.0 - xr) / (1.0 - pc * xr)  # refused arrivals never wait
    m1 = pw * e1 / rate
    m2 = pw * (e2 + e1) / rate**2
    m3 = pw * (e3 + 3.0 * e2 + 2.0 * e1) / rate**3
    var = max(m2 - m1 * m1, 0.0)
    return pw, m1, var, m3 - 3.0 * m1 * m2 + 2.0 * m1**3


@njit(cache=True)
def wait_moments(
    c: float, hold: float, lam: float, scv: float, room: float, cap_levels: float
) -> tuple[float, float, float, float]:
    """(P(wait), mean, variance, third cumulant) of the wait for a worker in a G/G/c pool
    (pool_wait_params) with its queue limit and its callers' cap (level_wait_moments)."""
    pc, x, rate = pool_wait_params(c, hold, lam, scv)
    return level_wait_moments(pc, x, rate, room, cap_levels)


@njit(cache=True)
def lognormal_cdf(x: float, mean: float, var: float) -> float:
    """P(X ≤ x) for a lognormal with this mean and variance (a step at the mean if var is 0)."""
    if x <= 0.0:
        return 0.0
    if var <= 1e-24 * mean * mean:
        return 1.0 if x >= mean else 0.0
    s2 = math.log(1.0 + var / (mean * mean))
    if s2 <= 0.0:  # var/mean² below the float's resolution: as good as a step
        return 1.0 if x >= mean else 0.0
    return 1.0 - norm_sf((math.log(x) - math.log(mean) + 0.5 * s2) / math.sqrt(s2))


@njit(cache=True)
def backlog_wait_moments(queued: float, lam: float, mu: float) -> tuple[float, float, float]:
    """Mean, variance and third cumulant of the wait behind an overloaded pool's backlog of
    `queued` requests (arrivals `lam` beyond its capacity `mu`, both per second). The queue
    stands near its fluid level and dips below it by a geometric D (ratio mu/lam: the
    M/M/c/K queue of an overloaded pool, seen from its top); an arrival waits for the
    Gamma(queued + 1 - D, mu) completions ahead of it. A full queue's wait is thus not a
    constant: some requests get through under a caller's timeout, as they do in reality."""
    top = float(math.floor(min(max(queued, 0.0), 1e12)))
    x = min(mu / lam, 1.0) if lam > 0.0 else 0.0
    total, t1, t2, t3 = _power_sums(x, 0.0, top + 1.0)
    # n'' = D + 1 on 1..top+1; completions n = top + 2 - n''
    e1 = t1 / total
    e2 = t2 / total
    e3 = t3 / total
    a = top + 2.0
    n1 = a - e1
    n2 = a * a - 2.0 * a * e1 + e2
    n3 = a**3 - 3.0 * a * a * e1 + 3.0 * a * e2 - e3
    m1 = n1 / mu
    m2 = (n2 + n1) / mu**2
    m3 = (n3 + 3.0 * n2 + 2.0 * n1) / mu**3
    var = max(m2 - m1 * m1, 0.0)
    return m1, var, m3 - 3.0 * m1 * m2 + 2.0 * m1**3


@njit(cache=True)
def lognormal_through_p99(mean: float, p99: float) -> tuple[float, float, float]:
    """(mu, sigma, 0) of the lognormal with this mean whose 99th percentile is `p99` (the
    narrower of the two that are): ln p99 - ln mean = Z99·σ - σ²/2."""
    gap = math.log(max(p99, mean) / mean)
    sigma = Z99 - math.sqrt(max(Z99 * Z99 - 2.0 * gap, 0.0))
    return math.log(mean) - 0.5 * sigma * sigma, sigma, 0.0
