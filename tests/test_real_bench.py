"""`firebreak real-bench` end to end on a handful of cases: a miniature of each dataset's
layout built from the real excerpts (always), and the shared data when it is present."""

from __future__ import annotations

import gzip
import json
import shutil
from pathlib import Path

import pandas as pd
import pytest

from detectors.rca.trace_latency import LatencySettings, latency_scores
from experiments.realbench.bench import find_datasets
from experiments.realbench.delay_check import delayed
from firebreak.cli import main

REAL = Path(__file__).parent / "data" / "real"
ROOT = Path(__file__).resolve().parents[1]
# ../shared/data next to the repository (a worktree sits one level deeper)
SHARED = next(
    (p / "shared" / "data" for p in (ROOT.parent, ROOT.parent.parent) if (p / "shared").is_dir()),
    ROOT.parent / "shared" / "data",
)
DAY = "2023-01-29"


def _gz(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    with src.open("rb") as fh, gzip.open(dst, "wb") as out:
        shutil.copyfileobj(fh, out)


def mini_nezha(root: Path) -> Path:
    """The Nezha layout with two pods, one trace and its logs; one fault at 08:43:04."""
    base = root / "nezha-trainticket"
    for part in ("rca_data", "construct_data"):
        day = base / part / DAY
        _gz(
            REAL / "nezha_pod_metric.csv",
            day / "metric" / "ts-contacts-service-866bd68c97-xcqfx_metric.csv.gz",
        )
        _gz(
            REAL / "nezha_pod_metric_basic.csv",
            day / "metric" / "ts-basic-service-5dc8d4f9fd-46997_metric.csv.gz",
        )
        _gz(REAL / "nezha_spans.csv", day / "trace" / "08_43_trace.csv.gz")
        _gz(REAL / "nezha_logs.csv", day / "log" / "08_43_log.csv.gz")
    faults = {
        "08": [
            {
                "inject_time": f"{DAY} 08:43:04",
                "inject_timestamp": "0",
                "inject_pod": "ts-basic-service-5dc8d4f9fd-46997",
                "inject_type": "return",
            }
        ]
    }
    (base / "rca_data" / DAY / f"{DAY}-fault_list.json").write_text(json.dumps(faults))
    return base


def mini_petshop(root: Path) -> Path:
    """One regime, one train and one test issue, from the real excerpt."""
    base = root / "petshop" / "dataset"
    nodes = ["DynamoDB_AWS::DynamoDB", "PetSearch_AWS::ECS::Fargate", "PetSite"]
    for regime in ("low_traffic",):
        graph = pd.DataFrame(0, index=nodes, columns=nodes)
        graph.loc["PetSite", "PetSearch_AWS::ECS::Fargate"] = 1
        graph.loc["PetSearch_AWS::ECS::Fargate", "DynamoDB_AWS::DynamoDB"] = 1
        (base / regime).mkdir(parents=True)
        graph.to_csv(base / regime / "graph.csv")
        for split in ("train", "test"):
            issue = base / regime / split / "issue_0"
            issue.mkdir(parents=True)
            shutil.copy(REAL / "petshop_issue_excerpt.csv", issue / "metrics.csv")
            shutil.copy(REAL / "petshop_target.json", issue / "target.json")
    return base.parent


def test_real_bench_on_miniatures_writes_the_results(tmp_path: Path, capsys) -> None:
    mini_nezha(tmp_path)
    mini_petshop(tmp_path)
    assert set(find_datasets(tmp_path)) == {"nezha-trainticket", "petshop"}
    out = tmp_path / "out"
    code = main(["real-bench", str(tmp_path), "--out", str(out), "--methods", "robust",
                 "impact", "multimodal", "auto"])  # fmt: skip
    assert code == 0, capsys.readouterr().err
    printed = capsys.readouterr().out
    assert "development: settings chosen here" in printed and "held out" in printed
    doc = json.loads((out / "results.json").read_text())
    nezha = doc["datasets"]["nezha-trainticket"]
    assert nezha["parts"] == {DAY: {"dev": True, "cases": 1}}
    auto = nezha["methods"]["auto"]
    assert set(auto["overall"]) == {"ac1", "ac3", "avg5", "n", "seconds_per_case"}
    assert "return" in auto["by_kind"] and DAY in auto["by_part"]
    pet = doc["datasets"]["petshop"]
    assert pet["parts"]["train"]["dev"] and not pet["parts"]["test"]["dev"]
    assert pet["methods"]["impact"]["by_part"]["train"]["ac1"] == 1.0  # PetSearch, as labelled
    assert (out / "results.md").read_text().startswith("# Real-data RCA benchmark")
    cases = pd.read_csv(out / "cases.csv")
    assert cases["error"].isna().all()  # an empty error column: no method failed


def test_real_bench_refuses_a_folder_without_datasets(tmp_path: Path, capsys) -> None:
    assert main(["real-bench", str(tmp_path), "--out", str(tmp_path / "o")]) == 2
    assert "no known dataset" in capsys.readouterr().err


def test_the_delay_models_add_time_where_netem_would() -> None:
    rows = pd.DataFrame(
        {"service": ["a", "b", "b", "c"], "callee": ["b", "c", "", ""],
         "op": ["GET b", "GET c", "SELECT x", "handle"], "self_ms": [1.0, 1.0, 1.0, 1.0]}
    )  # fmt: skip
    port = delayed(rows, "b", 10.0, "port")["self_ms"].tolist()
    egress = delayed(rows, "b", 10.0, "egress")["self_ms"].tolist()
    assert port == [11.0, 1.0, 1.0, 1.0]  # only the call into b
    assert egress == [11.0, 11.0, 11.0, 1.0]  # and b's own call out and its database call
    assert LatencySettings().edges == "in"
    with pytest.raises(ValueError):
        LatencySettings(edges="sideways")
    assert latency_scores is not None


@pytest.mark.skipif(not (SHARED / "petshop").is_dir(), reason="../shared/data/petshop is absent")
def test_real_bench_smoke_on_the_shared_petshop(tmp_path: Path, capsys) -> None:
    code = main(["real-bench", str(SHARED / "petshop"), "--out", str(tmp_path), "--limit", "1",
                 "--methods", "impact", "robust"])  # fmt: skip
    assert code == 0, capsys.readouterr().err
    doc = json.loads((tmp_path / "results.json").read_text())
    assert doc["datasets"]["petshop"]["methods"]["impact"]["overall"]["n"] == 8


def test_rcaeval_baselines_are_skipped_with_a_reason_when_absent(monkeypatch) -> None:
    import experiments.realbench.bench as bench

    monkeypatch.setattr(bench, "rcaeval_available", lambda: (False, "rcaeval not importable"))
    methods, notes = bench.methods_for("petshop", ["robust", "baro", "nsigma"])
    assert list(methods) == ["robust"]
    assert notes == ["RCAEval's BARO and NSigma not run: rcaeval not importable"]
