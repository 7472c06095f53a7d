"""The fault-free parts of a day of incident telemetry (Nezha's `rca_data/<day>`): what a
calibrated twin is checked against when the day's normal periods lie between its faults.

Why: the issue's held-out normal data is the fault-free part of `rca_data`, not another
day's single construct minute; the incident folders hold minutes of traces before every
injection (most of each fault's first trace file precedes it) and a whole day of pod
metrics. A trace counts as normal when it starts at least `FAULT_S + SETTLE_S` after the
previous injection and ends before the next one; a metric minute counts when it is outside
every [injection − one scrape, injection + `FAULT_S + SETTLE_S`].
"""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from experiments.calibration.fit import TIME_COLUMN, CalibrationError
from twin.scenario.trace_files import RawSpan

FAULT_S = 180.0  # Nezha's faults last about three minutes (its README)
SETTLE_S = 120.0  # and a system needs a while to drain what the fault left behind
SCRAPE_S = 60.0  # the pod metrics' interval: a minute stamped before an injection may hold it


def fault_list_path(day_dir: Path) -> Path:
    return day_dir / f"{day_dir.name}-fault_list.json"


def injections(day_dir: Path) -> list[float] | None:
    """Injection times (unix seconds, from `inject_time`, which is UTC: Nezha's
    `inject_timestamp` is often 8 h off) in order; None when the folder has no fault list."""
    path = fault_list_path(day_dir)
    if not path.is_file():
        return None
    try:
        raw = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CalibrationError(f"{path}: cannot read as JSON: {exc}") from None
    if not isinstance(raw, dict):
        raise CalibrationError(f"{path}: expected an object of fault lists by hour")
    out = []
    for hour, items in raw.items():
        for i, fault in enumerate(items if isinstance(items, list) else [None]):
            value = fault.get("inject_time") if isinstance(fault, dict) else None
            try:
                out.append(pd.Timestamp(value, tz="UTC").timestamp())
            except (TypeError, ValueError):
                raise CalibrationError(
                    f"{path}: {hour}[{i}].inject_time: {value!r} is not a time"
                ) from None
    return sorted(out)


@dataclass(frozen=True)
class NormalTraces:
    """The traces of the fault-free windows: their spans, how many windows, and the seconds
    and root-span gaps they cover (for rates)."""

    spans: list[RawSpan]
    windows: int
    covered_s: float
    intervals: int  # root spans minus one per window: arrivals over `covered_s`


def normal_traces(spans: list[RawSpan], injected: list[float]) -> NormalTraces:
    """The whole traces that ran in a fault-free window (see the module doc)."""
    by_trace: dict[str, list[RawSpan]] = defaultdict(list)
    for s in spans:
        by_trace[s.trace].append(s)
    times = np.asarray(injected, dtype=float)
    quiet = FAULT_S + SETTLE_S
    starts_by_window: dict[int, list[float]] = defaultdict(list)
    kept: list[RawSpan] = []
    for trace_spans in by_trace.values():
        begin = min(s.start for s in trace_spans) / 1e6
        end = max(s.end for s in trace_spans) / 1e6
        nxt = int(np.searchsorted(times, begin, side="right"))  # the first injection after it
        if nxt < len(times) and end >= times[nxt]:
            continue  # still running when the next fault began
        if nxt > 0 and begin < times[nxt - 1] + quiet:
            continue  # during the previous fault or its settling
        kept.extend(trace_spans)
        starts_by_window[nxt].append(begin)
    covered = sum(max(v) - min(v) for v in starts_by_window.values())
    intervals = sum(len(v) - 1 for v in starts_by_window.values())
    return NormalTraces(kept, len(starts_by_window), covered, intervals)


def normal_minutes(
    metrics: pd.DataFrame, injected: list[float], folder: Path | str = "metric"
) -> pd.DataFrame:
    """The pod-metric rows (with a `time` column, unix seconds) outside every fault. A row
    without a time cannot be told from a fault's minutes: refused (CalibrationError naming
    its file under `folder`) rather than dropped unseen."""
    t = metrics["time"].to_numpy(dtype=float)
    untimed = ~np.isfinite(t)
    if untimed.any():
        files = metrics["file"] if "file" in metrics else pd.Series("<pod metrics>", metrics.index)
        name = files[untimed].iloc[0]
        here = int((untimed & (files == name).to_numpy()).sum())
        rows = int((files == name).sum())
        others = int(untimed.sum()) - here
        more = f" (and {others} in other files)" if others else ""
        raise CalibrationError(
            f"{folder}/{name}: {TIME_COLUMN}: {here} of its {rows} rows have no time{more}; a "
            "day of faults needs every minute's time to leave the faults out"
        )
    bad = np.zeros(len(t), dtype=bool)
    for inj in injected:
        bad |= (t >= inj - SCRAPE_S) & (t <= inj + FAULT_S + SETTLE_S)
    return metrics[~bad]
