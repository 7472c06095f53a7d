"""Weekly seasonal naive with a damped level correction, its damping learned from history.

Demand series drift between weeks (a cold week, a holiday week, growth): last week's shape
is right, its level is not. The forecast is last week's same slot times 1 + a·(r − 1), where
r is how the last day came in against its own weekly-naive forecast and `a` in [0, 1] damps
that correction. `a` is chosen in `fit` from the history alone — the value that would have
scored best (sMAPE) on the last `tune_days` days before the origin — so no future data
leaks into it. a = 0 is the plain weekly naive; a = 1 carries yesterday's surprise in full.

The interval comes from the same tuning days: the empirical quantiles of actual / forecast.
"""

from __future__ import annotations

import numpy as np

from detectors.forecast.models import DAY_S, WEEK_S, ForecastError, _Base, period_steps

DAMPING_GRID = np.round(np.linspace(0.0, 1.0, 11), 2)


def _smape_rows(actual: np.ndarray, forecast: np.ndarray) -> np.ndarray:
    """Row-wise sMAPE in percent; zero where both are zero."""
    denom = np.abs(actual) + np.abs(forecast)
    ratio = np.divide(
        2.0 * np.abs(actual - forecast), denom, out=np.zeros_like(denom), where=denom > 0
    )
    return 100.0 * ratio.mean(axis=-1)


class LevelNaive(_Base):
    """Weekly naive × a learned, damped level correction (see the module docstring)."""

    min_periods = 2

    def __init__(self, tune_days: int = 14) -> None:
        super().__init__()
        if tune_days < 1:
            raise ForecastError(f"tune_days must be >= 1, got {tune_days}")
        self.tune_days = tune_days
        self.name = "seasonal-naive-level"

    def _season(self, step: float) -> int:
        return period_steps(WEEK_S, step)

    def _forecast_at(self, origin: int, horizon: int, a: np.ndarray) -> np.ndarray:
        """Forecasts from `origin` for each damping in `a` (rows), from values before it."""
        y, w, d = self.values_, self.w_, self.d_
        base = y[origin - w : origin - w + horizon]
        past = y[origin - d - w : origin - w]
        r = y[origin - d : origin].sum() / max(past.sum(), 1e-9)
        return base[None, :] * (1.0 + a[:, None] * (r - 1.0))

    def _fit_baseline(self, y: np.ndarray, step: float) -> None:
        self.w_ = period_steps(WEEK_S, step)
        self.d_ = period_steps(DAY_S, step)
        first = self.w_ + self.d_
        origins = [
            o
            for o in range(y.size - self.tune_days * self.d_, y.size - self.d_ + 1, self.d_)
            if o >= first
        ]
        self.a_ = 0.0
        self.ratios_ = np.array([1.0])
        if not origins:
            return
        errors = np.zeros(DAMPING_GRID.size)
        for o in origins:
            errors += _smape_rows(y[o : o + self.d_], self._forecast_at(o, self.d_, DAMPING_GRID))
        best = int(np.argmin(errors))  # ties go to the smaller damping: the plain naive first
        self.a_ = float(DAMPING_GRID[best])
        a = np.array([self.a_])
        ratios = [
            y[o : o + self.d_] / np.maximum(self._forecast_at(o, self.d_, a)[0], 1e-9)
            for o in origins
        ]
        self.ratios_ = np.concatenate(ratios)

    def _predict_baseline(
        self, horizon: int, level: float
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        n, w = self.values_.size, self.w_
        if horizon > w:
            raise ForecastError(f"{self.name}: horizon {horizon} is longer than a week ({w})")
        mean = self._forecast_at(n, horizon, np.array([self.a_]))[0]
        lo, hi = np.quantile(self.ratios_, [(1 - level) / 2, (1 + level) / 2])
        return mean, np.maximum(mean * lo, 0.0), mean * max(hi, 1.0)
