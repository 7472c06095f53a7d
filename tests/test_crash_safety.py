"""Nothing lost: a run killed at any moment leaves files that open, and keeps every chunk it
flushed; SIGTERM (docker stop) ends a run like Ctrl-C; an error closes what is open.

The kill tests run a 7-day scenario and signal it once a chosen number of metric parts is on
disk, plus a seeded random delay so the signal also lands in the middle of a write.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow.dataset as ds
import pytest
from run_files import assert_every_file_opens

from twin.scenario.loader import load_scenario

ROOT = Path(__file__).resolve().parents[1]
STEADY = ROOT / "scenarios" / "steady-state.yaml"
BLACK_FRIDAY = ROOT / "scenarios" / "black-friday.yaml"
TICK_S = 1.0


def _start(out: Path, scenario: Path = STEADY, *extra: str) -> subprocess.Popen[str]:
    cmd = [sys.executable, "-m", "firebreak.cli", "run", str(scenario), "--out", str(out)]
    return subprocess.Popen(
        [*cmd, *extra],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=out.parent,
        start_new_session=True,  # our signals only, never the test runner's
    )


def _parts(out: Path) -> list[Path]:
    return sorted((out / "metrics.parquet").glob("part-*.parquet"))


def _wait(condition, proc: subprocess.Popen[str], what: str, timeout_s: float = 180) -> None:
    deadline = time.monotonic() + timeout_s  # a fresh clone compiles the kernel first
    while not condition():
        if proc.poll() is not None:
            raise AssertionError(f"the run ended before {what}: {proc.communicate()}")
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def _every_file_opens(out: Path, killed: bool = False) -> None:
    assert_every_file_opens(out, killed=killed)


def _grid(scenario: Path = STEADY) -> tuple[float, float]:
    """(first time, step) of metrics.parquet: every tick from 0 when ideal; in production
    (the default) one step per scrape round, the first once a rate() window is full. From
    the scenario: a killed run never wrote its telemetry.json."""
    telemetry = load_scenario(scenario).telemetry
    if telemetry.mode != "production":
        return 0.0, TICK_S
    return telemetry.production.rate_window_s, telemetry.production.step_s


def _metrics_times(out: Path) -> np.ndarray:
    table = ds.dataset(out / "metrics.parquet", format="parquet").to_table(columns=["time"])
    return np.unique(table.column("time").to_numpy())


CASES = [  # (signal, metric parts on disk before it is sent)
    ("SIGKILL", 1),
    ("SIGKILL", 4),
    ("SIGKILL", 11),
    ("SIGTERM", 2),
    ("SIGTERM", 9),
]


@pytest.mark.parametrize(("signame", "parts_before"), CASES)
def test_a_killed_week_leaves_readable_files_and_every_flushed_chunk(
    tmp_path: Path, signame: str, parts_before: int
) -> None:
    out = tmp_path / "run"
    proc = _start(out, STEADY, "--duration", "7d", "--no-labels")
    rng = np.random.default_rng(parts_before)
    try:
        _wait(lambda: len(_parts(out)) >= parts_before, proc, f"{parts_before} parts")
        time.sleep(float(rng.uniform(0.0, 0.3)))  # land anywhere, a write included
        seen = _parts(out)
        os.killpg(proc.pid, getattr(signal, signame))
        _, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()

    _every_file_opens(out, killed=signame == "SIGKILL")
    times = _metrics_times(out)
    # every part on disk before the signal is still there, and the ticks run without a gap
    assert {p.name for p in seen} <= {p.name for p in _parts(out)}
    first, step = _grid()
    assert times[0] == first
    assert np.array_equal(times, first + np.arange(len(times)) * step)
    assert len(times) < 7 * 86400
    summary = json.loads((out / "summary.json").read_text())
    if signame == "SIGKILL":
        assert proc.returncode == -signal.SIGKILL
        assert summary["status"] == "running"  # it never got to say more
    else:
        assert proc.returncode == 130, stderr
        assert "Traceback" not in stderr
        assert summary["status"] == "interrupted"
        # a graceful stop keeps everything it simulated, labels and summary included
        assert summary["sim_seconds"] - TICK_S - step < times[-1] <= summary["sim_seconds"]
        assert json.loads((out / "labels.json").read_text())["method"].startswith("none")


def test_sigterm_while_labelling_keeps_the_run_and_says_so(tmp_path: Path) -> None:
    """The labels' but-for replays come after the simulation: a stop there still writes
    labels.json (faults started, effects unknown) and an interrupted summary."""
    out = tmp_path / "run"
    proc = _start(out, BLACK_FRIDAY)
    try:
        # traces.json is assembled when the simulation ends, just before labelling starts
        _wait(lambda: (out / "traces.json").exists(), proc, "the end of the simulation")
        time.sleep(0.3)
        os.killpg(proc.pid, signal.SIGTERM)
        _, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
    assert proc.returncode == 130, stderr
    assert "Traceback" not in stderr
    _every_file_opens(out)
    summary = json.loads((out / "summary.json").read_text())
    labels = json.loads((out / "labels.json").read_text())
    assert summary["status"] == "interrupted"
    assert labels["method"] == "none: labelling interrupted"
    assert len(labels["faults"]) == 4 and all(f["end"] is None for f in labels["faults"])
    assert summary["sim_seconds"] == pytest.approx(86400.0)


def test_a_complete_run_says_so(tmp_path: Path) -> None:
    out = tmp_path / "run"
    proc = _start(out, STEADY, "--duration", "10m")
    _, stderr = proc.communicate(timeout=180)
    assert proc.returncode == 0, stderr
    assert json.loads((out / "summary.json").read_text())["status"] == "complete"
    _every_file_opens(out)
    assert not list(out.rglob(".*"))  # no spool or temporary file left behind


def test_an_error_mid_run_closes_everything_and_says_failed(tmp_path: Path) -> None:
    """A sink that fails part way: the writers are closed (the parts written so far read
    back), summary.json says failed and why, and the error reaches the caller."""
    from twin.run.runner import run_scenario
    from twin.scenario.loader import load_scenario

    scenario = load_scenario(STEADY, duration=7200)

    class Boom(RuntimeError):
        pass

    class FailingController:
        mode = "ai"

        def drive(self, sim) -> None:
            sim.advance(3600.0)
            raise Boom("the operator crashed")

        def finish(self, truth, slo, summary):  # pragma: no cover - never reached
            return {}

    out = tmp_path / "run"
    with pytest.raises(Boom):
        run_scenario(scenario, out, controller=FailingController())
    summary = json.loads((out / "summary.json").read_text())
    assert summary["status"] == "failed"
    assert "Boom: the operator crashed" in summary["error"]
    _every_file_opens(out)
    times = _metrics_times(out)
    assert times[-1] >= 3600.0 - _grid()[1]
    assert not list((out / "metrics.parquet").glob(".*"))
