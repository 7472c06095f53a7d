"""Tier-2 detectors: one score for a whole vector of signals (a service's, or the system's).

Each learns from normal rows in `fit(X)`, then scores a stream with `score_one(x)` (or a batch
with `score_many(X)`); higher is more anomalous. Three shared rules make them interchangeable
in the pipeline:

- Scale-free inputs: every feature is robustly standardised (median, MAD with a floor) at fit
  time and clipped, so one model can read per-service vectors of a fixed layout from
  topologies of any size (`ServiceScaler` turns raw per-service metrics into such vectors).
- Calibrated scores: a raw score is divided by a high quantile of the raw scores of held-out
  normal rows (every k-th row of X, never trained on), so 1.0 means "as unusual as the
  rarest normal rows" for every model and the pipeline can use one threshold.
- Constructors only store parameters (scikit-learn's rule); `get_params()` comes from
  scikit-learn's BaseEstimator.

The deep model (`AutoencoderDetector`) lives in `detectors.anomaly.autoencoder`; re-exported
here lazily.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from sklearn.base import BaseEstimator
from sklearn.ensemble import IsolationForest

from detectors.anomaly.tier2_base import Tier2Base, robust_scale

if TYPE_CHECKING:
    from detectors.anomaly.autoencoder import AutoencoderDetector


class ServiceScaler(BaseEstimator):
    """Per-service, per-metric robust standardisation of raw telemetry (services × metrics).

    Turns each service's raw metrics into deviations from that service's own normal, which
    is what makes a tier-2 model trained on one topology readable on another. `learn_one`
    moves the centre slowly (rate `forget`) so a lasting shift is absorbed; memory is fixed.
    """

    def __init__(
        self,
        rel_floor: float = 0.05,
        abs_floor: float = 1e-3,
        clip: float = 10.0,
        forget: float = 0.0,
    ) -> None:
        self.rel_floor = rel_floor
        self.abs_floor = abs_floor
        self.clip = clip
        self.forget = forget

    def fit(self, values: np.ndarray) -> ServiceScaler:
        """values: T × services × metrics of normal operation."""
        values = np.asarray(values, dtype=float)
        self.center_, self.scale_ = robust_scale(values, 0, self.rel_floor, self.abs_floor)
        return self

    def transform(self, values: np.ndarray) -> np.ndarray:
        """(T ×) services × metrics → standardised and clipped, same shape."""
        z = (np.asarray(values, dtype=float) - self.center_) / self.scale_
        return np.clip(z, -self.clip, self.clip)

    def learn_one(self, values: np.ndarray) -> None:
        """Exponential drift of the centre towards a normal frame (no-op when forget is 0)."""
        if self.forget > 0.0:
            self.center_ += self.forget * (np.asarray(values, dtype=float) - self.center_)


# -- Isolation Forest --------------------------------------------------------------------------
def _avg_path(n: np.ndarray) -> np.ndarray:
    """Expected path length of an unsuccessful BST search among n points (Liu et al. 2008)."""
    n = np.asarray(n, dtype=float)
    out = np.zeros_like(n)
    out[n == 2] = 1.0
    big = n > 2
    out[big] = 2.0 * (np.log(n[big] - 1.0) + np.euler_gamma) - 2.0 * (n[big] - 1.0) / n[big]
    return out


class IsolationForestDetector(Tier2Base):
    """Isolation Forest (scikit-learn) on robust-scaled inputs, with a vectorised scorer.

    scikit-learn's per-call overhead (~ms for one row) is too slow for a per-frame detector,
    so the fitted trees are flattened into arrays and walked for all trees at once; the score
    equals scikit-learn's `-score_samples`. `learn_one` keeps the latest `buffer` rows and
    refits on them every `refit_every` rows (0: never, learn_one is then a no-op); the
    calibration threshold stays as fitted.
    """

    def __init__(
        self,
        n_estimators: int = 100,
        max_samples: int = 256,
        quantile: float = 0.995,
        calibration: float = 0.2,
        clip: float = 10.0,
        seed: int = 0,
        buffer: int = 4096,
        refit_every: int = 0,
    ) -> None:
        self.n_estimators = n_estimators
        self.max_samples = max_samples
        self.quantile = quantile
        self.calibration = calibration
        self.clip = clip
        self.seed = seed
        self.buffer = buffer
        self.refit_every = refit_every

    def fit(self, X: np.ndarray) -> IsolationForestDetector:
        train, cal = self._split(X)
        self._fit_forest(self._z(train))
        self.threshold_ = self._threshold(self._raw(self._z(cal)))
        self.buffer_: list[np.ndarray] = []
        self.seen_ = 0
        return self

    def _fit_forest(self, Z: np.ndarray) -> None:
        forest = IsolationForest(
            n_estimators=self.n_estimators,
            max_samples=min(self.max_samples, len(Z)),
            random_state=self.seed,
        ).fit(Z)
        self.forest_ = forest
        trees = [est.tree_ for est in forest.estimators_]
        width = max(t.node_count for t in trees)
        T = len(trees)
        self.left_ = np.tile(np.arange(width), (T, 1))
        self.right_ = self.left_.copy()
        self.feature_ = np.zeros((T, width), dtype=np.intp)
        self.thresh_ = np.full((T, width), np.inf)
        self.path_ = np.zeros((T, width))
        depth_max = 0
        for i, (tree, feats) in enumerate(zip(trees, forest.estimators_features_, strict=True)):
            n = tree.node_count
            inner = tree.children_left[:n] >= 0
            self.left_[i, :n] = np.where(inner, tree.children_left[:n], np.arange(n))
            self.right_[i, :n] = np.where(inner, tree.children_right[:n], np.arange(n))
            self.feature_[i, :n] = np.where(inner, np.asarray(feats)[tree.feature[:n]], 0)
            self.thresh_[i, :n] = np.where(inner, tree.threshold[:n], np.inf)
            depth = np.zeros(n)
            for node in range(n):  # children always follow their parent in sklearn's trees
                if inner[node]:
                    depth[tree.children_left[node]] = depth[tree.children_right[node]] = (
                        depth[node] + 1
                    )
            leaf_size = tree.n_node_samples[:n]
            self.path_[i, :n] = np.where(inner, 0.0, depth + _avg_path(leaf_size))
            depth_max = max(depth_max, int(depth.max()))
        self.depth_ = depth_max
        self.norm_ = float(_avg_path(np.array([forest.max_samples_]))[0])
        # flat node arrays with children as flat indices: one gather per level for all trees
        base = (np.arange(T) * width)[:, None]
        self.left_, self.right_ = (self.left_ + base).ravel(), (self.right_ + base).ravel()
        self.feature_, self.thresh_ = self.feature_.ravel(), self.thresh_.ravel()
        self.path_, self.roots_ = self.path_.ravel(), base.ravel()

    def state_as_data(self) -> dict:
        """What the model registry stores: everything but `forest_`.

        Scoring and refitting use only the flattened arrays; scikit-learn's trees are compiled
        objects with no data-only form, so a registry-loaded detector has no `forest_`."""
        return {k: v for k, v in vars(self).items() if k != "forest_"}

    def _raw(self, Z: np.ndarray) -> np.ndarray:
        out = np.empty(len(Z))
        for lo in range(0, len(Z), 2048):
            block = Z[lo : lo + 2048].astype(np.float32)  # as scikit-learn compares
            node = np.broadcast_to(self.roots_, (len(block), len(self.roots_)))
            for _ in range(self.depth_):
                go_left = np.take_along_axis(block, self.feature_[node], 1) <= self.thresh_[node]
                node = np.where(go_left, self.left_[node], self.right_[node])
            out[lo : lo + 2048] = 2.0 ** (-self.path_[node].mean(axis=1) / self.norm_)
        return out

    def learn_one(self, x: np.ndarray) -> None:
        """Buffer a normal row; refit the forest on the buffer every `refit_every` rows."""
        if self.refit_every <= 0:
            return
        self.buffer_.append(np.asarray(x, dtype=float))
        del self.buffer_[: max(0, len(self.buffer_) - self.buffer)]
        self.seen_ += 1
        if self.seen_ % self.refit_every == 0 and len(self.buffer_) >= 64:
            self._fit_forest(self._z(np.array(self.buffer_)))


# -- PCA -------------------------------------------------------------------------------------
class PcaDetector(Tier2Base):
    """PCA on robust-standardised inputs: residual (SPE) and in-subspace (Hotelling T²) tests.

    SPE catches a broken correlation between signals; T² catches a move along the normal
    correlations that goes too far (load-driven latency). Each is calibrated on held-out
    rows and the score is the larger. `learn_one` keeps an exponentially weighted mean and
    covariance (rate `forget`; 0 freezes the model) and re-derives the components every
    `refit_every` rows: memory is one d × d matrix.
    """

    def __init__(
        self,
        variance: float = 0.9,
        max_components: int | None = None,
        quantile: float = 0.995,
        calibration: float = 0.2,
        clip: float = 10.0,
        forget: float = 0.0,
        refit_every: int = 600,
    ) -> None:
        self.variance = variance
        self.max_components = max_components
        self.quantile = quantile
        self.calibration = calibration
        self.clip = clip
        self.forget = forget
        self.refit_every = refit_every

    def fit(self, X: np.ndarray) -> PcaDetector:
        train, cal = self._split(X)
        Z = self._z(train)
        self.mean_ = Z.mean(axis=0)
        self.cov_ = np.cov(Z, rowvar=False) if len(Z) > 1 else np.eye(Z.shape[1])
        self._components()
        spe, t2 = self._parts(self._z(cal))
        self.spe_thr_, self.t2_thr_ = self._threshold(spe), self._threshold(t2)
        self.threshold_ = 1.0  # _raw already divides each part by its own threshold
        self.seen_ = 0
        return self

    def _components(self) -> None:
        vals, vecs = np.linalg.eigh(np.atleast_2d(self.cov_))
        order = np.argsort(vals)[::-1]
        vals, vecs = np.clip(vals[order], 0.0, None), vecs[:, order]
        share = np.cumsum(vals) / max(vals.sum(), 1e-12)
        k = int(np.searchsorted(share, self.variance) + 1)
        k = min(k, len(vals) - 1 if len(vals) > 1 else 1)
        if self.max_components:
            k = min(k, self.max_components)
        self.components_ = vecs[:, :k]
        self.eigvals_ = np.maximum(vals[:k], 1e-6)

    def _parts(self, Z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        C = Z - self.mean_
        proj = C @ self.components_
        resid = C - proj @ self.components_.T
        return np.einsum("ij,ij->i", resid, resid), (proj**2 / self.eigvals_).sum(axis=1)

    def _raw(self, Z: np.ndarray) -> np.ndarray:
        spe, t2 = self._parts(Z)
        return np.maximum(spe / self.spe_thr_, t2 / self.t2_thr_)

    def learn_one(self, x: np.ndarray) -> None:
        """Exponentially weighted mean/covariance update; components refreshed periodically."""
        if self.forget <= 0.0:
            return
        z = self._z(np.asarray(x, dtype=float)[None, :])[0]
        d = z - self.mean_
        self.mean_ += self.forget * d
        self.cov_ = (1.0 - self.forget) * (self.cov_ + self.forget * np.outer(d, d))
        self.seen_ += 1
        if self.refit_every > 0 and self.seen_ % self.refit_every == 0:
            self._components()


__all__ = [
    "AutoencoderDetector",
    "IsolationForestDetector",
    "PcaDetector",
    "ServiceScaler",
    "robust_scale",
]


def __getattr__(name: str) -> object:
    """Import the torch model only when asked for (torch takes seconds to import)."""
    if name == "AutoencoderDetector":
        from detectors.anomaly.autoencoder import AutoencoderDetector

        return AutoencoderDetector
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
