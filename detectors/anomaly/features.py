"""The signals detectors watch, transformed to tame their scale.

Latencies, rates and queues are heavy-tailed and span orders of magnitude between services,
so they are watched in log space; ratios stay as they are. The twin's layout
(`FeatureLayout`) is the same seven signals for every service, so a model of "a service's
signals" transfers between topologies once each signal is standardised against its own
service's history. A real system's signals are whatever it records: `SignalLayout` takes
any set, each signal's kind (latency, errors, load, CPU, memory, other; inferred from its
name and unit at ingestion) deciding its transform, its floor and which way is bad.
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


# -- any signal set ---------------------------------------------------------------------------
# per kind: watched in log space when the signal is a non-negative magnitude, the smallest
# spread judged against (log space: a share; identity: a share of the signal's level), and
# whether both directions are anomalous (load: a drop is as telling as a surge)
KIND_FLOORS = {
    "latency": 0.10,
    "errors": 0.10,
    "load": 0.10,
    "cpu": 0.05,
    "memory": 0.05,
    "other": 0.05,
}
LEVEL_FLOOR = 0.01  # identity-scaled signals: 1% of their typical level
LOG_UNIT = 0.05  # log-scaled signals: log1p of the value in units of 5% of its typical level
RATIO_UNITS = {"%", "ratio", "percent"}


@dataclass(frozen=True)
class SignalLayout:
    """Any set of signals, each attributed to a service (or to itself when it has none):
    how each is transformed, the spread it is judged against, and which way is bad.

    Built from a sample of the data (`signal_layout`): a signal that never goes negative
    and is not a share or percentage is a magnitude, watched in log space like the twin's
    latencies and rates, in units of 5% of its typical (median positive) value so that
    seconds and milliseconds read alike; the rest stay as they are, floored at 1% of their
    typical level."""

    services: tuple[str, ...]
    group: np.ndarray  # signal → index into services
    names: tuple[str, ...]  # the signal names alerts carry
    kinds: tuple[str, ...]
    log: np.ndarray  # bool per signal
    scale: np.ndarray  # log signals are watched as log1p(x / scale)
    floors: np.ndarray
    two_sided: np.ndarray  # bool per signal
    sign: np.ndarray  # +1: up is bad, -1: down is bad (one-sided signals)

    @property
    def size(self) -> int:
        return len(self.names)

    def transform(self, row: np.ndarray) -> np.ndarray:
        """One raw row (a value per signal) → the watched vector."""
        x = np.asarray(row, dtype=float)
        return np.where(self.log, np.log1p(np.maximum(x, 0.0) / self.scale), x)

    def service_of(self, signal_index: int) -> str:
        return self.services[int(self.group[signal_index])]

    def signal_of(self, signal_index: int) -> str:
        return self.names[signal_index]


def signal_layout(table) -> SignalLayout:
    """The layout of an ingested `SignalTable` (its values serve as the sample)."""
    values = table.values
    services: dict[str, int] = {}
    group, names, kinds, log, scale, floors, two_sided, sign = [], [], [], [], [], [], [], []
    for j, sig in enumerate(table.signals):
        owner = sig.service or sig.column
        group.append(services.setdefault(owner, len(services)))
        names.append(sig.metric if sig.service else sig.column)
        kind = sig.kind
        kinds.append(kind.kind)
        column = values[:, j]
        finite = column[np.isfinite(column)]
        share = (kind.unit or "").lower() in RATIO_UNITS or "ratio" in sig.metric.lower()
        magnitude = finite.size > 0 and finite.min() >= 0.0 and not share
        log.append(magnitude)
        positive = finite[finite > 0]
        scale.append(LOG_UNIT * float(np.median(positive)) if positive.size else 1.0)
        if magnitude:
            floors.append(KIND_FLOORS[kind.kind])
        else:
            level = float(np.median(np.abs(finite))) if finite.size else 1.0
            floors.append(max(LEVEL_FLOOR * level, 1e-9))
        two_sided.append(kind.bad == 0)
        sign.append(1.0 if kind.bad >= 0 else -1.0)
    return SignalLayout(
        services=tuple(services),
        group=np.asarray(group, dtype=int),
        names=tuple(names),
        kinds=tuple(kinds),
        log=np.asarray(log, dtype=bool),
        scale=np.asarray(scale, dtype=float),
        floors=np.asarray(floors, dtype=float),
        two_sided=np.asarray(two_sided, dtype=bool),
        sign=np.asarray(sign, dtype=float),
    )
