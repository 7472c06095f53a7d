"""Recorded traffic replayed as the workload: a user's CSV, or NAB series, at k × the load.

`with_trace` puts a rate series (CSV) under any scenario: the scenario keeps its topology,
classes, calendar, faults and SLOs; the series shapes every class (`workload.replay`,
`normalize: peak`), so each class's rate becomes its peak, `peak_x` × its nominal rate.
The CSV is checked when the study starts (columns, values, times), naming the file and
the column, as `firebreak validate` does for a scenario that replays it.

NAB series are regularised (detectors.forecast.traffic), cut to `days` and written as plain
timestamp,value CSVs next to the study's outputs (so every replay is inspectable and can be
rerun as a scenario), then replayed on the synthetic families' topology and SLO.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from detectors.forecast import traffic
from experiments.capacity.families import BASE_RATE, DAY_S, SLOS, TELEMETRY, study_topology
from experiments.capacity.study import Case, scenario_cases
from twin.errors import FirebreakError
from twin.scenario.loader import check_replay
from twin.scenario.schema import Replay, Scenario
from twin.scenario.workload import load_replay

TRACE_NOISE = 0.05
"""Per-tick traffic noise on top of a NAB trace (its 5-30 min samples, interpolated to
10 s ticks, are smooth between samples)."""
MIN_DAYS = 2.0
"""A day to warm the forecaster up and at least a day scored."""


def base_scenario(tick: float = 10.0, duration: float = 2 * DAY_S) -> Scenario:
    """The families' topology and SLO with one class at the nominal load (no seasonality)."""
    return Scenario.model_validate(
        {
            "name": "capacity-trace",
            "topology": study_topology(),
            "duration": duration,
            "tick": tick,
            "seed": 0,
            "workload": {
                "classes": [{"name": "shop", "entry": "frontend", "rate": BASE_RATE}],
                "noise": TRACE_NOISE,
            },
            "slos": SLOS,
            "telemetry": TELEMETRY,
        }
    )


def with_trace(
    scenario: Scenario,
    csv: Path,
    peak_x: float,
    *,
    days: float | None = None,
    value_column: str = "value",
    time_column: str | None = "timestamp",
    name: str | None = None,
) -> Scenario:
    """`scenario` with its load shaped by the CSV: each class peaks at peak_x × its rate.

    The run lasts the series (or `days`, if shorter; a shorter series repeats).
    """
    if not peak_x > 0:
        raise FirebreakError(f"--peak-x: must be > 0, got {peak_x:g}")
    replay = Replay(
        file=str(Path(csv).resolve()),
        value_column=value_column,
        time_column=time_column,
        normalize="peak",
    )
    check_replay(replay, str(csv))
    _, _, period = load_replay(replay)
    duration = period if days is None else days * DAY_S
    if duration < MIN_DAYS * DAY_S:
        raise FirebreakError(
            f"{csv}: the series covers {period / DAY_S:.2f} days; the study needs "
            f"{MIN_DAYS:g} (a day to warm the forecaster up, then at least one scored)"
        )
    classes = [c.model_copy(update={"rate": c.rate * peak_x}) for c in scenario.workload.classes]
    workload = scenario.workload.model_copy(update={"classes": classes, "replay": replay})
    return scenario.model_copy(
        update={
            "name": name or f"{scenario.name}+{Path(csv).stem}@{peak_x:g}x",
            "workload": workload,
            "duration": duration,
        }
    )


def short_name(name: str) -> str:
    """'realTweets/Twitter_volume_AMZN.csv' -> 'Twitter_volume_AMZN'."""
    return Path(name).stem


def prepare_nab(name: str, out_dir: Path, days: float | None, root: Path | None = None) -> Path:
    """Write the regularised first `days` of a NAB series (by its path under data/)."""
    series = traffic.load(name, root or traffic.NAB_ROOT)
    keep = series.times.size
    if days is not None:
        keep = min(keep, int(round(days * DAY_S / series.step)))
    stamps = pd.to_datetime(series.times[:keep], unit="s").strftime("%Y-%m-%d %H:%M:%S")
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{short_name(name)}.csv"
    frame = pd.DataFrame({"timestamp": stamps, "value": np.round(series.values[:keep], 6)})
    frame.to_csv(path, index=False)
    return path


def nab_cases(
    names: list[str],
    peaks: list[float],
    seeds: int,
    out_dir: Path,
    *,
    days: float | None = 14.0,
    tick: float = 10.0,
    split: dict[str, str] | None = None,
) -> list[Case]:
    """Each NAB series × peak multiple × seed on the families' topology; `split` names each
    series' part (development / held-out), kept as the case's kind."""
    cases = []
    for name in names:
        csv = prepare_nab(name, out_dir, days)
        for peak_x in peaks:
            label = f"{short_name(name)}@{peak_x:g}x"
            scenario = with_trace(base_scenario(tick), csv, peak_x, name=label)
            kind = (split or {}).get(name, "trace")
            cases.extend(scenario_cases(scenario, seeds, kind=kind))
    return cases
