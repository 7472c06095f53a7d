"""Prediction intervals from a series' own recent forecast errors, per horizon, online.

A model's analytic interval assumes the model is right; on real demand it is not, and a
band derived from day-to-day ratios explodes after a weekend → weekday jump. Here the
interval comes from what the forecaster actually got wrong lately, horizon by horizon:

- At every origin the forecaster issues its point forecast at a small grid of horizons
  (1 step … one day, log-spaced); when a target arrives, the error (in the forecaster's
  log space) joins that horizon's ring of the last `window` errors.
- The interval at horizon h adds the ring's lower and upper error quantiles to the point
  forecast (split conformal at ranks (n+1)a and (n+1)(1−a) of held-out errors, read
  between the two nearest order statistics: the k-th of n exchangeable errors leaves
  k/(n+1) below it on average, so the band's expected miss rate is the nominal one. The
  textbook floor/ceil ranks round both tails outwards, which over-covers by up to
  2/(n+1): +0.03 on the 20–60 errors a ring holds in a series' first days, and it also
  ignores every adaptive step smaller than 1/(n+1)).
- Errors are also kept by the level the forecast was at (`categories`, e.g. low / middle /
  high terciles): a Mondrian split (Vovk et al.), so a series that jumps from nothing to a
  plateau does not carry its take-off error (×100) onto forecasts made on the plateau. A
  category with too few errors uses the pooled ring.
- Adaptive conformal inference (Gibbs & Candès, 2021) corrects each ring's tail levels
  online: when a bound is crossed more often than its nominal share its level tightens,
  and loosens when crossed less. The long-run miss rate of each tail then tends to its
  nominal share whatever the series does, so a level shift costs a transient, not a week
  of wrong bands. One step size cannot serve both directions: a miss moves the level by
  γ·(1 − a), a hit by γ·a, so with a = 5% a band narrows 19× slower than it widens and,
  at γ = 0.01, a series whose errors shrink (a wild first day, a model that improves as
  days come) stays over-wide for days (0.98 coverage of a nominal 0.9). So each tail runs
  several ACI levels with step sizes from 0.001 to 0.128 and issues their mixture,
  weighted by how each level's quantile loss has fared lately (DtACI, Gibbs & Candès,
  2024): small steps win while the errors are steady, large ones while they drift. The
  mixture alone keeps no long-run guarantee (on the development series it under-covered,
  NYC taxi 0.83), so a plain ACI on the issued bounds' own misses (`outer_gamma`) shifts
  it. Horizons between grid points interpolate in log-horizon.

Memory is bounded: `window` errors per (category, grid horizon) plus forecasts in flight.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

import numpy as np

MIN_ERRORS = 19
"""Errors a ring needs before its own quantiles are used: a 90% two-sided interval's upper
bound, at rank (n + 1)·0.95 of n errors, lies inside the sample from n = 19."""


GAMMAS = (0.001, 0.002, 0.004, 0.008, 0.016, 0.032, 0.064, 0.128)
"""ACI step sizes mixed per tail (DtACI's grid: each twice the last)."""
OUTER_GAMMA = 0.02
"""Step of the plain ACI that corrects the mixture by its issued bounds' own misses."""
DTACI_INTERVAL = 100
"""Checks over which DtACI's mixture should track the best step size (its I): it sets
the weights' learning rate and how much weight every step size keeps (σ = 1/(2I))."""


def _order_stat(sorted_rows: np.ndarray, size: np.ndarray, rank: np.ndarray) -> np.ndarray:
    """The value at fractional `rank` (1-based, clipped to 1..size) of each row's first
    `size`, linear between the two order statistics around it; `rank` may carry a leading
    axis (one row of ranks per level)."""
    r = np.clip(rank, 1.0, size.astype(np.float64))
    k = np.floor(r).astype(np.int64)
    above = np.minimum(k + 1, size).astype(np.int64)
    rows = np.arange(sorted_rows.shape[0])
    low, high = sorted_rows[rows, k - 1], sorted_rows[rows, above - 1]
    return low + (r - k) * (high - low)


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
    count: np.ndarray  # per ring row: errors it had seen then


class HorizonCalibrator:
    """Rolling per-(category, horizon) error quantiles with adaptive conformal levels."""

    def __init__(
        self,
        grid: np.ndarray,
        window: int,
        level: float = 0.9,
        gamma: float | tuple[float, ...] = GAMMAS,
        categories: int = 1,
        outer_gamma: float = OUTER_GAMMA,
    ) -> None:
        self.grid = np.asarray(grid, dtype=np.int64)
        self.outer_gamma = outer_gamma
        self.window = int(window)
        self.level = level
        self.gamma = gamma
        self.categories = int(categories)
        g = self.grid.size
        rows = (self.categories + 1) * g  # one block per category, then the pooled block
        self.errors = np.full((rows, self.window), np.nan)
        self.count = np.zeros(rows, dtype=np.int64)
        nominal = (1 - level) / 2
        self.alpha_low = np.full(rows, nominal)
        self.alpha_high = np.full(rows, nominal)
        # DtACI: per ring row and tail, one ACI level per step size and the mixture weights
        self._gammas = np.atleast_1d(np.asarray(gamma, dtype=np.float64))
        k = self._gammas.size
        self._experts = np.full((2, rows, k), nominal)  # tail (low, high) × row × step
        self._weights = np.full((2, rows, k), 1.0 / k)
        i = DTACI_INTERVAL
        spread = (1 - nominal) ** 2 * nominal**3 + nominal**2 * (1 - nominal) ** 3
        self._eta = np.sqrt(3 / i) * np.sqrt((np.log(k * i) + 2) / spread)
        self._sigma = 1 / (2 * i)
        self._offset = np.zeros((2, rows))  # plain ACI on the issued bounds' own misses
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
        rows = cats * g + np.arange(g)
        issued = _Issued(np.asarray(point, np.float64), rows, low, high, self.count.copy())
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
        issued = np.isfinite(low) & np.isfinite(high)
        if issued.any():
            then = np.concatenate([[iss.count[r] for (_, iss), r in zip(due, own, strict=True)],
                                   [iss.count[self._pooled + k] for k, iss in due]])  # fmt: skip
            self._adapt(rows[issued], errs[issued], then[issued])
        self.errors[rows, self.count[rows] % self.window] = errs
        self.count[rows] += 1
        miss_low = issued & (errs < low)
        miss_high = issued & (errs > high)
        self.checked[rows] += issued
        self.misses_low[rows] += miss_low
        self.misses_high[rows] += miss_high
        nominal = (1 - self.level) / 2
        step = np.where(issued, self.outer_gamma, 0.0)
        self._offset[0, rows] += step * (nominal - miss_low)
        self._offset[1, rows] += step * (nominal - miss_high)
        mix = (self._weights * self._experts).sum(axis=-1) + self._offset
        self.alpha_low[rows], self.alpha_high[rows] = mix[0, rows], mix[1, rows]
        self._cache.clear()
        # a sort costs n·log(n) per row: new errors join the sorted copy every 1/64 of what
        # a row keeps (so the quantiles lag by at most that many errors)
        self._unsorted += 1
        if self._unsorted >= max(1, min(int(self.count.max()), self.window) // 64):
            self._sorted, self._unsorted = None, 0

    def _adapt(self, rows: np.ndarray, errs: np.ndarray, then: np.ndarray) -> None:
        """One DtACI step per (row, tail) from where each new error fell in its ring.

        β, the error's realised tail level (the share of the ring beyond it, mid-rank), says
        at once which ACI levels its bound would have missed (β < level) and each level's
        quantile (pinball) loss, without keeping one issued bound per step size. The ring is
        read as it was when the forecast was issued (`then`: its error count): errors that
        arrived since, often from the same burst, would hide the miss.
        """
        nominal = (1 - self.level) / 2
        count = self.count[rows]
        age = (count[:, None] - 1 - np.arange(self.window)[None, :]) % self.window
        kept = np.minimum(count, self.window)[:, None]
        was = (age >= (count - then)[:, None]) & (age < kept)
        ring = np.where(was, self.errors[rows], np.nan)
        n = was.sum(axis=1)
        below = (ring < errs[:, None]).sum(axis=1)
        above = (ring > errs[:, None]).sum(axis=1)
        beta = np.stack([below, above]) + 0.5 * (n - below - above)
        beta = (beta + 0.5) / (n + 1)  # (tail, row)
        theta = self._experts[:, rows]  # (tail, row, step)
        diff = beta[..., None] - theta
        loss = nominal * diff - np.minimum(diff, 0.0)
        w = self._weights[:, rows] * np.exp(-self._eta * (loss - loss.min(axis=-1, keepdims=True)))
        w /= w.sum(axis=-1, keepdims=True)
        k = self._gammas.size
        self._weights[:, rows] = (1 - self._sigma) * w + self._sigma / k
        theta += self._gammas * (nominal - (diff < 0))
        self._experts[:, rows] = theta

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
            low[:, ready] = _order_stat(errs, size, (size + 1) * a_low)
            high[:, ready] = _order_stat(errs, size, (size + 1) * (1.0 - a_high))
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
