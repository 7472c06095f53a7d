"""RCA methods on cases with known answers: synthetic steps, a real twin run, the CLI, the
error messages, a trace-updated dependency graph, and the speed on a 100-service fleet."""

from __future__ import annotations

import json
import time
from pathlib import Path

import networkx as nx
import numpy as np
import pandas as pd
import pytest

from detectors.anomaly.traces import EdgeCall
from detectors.rca.base import RcaError, RcaMethod
from detectors.rca.graph import DependencyGraph
from detectors.rca.randomwalk import RandomWalkRca
from detectors.rca.robust import RobustScoreRca
from detectors.rca.table import parse_time, read_wide_table
from firebreak.cli import main
from twin.run.runner import run_scenario
from twin.scenario.generate import generate_topology, suggest_classes, suggested_total_rps
from twin.scenario.loader import load_scenario
from twin.scenario.observe_schema import ProductionTelemetry
from twin.scenario.schema import Scenario
from twin.telemetry.spans import EPOCH_UNIX_S, Span
from twin.telemetry.widecsv import write_wide_csv

ROOT = Path(__file__).resolve().parents[1]
T = 1000.0  # anomaly time of the synthetic tables
FIRST_ROW_S = ProductionTelemetry().rate_window_s


def _chain_table(seed: int = 0, root_noise: float = 0.001) -> pd.DataFrame:
    """frontend → api → db and frontend → search; db's latency triples at T and its callers
    carry the added time (api, frontend); search and every workload stay normal.

    db is noisy (its robust score is moderate) while api is quiet (its score is huge), so
    the robust scorer alone can be fooled by api; the walk should not be.
    """
    rng = np.random.default_rng(seed)
    t = np.arange(0.0, 1300.0)
    step = (t >= T).astype(float)
    load = 100 + rng.normal(0, 2, t.size)
    db_true = 0.010 * (1 + 2 * step)  # its p90 is measured noisily; callers see the truth
    db = db_true * (1 + rng.normal(0, root_noise, t.size))
    api = 0.030 + db_true + rng.normal(0, 1e-5, t.size)
    frontend = 0.020 + api + rng.normal(0, 1e-3, t.size)
    search = 0.015 + rng.normal(0, 1e-3, t.size)
    cols = {"time": t}
    for name, lat in [("frontend", frontend), ("api", api), ("db", db), ("search", search)]:
        cols[f"{name}_latency-90"] = lat
        cols[f"{name}_workload"] = load * (1 + rng.normal(0, 0.01, t.size))
        cols[f"{name}_error"] = np.zeros(t.size)
    return pd.DataFrame(cols)


def _chain_graph() -> nx.DiGraph:
    return nx.DiGraph([("frontend", "api"), ("api", "db"), ("frontend", "search")])


def _position(causes: list, service: str) -> int:
    return [c.service for c in causes].index(service)


# --- synthetic cases -----------------------------------------------------------------------


def test_both_methods_follow_the_contract() -> None:
    assert isinstance(RobustScoreRca(), RcaMethod)
    assert isinstance(RandomWalkRca(), RcaMethod)


def test_robust_ranks_the_root_first_when_it_moves_most() -> None:
    table = _chain_table(root_noise=0.001)
    causes = RobustScoreRca(before_s=600, after_s=200).rank(table, T)
    assert causes[0].service == "db"
    assert {c.service for c in causes} == {"frontend", "api", "db", "search"}
    assert _position(causes, "search") == 3
    top = causes[0].evidence["signals"][0]
    assert top["signal"] == "db_latency-90" and top["direction"] == "up"
    assert top["incident_median"] == pytest.approx(3 * top["normal_median"], rel=0.05)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_random_walk_ranks_the_root_above_its_symptoms(seed: int) -> None:
    table = _chain_table(seed, root_noise=0.05)
    robust = RobustScoreRca(before_s=600, after_s=200).rank(table, T)
    assert robust[0].service == "api"  # the quiet symptom fools the scorer alone
    walk = RandomWalkRca(before_s=600, after_s=200).rank(table, T, _chain_graph())
    assert walk[0].service == "db"
    assert _position(walk, "api") > _position(walk, "db")
    assert _position(walk, "frontend") > _position(walk, "db")
    assert walk[0].evidence["path"] == ["frontend", "api", "db"]
    assert walk[0].evidence["signals"][0]["signal"] == "db_latency-90"
    assert sum(c.score for c in walk) == pytest.approx(1.0)


def test_random_walk_graph_names_may_keep_underscores() -> None:
    table = _chain_table().rename(columns=lambda c: c.replace("db_", "main-db_"))
    graph = nx.DiGraph([("frontend", "api"), ("api", "main_db"), ("frontend", "search")])
    walk = RandomWalkRca(before_s=600, after_s=200).rank(table, T, graph)
    assert walk[0].service == "main-db"


def test_random_walk_without_a_graph_falls_back_to_robust_scores() -> None:
    table = _chain_table(root_noise=0.001)
    walk = RandomWalkRca(before_s=600, after_s=200).rank(table, T)
    assert walk[0].service == "db"
    assert "no dependency graph" in walk[0].evidence["note"]


def test_a_flat_table_scores_zero_everywhere() -> None:
    t = np.arange(100.0)
    table = pd.DataFrame({"time": t, "a_cpu": np.ones(100), "b_cpu": np.zeros(100)})
    causes = RobustScoreRca().rank(table, 50)
    assert [c.score for c in causes] == [0.0, 0.0]


# --- errors ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("at", "message"),
    [
        (0.0, "no rows before the anomaly time 0"),
        (5000.0, "anomaly time 5000 is outside the table (0 to 1299)"),
        (-1.0, "is outside the table"),
    ],
)
def test_incident_errors(at: float, message: str) -> None:
    for method in (RobustScoreRca(), RandomWalkRca()):
        with pytest.raises(RcaError, match=message.replace("(", r"\(").replace(")", r"\)")):
            method.rank(_chain_table(), at, _chain_graph())


def test_a_table_without_service_columns_is_refused() -> None:
    table = pd.DataFrame({"time": np.arange(10.0), "cpu": np.ones(10)})
    with pytest.raises(RcaError, match="no numeric <service>_<metric> columns"):
        RobustScoreRca().rank(table, 5)
    with pytest.raises(RcaError, match="no 'time' column"):
        RobustScoreRca().rank(table.drop(columns="time"), 5)


def test_parse_time_reads_seconds_and_iso() -> None:
    assert parse_time("1767574800") == 1767574800.0
    assert parse_time("2026-01-05T01:00:00Z") == 1767574800.0
    with pytest.raises(RcaError, match="neither seconds nor an ISO timestamp"):
        parse_time("yesterday-ish")


# --- the dependency graph -------------------------------------------------------------------


def test_dependency_graph_falls_back_to_the_declared_topology() -> None:
    g = DependencyGraph(_chain_graph()).graph()
    assert set(g.edges) == set(_chain_graph().edges)
    assert all(d["declared"] and not d["traced"] for _, _, d in g.edges(data=True))


def test_dependency_graph_learns_rates_adds_and_forgets_edges() -> None:
    dg = DependencyGraph(_chain_graph(), window_s=10.0, smoothing=0.5, forget_s=100.0)
    calls = [EdgeCall(t + 0.5, "api", "db", 0.01, False) for t in range(0, 60)]
    calls += [EdgeCall(t + 0.5, "api", "cache", 0.001, False) for t in range(0, 20, 2)]
    dg.observe(sorted(calls, key=lambda c: c.time))
    dg.advance(60.0)
    g = dg.graph()
    assert g["api"]["db"]["rate"] == pytest.approx(1.0)
    assert g["api"]["db"]["traced"] and g["api"]["db"]["declared"]
    assert not g["api"]["cache"]["declared"] and g["api"]["cache"]["traced"]
    cache_rate = g["api"]["cache"]["rate"]
    assert 0 < cache_rate < 0.5  # seen at 0.5/s for 20 s, then decaying
    assert g["frontend"]["api"]["weight"] == 1.0  # never traced: the declared weight
    dg.advance(140.0)  # db last seen at 60, cache at 20: cache is forgotten, db decays
    g = dg.graph()
    assert ("api", "cache") not in g.edges
    assert g["api"]["db"]["rate"] < 0.01
    assert ("api", "db") in g.edges  # declared edges stay


def test_dependency_graph_reads_twin_spans() -> None:
    spans = [
        Span("a" * 32, "1" * 16, None, "frontend", "GET /", "server", 0.0, 0.05),
        Span("a" * 32, "2" * 16, "1" * 16, "frontend", "call", "client", 0.01, 0.04,
             attributes={"peer.service": "api"}),
        Span("a" * 32, "3" * 16, "2" * 16, "api", "handle", "server", 0.011, 0.039),
    ]  # fmt: skip
    dg = DependencyGraph(window_s=1.0)
    dg.observe(spans)
    dg.advance(2.0)
    assert list(dg.graph().edges) == [("frontend", "api")]


# --- a real twin run ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def bad_deploy(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Scenario]:
    """bad-deploy to just past its rollback (productcatalogservice regresses at 3600 s)."""
    scenario = load_scenario(ROOT / "scenarios" / "bad-deploy.yaml", duration=6300)
    scenario = scenario.model_copy(
        update={"telemetry": scenario.telemetry.model_copy(update={"plot": False})}
    )
    out = tmp_path_factory.mktemp("rca") / "run"
    run_scenario(scenario, out, labels=False)
    csv = out.parent / "data.csv"
    write_wide_csv(out, csv)
    return csv, scenario


@pytest.mark.parametrize("method", [RobustScoreRca(), RandomWalkRca()])
def test_twin_bad_deploy_root_in_top_three(bad_deploy, method) -> None:
    csv, scenario = bad_deploy
    table = read_wide_table(csv)
    at = EPOCH_UNIX_S + scenario.faults[0].start
    causes = method.rank(table, at, scenario.topology.graph())
    assert "productcatalogservice" in [c.service for c in causes[:3]]


def test_twin_graph_from_traces_ranks_the_root(bad_deploy) -> None:
    csv, scenario = bad_deploy
    dg = DependencyGraph.from_traces(csv.parent / "run" / "traces.json", scenario.topology)
    graph = dg.graph()
    assert any(d["traced"] for _, _, d in graph.edges(data=True))
    causes = RandomWalkRca().rank(read_wide_table(csv), EPOCH_UNIX_S + 3600, graph)
    assert causes[0].service == "productcatalogservice"


def test_cli_ranks_a_recorded_table(bad_deploy, tmp_path: Path, capsys) -> None:
    csv, _ = bad_deploy
    out = tmp_path / "rca.json"
    topology = ROOT / "scenarios" / "bad-deploy.yaml"
    argv = ["rca", str(csv), "--at", "2026-01-05T01:00:00Z", "--method", "randomwalk"]
    code = main([*argv, "--topology", str(topology), "--top", "3", "--json", str(out)])
    assert code == 0
    printed = capsys.readouterr().out
    assert "productcatalogservice" in printed and "path frontend →" in printed
    doc = json.loads(out.read_text())
    assert doc["method"] == "randomwalk" and len(doc["causes"]) == 3
    assert doc["causes"][0]["service"] == "productcatalogservice"
    assert main(["rca", str(csv), "--at", str(EPOCH_UNIX_S + 3600)]) == 0


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--at", "5"], "anomaly time 5 is outside the table"),
        # the default run is production-like: its first row comes once a rate() window is full
        (["--at", str(EPOCH_UNIX_S + FIRST_ROW_S)], "no rows before the anomaly time"),
        (["--at", "soon"], "neither seconds nor an ISO timestamp"),
        (["--at", str(EPOCH_UNIX_S + 3600), "--topology", "nope.yaml"], "nope.yaml"),
        (["--at", str(EPOCH_UNIX_S + 3600), "--top", "0"], "--top: must be at least 1: '0'"),
    ],
)
def test_cli_errors_are_clean(bad_deploy, capsys, args: list[str], message: str) -> None:
    csv, _ = bad_deploy
    assert main(["rca", str(csv), *args]) == 2
    err = capsys.readouterr().err
    assert "error: " in err and message in err and "Traceback" not in err


def test_cli_refuses_a_table_without_service_columns(tmp_path: Path, capsys) -> None:
    path = tmp_path / "plain.csv"
    pd.DataFrame({"time": np.arange(10), "cpu": np.ones(10)}).to_csv(path, index=False)
    assert main(["rca", str(path), "--at", "5"]) == 2
    err = capsys.readouterr().err
    assert "plain.csv: no numeric <service>_<metric> signal to rank (signals: cpu)" in err


# --- speed ----------------------------------------------------------------------------------


def test_one_incident_on_100_services_ranks_within_a_second(tmp_path: Path) -> None:
    raw = generate_topology(100, seed=4)
    classes = suggest_classes(raw, suggested_total_rps(raw))
    graph = nx.DiGraph([(c["from"], c["to"]) for c in raw["calls"]])
    target = max(
        (s for s in raw["services"] if graph.in_degree(s) and graph.out_degree(s)),
        key=lambda s: (graph.in_degree(s), s),
    )
    scenario = Scenario.model_validate(
        {
            "name": "fleet-latency",
            "topology": raw,
            "duration": 2400,
            "workload": {"classes": classes},
            "faults": [{"kind": "latency", "target": target, "start": 1800, "factor": 5}],
            # ideal: this checks speed and the ranking's logic on a clean 100-service table
            "telemetry": {"mode": "ideal", "plot": False, "traces": False, "logs": False},
        }
    )
    run_scenario(scenario, tmp_path / "run", labels=False)
    table = write_wide_csv(tmp_path / "run", tmp_path / "data.csv")
    table = read_wide_table(tmp_path / "data.csv")
    topo_graph = scenario.topology.graph()
    at = EPOCH_UNIX_S + 1800
    RandomWalkRca().rank(table, at, topo_graph)  # warm-up: imports, first-call costs
    for method in (RobustScoreRca(), RandomWalkRca()):
        t0 = time.perf_counter()
        causes = method.rank(table, at, topo_graph)
        elapsed = time.perf_counter() - t0
        print(f"{method.name}: {len(causes)} services ranked in {elapsed * 1000:.1f} ms")
        assert len(causes) == 100
        assert elapsed < 1.0
        assert target in [c.service for c in causes[:5]]
