"""The level-corrected weekly naive and split-conformal intervals; the model registry."""

from __future__ import annotations

import numpy as np
import pytest
from test_forecasting import STEP, synthetic

from detectors.forecast.backtest import coverage, smape
from detectors.forecast.conformal import Conformal
from detectors.forecast.level_naive import LevelNaive
from detectors.forecast.models import ForecastError, HoltWinters, Mstl, SeasonalNaive
from detectors.forecast.registry import MODELS, make_forecaster


def _shifted(weeks: int = 4, drop: float = 0.7, seed: int = 1):
    """The synthetic shape whose level falls by `drop` from the last week on for good."""
    t, y = synthetic(weeks=weeks, seed=seed, noise=0.03)
    y = y.copy()
    y[-7 * 48 - 48 :] *= drop  # the day before the last week already shows the new level
    return t, y


def test_level_naive_follows_a_lasting_level_shift_the_plain_naive_misses():
    t, y = _shifted()
    origin = y.size - 6 * 48  # a day into the new level; last week's copy is still high
    naive = SeasonalNaive("weekly").fit(t[:origin], y[:origin]).predict(48)
    level = LevelNaive().fit(t[:origin], y[:origin]).predict(48)
    actual = y[origin : origin + 48]
    assert smape(actual, level.mean) < 0.5 * smape(actual, naive.mean)


def test_level_naive_learns_no_correction_on_a_stationary_series():
    # white noise around a fixed weekly shape: yesterday's surprise says nothing about today
    t, y = synthetic(weeks=4, seed=3, noise=0.05)
    model = LevelNaive().fit(t, y)
    assert model.a_ <= 0.3
    fc = model.predict(48)
    assert np.all(fc.lower <= fc.mean) and np.all(fc.mean <= fc.upper)


def test_level_naive_uses_only_the_past():
    t, y = _shifted()
    origin = y.size - 3 * 48
    a = LevelNaive().fit(t[:origin], y[:origin]).predict(48).mean
    y_future_changed = y.copy()
    y_future_changed[origin:] *= 5.0
    b = LevelNaive().fit(t[:origin], y_future_changed[:origin]).predict(48).mean
    np.testing.assert_array_equal(a, b)


def test_level_naive_errors():
    with pytest.raises(ForecastError, match="tune_days must be >= 1"):
        LevelNaive(tune_days=0)
    t, y = synthetic(weeks=3)
    with pytest.raises(ForecastError, match="longer than a week"):
        LevelNaive().fit(t, y).predict(8 * 48)


def _coverage_over_origins(make, weeks: int = 4, seed: int = 4) -> float:
    t, y = synthetic(weeks=weeks, seed=seed, noise=0.08)
    out = []
    for origin in range(3 * 7 * 48, y.size - 48 + 1, 72):
        fc = make().fit(t[:origin], y[:origin]).predict(48, level=0.9)
        out.append(coverage(y[origin : origin + 48], fc.lower, fc.upper))
    return float(np.mean(out))


def test_conformal_lifts_mstl_coverage_toward_the_nominal_level():
    raw = _coverage_over_origins(Mstl)
    calibrated = _coverage_over_origins(lambda: Conformal(Mstl))
    assert raw < 0.8  # MSTL's own interval ignores the seasonal estimate's error
    assert calibrated >= 0.8 and calibrated > raw


def test_conformal_keeps_the_point_forecast_and_orders_levels():
    t, y = synthetic(weeks=3)
    inner = HoltWinters().fit(t, y).predict(24, level=0.9)
    model = Conformal(HoltWinters).fit(t, y)
    wide, narrow = model.predict(24, level=0.95), model.predict(24, level=0.5)
    np.testing.assert_allclose(wide.mean, inner.mean)
    assert np.all(wide.upper >= narrow.upper) and np.all(wide.lower <= narrow.lower)
    assert model.name == "holt-winters-conformal"


def test_conformal_errors():
    with pytest.raises(ForecastError, match="holdout_days must be >= 1"):
        Conformal(HoltWinters, holdout_days=0)
    with pytest.raises(ForecastError, match="before fit"):
        Conformal(HoltWinters).predict(3)
    t = np.arange(60) * STEP
    with pytest.raises(ForecastError, match="holdout alone"):
        Conformal(HoltWinters).fit(t, np.ones(60))


def test_registry_builds_every_model_and_the_cli_lists_them_all():
    from firebreak.commands.forecast import MODEL_NAMES

    assert tuple(MODELS) == MODEL_NAMES
    t, y = synthetic(weeks=3)
    for name in MODELS:
        fc = make_forecaster(name).fit(t, y).predict(12)
        assert fc.mean.shape == (12,) and np.all(np.isfinite(fc.upper)), name
    with pytest.raises(ForecastError, match="unknown model 'arima'"):
        make_forecaster("arima")
