"""Where a code fault that fails nothing shows: the faulty path's own log lines.

A `bad_response` fault (a wrong return value, a thrown and caught exception) leaves every
metric as it was; the only trace in real telemetry is what the path logs. The log writer
learns the fault's extent from the simulation's `fault_start`/`fault_end` events (ground
truth it never prints) and asks this module, per chunk, which share of each service's
requests took the faulty path in each tick.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from twin.telemetry.frame import Chunk

KIND = "bad_response"


@dataclass
class _Defect:
    service: int
    share: float
    exception: bool
    since: float
    until: float = np.inf


class DefectLog:
    """The active defects, carried from chunk to chunk."""

    def __init__(self, index: dict[str, int]) -> None:
        self.index = index
        self._open: dict[str, _Defect] = {}

    def shares(self, chunk: Chunk) -> tuple[np.ndarray, np.ndarray] | None:
        """(ticks × services share on a wrong-value path, same on a caught-exception path),
        or None when no defect touched the chunk."""
        seen = list(self._open.values())
        for event in chunk.events:
            label, kind = event.get("fault"), event.get("fault_kind")
            if kind != KIND or not isinstance(label, str):
                continue
            t = float(event.get("time", 0.0))
            if event.get("kind") == "fault_start":
                s = self.index.get(str(event.get("service")))
                if s is not None:
                    share, exception = float(event.get("share", 0.0)), bool(event.get("exception"))
                    defect = _Defect(s, share, exception, t)
                    self._open[label] = defect
                    seen.append(defect)
            elif event.get("kind") == "fault_end" and label in self._open:
                self._open.pop(label).until = t
        if not seen:
            return None
        n = chunk.values.shape[1]
        wrong = np.zeros((len(chunk.times), n))
        caught = np.zeros((len(chunk.times), n))
        for d in seen:
            on = (chunk.times >= d.since - 1e-9) & (chunk.times < d.until - 1e-9)
            target = caught if d.exception else wrong
            target[on, d.service] = 1.0 - (1.0 - target[on, d.service]) * (1.0 - d.share)
        return wrong, caught
