"""Prediction intervals from a series' own recent forecast errors, per horizon, online.

A model's analytic interval assumes the model is right; on real demand it is not, and a
band derived from day-to-day ratios explodes after a weekend → weekday jump. Here the
interval comes from what the forecaster actually got wrong lately, horizon by horizon:

- At every origin the forecaster issues its point forecast at a small grid of horizons
  (1 step … one day, log-spaced); when a target arrives, the error (in the forecaster's
  log space) joins that horizon's ring of the last `window` errors.
- The interval at horizon h adds the ring's lower and upper error quantiles to the point
  forecast (split conformal: ranks floor((n+1)a) and ceil((n+1)(1−a)) of held-out errors).
- Errors are also kept by the level the forecast was at (`categories`, e.g. low / middle /
  high terciles): a Mondrian split (Vovk et al.), so a series that jumps from nothing to a
  plateau does not carry its take-off error (×100) onto forecasts made on the plateau. A
  category with too few errors uses the pooled ring.
- Adaptive conformal inference (Gibbs & Candès, 2021) corrects each ring's tail levels
  online: when an issued bound is crossed more often than its nominal share its level
  tightens, and loosens when crossed less. The long-run miss rate of each tail then tends
  to its nominal share whatever the series does, so a level shift costs a transient, not
  a week of wrong bands. Horizons between grid points interpolate in log-horizon.

Memory is bounded: `window` errors per (category, grid horizon) plus forecasts in flight.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

import numpy as np

MIN_ERRORS = 19
"""Errors a ring needs before its own quantiles are used: split conformal's bound for a
90% two-sided interval, the ceil((n + 1)·0.95)-th of n errors, is finite from n = 19."""


def _order_stat(sorted_rows: np.ndarray, size: np.ndarray, rank: np.ndarray) -> np.ndarray:
    """The rank-th smallest (1-based, clipped to 1..size) of each row's first `size`;
    `rank` may carry a leading axis (one row of ranks per level)."""
    k = np.clip(rank, 1, size).astype(np.int64) - 1
    return sorted_rows[np.arange(sorted_rows.shape[0]), k]


def horizon_grid(max_steps: int, points: int = 12) -> np.ndarray:
    """Log-spaced horizons 1 … max_steps (whole steps, distinct, increasing)."""
    grid = np.unique(np.round(np.geomspace(1, max(max_steps, 1), points)).astype(np.int64))
    return grid[grid >= 1]


@dataclass
class _Issued:
    """A forecast in flight: point values (log space), category rows and issued bounds."""

    point: np.ndarray
    rows: np.ndarray  # per grid horizon: the (category, horizon) ring it belongs to
    lower: np.ndarray  # per ring row: the bound issued then (NaN: none yet)
    upper: np.ndarray


class HorizonCalibrator:
    """Rolling per-(category, horizon) error quantiles with adaptive conformal levels."""

    def __init__(
        self,
        grid: np.ndarray,
        window: int,
        level: float = 0.9,
        gamma: float = 0.01,
        categories: int = 1,
    ) -> None:
        self.grid = np.asarray(grid, dtype=np.int64)
        self.window = int(window)
        self.level = level
        self.gamma = gamma
        self.categories = int(categories)
        g = self.grid.size
        rows = (self.categories + 1) * g  # one block per category, then the pooled block
        self.errors = np.full((rows, self.window), np.nan)
        self.count = np.zeros(rows, dtype=np.int64)
        self.alpha_low = np.full(rows, (1 - level) / 2)
        self.alpha_high = np.full(rows, (1 - level) / 2)
        self.misses_low = np.zeros(rows, dtype=np.int64)
        self.misses_high = np.zeros(rows, dtype=np.int64)
        self.checked = np.zeros(rows, dtype=np.int64)
        self._pooled = self.categories * g
        self._due: dict[int, list[tuple[int, _Issued]]] = defaultdict(list)
        self._sorted: np.ndarray | None = None  # errors sorted per row
        self._sorted_n = np.zeros(rows, dtype=np.int64)  # errors per row in that copy
        self._unsorted = 0  # errors added since the last sort
        self._cache: dict[tuple, tuple[np.ndarray, np.ndarray]] = {}  # levels -> quantiles

    # -- bookkeeping ---------------------------------------------------------------------
    def issue(self, origin: int, point: np.ndarray, cats: np.ndarray | None = None) -> None:
        """Remember a forecast made after observation `origin - 1` for targets origin-1+h;
        `cats`: the level category of each grid horizon's point forecast (default 0)."""
        g = self.grid.size
        cats = np.zeros(g, np.int64) if cats is None else np.asarray(cats, np.int64)
        low, high = self.quantiles(self.level)
        issued = _Issued(np.asarray(point, np.float64), cats * g + np.arange(g), low, high)
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
        # each forecast in `due` is at a different horizon, so every ring row is distinct
        ks = np.fromiter((k for k, _ in due), np.int64, len(due))
        err = value - np.fromiter((iss.point[k] for k, iss in due), np.float64, len(due))
        own = np.fromiter((iss.rows[k] for k, iss in due), np.int64, len(due))
        rows = np.concatenate([own, self._pooled + ks])
        errs = np.concatenate([err, err])
        low = np.concatenate([[iss.lower[r] for (_, iss), r in zip(due, own, strict=True)],
                              [iss.lower[self._pooled + k] for k, iss in due]])  # fmt: skip
        high = np.concatenate([[iss.upper[r] for (_, iss), r in zip(due, own, strict=True)],
                               [iss.upper[self._pooled + k] for k, iss in due]])  # fmt: skip
        self.errors[rows, self.count[rows] % self.window] = errs
        self.count[rows] += 1
        issued = np.isfinite(low) & np.isfinite(high)
        miss_low = issued & (errs < low)
        miss_high = issued & (errs > high)
        self.checked[rows] += issued
        self.misses_low[rows] += miss_low
        self.misses_high[rows] += miss_high
        nominal = (1 - self.level) / 2
        self.alpha_low[rows] += np.where(issued, self.gamma * (nominal - miss_low), 0.0)
        self.alpha_high[rows] += np.where(issued, self.gamma * (nominal - miss_high), 0.0)
        self._cache.clear()
        # a sort costs n·log(n) per row: new errors join the sorted copy every 1/64 of what
        # a row keeps (so the quantiles lag by at most that many errors)
        self._unsorted += 1
        if self._unsorted >= max(1, min(int(self.count.max()), self.window) // 64):
            self._sorted, self._unsorted = None, 0

    # -- intervals -----------------------------------------------------------------------
    def quantiles(self, level: float) -> tuple[np.ndarray, np.ndarray]:
        """(lower, upper) error quantiles per ring row; NaN where too few errors."""
        low, high = self.quantile_table((level,))
        return low[0], high[0]

    def quantile_table(self, levels) -> tuple[np.ndarray, np.ndarray]:
        """(lower, upper) error quantiles, one row per level, one column per ring row.

        Each tail's level is the adaptive one shifted by (level − calibrated level) / 2, so
        other levels inherit the same correction.
        """
        key = tuple(float(v) for v in levels)
        cached = self._cache.get(key)
        if cached is not None:
            return cached[0].copy(), cached[1].copy()
        shift = (self.level - np.asarray(key))[:, None] / 2
        if self._sorted is None:
            n = np.minimum(self.count, self.window)
            filled = int(n.max()) if n.size else 0
            # unused slots are NaN and sort last
            self._sorted, self._sorted_n = np.sort(self.errors[:, :filled], axis=1), n
        n = self._sorted_n
        ready = n >= MIN_ERRORS
        low = np.full((len(key), n.size), np.nan)
        high = np.full((len(key), n.size), np.nan)
        if ready.any():
            errs = self._sorted[ready]
            size = n[ready][None, :]
            a_low = np.clip(self.alpha_low[ready][None, :] + shift, 0.0, 0.5)
            a_high = np.clip(self.alpha_high[ready][None, :] + shift, 0.0, 0.5)
            low[:, ready] = _order_stat(errs, size, np.floor((size + 1) * a_low))
            high[:, ready] = _order_stat(errs, size, np.ceil((size + 1) * (1.0 - a_high)))
        self._cache[key] = (low, high)
        return low.copy(), high.copy()

    def bands(
        self,
        horizon: int,
        levels,
        fallback: HorizonCalibrator | None = None,
        cats: np.ndarray | None = None,
    ) -> list[tuple[np.ndarray, np.ndarray]] | None:
        """Per level, error quantiles for horizons 1..horizon, or None while nothing is known.

        `cats` gives each horizon's level category (default: pooled). A ring with too few
        errors takes the pooled one's, then `fallback`'s (e.g. the errors of a cruder
        forecaster that ran before this one could), then the nearest shorter horizon's
        (errors grow with the horizon: the narrower choice, which ACI widens).
        """
        g = self.grid.size
        low, high = self.quantile_table(levels)
        low = low.reshape(len(low), self.categories + 1, g)
        high = high.reshape(len(high), self.categories + 1, g)
        pooled_low, pooled_high = low[:, -1], high[:, -1]
        gap = np.isnan(pooled_low[0])
        if fallback is not None and gap.any():
            f_low, f_high = fallback.quantile_table(levels)
            f_low = f_low.reshape(len(f_low), fallback.categories + 1, g)[:, -1]
            f_high = f_high.reshape(len(f_high), fallback.categories + 1, g)[:, -1]
            pooled_low[:, gap], pooled_high[:, gap] = f_low[:, gap], f_high[:, gap]
        for k in range(1, g):
            if np.isnan(pooled_low[0, k]):
                pooled_low[:, k], pooled_high[:, k] = pooled_low[:, k - 1], pooled_high[:, k - 1]
        ok = np.isfinite(pooled_low[0])
        if not ok.any():
            return None
        for c in range(self.categories):  # a thin category leans on the pooled ring
            thin = np.isnan(low[0, c])
            low[:, c, thin], high[:, c, thin] = pooled_low[:, thin], pooled_high[:, thin]
        x = np.log(self.grid[ok].astype(np.float64))
        h = np.log(np.arange(1, horizon + 1, dtype=np.float64))
        pick = np.full(horizon, self.categories) if cats is None else np.asarray(cats)
        out = []
        for lo, hi in zip(low, high, strict=True):
            band_lo = np.stack([np.interp(h, x, row[ok]) for row in lo])  # (categories+1, h)
            band_hi = np.stack([np.interp(h, x, row[ok]) for row in hi])
            cols = np.arange(horizon)
            out.append((band_lo[pick, cols], band_hi[pick, cols]))
        return out

    def observed_coverage(self) -> np.ndarray:
        """Share of resolved forecasts inside their issued pooled interval, per horizon."""
        rows = slice(self._pooled, None)
        inside = self.checked[rows] - self.misses_low[rows] - self.misses_high[rows]
        return np.divide(
            inside,
            self.checked[rows],
            out=np.full(self.grid.size, np.nan),
            where=self.checked[rows] > 0,
        )

    def pooled_count(self) -> np.ndarray:
        """Errors seen per grid horizon (all categories)."""
        return self.count[self._pooled :]
