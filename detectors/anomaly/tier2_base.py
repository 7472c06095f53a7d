"""What every tier-2 detector shares: robust scaling, held-out calibration, batch scoring.

Kept apart from the detectors so the torch model and the scikit-learn ones import one base.
"""

from __future__ import annotations

import numpy as np
from sklearn.base import BaseEstimator

FIT_ERROR = "call fit(X) with normal rows before scoring"


# -- scaling ---------------------------------------------------------------------------------
def robust_scale(
    X: np.ndarray, axis: int = 0, rel_floor: float = 0.05, abs_floor: float = 1e-3
) -> tuple[np.ndarray, np.ndarray]:
    """Median and a MAD-based scale along `axis`; the floor keeps flat features finite.

    A feature that never moved in training (errors at zero, an idle queue) has MAD 0; its
    scale falls back to a share of its median or an absolute floor, so a small excursion
    reads as large but not infinite.
    """
    med = np.median(X, axis=axis)
    mad = 1.4826 * np.median(np.abs(X - np.expand_dims(med, axis)), axis=axis)
    return med, np.maximum(mad, np.maximum(rel_floor * np.abs(med), abs_floor))


# -- shared base -----------------------------------------------------------------------------
class Tier2Base(BaseEstimator):
    """Robust input scaling, a held-out calibration split and the streaming wrappers."""

    quantile: float
    calibration: float
    clip: float

    def _split(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Every k-th row held out for calibration (interleaved, so drift does not bias it)."""
        X = np.asarray(X, dtype=float)
        if X.ndim != 2 or len(X) < 10:
            raise ValueError(f"fit needs a 2-D array of at least 10 rows, got shape {X.shape}")
        if not np.all(np.isfinite(X)):
            raise ValueError("fit: X contains NaN or infinite values")
        self.center_, self.scale_ = robust_scale(X)
        self.n_features_in_ = X.shape[1]
        k = max(2, round(1.0 / self.calibration)) if self.calibration > 0 else 0
        if k == 0:
            return X, X
        held = np.zeros(len(X), dtype=bool)
        held[k - 1 :: k] = True
        return X[~held], X[held]

    def _z(self, X: np.ndarray) -> np.ndarray:
        z = np.asarray(X, dtype=float) - self.center_
        z /= self.scale_
        np.minimum(z, self.clip, out=z)
        np.maximum(z, -self.clip, out=z)
        if np.isnan(z).any():  # a missing signal reads as normal, not as an anomaly
            z[np.isnan(z)] = 0.0
        return z

    def _threshold(self, raw: np.ndarray) -> float:
        thr = float(np.quantile(raw, self.quantile))
        return thr if thr > 1e-12 else 1e-12

    def _raw(self, Z: np.ndarray) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    def score_many(self, X: np.ndarray) -> np.ndarray:
        """Calibrated scores of many rows at once (the batch path, much faster per row)."""
        if not hasattr(self, "threshold_"):
            raise RuntimeError(FIT_ERROR)
        X = np.atleast_2d(np.asarray(X, dtype=float))
        return self._raw(self._z(X)) / self.threshold_

    def score_one(self, x: np.ndarray) -> float:
        """Calibrated score of one vector: 1.0 is the `quantile` of held-out normal rows."""
        return float(self.score_many(np.asarray(x, dtype=float)[None, :])[0])
