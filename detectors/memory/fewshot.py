"""Few-shot recognition of an incident's kind, and retrieval of the nearest past incidents.

Signatures are compared in a masked Euclidean distance: each feature is divided by its
pooled within-kind spread (floored at `floor`, since features are log sizes and k may be
1): a diagonal Gaussian view of each kind. `weighting="fisher"` also weights each feature
by the largest squared gap between two kinds' means over the within-kind variance (on
Nezha's development day it did no better than equal weights, "spread", the default). Only
features of the blocks both incidents have count, and the sum is divided by their weight,
so a missing modality neither helps nor hurts.

A kind seen in a handful of examples may have several modes (a hogged service goes quiet, or
its callers time out), which one mean blurs: a kind's distance is the least over its
examples, each pulled toward the kind's prototype (the mean of its k examples) by `shrink`
(0: the prototype alone, 1: the nearest example). The kind is then voted by these
distances (a softmax of minus their squares) mixed with an extremely randomised tree
ensemble's vote over the same examples (`trees` of the say; 0 leaves the distances alone):
trees pick the few features that tell kinds apart and follow a kind's modes, which one
distance over every feature cannot. Open set: when even the nearest kind is farther than
`unknown_distance`, the answer is `UNKNOWN`: "not like any kind we have seen" (distances
alone decide this: trees have no notion of "far"; they also ignore block masks, absent
features being 0). `prior_scale` (the within-kind spread learned on many twin incidents;
NaN where the prior has no data) replaces the spread the k examples give: the transfer
variant.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from sklearn.ensemble import ExtraTreesClassifier

from detectors.memory.signature import BLOCKS, FEATURES, Signature

UNKNOWN = "unknown"
TREES = 300  # trees in the ensemble; `random_state` 0 keeps every answer reproducible
WEIGHTINGS = ("spread", "blocks", "fisher")


def matrix(signatures: Sequence[Signature]) -> tuple[np.ndarray, np.ndarray]:
    """(values, mask): incidents × FEATURES."""
    if not signatures:
        return np.zeros((0, len(FEATURES))), np.zeros((0, len(FEATURES)), dtype=bool)
    return np.stack([s.vector() for s in signatures]), np.stack([s.mask() for s in signatures])


def block_weights() -> np.ndarray:
    """Equal say for each modality block, shared among its features."""
    w = np.array([1.0 / len(names) for names in BLOCKS.values() for _ in names])
    return w / w.sum()


def pooled_spread(signatures: Sequence[Signature], kinds: Sequence[str]) -> np.ndarray:
    """Per feature, the pooled within-kind standard deviation of labelled signatures (NaN
    where no kind has two examples with the feature): a prior for `prior_scale`."""
    x, m = matrix(signatures)
    labels = np.asarray(kinds)
    within, count = np.zeros(x.shape[1]), np.zeros(x.shape[1])
    for k in sorted(set(labels)):
        xs, ms = x[labels == k], m[labels == k]
        n = ms.sum(axis=0)
        mean = (xs * ms).sum(axis=0) / np.maximum(n, 1)
        within += (((xs - mean) ** 2) * ms).sum(axis=0)
        count += np.maximum(n - 1, 0)
    return np.where(count > 0, np.sqrt(within / np.maximum(count, 1)), np.nan)


def fisher_weights(
    x: np.ndarray, mask: np.ndarray, kinds: Sequence[str], floor: float
) -> tuple[np.ndarray, np.ndarray]:
    """(scale, weight) per feature from labelled signatures (see the module doc)."""
    labels = np.asarray(kinds)
    kinds_seen = sorted(set(labels))
    n_f = x.shape[1]
    within, count = np.zeros(n_f), np.zeros(n_f)
    means = []
    for k in kinds_seen:
        sel = labels == k
        xs, ms = x[sel], mask[sel]
        n = ms.sum(axis=0)
        mean = np.where(n > 0, (xs * ms).sum(axis=0) / np.maximum(n, 1), np.nan)
        within += (((xs - np.nan_to_num(mean)) ** 2) * ms).sum(axis=0)
        count += np.maximum(n - 1, 0)
        means.append(mean)
    sd = np.sqrt(within / np.maximum(count, 1))
    scale = np.maximum(sd, floor)
    m = np.nan_to_num(np.array(means))
    spread = np.ones(n_f) if len(kinds_seen) < 2 else np.zeros(n_f)
    for a in range(len(kinds_seen)):  # the pair of kinds a feature tells apart best
        for b in range(a + 1, len(kinds_seen)):
            spread = np.maximum(spread, (m[a] - m[b]) ** 2)
    weight = spread / scale**2
    if weight.sum() <= 0:
        weight = np.ones(n_f)
    return scale, weight / weight.sum()


def distances(
    q: np.ndarray,
    qm: np.ndarray,
    x: np.ndarray,
    xm: np.ndarray,
    scale: np.ndarray,
    weight: np.ndarray,
) -> np.ndarray:
    """Weighted masked distance from each query row to each reference row."""
    diff = (q[:, None, :] - x[None, :, :]) / scale
    both = qm[:, None, :] & xm[None, :, :]
    w = weight[None, None, :] * both
    total = w.sum(axis=2)
    d2 = (w * diff**2).sum(axis=2) / np.where(total > 0, total, 1.0)
    return np.where(total > 0, np.sqrt(d2), np.inf)


@dataclass
class FewShotKinds:
    """Prototype classifier over signatures, with an open-set `unknown`."""

    unknown_distance: float | None = None
    floor: float = 0.5
    weighting: str = "spread"
    prior_scale: np.ndarray | None = None
    shrink: float = 0.5
    trees: float = 0.3

    def fit(self, signatures: Sequence[Signature], kinds: Sequence[str]) -> FewShotKinds:
        """Learn the scale, weights and one prototype per kind from labelled examples."""
        if len(signatures) != len(kinds) or not signatures:
            raise ValueError("fit needs as many kinds as signatures, and at least one")
        x, m = matrix(signatures)
        if self.weighting not in WEIGHTINGS:
            raise ValueError(f"weighting must be one of {', '.join(WEIGHTINGS)}")
        if not (0.0 <= self.shrink <= 1.0 and 0.0 <= self.trees <= 1.0):
            raise ValueError("shrink and trees must lie in [0, 1]")
        scale, weight = fisher_weights(x, m, kinds, self.floor)
        if self.prior_scale is not None:  # NaN: a feature the prior never saw
            prior = np.asarray(self.prior_scale, dtype=float)
            scale = np.where(np.isfinite(prior), np.maximum(prior, self.floor), scale)
        self.scale_ = scale
        if self.weighting == "spread":
            weight = np.full(len(FEATURES), 1.0 / len(FEATURES))
        elif self.weighting == "blocks":
            weight = block_weights()
        self.weight_ = weight
        labels = np.asarray(kinds)
        self.kinds_ = sorted(set(labels))
        protos, pmask = [], []
        for k in self.kinds_:
            xs, ms = x[labels == k], m[labels == k]
            n = ms.sum(axis=0)
            protos.append(np.where(n > 0, (xs * ms).sum(axis=0) / np.maximum(n, 1), 0.0))
            pmask.append(n > 0)
        self.protos_, self.pmask_ = np.array(protos), np.array(pmask)
        self.examples_ = [
            (np.where(m[labels == k], self.shrink * x[labels == k] + (1 - self.shrink) * p, 0.0),
             m[labels == k])
            for k, p in zip(self.kinds_, self.protos_, strict=True)
        ]  # fmt: skip
        self._x, self._labels, self.forest_ = x, labels, None
        return self

    def distances(self, signatures: Sequence[Signature]) -> np.ndarray:
        """Queries × kinds: distance to each kind's nearest shrunk example."""
        q, qm = matrix(signatures)
        out = np.full((len(q), len(self.kinds_)), np.inf)
        for i, (xs, ms) in enumerate(self.examples_):
            out[:, i] = distances(q, qm, xs, ms, self.scale_, self.weight_).min(axis=1)
        return out

    def votes(self, signatures: Sequence[Signature]) -> np.ndarray:
        """Queries × kinds: the mixed vote (see the module doc); rows sum to 1."""
        d2 = self.distances(signatures) ** 2
        best = np.min(d2, axis=1, keepdims=True)
        p = np.exp(-(d2 - np.where(np.isfinite(best), best, 0.0)))  # inf distance: no vote
        total = p.sum(axis=1, keepdims=True)
        p = p / np.where(total > 0, total, 1.0)
        if self.trees <= 0 or len(self.kinds_) < 2:
            return p
        if self.forest_ is None:  # fitted on first use: the open-set fit needs distances only
            self.forest_ = ExtraTreesClassifier(n_estimators=TREES, random_state=0)
            self.forest_.fit(self._x, self._labels)
        q, _ = matrix(signatures)
        order = [list(self.forest_.classes_).index(k) for k in self.kinds_]
        return (1 - self.trees) * p + self.trees * self.forest_.predict_proba(q)[:, order]

    def predict(self, signatures: Sequence[Signature]) -> list[str]:
        """The best-voted kind of each query, or `UNKNOWN` past the open-set distance."""
        d = self.distances(signatures)
        v = self.votes(signatures)
        out = []
        for row, vote in zip(d, v, strict=True):
            nearest_d = float(np.min(row))
            far = self.unknown_distance is not None and nearest_d > self.unknown_distance
            i = int(np.argmax(vote))
            out.append(UNKNOWN if far or not np.isfinite(nearest_d) else self.kinds_[i])
        return out


def nearest(
    query: Signature,
    library: Sequence[Signature],
    scale: np.ndarray | None = None,
    weight: np.ndarray | None = None,
    top: int = 5,
) -> list[tuple[int, float]]:
    """(index into library, distance) of the `top` nearest past incidents, nearest first
    (ties by index, so the order is deterministic)."""
    if not library:
        return []
    x, xm = matrix(library)
    q, qm = matrix([query])
    scale = np.ones(len(FEATURES)) if scale is None else scale
    weight = np.full(len(FEATURES), 1.0 / len(FEATURES)) if weight is None else weight
    d = distances(q, qm, x, xm, scale, weight)[0]
    order = sorted(range(len(d)), key=lambda i: (d[i], i))[:top]
    return [(i, float(d[i])) for i in order]


def draw_support(kinds: Sequence[str], k: int, rng: np.random.Generator) -> list[int]:
    """Indices of up to k examples per kind, drawn without replacement."""
    labels = np.asarray(kinds)
    out: list[int] = []
    for kind in sorted(set(labels)):
        idx = np.flatnonzero(labels == kind)
        out.extend(int(i) for i in rng.choice(idx, size=min(k, idx.size), replace=False))
    return sorted(out)
