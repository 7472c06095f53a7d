"""The flow kernel's distribution algebra against Monte Carlo: what a timed-out call costs."""

from __future__ import annotations

import math

import numpy as np
import pytest

from twin.flow.queueing import fit_shifted_lognormal, lognormal_cdf, truncated_moments


@pytest.mark.parametrize(
    ("mu", "sigma", "shift", "timeout"),
    [
        (-6.0, 0.8, 0.002, 0.01),  # ordinary: a positive backlog shift
        (-6.0, 0.8, 0.0, 1.0),  # the timeout far out in the tail
        (5.54, 0.55, -104.4, 1.0),  # a fit with mass below zero (found by hypothesis in CI)
        (0.0, 0.3, -0.5, 2.0),  # negative shift, timeout in the body
    ],
)
def test_truncated_moments_match_monte_carlo(mu, sigma, shift, timeout):
    rng = np.random.default_rng(7)
    x = shift + rng.lognormal(mu, sigma, 400_000)
    y = np.minimum(np.maximum(x, 0.0), timeout)
    p_to, mean, var = truncated_moments(mu, sigma, shift, timeout)
    se = y.std() / np.sqrt(y.size)
    assert p_to == pytest.approx(np.mean(x > timeout), abs=4e-3)
    assert abs(mean - y.mean()) <= 5 * se + 1e-12
    assert var == pytest.approx(y.var(), rel=0.02, abs=1e-12)
    assert 0.0 <= mean <= timeout


def test_a_negative_shift_never_makes_a_call_cost_negative_time():
    mu, sigma, shift = fit_shifted_lognormal(182.0, 31229.0, 1.1e7)
    assert shift < 0.0  # mildly skewed: the moment fit needs a negative shift
    for timeout in (0.001, 0.5, 1.0, 30.0, 1e4):
        _, mean, var = truncated_moments(mu, sigma, shift, timeout)
        assert 0.0 <= mean <= timeout and var >= 0.0


@pytest.mark.parametrize("ratio", [1e-17, 1e-20, 1e-23])
def test_a_lognormal_too_narrow_for_a_float_is_a_step_not_a_division_by_zero(ratio):
    # var/mean² above the step threshold (1e-24) but below the float's resolution made
    # log(1 + var/mean²) exactly 0: a social-network episode of Remediation-v0 died of it
    mean = 0.05
    var = ratio * mean * mean
    assert lognormal_cdf(0.049, mean, var) == 0.0
    assert lognormal_cdf(0.051, mean, var) == 1.0
    assert 0.0 <= lognormal_cdf(mean, mean, var) <= 1.0


def _fanout_edges(costs):
    """E rows and the caller's out-edge lists for one parallel caller with these calls:
    (k, sync, mean cost, cost variance) each."""
    from twin import fields as f

    E = np.zeros((f.N_EDGE_FIELDS, len(costs)))
    for e, (k, sync, mean, var) in enumerate(costs):
        E[f.E_K, e], E[f.E_SYNC, e], E[f.E_COST, e], E[f.E_COST_VAR, e] = k, sync, mean, var
        E[f.E_CDF_SQRT_S2, e] = 7.0  # stale scratch from an earlier tick must not leak in
    return E, np.array([0, len(costs)]), np.arange(len(costs))


def _fanout_by_lognormal_cdf(costs):
    """fanout_moments as it was first written: every node asks lognormal_cdf for every call."""
    from twin.flow.service import FANOUT_NODES

    live = [(k, mean, var) for k, sync, mean, var in costs if sync > 0.0 and k > 0.0]
    top = 0.0
    for _, mean, var in live:
        if mean > 0.0:
            s2 = math.log(1.0 + var / (mean * mean))
            top = max(top, mean * math.exp(5.2 * math.sqrt(s2) - 0.5 * s2))
    h = top / FANOUT_NODES
    r1 = r2 = r3 = 0.0
    for i in range(FANOUT_NODES):
        x = (i + 0.5) * h
        prob = 1.0
        for k, mean, var in live:
            cdf = lognormal_cdf(x, mean, var)
            whole = math.floor(k)
            frac = k - whole
            prob *= cdf**whole * (1.0 - frac + frac * cdf)
        r1 += 1.0 - prob
        r2 += 2.0 * x * (1.0 - prob)
        r3 += 3.0 * x * x * (1.0 - prob)
    r1, r2, r3 = r1 * h, r2 * h, r3 * h
    return r1, max(r2 - r1 * r1, 0.0), r3 - 3.0 * r1 * r2 + 2.0 * r1**3


@pytest.mark.parametrize(
    "costs",
    [
        [(1.0, 1.0, 0.02, 1e-4), (1.0, 1.0, 0.05, 4e-4), (2.0, 1.0, 0.01, 2e-5)],
        [(0.3, 1.0, 0.2, 0.01), (1.5, 1.0, 0.08, 1e-3), (1.0, 0.0, 9.0, 1.0)],  # k < 1, async
        [(1.0, 1.0, 0.05, 0.0), (1.0, 1.0, 0.04, 1e-6)],  # a call with no spread: a step
        [(1.0, 1.0, 0.05, 0.05 * 0.05 * 1e-20), (1.0, 1.0, 0.0, 0.0), (1.0, 1.0, 0.03, 1e-4)],
    ],
)
def test_fanout_takes_each_calls_logarithms_once_with_the_same_result(costs):
    from twin.flow.service import fanout_moments

    E, out_ptr, out_idx = _fanout_edges(costs)
    assert fanout_moments(0, E, out_ptr, out_idx) == _fanout_by_lognormal_cdf(costs)  # exactly


def test_fanout_mean_is_the_slowest_calls_mean_by_monte_carlo():
    from twin.flow.service import fanout_moments

    costs = [(1.0, 1.0, 0.02, 1e-4), (1.0, 1.0, 0.03, 4e-4), (2.0, 1.0, 0.015, 5e-5)]
    E, out_ptr, out_idx = _fanout_edges(costs)
    mean, var, _ = fanout_moments(0, E, out_ptr, out_idx)
    rng = np.random.default_rng(11)
    draws = []
    for k, _, m, v in costs:
        s2 = np.log(1.0 + v / m**2)
        draws.append(rng.lognormal(np.log(m) - s2 / 2, np.sqrt(s2), (int(k), 200_000)))
    slowest = np.concatenate(draws).max(axis=0)
    assert abs(mean - slowest.mean()) <= 5 * slowest.std() / np.sqrt(slowest.size) + 1e-4
    assert var == pytest.approx(slowest.var(), rel=0.05)


def test_own_time_quadrature_factors_follow_the_service_time_cv():
    from twin import fields as f
    from twin.flow.queueing import own_time_moments, quadrature_factors
    from twin.flow.service import own_moments

    S = np.zeros((f.N_SERVICE_FIELDS, 1))
    S[f.X_GH_CV] = -1.0  # as a compiled topology starts
    S[f.P_READY], S[f.P_SVC_MEAN], S[f.F_LAT_FACTOR], S[f.X_THROTTLE] = 2.0, 0.08, 1.0, 1.0
    S[f.P_CPU_PER_REQ], S[f.F_CPU_FACTOR], S[f.P_CPU_LIMIT] = 0.06, 1.0, 0.5
    S[f.X_SERVED_INT], S[f.P_SVC_K3] = 9.0, 2.0

    def fresh(cv: float) -> tuple[float, float, float]:
        factors = np.zeros((f.GH_N, 1))
        quadrature_factors(cv, factors, 0, 0)
        work = 0.08 * 0.75 / 1.0 / 0.08  # base × share / cores left / mean own time
        rho = 9.0 * 0.06 / 1.0
        return own_time_moments(0.08, cv, work, rho, 2.0, factors, 0, 0)

    for cv in (1.2, 1.2, 0.4, 0.0, 2.5):  # the same cv again, then new ones (0 included)
        S[f.P_SVC_CV] = cv
        assert own_moments(0, S) == fresh(cv)  # exactly: the factors of this cv, not the last
        assert S[f.X_GH_CV, 0] == cv
    got = own_moments(0, S)
    assert got[1] > 0.0 and got[0] > 0.08  # the quota wait adds to the own time
