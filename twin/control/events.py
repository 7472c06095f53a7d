"""The run's event log: control-plane happenings as flat records, in time order."""

from __future__ import annotations

from typing import Any


class EventLog:
    """Collects event records; sinks drain them chunk by chunk so memory stays bounded."""

    def __init__(self) -> None:
        self.pending: list[dict[str, Any]] = []
        self.counts: dict[str, int] = {}

    def emit(self, time: float, kind: str, **fields: Any) -> None:
        self.pending.append({"time": round(float(time), 6), "kind": kind, **fields})
        self.counts[kind] = self.counts.get(kind, 0) + 1

    def drain(self) -> list[dict[str, Any]]:
        out, self.pending = self.pending, []
        return out
