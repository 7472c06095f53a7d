"""The detector contract: River-style streaming protocols and the typed alert record.

Two shapes of detector share one vocabulary. A *bank* runs one univariate detector per
signal, vectorised: `learn_one(x)` and `score_one(x)` take a vector with one value per
signal and score each (tier 1 must score 1,000 signals in a millisecond, so never a Python
loop per signal). A *multivariate* detector reads a whole vector and returns one float
(tier 2). Higher scores are more anomalous. Detectors see telemetry only.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Protocol, runtime_checkable

import numpy as np

SEVERITIES = ("warning", "critical")


@dataclass(frozen=True, slots=True)
class Alert:
    """One alert as an on-call engineer would receive it."""

    time: float
    service: str
    signal: str
    score: float
    severity: str
    detector: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@runtime_checkable
class Bank(Protocol):
    """One streaming univariate detector per signal, vectorised over signals."""

    def learn_one(self, x: np.ndarray) -> None: ...

    def score_one(self, x: np.ndarray) -> np.ndarray: ...


@runtime_checkable
class Multivariate(Protocol):
    """A detector over a whole vector of signals; `fit` learns from a batch of normal rows."""

    def learn_one(self, x: np.ndarray) -> None: ...

    def score_one(self, x: np.ndarray) -> float: ...

    def fit(self, X: np.ndarray) -> Multivariate: ...
