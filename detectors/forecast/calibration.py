"""Prediction intervals from a series' own recent forecast errors, per horizon, online.

A model's analytic interval assumes the model is right; on real demand it is not, and a
band derived from day-to-day ratios explodes after a weekend → weekday jump. Here the
interval comes from what the forecaster actually got wrong lately, horizon by horizon:

- At every `stride`-th observation (an *origin*) the forecaster issues its point forecast at
  a small grid of horizons (1 step … one day, log-spaced); when a target arrives, the error
  (in the forecaster's log space) joins that horizon's ring of the last `window` errors.
- The interval at horizon h adds the ring's lower and upper error quantiles to the point
  forecast (split-conformal style: quantiles of held-out errors, not of model fit).
- Adaptive conformal inference (Gibbs & Candès, 2021) corrects each tail's level online:
  when an issued bound is crossed more often than its nominal share, its level tightens, and
  loosens when it is crossed less. The long-run miss rate of each tail then tends to its
  nominal share whatever the series does, so a level shift costs a transient, not a week of
  wrong bands. Horizons between grid points interpolate in log-horizon.

Memory is bounded: `window` errors per grid horizon plus the forecasts still in flight.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

import numpy as np

MIN_ERRORS = 19
"""Errors a horizon needs before its own quantiles are used: split conformal's bound for a
90% two-sided interval, the ceil((n + 1)·0.95)-th of n errors, is finite from n = 19."""


def _order_stat(sorted_rows: np.ndarray, size: np.ndarray, rank: np.ndarray) -> np.ndarray:
    """Per row, the rank-th smallest (1-based, clipped to 1..size) of its first `size`."""
    k = np.clip(rank, 1, size).astype(np.int64) - 1
    return sorted_rows[np.arange(sorted_rows.shape[0]), k]


def horizon_grid(max_steps: int, points: int = 12) -> np.ndarray:
    """Log-spaced horizons 1 … max_steps (whole steps, distinct, increasing)."""
    grid = np.unique(np.round(np.geomspace(1, max(max_steps, 1), points)).astype(np.int64))
    return grid[grid >= 1]


@dataclass
class _Issued:
    """A forecast in flight: its point values (log space) and the error quantiles it used."""

    point: np.ndarray
    lower: np.ndarray
    upper: np.ndarray


class HorizonCalibrator:
    """Rolling per-horizon error quantiles with adaptive conformal levels (see module doc)."""

    def __init__(
        self, grid: np.ndarray, window: int, level: float = 0.9, gamma: float = 0.01
    ) -> None:
        self.grid = np.asarray(grid, dtype=np.int64)
        self.window = int(window)
        self.level = level
        self.gamma = gamma
        g = self.grid.size
        self.errors = np.full((g, self.window), np.nan)
        self.count = np.zeros(g, dtype=np.int64)
        self.alpha_low = np.full(g, (1 - level) / 2)
        self.alpha_high = np.full(g, (1 - level) / 2)
        self.misses_low = np.zeros(g, dtype=np.int64)
        self.misses_high = np.zeros(g, dtype=np.int64)
        self.checked = np.zeros(g, dtype=np.int64)
        self._due: dict[int, list[tuple[int, _Issued]]] = defaultdict(list)

    # -- bookkeeping ---------------------------------------------------------------------
    def issue(self, origin: int, point: np.ndarray) -> None:
        """Remember a forecast made after observation `origin - 1` for targets origin-1+h."""
        low, high = self.quantiles(self.level)
        issued = _Issued(np.asarray(point, dtype=np.float64), low, high)
        for k, h in enumerate(self.grid):
            self._due[origin - 1 + int(h)].append((k, issued))

    def observe(self, index: int, value: float, score: bool = True) -> None:
        """The observation at `index` (log space) resolves the forecasts that targeted it.

        `score=False` (e.g. inside a declared event, whose lift has its own uncertainty)
        drops them without learning from them.
        """
        due = self._due.pop(index, None)
        if not due or not score:
            return
        for k, issued in due:
            err = value - issued.point[k]
            self.errors[k, self.count[k] % self.window] = err
            self.count[k] += 1
            if not (np.isfinite(issued.lower[k]) and np.isfinite(issued.upper[k])):
                continue
            miss_low = err < issued.lower[k]
            miss_high = err > issued.upper[k]
            self.checked[k] += 1
            self.misses_low[k] += miss_low
            self.misses_high[k] += miss_high
            nominal = (1 - self.level) / 2
            self.alpha_low[k] += self.gamma * (nominal - miss_low)
            self.alpha_high[k] += self.gamma * (nominal - miss_high)

    # -- intervals -----------------------------------------------------------------------
    def quantiles(self, level: float) -> tuple[np.ndarray, np.ndarray]:
        """(lower, upper) error quantiles per grid horizon; NaN where nothing is known yet.

        Each tail's level is the adaptive one shifted by (level − calibrated level) / 2, so
        other levels inherit the same correction.
        """
        shift = (self.level - level) / 2
        n = np.minimum(self.count, self.window)
        ready = n >= MIN_ERRORS
        low = np.full(self.grid.size, np.nan)
        high = np.full(self.grid.size, np.nan)
        if ready.any():
            errs = np.sort(self.errors[ready], axis=1)  # unused slots are NaN: sorted last
            size = n[ready]
            a_low = np.clip(self.alpha_low[ready] + shift, 0.0, 0.5)
            a_high = np.clip(self.alpha_high[ready] + shift, 0.0, 0.5)
            # split conformal's finite-sample ranks: floor((n+1)a) and ceil((n+1)(1-a))
            low[ready] = _order_stat(errs, size, np.floor((size + 1) * a_low))
            high[ready] = _order_stat(errs, size, np.ceil((size + 1) * (1.0 - a_high)))
        return low, high

    def bands(
        self, horizon: int, level: float, fallback: HorizonCalibrator | None = None
    ) -> tuple[np.ndarray, np.ndarray] | None:
        """Error quantiles for horizons 1..horizon (log-horizon interpolation), or None.

        A grid horizon without enough errors takes `fallback`'s (e.g. the errors of a
        cruder forecaster that ran before this one could), else the nearest shorter
        horizon's (errors grow with the horizon: the narrower choice, which ACI widens).
        """
        low, high = self.quantiles(level)
        if fallback is not None:
            f_low, f_high = fallback.quantiles(level)
            gap = np.isnan(low)
            low[gap], high[gap] = f_low[gap], f_high[gap]
        for k in range(1, self.grid.size):
            if np.isnan(low[k]):
                low[k], high[k] = low[k - 1], high[k - 1]
        ok = np.isfinite(low)
        if not ok.any():
            return None
        x = np.log(self.grid[ok].astype(np.float64))
        h = np.log(np.arange(1, horizon + 1, dtype=np.float64))
        return np.interp(h, x, low[ok]), np.interp(h, x, high[ok])

    def observed_coverage(self) -> np.ndarray:
        """Share of resolved forecasts inside their issued interval, per grid horizon."""
        inside = self.checked - self.misses_low - self.misses_high
        return np.divide(
            inside, self.checked, out=np.full(self.grid.size, np.nan), where=self.checked > 0
        )
