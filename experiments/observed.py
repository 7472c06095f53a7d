"""What the evaluation suites' detectors and RCA methods see in `production` telemetry mode.

In `ideal` mode the suites stream the twin's exact per-tick frames. In `production` mode a
case is instead run through `run_scenario` with `telemetry.mode = production` into a
temporary run directory, and what comes back is only what that directory holds:
`metrics.parquet` (15 s PromQL steps with scrape jitter, histogram quantiles, rate()
windows, counter resets, noise floors, benign confounders), `logs.jsonl` and, for scoring
only, `labels.json`. Detectors and methods never see the ideal frames; the finished
simulation is kept only for the twin-verified counterfactual (a twin oracle, reported apart).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np

from twin.errors import FirebreakError
from twin.fields import SERVICE_METRICS

if TYPE_CHECKING:  # the CLI imports the choices at start-up; the twin loads only when run
    from twin.flow.engine import Simulation
    from twin.scenario.schema import Scenario

TelemetryChoice = Literal["ideal", "production"]
TELEMETRY_CHOICES: tuple[TelemetryChoice, ...] = ("ideal", "production")
TELEMETRY_HELP = (
    "what detectors and RCA methods see: 'ideal' (default, so the README's ideal figures stay "
    "reproducible: the exact per-tick frames) or 'production' (each case run into a temporary run "
    "directory with production-like telemetry and read back from it: 15 s scrapes, "
    "histogram quantiles, rate() windows, noise floors, benign confounders)"
)

LOOP_TELEMETRY_HELP = (
    "what the closed loop's operator, detectors and RCA see: 'ideal' (default, so the README's "
    "published rehearsal and impact figures stay reproducible: the twin's exact per-tick "
    "frames) or 'production' (the run directory's production telemetry as it is recorded: "
    "15 s PromQL steps over jittered, lossy scrapes, histogram quantiles, rate() windows, "
    "counter resets, benign confounders; agents.loop.observed_feed). SLOs and MTTR are scored "
    "on the twin's ground truth either way"
)


def check_telemetry(mode: str) -> TelemetryChoice:
    """The mode, or a clear error naming the allowed ones (callers outside argparse)."""
    if mode not in TELEMETRY_CHOICES:
        allowed = ", ".join(TELEMETRY_CHOICES)
        raise FirebreakError(f"telemetry: expected one of {allowed}, got {mode!r}")
    return mode  # type: ignore[return-value]


def with_telemetry_mode(scenario: Scenario, mode: TelemetryChoice) -> Scenario:
    """The scenario with its run directory's telemetry mode set, nothing else changed."""
    if scenario.telemetry.mode == mode:
        return scenario
    telemetry = scenario.telemetry.model_copy(update={"mode": mode})
    return scenario.model_copy(update={"telemetry": telemetry})


def production_scenario(scenario: Scenario, *, logs: bool = True) -> Scenario:
    """The scenario observed as production would: production telemetry, logs as asked, no
    traces or plot (the suites read neither; skipping them keeps runs short)."""
    telemetry = scenario.telemetry.model_copy(
        update={"mode": "production", "traces": False, "plot": False, "logs": logs}
    )
    return scenario.model_copy(update={"telemetry": telemetry})


@dataclass
class ObservedRun:
    """A run as its production run directory records it (service metrics reordered to the
    topology's services × SERVICE_METRICS, as the ideal frames are)."""

    times: np.ndarray  # sim seconds of each observed step
    values: np.ndarray  # steps × services × SERVICE_METRICS
    services: tuple[str, ...]
    log_records: list[dict]
    labels: dict | None  # labels.json (scoring only); None when not labelled
    sim: Simulation | None  # the finished twin (counterfactual forks only)

    def frames(self) -> Iterator[tuple[float, np.ndarray]]:
        """(time, services × SERVICE_METRICS) per observed step, as a detector streams them."""
        for t, row in zip(self.times, self.values, strict=True):
            yield float(t), row


def _service_cube(run_dir: Path, services: tuple[str, ...]) -> tuple[np.ndarray, np.ndarray]:
    """metrics.parquet as steps × `services` × SERVICE_METRICS (absent cells are NaN)."""
    from twin.telemetry.widecsv import read_cube

    times, seen, metrics, cube = read_cube(run_dir / "metrics.parquet")
    out = np.full((len(times), len(services), len(SERVICE_METRICS)), np.nan)
    s_index = {s: i for i, s in enumerate(seen)}
    m_index = {m: j for j, m in enumerate(metrics)}
    for i, svc in enumerate(services):
        if svc not in s_index:
            continue
        for j, metric in enumerate(SERVICE_METRICS):
            if metric in m_index:
                out[:, i, j] = cube[:, s_index[svc], m_index[metric]]
    return times, out


def _read_json(path: Path) -> dict:
    with path.open() as fh:
        return json.load(fh)


def _read_logs(path: Path) -> list[dict]:
    if not path.exists():
        return []
    with path.open() as fh:
        return [json.loads(line) for line in fh if line.strip()]


def observe(
    scenario: Scenario,
    run_dir: Path,
    *,
    labels: bool = False,
    logs: bool = True,
    keep_sim: bool = False,
) -> ObservedRun:
    """Run `scenario` with production telemetry into `run_dir` and read back what it holds.

    `labels`: write and return labels.json (the but-for replays; scoring only).
    `keep_sim`: keep the finished simulation (for twin-verified counterfactual forks)."""
    from twin.run.runner import run_scenario

    observed = production_scenario(scenario, logs=logs)
    holder: list[Simulation] = []

    def grab(sim: Simulation) -> None:
        if not holder:
            holder.append(sim)

    run_scenario(observed, run_dir, labels=labels, on_tick=(grab,))
    sim = holder[0]
    services = tuple(sim.topo.names)
    times, values = _service_cube(run_dir, services)
    truth = _read_json(run_dir / "labels.json") if labels else None
    records = _read_logs(run_dir / "logs.jsonl") if logs else []
    return ObservedRun(times, values, services, records, truth, sim if keep_sim else None)
