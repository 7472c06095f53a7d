"""The tiered pipeline on any signal set: ingested tables, labels never scored, real files
whose clocks misbehave, bad files refused cleanly."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from detectors.anomaly.features import signal_layout
from detectors.anomaly.pipeline import TieredPipeline
from detectors.anomaly.table import detect_table, read_table
from detectors.ingest.read import read_metrics
from firebreak.cli import main

ROOT = Path(__file__).resolve().parents[1]
REAL = Path(__file__).parent / "data" / "real"
# ../shared/data next to the repository (a worktree sits one level deeper)
SHARED = next(
    (p / "shared" / "data" for p in (ROOT.parent, ROOT.parent.parent) if (p / "shared").is_dir()),
    ROOT.parent / "shared" / "data",
)
NAB = SHARED / "nab" / "data"


def labelled_csv(path: Path, n: int = 1200) -> None:
    """A latency, a success rate and a label column that holds the answer."""
    rng = np.random.default_rng(1)
    t = 1_767_571_200 + 60 * np.arange(n)
    latency = rng.normal(0.2, 0.01, n)
    success = rng.normal(99.5, 0.1, n)
    label = np.zeros(n, dtype=int)
    label[900:930] = 1
    latency[900:930] += 0.3
    success[1000:1030] -= 20.0  # a drop: bad for a success rate
    pd.DataFrame(
        {"timestamp": t, "shop_latency_p90": latency, "shop_SuccessRate(%)": success,
         "label": label}
    ).to_csv(path, index=False)  # fmt: skip


def test_a_label_column_is_never_scored(tmp_path: Path) -> None:
    path = tmp_path / "labelled.csv"
    labelled_csv(path)
    table = read_table(path)
    assert "label" not in table.columns and table.excluded == ["label"]
    result = detect_table(table)
    assert {a.signal for a in result.alerts} <= {"latency_p90", "SuccessRate(%)"}
    times = {a.signal: a.time for a in result.alerts}
    assert table.times[900] <= times["latency_p90"] <= table.times[930]
    assert table.times[1000] <= times["SuccessRate(%)"] <= table.times[1030]  # a fall alerts


def test_kind_decides_direction_and_transform(tmp_path: Path) -> None:
    path = tmp_path / "labelled.csv"
    labelled_csv(path)
    layout = signal_layout(read_table(path))
    by_name = dict(zip(layout.names, range(layout.size), strict=True))
    lat, ok = by_name["latency_p90"], by_name["SuccessRate(%)"]
    assert layout.log[lat] and not layout.log[ok]  # a percentage stays as it is
    assert layout.sign[ok] == -1 and not layout.two_sided[ok]
    assert layout.services == ("shop",)


def test_generic_pipeline_is_deterministic_and_counts_frames(tmp_path: Path) -> None:
    path = tmp_path / "labelled.csv"
    labelled_csv(path)
    table = read_table(path)
    first = detect_table(table)
    second = detect_table(table)
    assert [a.to_dict() for a in first.alerts] == [a.to_dict() for a in second.alerts]
    assert np.array_equal(first.scores, second.scores)
    pipe = TieredPipeline((), layout=signal_layout(table), persist=3)
    for t, row in zip(table.times[:100], table.values[:100], strict=True):
        pipe.process(float(t), row)
    assert pipe.stats.frames == 100 and pipe.stats.service_frames == 100


def test_cli_detect_on_a_labelled_csv_writes_no_label(tmp_path: Path, capsys) -> None:
    path = tmp_path / "labelled.csv"
    labelled_csv(path)
    assert main(["detect", str(path), "--out", str(tmp_path / "out")]) == 0
    scores = pd.read_csv(tmp_path / "out" / "scores.csv")
    assert "label" not in scores.columns and len(scores) == 1200
    alerts = [json.loads(x) for x in (tmp_path / "out" / "alerts.jsonl").read_text().splitlines()]
    assert alerts and all(a["signal"] != "label" for a in alerts)
    assert "not scored" in capsys.readouterr().out
    assert main(["detect", str(path), "--out", str(tmp_path / "o2"), "--exclude", "shop_lat*"]) == 0
    assert list(pd.read_csv(tmp_path / "o2" / "scores.csv").columns) == [
        "time",
        "shop_SuccessRate(%)",
    ]


def test_cli_detect_on_a_file_whose_time_goes_back(tmp_path: Path, capsys) -> None:
    assert main(["detect", str(REAL / "nab_machine_temperature_excerpt.csv"), "--out",
                 str(tmp_path / "o")]) == 0  # fmt: skip
    out = capsys.readouterr().out
    assert "backwards" in out and "rows sorted" in out


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("time,a_cpu\n1,0.5\n2,zz\n3,0.5\n4,0.6\n", "column 'a_cpu', row 2: not a number"),
        ("when,a_cpu\n1,0.5\n", "no time column"),
    ],
)
def test_cli_detect_bad_files_exit_2_naming_the_place(
    tmp_path: Path, capsys, content: str, message: str
) -> None:
    path = tmp_path / "bad.csv"
    path.write_text(content)
    assert main(["detect", str(path), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and str(path) in err
    assert "Traceback" not in err
    assert not (tmp_path / "o" / "scores.csv").exists()


def test_prometheus_json_runs_through_detect(tmp_path: Path) -> None:
    from test_ingest_readers import write_prometheus

    path = tmp_path / "q.json"
    write_prometheus(path)
    table = read_metrics(path)
    result = detect_table(table, window=10)
    assert result.scores.shape == (5, 2) and result.alerts == []


@pytest.mark.skipif(not NAB.is_dir(), reason="the NAB corpus (../shared/data/nab) is absent")
def test_detect_runs_on_every_nab_file(tmp_path: Path) -> None:
    """Every NAB series through the command's own path: each file ingested whole, the
    detectors streamed over its first 800 rows (the full corpus is a command: README)."""
    files = sorted(NAB.glob("*/*.csv"))
    assert len(files) == 58
    for path in files:
        table = read_table(path)
        assert table.columns == ["value"] and np.all(np.diff(table.times) > 0)
        table = table.head(800)
        result = detect_table(table)
        assert result.scores.shape == (len(table.times), 1)
        assert np.isfinite(result.scores).all()


def test_detect_subprocess_has_no_traceback_on_missing_file(tmp_path: Path) -> None:
    res = subprocess.run(
        [sys.executable, "-m", "firebreak.cli", "detect", str(tmp_path / "nope.csv"), "--out",
         str(tmp_path / "o")], capture_output=True, text=True, cwd=ROOT, timeout=120,
    )  # fmt: skip
    assert res.returncode == 2 and "no such file" in res.stderr and "Traceback" not in res.stderr


class _KindModel:
    """A stand-in tier 2: records what it was asked and confirms large latency z-scores."""

    def __init__(self) -> None:
        self.seen: list[np.ndarray] = []

    def score_one(self, z: np.ndarray) -> float:
        self.seen.append(z.copy())
        return float(abs(z[0]) / 3.0)  # KINDS[0] is latency


def test_tier2_reads_one_kind_pooled_vector_per_service(tmp_path: Path) -> None:
    from detectors.ingest.kinds import KINDS

    path = tmp_path / "labelled.csv"
    labelled_csv(path)
    model = _KindModel()
    result = detect_table(read_table(path), tier2=model)
    assert model.seen and all(z.shape == (len(KINDS),) for z in model.seen)
    assert {a.detector for a in result.alerts} == {"table.tiered"}
    assert any(a.signal == "latency_p90" for a in result.alerts)
