"""The forecasters by name, for the command line, the backtests and the predictive scaler."""

from __future__ import annotations

from collections.abc import Callable

from detectors.forecast.base import Forecaster
from detectors.forecast.conformal import Conformal
from detectors.forecast.level_naive import LevelNaive
from detectors.forecast.models import ForecastError, HoltWinters, Mstl, SeasonalNaive
from detectors.forecast.profile import SeasonalProfile

DEFAULT = "seasonal-profile"
"""The default: streaming, useful after a day, intervals from its own recent errors."""

MODELS: dict[str, Callable[[], Forecaster]] = {
    "seasonal-profile": SeasonalProfile,
    "seasonal-naive": lambda: SeasonalNaive("weekly"),
    "seasonal-naive-daily": lambda: SeasonalNaive("daily"),
    "seasonal-naive-level": LevelNaive,
    "holt-winters": HoltWinters,
    "mstl": Mstl,
    "holt-winters-conformal": lambda: Conformal(HoltWinters),
    "mstl-conformal": lambda: Conformal(Mstl),
}


def make_forecaster(name: str) -> Forecaster:
    """A fresh forecaster by its name."""
    if name not in MODELS:
        raise ForecastError(f"unknown model {name!r}; choose from {', '.join(MODELS)}")
    return MODELS[name]()


def is_streaming(model: object) -> bool:
    """Whether a forecaster learns one observation at a time (no refit per forecast)."""
    return callable(getattr(model, "learn_one", None))
