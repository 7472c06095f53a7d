"""Every RCA method of the project by name, and the default one.

The default is what the closed loop and `firebreak rca` use when nobody chooses: the method
measured best across the twin's rca-suite and the real data (`firebreak rca-suite`,
`firebreak real-bench`; the README's RCA section has the tables).
"""

from __future__ import annotations

import importlib
import inspect
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the registry stays light: the CLI reads its names at start-up
    from detectors.rca.base import RcaMethod

METHODS: dict[str, tuple[str, str]] = {
    "robust": ("detectors.rca.robust", "RobustScoreRca"),
    "randomwalk": ("detectors.rca.randomwalk", "RandomWalkRca"),
    "causal": ("detectors.rca.causal", "CausalRca"),
    "impact": ("detectors.rca.impact", "ImpactRca"),
    "multimodal": ("detectors.rca.multimodal", "MultimodalRca"),
    "auto": ("detectors.rca.auto", "AutoRca"),
}
DEFAULT_METHOD = "auto"


def method_class(name: str) -> type:
    from detectors.rca.base import RcaError

    if name not in METHODS:
        raise RcaError(f"unknown RCA method {name!r} (expected one of {', '.join(METHODS)})")
    module, cls = METHODS[name]
    return getattr(importlib.import_module(module), cls)


def make_method(name: str = DEFAULT_METHOD, **params: Any) -> RcaMethod:
    """A method by name, with the window settings it accepts (others are ignored)."""
    cls = method_class(name)
    accepted = inspect.signature(cls.__init__).parameters
    return cls(**{k: v for k, v in params.items() if k in accepted})


def default_method(**params: Any) -> RcaMethod:
    """The project's default RCA method."""
    return make_method(DEFAULT_METHOD, **params)


def takes_telemetry(method: Any) -> bool:
    """Whether a method's `rank` reads an `IncidentTelemetry` (a separate normal period,
    spans, logs, the symptom); the others get a normal period joined in front of the table."""
    try:
        return "telemetry" in inspect.signature(method.rank).parameters
    except (TypeError, ValueError):
        return False
