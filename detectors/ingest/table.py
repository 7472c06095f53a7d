"""The stack's own table of ingested metrics: sorted unique times, one column per signal,
and for every signal the service, metric and kind it stands for.

Every metrics reader returns a `SignalTable`; detectors stream its rows, and RCA reads its
`wide()` frame: `time` plus `<service>_<metric>` columns whose metric part holds no `_`, so
the split at the last underscore is always right whatever the source called things.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from detectors.ingest.kinds import SignalKind, kind_of
from detectors.ingest.names import canonical_metric


@dataclass(frozen=True)
class Signal:
    """One ingested column: its name in the source, and what it measures where."""

    column: str
    service: str | None  # None: a signal of no particular service (a NAB series)
    metric: str
    kind: SignalKind

    @property
    def wide_name(self) -> str | None:
        """`<service>_<metric>` with the metric's `_` turned into `-`; None without service."""
        if not self.service:
            return None
        return f"{self.service}_{canonical_metric(self.metric)}"


def make_signal(column: str, service: str | None, metric: str) -> Signal:
    return Signal(str(column), service, str(metric), kind_of(metric))


@dataclass
class SignalTable:
    """Rows × signals of one source, times in seconds, strictly increasing."""

    times: np.ndarray
    values: np.ndarray  # rows × signals, float, NaN where a source had no value
    signals: list[Signal]
    source: str = ""
    notes: list[str] = field(default_factory=list)
    excluded: list[str] = field(default_factory=list)  # ground truth and --exclude columns

    def __post_init__(self) -> None:
        self.times = np.asarray(self.times, dtype=float)
        self.values = np.asarray(self.values, dtype=float).reshape(len(self.times), -1)
        if self.values.shape[1] != len(self.signals):
            raise ValueError(
                f"{self.values.shape[1]} value columns for {len(self.signals)} signals"
            )

    @property
    def columns(self) -> list[str]:
        return [s.column for s in self.signals]

    def services(self) -> list[str]:
        """Services in first-seen order."""
        return list(dict.fromkeys(s.service for s in self.signals if s.service))

    def wide(self) -> pd.DataFrame:
        """The RCA table: `time` plus `<service>_<metric>` columns (signals with a service;
        two that share a name are averaged)."""
        keep = [i for i, s in enumerate(self.signals) if s.wide_name]
        names = [self.signals[i].wide_name for i in keep]
        out = pd.DataFrame(self.values[:, keep], columns=names)
        out = out.T.groupby(level=0, sort=False).mean().T if len(set(names)) < len(names) else out
        out.insert(0, "time", self.times)
        return out

    def head(self, rows: int) -> SignalTable:
        """The first `rows` rows (same signals)."""
        return SignalTable(
            self.times[:rows], self.values[:rows], list(self.signals), self.source,
            list(self.notes), list(self.excluded),
        )  # fmt: skip


def assemble(
    source: str,
    times: np.ndarray,
    values: np.ndarray,
    signals: list[Signal],
    notes: list[str] | None = None,
    excluded: list[str] | None = None,
) -> SignalTable:
    """A clean table from raw rows: sorted, repeated times merged, counters turned into
    rates, empty signals dropped; every repair noted."""
    from detectors.ingest.clean import counter_rate, gap_note, is_counter, missing_note, order_rows

    notes = list(notes or [])
    times = np.asarray(times, dtype=float)
    values = np.asarray(values, dtype=float).reshape(len(times), len(signals))
    times, values, order_notes = order_rows(times, values)
    values = np.array(values, dtype=float)  # writable: counters are rewritten in place
    notes.extend(order_notes)
    for j, sig in enumerate(signals):
        if is_counter(sig.metric) and np.isfinite(values[:, j]).sum() > 1:
            values[:, j], resets = counter_rate(times, values[:, j])
            extra = f" ({resets} reset(s) read as restarts)" if resets else ""
            notes.append(f"counter {sig.column!r} turned into a per-second rate{extra}")
    empty = [j for j in range(len(signals)) if not np.isfinite(values[:, j]).any()]
    if empty:
        notes.append(
            f"signal(s) with no value dropped: {', '.join(signals[j].column for j in empty[:6])}"
        )
        keep = [j for j in range(len(signals)) if j not in set(empty)]
        values, signals = values[:, keep], [signals[j] for j in keep]
    for note in (gap_note(times), missing_note(values, [s.column for s in signals])):
        if note:
            notes.append(note)
    return SignalTable(times, values, signals, source, notes, list(excluded or []))
