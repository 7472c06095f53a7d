"""The forecaster contract: fit on a rate series, predict a horizon with intervals.

Times are seconds on a regular grid (the series' step); forecasts carry a central path and
a prediction interval at `level`, so a capacity planner can add headroom from the upper
bound. Calendar events (declared launches, campaigns, holidays) may be passed as intervals
whose lift the forecaster learns from past occurrences.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np


@dataclass(frozen=True)
class Event:
    """A declared business event: [start, end) in the series' seconds, and its kind."""

    name: str
    kind: str
    start: float
    end: float


@dataclass(frozen=True)
class Forecast:
    times: np.ndarray  # seconds of each predicted step
    mean: np.ndarray
    lower: np.ndarray
    upper: np.ndarray
    level: float


@runtime_checkable
class Forecaster(Protocol):
    name: str

    def fit(
        self, times: np.ndarray, values: np.ndarray, events: Sequence[Event] = ()
    ) -> Forecaster: ...

    def predict(
        self, horizon: int, level: float = 0.9, events: Sequence[Event] = ()
    ) -> Forecast: ...
