"""The signals detectors watch: a fixed set per service, transformed to tame their scale.

Latencies, rates and queues are heavy-tailed and span orders of magnitude between services,
so they are watched in log space; ratios stay as they are. The layout is the same for every
service, so a model of "a service's signals" transfers between topologies once each signal
is standardised against its own service's history.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from twin.fields import M

# (telemetry metric, transform): log1p for heavy-tailed magnitudes, identity for ratios
SIGNALS: tuple[tuple[str, str], ...] = (
    ("latency_p99_ms", "log1p"),
    ("latency_mean_ms", "log1p"),
    ("error_ratio", "identity"),
    ("arrival_rate", "log1p"),
    ("cpu_utilization", "identity"),
    ("memory_mb", "log1p"),
    ("queue", "log1p"),
)
SIGNAL_NAMES = tuple(name for name, _ in SIGNALS)
K = len(SIGNALS)
_COLUMNS = np.array([M[name] for name, _ in SIGNALS])
_LOG = np.array([kind == "log1p" for _, kind in SIGNALS])


@dataclass(frozen=True)
class FeatureLayout:
    """Services × signals, flattened service-major: signal j of service i is i·K + j."""

    services: tuple[str, ...]

    @property
    def size(self) -> int:
        return len(self.services) * K

    @property
    def names(self) -> list[str]:
        return [f"{s}:{m}" for s in self.services for m in SIGNAL_NAMES]

    def transform(self, values: np.ndarray) -> np.ndarray:
        """A frame's services × metrics matrix → the flat signal vector."""
        x = values[:, _COLUMNS]
        x = np.where(_LOG, np.log1p(np.maximum(x, 0.0)), x)
        return x.reshape(-1)

    def transform_block(self, values: np.ndarray) -> np.ndarray:
        """T × services × metrics → T × signals (for batch fitting and tests)."""
        x = values[:, :, _COLUMNS]
        x = np.where(_LOG, np.log1p(np.maximum(x, 0.0)), x)
        return x.reshape(len(values), -1)

    def service_of(self, signal_index: int) -> str:
        return self.services[signal_index // K]

    def signal_of(self, signal_index: int) -> str:
        return SIGNAL_NAMES[signal_index % K]


def layout_for(services: Sequence[str]) -> FeatureLayout:
    return FeatureLayout(tuple(services))
