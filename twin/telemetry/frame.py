"""The telemetry contract between the twin and everything above it.

A Frame is one tick: a services × metrics matrix with named axes, per-edge call metrics and
the tick's events. A Chunk is many consecutive ticks, the unit sinks receive.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from twin.fields import EDGE_METRICS, SERVICE_METRICS


@dataclass(frozen=True)
class Frame:
    """One tick of telemetry, as a detector consumes it in streaming mode."""

    time: float
    values: np.ndarray  # services × SERVICE_METRICS
    edge_values: np.ndarray  # edges × EDGE_METRICS
    services: tuple[str, ...]
    edges: tuple[tuple[str, str], ...]
    events: list[dict[str, Any]] = field(default_factory=list)
    metrics: tuple[str, ...] = SERVICE_METRICS
    edge_metrics: tuple[str, ...] = EDGE_METRICS
    node_values: np.ndarray | None = None  # nodes × NODE_METRICS, with infrastructure only
    nodes: tuple[str, ...] = ()

    def get(self, service: str, metric: str) -> float:
        """One value by name (convenient, not for hot paths)."""
        return float(self.values[self.services.index(service), self.metrics.index(metric)])


@dataclass(frozen=True)
class Chunk:
    """Consecutive ticks: times (T), values (T × services × metrics), edges, distributions."""

    times: np.ndarray
    values: np.ndarray
    edge_values: np.ndarray
    dist: np.ndarray  # T × services × (mu, sigma, shift) of the residence time, seconds
    events: list[dict[str, Any]]
    node_values: np.ndarray | None = None  # T × nodes × NODE_METRICS (infrastructure only)
    nodes: tuple[str, ...] = ()
    # T × edges: seconds an attempt spends on the wire besides its callee's answer (a
    # network delay, retransmissions); the trace sampler puts it in the client span
    wire: np.ndarray | None = None


class Sink(Protocol):
    """Receives telemetry as the run goes (run directory writers, SLO tracker, plots)."""

    def on_chunk(self, chunk: Chunk) -> None: ...

    def close(self) -> None: ...
