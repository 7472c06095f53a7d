"""The two PromQL functions production dashboards are built on, over scraped samples:
`rate(counter[w])` with Prometheus's extrapolation and counter-reset handling, and
`histogram_quantile(q, ...)` with its linear interpolation inside a bucket.

Samples come in scrape rounds: row k holds every pod's k-th scrape (time, values), with a
mask for scrapes that went missing. A pod's scrape times increase along k (the jitter is
below half the interval), which lets every window of every pod be found with one search.
"""

from __future__ import annotations

import numpy as np


def _prev_present(present: np.ndarray) -> np.ndarray:
    """Per (k, pod): the last k' ≤ k whose scrape is present, -1 if none."""
    k = np.arange(present.shape[0])[:, None]
    return np.maximum.accumulate(np.where(present, k, -1), axis=0)


def _next_present(present: np.ndarray) -> np.ndarray:
    """Per (k, pod): the first k' ≥ k whose scrape is present, K if none."""
    n = present.shape[0]
    k = np.arange(n)[:, None]
    flipped = np.where(present, k, n)[::-1]
    return np.minimum.accumulate(flipped, axis=0)[::-1]


def reset_corrected(values: np.ndarray, present: np.ndarray) -> np.ndarray:
    """Counters (K × pods × series) with every reset undone the way `rate` does: after a
    drop, the value before it is added to everything that follows."""
    prev = _prev_present(present)
    before = np.vstack([np.full((1, present.shape[1]), -1), prev[:-1]])
    cols = np.arange(present.shape[1])[None, :]
    last = np.where((before >= 0)[..., None], values[np.maximum(before, 0), cols], 0.0)
    drop = present[..., None] & (before >= 0)[..., None] & (values < last)
    return values + np.cumsum(np.where(drop, last, 0.0), axis=0)


def window_bounds(
    times: np.ndarray, present: np.ndarray, at: np.ndarray, window: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(first, last, ok, any): per (step, pod) the first and last present scrape inside
    (at - window, at], whether there are at least two, and whether there is one."""
    n_k, n_p = times.shape
    big = float(np.nanmax(np.abs(times))) + float(np.max(np.abs(at))) + window + 1.0
    offset = np.arange(n_p) * 2.0 * big
    flat = (times + offset[None, :]).T.reshape(-1)  # pod-major, increasing
    base = (np.arange(n_p) * n_k)[None, :]
    upto = np.searchsorted(flat, at[:, None] + offset[None, :], side="right") - base
    after = np.searchsorted(flat, at[:, None] - window + offset[None, :], side="right") - base
    prev, nxt = _prev_present(present), _next_present(present)
    cols = np.arange(n_p)[None, :]
    last = np.where(upto > 0, prev[np.clip(upto - 1, 0, n_k - 1), cols], -1)
    first = np.where(after < n_k, nxt[np.clip(after, 0, n_k - 1), cols], n_k)
    ok = (last >= 0) & (first < n_k) & (first < last)
    one = (last >= 0) & (first < n_k) & (first <= last)
    return np.clip(first, 0, n_k - 1), np.clip(last, 0, n_k - 1), ok, one


def rate(
    times: np.ndarray,
    raw: np.ndarray,
    corrected: np.ndarray,
    present: np.ndarray,
    at: np.ndarray,
    window: float,
) -> np.ndarray:
    """rate(counter[window]) at each time in `at`: steps × pods × series, NaN where a
    window holds fewer than two scrapes. Extrapolates to the window's edges as Prometheus
    does (up to half a scrape interval past the samples, never below zero)."""
    first, last, ok, _ = window_bounds(times, present, at, window)
    cols = np.arange(times.shape[1])[None, :]
    t_first, t_last = times[first, cols], times[last, cols]
    v_first, v_last = corrected[first, cols], corrected[last, cols]
    raw_first = raw[first, cols]
    pcount = np.cumsum(present, axis=0)
    n = pcount[last, cols] - pcount[first, cols] + 1
    sampled = np.maximum(t_last - t_first, 1e-9)
    average = sampled / np.maximum(n - 1, 1)
    to_start = (t_first - (at[:, None] - window))[..., None]
    to_end = (at[:, None] - t_last)[..., None]
    result = v_last - v_first
    with np.errstate(divide="ignore", invalid="ignore"):
        to_zero = sampled[..., None] * np.where(result > 0, raw_first / result, np.inf)
    to_start = np.where((result > 0) & (raw_first >= 0) & (to_zero < to_start), to_zero, to_start)
    threshold = (1.1 * average)[..., None]
    half = (average / 2.0)[..., None]
    span = sampled[..., None] + np.where(to_start < threshold, to_start, half)
    span = span + np.where(to_end < threshold, to_end, half)
    out = result * span / sampled[..., None] / window
    return np.where(ok[..., None], out, np.nan)


def histogram_quantile(q: float, buckets: np.ndarray, upper: np.ndarray) -> np.ndarray:
    """histogram_quantile(q, ...) over cumulative bucket rates (..., B) whose last bucket
    is +Inf; `upper` holds the B-1 finite upper bounds. NaN where nothing was counted."""
    total = buckets[..., -1]
    rank = q * total
    index = np.argmax(buckets >= rank[..., None], axis=-1)
    finite = len(upper)
    lower_bound = np.where(index > 0, upper[np.clip(index - 1, 0, finite - 1)], 0.0)
    upper_bound = upper[np.clip(index, 0, finite - 1)]
    below = np.take_along_axis(
        np.concatenate([np.zeros_like(buckets[..., :1]), buckets], axis=-1),
        index[..., None],
        axis=-1,
    )[..., 0]
    inside = np.take_along_axis(buckets, index[..., None], axis=-1)[..., 0] - below
    with np.errstate(divide="ignore", invalid="ignore"):
        share = np.where(inside > 0, (rank - below) / inside, 0.0)
    value = lower_bound + (upper_bound - lower_bound) * np.clip(share, 0.0, 1.0)
    value = np.where(index >= finite, upper[-1], value)  # in +Inf: the largest finite bound
    return np.where(total > 0, value, np.nan)
