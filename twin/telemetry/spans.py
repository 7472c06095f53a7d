"""Spans: the unit of a trace, shared by both fidelities and every trace exporter.

The twin follows OpenTelemetry's convention: a call attempt is a CLIENT span on the caller
whose child is the callee's SERVER span; an external request starts with the entry
service's SERVER span. Times are simulated seconds from the run's start; exporters turn
them into wall-clock nanoseconds from the scenario's epoch.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

SpanKind = Literal["server", "client"]

# the simulated clock's zero as unix seconds (2026-01-05 00:00 UTC, a Monday) so that
# exported timestamps fall on a real calendar with weekly seasonality starting on Monday
EPOCH_UNIX_S = 1_767_571_200


@dataclass(slots=True)
class Span:
    """One timed operation of one service within one trace."""

    trace_id: str  # 32 lowercase hex digits
    span_id: str  # 16 lowercase hex digits
    parent_id: str | None
    service: str
    name: str
    kind: SpanKind
    start: float  # simulated seconds
    end: float
    error: bool = False
    attributes: dict[str, Any] = field(default_factory=dict)

    @property
    def duration(self) -> float:
        return self.end - self.start
