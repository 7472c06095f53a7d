"""The flow kernel's distribution algebra against Monte Carlo: what a timed-out call costs."""

from __future__ import annotations

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
