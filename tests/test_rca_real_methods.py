"""RCA on any signal set: the impact method, the default cascade, a separate normal period,
real metric names in the causal method, and `firebreak rca` exposing every method."""

from __future__ import annotations

import json
from pathlib import Path

import networkx as nx
import numpy as np
import pandas as pd
import pytest

from detectors.rca.auto import AutoRca
from detectors.rca.base import IncidentTelemetry, join_normal
from detectors.rca.causal import select_signals
from detectors.rca.impact import ImpactRca
from detectors.rca.registry import DEFAULT_METHOD, METHODS, make_method, takes_telemetry
from firebreak.cli import main

T0 = 1_681_855_320.0
STEP = 300.0
GRAPH = nx.DiGraph([("site", "search"), ("site", "lb"), ("search", "db"), ("client", "site")])


def issue_table(slow: str = "search", failing: str | None = None) -> pd.DataFrame:
    """Five 5-minute rows as PetShop records them; the fault starts in row 1."""
    rows = {"time": T0 + STEP * np.arange(5)}
    traffic = {"site": 1000.0, "search": 800.0, "lb": 50.0, "db": 800.0, "client": 900.0}
    latency = {"site": 0.20, "search": 0.05, "lb": 0.05, "db": 0.01, "client": 0.3}
    for s, n in traffic.items():
        lat = np.full(5, latency[s])
        avail = np.full(5, 100.0)
        if s in (slow, "site"):
            lat[2:] += 0.5
        if s == "lb":  # a high error rate on little traffic: not what the site feels
            avail[2:] = 80.0
        if s == failing:
            avail[2:] = 97.0
        rows[f"{s}_latency-Average"] = lat
        rows[f"{s}_requests-Sum"] = np.full(5, n)
        rows[f"{s}_availability-Average"] = avail
    rows["client_latency-Average"] = rows["client_latency-Average"] * np.array([1, 1, 50, 50, 50])
    return pd.DataFrame(rows)


AT = T0 + STEP + 120


def test_impact_weighs_trouble_by_traffic() -> None:
    telemetry = IncidentTelemetry(target="site", target_kind="errors")
    causes = ImpactRca().rank(issue_table(failing="search"), AT, GRAPH, telemetry)
    order = [c.service for c in causes]
    assert order.index("search") < order.index("lb")  # 3% of 800 beats 20% of 50
    assert causes[0].evidence["impact"] == "errors"


def test_impact_ranks_only_what_the_symptom_calls_first() -> None:
    telemetry = IncidentTelemetry(target="site", target_kind="latency")
    causes = ImpactRca().rank(issue_table(), AT, GRAPH, telemetry)
    order = [c.service for c in causes]
    assert order[0] in ("search", "site") and "search" in order[:2]
    assert order.index("client") > order.index("db")  # huge, but the site does not call it
    assert "not called by site" in causes[order.index("client")].evidence["note"]


def test_auto_reads_what_the_incident_offers() -> None:
    auto = AutoRca()
    spans = pd.DataFrame({"trace": ["t"], "span": ["s"]})
    assert auto.branch(None, IncidentTelemetry(spans=spans)) == "multimodal"
    assert auto.branch(GRAPH, IncidentTelemetry(target="site", target_kind="latency")) == "impact"
    assert auto.branch(GRAPH, None) == "randomwalk"
    assert auto.branch(None, IncidentTelemetry()) == "robust"
    causes = auto.rank(
        issue_table(), AT, GRAPH, IncidentTelemetry(target="site", target_kind="latency")
    )
    assert all(c.evidence["by"] == "impact" for c in causes)
    assert DEFAULT_METHOD == "auto" and takes_telemetry(auto)


def test_a_separate_normal_period_is_joined_just_before_the_incident() -> None:
    incident = issue_table()
    normal = issue_table().iloc[:3].copy()
    normal["time"] = normal["time"] + 86_400 * 100  # recorded months later
    normal = normal.drop(columns=["lb_requests-Sum"])
    joined = join_normal(normal, incident)
    assert list(joined.columns) == list(incident.columns)
    assert joined["time"].is_monotonic_increasing and joined["time"].iloc[2] == T0 - STEP
    assert joined["lb_requests-Sum"].iloc[:3].isna().all()  # absent there: not invented


def test_causal_reads_real_metric_names() -> None:
    cols = {"time": np.arange(3.0)}
    for name in ("carts_lat-50", "carts_lat-90", "carts_requests-Sum", "carts_CpuUsageRate(%)",
                 "carts_NodeCpuUsageRate(%)", "carts_PodSuccessRate(%)"):  # fmt: skip
        cols[name] = np.arange(3.0)
    chosen = {
        (k, c)
        for _, k, c in select_signals(
            pd.DataFrame(cols), ("workload", "mem", "cpu", "latency", "error")
        )
    }
    assert chosen == {
        ("latency", "carts_lat-90"),
        ("workload", "carts_requests-Sum"),
        ("cpu", "carts_CpuUsageRate(%)"),
        ("error", "carts_PodSuccessRate(%)"),
    }


def test_every_method_is_registered_and_takes_window_settings() -> None:
    assert set(METHODS) >= {"robust", "randomwalk", "causal", "impact", "multimodal", "auto"}
    for name in METHODS:
        method = make_method(name, before_s=900.0, after_s=120.0)
        assert method.name == name and method.before_s == 900.0


def write_case(tmp_path: Path) -> tuple[Path, Path]:
    table = issue_table()
    incident = tmp_path / "incident.csv"
    table.to_csv(incident, index=False)
    normal = tmp_path / "normal.csv"
    rng = np.random.default_rng(0)
    calm = pd.concat([issue_table().iloc[:2]] * 20, ignore_index=True)
    calm["time"] = T0 + 86_400 + STEP * np.arange(len(calm))
    numeric = calm.columns[1:]
    calm[numeric] = calm[numeric] * rng.normal(1, 0.01, (len(calm), len(numeric)))
    calm.to_csv(normal, index=False)
    return incident, normal


def test_cli_rca_with_a_normal_period_and_a_symptom(tmp_path: Path, capsys) -> None:
    incident, normal = write_case(tmp_path)
    topo = tmp_path / "graph.json"
    out = tmp_path / "rca.json"
    code = main(["rca", str(incident), "--normal", str(normal), "--at", str(AT), "--target",
                 "site", "--target-kind", "latency", "--json", str(out)])  # fmt: skip
    assert code == 0, capsys.readouterr().err
    doc = json.loads(out.read_text())
    assert doc["method"] == "auto" and doc["causes"][0]["evidence"]["by"] == "impact"
    assert not topo.exists()


@pytest.mark.parametrize("method", ["causal", "robust", "randomwalk", "impact", "multimodal"])
def test_cli_rca_exposes_every_method(tmp_path: Path, capsys, method: str) -> None:
    incident, normal = write_case(tmp_path)
    code = main(["rca", str(incident), "--normal", str(normal), "--method", method])
    assert code == 0, capsys.readouterr().err
    assert f"{method} ranking" in capsys.readouterr().out


def test_cli_rca_errors_are_clean(tmp_path: Path, capsys) -> None:
    incident, _ = write_case(tmp_path)
    bad = tmp_path / "bad.csv"
    bad.write_text("time,x_cpu\n1,0.5\n2,nope\n3,0.4\n4,0.4\n")
    assert main(["rca", str(incident), "--normal", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "bad.csv: column 'x_cpu', row 2: not a number" in err and "Traceback" not in err
    assert main(["rca", str(incident)]) == 2
    assert "--at is required" in capsys.readouterr().err


def test_rcaeval_adapter_folds_columns_at_the_last_underscore() -> None:
    from experiments.rca.methods import RcaevalMethod

    def fake(table, anomaly_time, dataset=None):
        assert not table.isna().any().any()  # cleaned as RCAEval's reader does
        return {"ranks": ["PetSearch_AWS::ECS::Fargate_latency-Average", "site_cpu",
                          "PetSearch_AWS::ECS::Fargate_requests-Sum"]}  # fmt: skip

    table = pd.DataFrame({"time": [1.0, 2.0], "site_cpu": [1.0, np.nan]})
    causes = RcaevalMethod("fake", fake).rank(table, 1.5)
    assert [c.service for c in causes] == ["PetSearch_AWS::ECS::Fargate", "site"]


def test_an_adjacency_csv_is_a_topology(tmp_path: Path, capsys) -> None:
    from detectors.rca.table import load_graph

    nodes = ["site", "search", "lb", "db", "client"]
    adj = pd.DataFrame(0, index=nodes, columns=nodes)
    for a, b in GRAPH.edges:
        adj.loc[a, b] = 1
    path = tmp_path / "graph.csv"
    adj.to_csv(path)
    assert set(load_graph(path).edges) == set(GRAPH.edges)
    incident, normal = write_case(tmp_path)
    code = main(["rca", str(incident), "--normal", str(normal), "--target", "site",
                 "--target-kind", "latency", "--topology", str(path)])  # fmt: skip
    assert code == 0
    assert "not called by site" not in capsys.readouterr().out.splitlines()[-4]
    text = path.read_text().splitlines()
    cells = text[2].split(",")
    cells[3] = "x"  # row 2 (search), column lb
    path.write_text("\n".join([*text[:2], ",".join(cells), *text[3:]]) + "\n")
    assert main(["rca", str(incident), "--at", str(AT), "--topology", str(path)]) == 2
    assert "column 'lb', row 2: not a number: 'x'" in capsys.readouterr().err
