"""The `firebreak` command line, exercised as a user runs it: a separate process.

Runs are kept short (an hour of simulated time or less) except the interrupted one, which is
stopped after a few seconds of wall time.
"""

from __future__ import annotations

import fcntl
import json
import os
import pty
import select
import signal
import struct
import subprocess
import sys
import termios
import time
from pathlib import Path
from typing import Any

import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
import yaml

from twin.scenario.loader import load_topology
from twin.scenario.observe_schema import ProductionTelemetry

ROOT = Path(__file__).resolve().parents[1]
SCENARIOS = sorted((ROOT / "scenarios").glob("*.yaml"))
TOPOLOGY = ROOT / "scenarios" / "topologies" / "online-boutique.yaml"
OUTAGE = ROOT / "scenarios" / "dependency-outage.yaml"
STEADY = ROOT / "scenarios" / "steady-state.yaml"
RUN_FILES = (
    "metrics.parquet",
    "labels.json",
    "events.jsonl",
    "summary.json",
    "overview.png",
    "traces.json",
    "logs.jsonl",
)
DETERMINISTIC_FILES = (
    "metrics.parquet",
    "labels.json",
    "events.jsonl",
    "traces.json",
    "logs.jsonl",
)
TIMEOUT_S = 120


def content(path: Path) -> bytes:
    """A file's bytes, or a Parquet dataset's parts (names and bytes, in order)."""
    if path.is_dir():
        return b"".join(p.name.encode() + p.read_bytes() for p in sorted(path.glob("*.parquet")))
    return path.read_bytes()


def command(*args: Any) -> list[str]:
    return [sys.executable, "-m", "firebreak.cli", *map(str, args)]


def firebreak(*args: Any, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        command(*args), capture_output=True, text=True, cwd=cwd or ROOT, timeout=TIMEOUT_S
    )


def default_sigint() -> None:
    """Children of a non-interactive shell's background job inherit SIGINT ignored; Python
    then never raises KeyboardInterrupt. Restore the default so Ctrl-C behaves as at a prompt."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def scenario_yaml(**changes: Any) -> dict[str, Any]:
    sc: dict[str, Any] = {
        "name": "cli-errors",
        "topology": str(TOPOLOGY),
        "duration": "10m",
        "workload": {"classes": [{"name": "browse", "entry": "frontend", "rate": 50}]},
        "faults": [{"kind": "crash", "target": "cartservice", "start": "2m", "duration": "1m"}],
    }
    sc.update(changes)
    return sc


def assert_clean_error(proc: subprocess.CompletedProcess[str], *fragments: str) -> None:
    """Exit 2, the message on stderr naming what is wrong, and no traceback anywhere."""
    assert proc.returncode == 2, (proc.returncode, proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr and "Traceback" not in proc.stdout, proc.stderr
    missing = [f for f in fragments if f not in proc.stderr]
    assert not missing, f"{missing} not in stderr: {proc.stderr!r}"


def test_module_entry_point_runs() -> None:
    proc = firebreak("--help")
    assert proc.returncode == 0
    for sub in ("run", "validate", "generate-topology"):
        assert sub in proc.stdout


# -------------------------------------------------------------------------- validate


def test_validate_every_shipped_scenario() -> None:
    assert SCENARIOS, "no scenarios found"
    proc = firebreak("validate", *SCENARIOS)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert len(lines) == len(SCENARIOS)
    for path, line in zip(SCENARIOS, lines, strict=True):
        assert line.startswith("ok") and str(path) in line


def test_validate_bad_file(tmp_path: Path) -> None:
    faults = [{"kind": "crash", "target": "cartt", "start": "2m"}]
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(scenario_yaml(faults=faults)), encoding="utf-8")
    proc = firebreak("validate", bad)
    assert_clean_error(proc, str(bad), "faults[0].target", "'cartt'")


def test_validate_reports_every_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: t\nduration: 1h\nseed: x: y\n", encoding="utf-8")
    proc = firebreak("validate", OUTAGE, bad, STEADY)
    assert_clean_error(proc, "malformed YAML", "line 3")
    assert str(OUTAGE) in proc.stdout and str(STEADY) in proc.stdout


# -------------------------------------------------------------------- run: bad input


def _bad_scenario(tmp_path: Path, case: str) -> tuple[list[Any], tuple[str, ...]]:
    """(arguments after `run`, fragments the message must contain) for one bad input."""
    path = tmp_path / f"{case}.yaml"
    if case == "unknown-service":
        faults = [{"kind": "latency", "target": "cartt", "start": "2m"}]
        path.write_text(yaml.safe_dump(scenario_yaml(faults=faults)), encoding="utf-8")
        return [path], ("faults[0].target", "'cartt'")
    if case == "missing-file":
        return [path], (str(path), "file not found")
    if case == "malformed-yaml":
        path.write_text("name: t\nworkload:\n  classes: [\n\tx\n", encoding="utf-8")
        return [path], (str(path), "malformed YAML", "line 4")
    if case == "negative-rate":
        workload = {"classes": [{"name": "browse", "entry": "frontend", "rate": -3}]}
        path.write_text(yaml.safe_dump(scenario_yaml(workload=workload)), encoding="utf-8")
        return [path], ("workload.classes[0].rate", "-3")
    if case == "fault-after-run":
        faults = [{"kind": "crash", "target": "cartservice", "start": "20m"}]
        path.write_text(yaml.safe_dump(scenario_yaml(faults=faults)), encoding="utf-8")
        return [path], ("faults[0].start", "1200s", "outside the run", "600s")
    if case == "duration-cuts-fault":
        return [OUTAGE, "--duration", "20m"], ("faults[0].start", "2700s", "outside the run")
    if case == "bad-duration-flag":
        return [OUTAGE, "--duration", "5parsecs"], ("--duration", "'5parsecs'")
    if case == "infinite-duration-flag":
        return [OUTAGE, "--duration", "inf"], ("--duration", "inf")
    if case == "negative-seed":
        return [OUTAGE, "--seed", "-1", "--duration", "1h"], ("seed", "-1")
    raise AssertionError(case)


@pytest.mark.parametrize(
    "case",
    [
        "unknown-service",
        "missing-file",
        "malformed-yaml",
        "negative-rate",
        "fault-after-run",
        "duration-cuts-fault",
        "bad-duration-flag",
        "infinite-duration-flag",
        "negative-seed",
    ],
)
def test_run_bad_input_exits_2_without_traceback(tmp_path: Path, case: str) -> None:
    args, fragments = _bad_scenario(tmp_path, case)
    out = tmp_path / "run"
    proc = firebreak("run", *args, "--out", out)
    assert_clean_error(proc, *fragments)
    assert not (out / "metrics.parquet").exists()


# --------------------------------------------------------------------- run: outputs


@pytest.fixture(scope="module")
def outage_runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """dependency-outage for one hour (the fault is 45m-60m), seeds 11, 11 and 12, in parallel.

    stderr is a pipe here, so these runs also show that no progress bar is drawn off a tty.
    """
    base = tmp_path_factory.mktemp("outage")
    seeds = {"a": 11, "b": 11, "c": 12}
    procs = {
        key: subprocess.Popen(
            command("run", OUTAGE, "--duration", "1h", "--seed", seed, "--out", base / key),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=base,
        )
        for key, seed in seeds.items()
    }
    runs: dict[str, Any] = {}
    try:
        for key, proc in procs.items():
            stdout, stderr = proc.communicate(timeout=TIMEOUT_S)
            runs[key] = {"rc": proc.returncode, "stdout": stdout, "stderr": stderr,
                         "out": base / key}  # fmt: skip
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.kill()
    return runs


def test_run_writes_the_run_directory(outage_runs: dict[str, Any]) -> None:
    run = outage_runs["a"]
    assert run["rc"] == 0, run["stderr"]
    assert "Traceback" not in run["stderr"]
    out: Path = run["out"]
    for name in RUN_FILES:
        assert content(out / name), name
    assert sorted(p.name for p in (out / "metrics.parquet").iterdir())[0] == "part-000000.parquet"
    assert str(out) in run["stdout"]

    summary = json.loads((out / "summary.json").read_text())
    for key in ("scenario", "seed", "fidelity", "sim_seconds", "wall_seconds", "slo_adherence"):
        assert key in summary, key
    assert summary["scenario"] == "dependency-outage"
    assert summary["seed"] == 11
    assert summary["sim_seconds"] == pytest.approx(3600.0)
    assert summary["wall_seconds"] > 0
    assert 0.0 <= summary["slo_adherence"] <= 1.0
    assert summary["interrupted"] is False
    assert isinstance(summary["stacks"], dict) and summary["stacks"]
    for stack in summary["stacks"].values():
        for key in ("alerts", "incidents", "mttd_s", "mtti_s", "mttr_s", "replica_hours"):
            assert key in stack, key

    labels = json.loads((out / "labels.json").read_text())
    assert [(f["kind"], f["target"]) for f in labels["faults"]] == [
        ("dependency_outage", "redis-cart")
    ]
    assert labels["faults"][0]["start"] == pytest.approx(2700.0)

    table = pq.read_table(out / "metrics.parquet")
    assert table.column_names == ["time", "service", "metric", "value"]
    # production-like by default: one row per scrape step, from the first full rate() window
    prod = ProductionTelemetry()
    assert pc.min(table["time"]).as_py() == prod.rate_window_s
    assert pc.max(table["time"]).as_py() == pytest.approx(3600.0 - prod.step_s)
    for line in (out / "events.jsonl").read_text().splitlines():
        json.loads(line)


def test_same_seed_gives_identical_bytes(outage_runs: dict[str, Any]) -> None:
    a, b = outage_runs["a"], outage_runs["b"]
    assert a["rc"] == 0 and b["rc"] == 0, (a["stderr"], b["stderr"])
    for name in DETERMINISTIC_FILES:
        assert content(a["out"] / name) == content(b["out"] / name), name


def test_seed_flag_changes_the_output(outage_runs: dict[str, Any]) -> None:
    a, c = outage_runs["a"], outage_runs["c"]
    assert c["rc"] == 0, c["stderr"]
    assert json.loads((c["out"] / "summary.json").read_text())["seed"] == 12
    assert content(a["out"] / "metrics.parquet") != content(c["out"] / "metrics.parquet")
    values_a = pq.read_table(a["out"] / "metrics.parquet")["value"]
    values_c = pq.read_table(c["out"] / "metrics.parquet")["value"]
    assert not values_a.equals(values_c)


def test_no_progress_bar_without_a_terminal(outage_runs: dict[str, Any]) -> None:
    for run in outage_runs.values():
        assert "%|" not in run["stderr"] and "sim-s" not in run["stderr"], run["stderr"]


# ---------------------------------------------------------------------- interruption


def test_interrupted_run_keeps_what_it_simulated(tmp_path: Path) -> None:
    out = tmp_path / "run"
    metrics = out / "metrics.parquet"
    proc = subprocess.Popen(
        command("run", STEADY, "--duration", "30d", "--no-labels", "--out", out),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=tmp_path,
        preexec_fn=default_sigint,
    )
    try:
        deadline = time.monotonic() + 180  # a fresh clone compiles the kernel first
        # the dataset's first part appears once the first chunk is written
        while not (metrics.is_dir() and any(metrics.glob("part-*.parquet"))):
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "metrics never started"
            time.sleep(0.1)
        time.sleep(0.5)
        proc.send_signal(signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()

    assert proc.returncode == 130, (proc.returncode, stdout, stderr)
    assert "Traceback" not in stderr, stderr
    assert "interrupted" in stderr and "kept" in stderr, stderr

    summary = json.loads((out / "summary.json").read_text())
    assert summary["interrupted"] is True
    assert summary["status"] == "interrupted"
    assert 0 < summary["sim_seconds"] < 30 * 86400
    times = pq.read_table(metrics, columns=["time"])["time"]
    max_time = pc.max(times).as_py()
    assert 0 < max_time <= summary["sim_seconds"]
    # everything simulated is kept, up to the last whole scrape step
    assert max_time > summary["sim_seconds"] - summary["tick_s"] - ProductionTelemetry().step_s


# ---------------------------------------------------------------------- progress bar


def _read_terminal(fd: int, proc: subprocess.Popen[bytes], timeout_s: float) -> bytes:
    """Everything written to the pty until the child has closed it."""
    data = b""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 0.5)
        if ready:
            try:
                chunk = os.read(fd, 65536)
            except OSError:  # EIO: every slave end is closed
                break
            if not chunk:
                break
            data += chunk
        elif proc.poll() is not None:
            break
    return data


def _run_on_terminal(tmp_path: Path, *args: object) -> tuple[int, str, bytes]:
    """Run the CLI with stderr on a 24x120 pseudo-terminal: (exit code, screen, stdout)."""
    master, slave = pty.openpty()
    # a real terminal has a size; tqdm draws nothing on a 0x0 pty
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 120, 0, 0))
    try:
        proc = subprocess.Popen(
            command(*args),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=slave,
            cwd=tmp_path,
        )
        os.close(slave)
        slave = -1
        screen = _read_terminal(master, proc, TIMEOUT_S)
        stdout, _ = proc.communicate(timeout=TIMEOUT_S)
    finally:
        os.close(master)
        if slave >= 0:
            os.close(slave)
    return proc.returncode, screen.decode("utf-8", "replace"), stdout


def test_progress_bar_on_a_terminal(tmp_path: Path) -> None:
    code, text, stdout = _run_on_terminal(
        tmp_path, "run", STEADY, "--duration", "2h", "--no-labels", "--out", tmp_path / "r"
    )
    assert code == 0, text
    assert "%|" in text and "sim-s" in text, text
    assert "simulating" in text
    assert b"steady-state seed 1" in stdout


def test_quiet_hides_the_bar_on_a_terminal(tmp_path: Path) -> None:
    code, text, _ = _run_on_terminal(
        tmp_path, "run", STEADY, "--duration", "1h", "--quiet", "--out", tmp_path / "r"
    )
    assert code == 0
    assert "%|" not in text and "sim-s" not in text


# ------------------------------------------------------------------ generate-topology


def test_generate_topology_loads(tmp_path: Path) -> None:
    path = tmp_path / "fleet.yaml"
    proc = firebreak("generate-topology", "--services", 50, "--seed", 3, "-o", path)
    assert proc.returncode == 0, proc.stderr
    topology = load_topology(path)
    assert len(topology.services) == 50
    assert topology.calls


def test_generate_topology_is_seeded(tmp_path: Path) -> None:
    paths = [tmp_path / f"{i}.yaml" for i in range(3)]
    for path, seed in zip(paths, (3, 3, 4), strict=True):
        proc = firebreak("generate-topology", "--services", 20, "--seed", seed, "-o", path)
        assert proc.returncode == 0, proc.stderr
    assert paths[0].read_bytes() == paths[1].read_bytes()
    assert paths[0].read_bytes() != paths[2].read_bytes()


def test_generate_topology_needs_two_services(tmp_path: Path) -> None:
    path = tmp_path / "one.yaml"
    proc = firebreak("generate-topology", "--services", 1, "-o", path)
    assert_clean_error(proc, "--services", "1")
    assert not path.exists()
