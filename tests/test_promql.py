"""rate() and histogram_quantile() as Prometheus computes them, on hand-made samples."""

from __future__ import annotations

import numpy as np
import pytest

from twin.telemetry.observe import promql


def _rate(times, values, present=None, at=(60.0,), window=60.0):
    times = np.asarray(times, dtype=float)[:, None]
    values = np.asarray(values, dtype=float)[:, None, None]
    present = np.ones(times.shape, bool) if present is None else np.asarray(present)[:, None]
    corrected = promql.reset_corrected(values, present)
    out = promql.rate(times, values, corrected, present, np.asarray(at, float), window)
    return out[:, 0, 0]


def test_rate_of_a_steady_counter_is_its_slope() -> None:
    # scrapes every 15 s at a 3 s phase: 4 samples in (0, 60], extrapolated to the edges
    times = [3, 18, 33, 48, 63]
    values = [100 + 2 * t for t in times]
    assert _rate(times, values) == pytest.approx([2.0])


def test_rate_extrapolates_by_at_most_half_an_interval() -> None:
    """Samples at 20, 35, 50 in (0, 60]: the gap to the window's start (20 s) is past 1.1
    intervals, so Prometheus extrapolates only half an interval there; the end (10 s) is
    extrapolated fully: (30 + 7.5 + 10) / 30 × increase / 60."""
    times, values = [20, 35, 50], [0 + 40, 30 + 40, 60 + 40]
    assert _rate(times, values) == pytest.approx([60 * (30 + 7.5 + 10) / 30 / 60])


def test_rate_survives_a_counter_reset() -> None:
    times = [3, 18, 33, 48]
    values = [1000, 1030, 10, 40]  # restarted between 18 and 33 (10 counted since)
    # increase: 30 + 10 + 30 = 70 over 45 s sampled, extrapolated to the window
    got = _rate(times, values)[0]
    assert got == pytest.approx(70 / 45 * (45 + 3 + 12) / 60)


def test_rate_needs_two_samples_and_skips_missing_scrapes() -> None:
    times = [3, 18, 33, 48]
    values = [100, 115, 130, 145]
    assert np.isnan(_rate(times, values, present=[False, False, False, True])[0])
    with_gap = _rate(times, values, present=[True, False, True, True])[0]
    assert with_gap == pytest.approx(1.0)


def test_histogram_quantile_interpolates_inside_the_bucket() -> None:
    upper = np.array([0.1, 0.5, 1.0])
    buckets = np.array([10.0, 60.0, 90.0, 100.0])  # cumulative, the last one +Inf
    q = lambda x: float(promql.histogram_quantile(x, buckets, upper))  # noqa: E731
    assert q(0.5) == pytest.approx(0.1 + 0.4 * (50 - 10) / 50)
    assert q(0.05) == pytest.approx(0.1 * 5 / 10)  # first bucket: from zero
    assert q(0.95) == pytest.approx(1.0)  # in +Inf: the largest finite bound
    assert np.isnan(promql.histogram_quantile(0.5, np.zeros(4), upper))
