"""Causal RCA on linear-Gaussian systems with a known root shift, and on a twin run."""

from __future__ import annotations

import time
from pathlib import Path

import networkx as nx
import numpy as np
import pandas as pd
import pytest

from detectors.rca.base import RcaError, RcaMethod
from detectors.rca.causal import CausalRca

T0 = 1200.0  # anomaly time of the synthetic tables (seconds)
N = 1800  # one row a second: 1200 normal, 600 anomalous


def table_of(series: dict[str, np.ndarray]) -> pd.DataFrame:
    return pd.DataFrame({"time": np.arange(N, dtype=float), **series})


def step(size: float) -> np.ndarray:
    return np.where(np.arange(N) >= T0, size, 0.0)


def robust_z(x: np.ndarray) -> float:
    """BARO-style: the post-incident median in pre-incident median/IQR units."""
    pre, post = x[: int(T0)], x[int(T0) :]
    q1, q3 = np.percentile(pre, [25, 75])
    return abs(np.median(post) - np.median(pre)) / (q3 - q1)


def order(causes) -> list[str]:
    return [c.service for c in causes]


def test_is_an_rca_method() -> None:
    assert isinstance(CausalRca(), RcaMethod)


def test_chain_root_first_though_symptoms_move_more() -> None:
    """db ← api ← web: db slows; api and web amplify it (larger raw shifts) yet rank below."""
    rng = np.random.default_rng(1)
    db = rng.normal(10, 1, N) + step(4)
    api = 2.0 * db + rng.normal(0, 1, N)
    web = 1.5 * api + rng.normal(0, 1, N)
    table = table_of({"web_latency": web, "api_latency": api, "db_latency": db})
    graph = nx.DiGraph([("web", "api"), ("api", "db")])
    causes = CausalRca().rank(table, T0, graph)
    assert order(causes)[0] == "db"
    assert np.ptp([web[: int(T0)].mean(), web[int(T0) :].mean()]) > 2 * 4  # raw: web moved 3x db
    assert causes[0].score > 0.8
    ev = causes[0].evidence
    assert "db_latency -> api_latency" in ev["path"]
    assert "api_latency -> web_latency" in ev["path"]
    assert ev["symptoms"]["api"] > 0.8 and ev["symptoms"]["web"] > 0.8
    assert 0.8 < ev["symptom_share"] <= 1.0 + 1e-9


def test_symptom_with_larger_robust_z_still_ranks_below_its_root() -> None:
    """The root's signal is noisy (few requests, a jittery p90) while its caller sees its
    clean effect: per-signal robust scoring ranks the caller first, the causal model not."""
    rng = np.random.default_rng(2)
    slow = rng.normal(0, 0.3, N) + step(6.0)  # what the fault does to the backend
    backend = slow + rng.normal(0, 3.0, N)  # its own measured latency: noisy
    caller = slow + rng.normal(0, 0.3, N) + 5.0
    other = rng.normal(0, 1, N)
    table = table_of({"caller_latency": caller, "backend_latency": backend, "other_latency": other})
    assert robust_z(caller) > 3 * robust_z(backend)  # the trap for robust scoring
    graph = nx.DiGraph([("caller", "backend"), ("caller", "other")])
    causes = CausalRca().rank(table, T0, graph)
    assert order(causes)[0] == "backend"
    assert causes[0].score > causes[1].score


def test_fork_common_parent_ranks_above_coincident_symptoms() -> None:
    """cart and checkout both call redis; redis shifts, both move together; neither caused the
    other, and no edge may join them (they do not call each other)."""
    rng = np.random.default_rng(3)
    redis = rng.normal(1, 0.2, N) + step(1.0)
    cart = 3.0 * redis + rng.normal(0, 0.2, N)
    checkout = 2.5 * redis + rng.normal(0, 0.2, N)
    front = rng.normal(5, 1, N)
    table = table_of(
        {
            "front_latency": front,
            "cart_latency": cart,
            "checkout_latency": checkout,
            "redis_latency": redis,
            "cart_error": 0.01 * cart + rng.normal(0, 0.01, N),
        }
    )
    graph = nx.DiGraph(
        [("front", "cart"), ("front", "checkout"), ("cart", "redis"), ("checkout", "redis")]
    )
    model = CausalRca().fit(table, T0, graph)
    causes = model.causes(["front", "cart", "checkout", "redis"])
    assert order(causes)[0] == "redis"
    assert causes[0].score > 2 * max(c.score for c in causes[1:])
    pairs = {frozenset((a.split("_")[0], b.split("_")[0])) for a, b, _ in model.edges()}
    assert frozenset(("cart", "checkout")) not in pairs  # never adjacent in the call graph
    assert ("redis_latency", "cart_latency") in {(a, b) for a, b, _ in model.edges()}


def test_topology_restriction_and_direction() -> None:
    """Two services strongly correlated but not adjacent get no edge; across a call, effects
    run callee → caller only (latency), whatever the data's symmetry."""
    rng = np.random.default_rng(4)
    shared = rng.normal(0, 1, N)
    a = shared + rng.normal(0, 0.1, N) + step(2)
    b = shared + rng.normal(0, 0.1, N) + step(2)
    c = a + rng.normal(0, 0.1, N)
    table = table_of({"a_latency": a, "b_latency": b, "c_latency": c})
    graph = nx.DiGraph([("c", "a")])  # c calls a; b is alone
    edges = CausalRca().fit(table, T0, graph).edges()
    assert [(u, v) for u, v, _ in edges] == [("a_latency", "c_latency")]


def test_deterministic_and_column_order_free() -> None:
    rng = np.random.default_rng(5)
    x = rng.normal(0, 1, N) + step(3)
    y = x + rng.normal(0, 0.5, N)
    z = y + rng.normal(0, 0.5, N)
    table = table_of({"z_latency": z, "y_latency": y, "x_latency": x, "y_cpu": rng.normal(0, 1, N)})
    graph = nx.DiGraph([("z", "y"), ("y", "x")])
    first = CausalRca().rank(table, T0, graph)
    again = CausalRca().rank(table.copy(), T0, graph)
    assert [(c.service, c.score, c.evidence) for c in first] == [
        (c.service, c.score, c.evidence) for c in again
    ]
    shuffled = CausalRca().rank(table[table.columns[::-1]], T0, graph)
    assert order(shuffled) == order(first)
    assert [c.score for c in shuffled] == pytest.approx([c.score for c in first], abs=1e-9)


def test_errors_on_unusable_incidents() -> None:
    rng = np.random.default_rng(6)
    table = table_of({"a_latency": rng.normal(0, 1, N)})
    with pytest.raises(RcaError, match="no rows before"):
        CausalRca().rank(table, -5.0)
    with pytest.raises(RcaError, match="no rows at or after"):
        CausalRca().rank(table, N + 5.0)
    with pytest.raises(RcaError, match="'time'"):
        CausalRca().rank(table.drop(columns="time"), T0)


def test_every_service_ranked_even_without_graph_or_signal() -> None:
    rng = np.random.default_rng(7)
    a = rng.normal(0, 1, N) + step(4)
    table = table_of({"a_latency": a, "b_latency": a + rng.normal(0, 1, N), "c_cpu": np.ones(N)})
    causes = CausalRca().rank(table, T0)
    assert sorted(order(causes)) == ["a", "b", "c"]
    assert all(np.isfinite(c.score) for c in causes)


def random_tree_system(n: int, seed: int) -> tuple[pd.DataFrame, nx.DiGraph, str]:
    """n services in a random call tree, five signals each, a latency shift at one leaf."""
    rng = np.random.default_rng(seed)
    names = [f"svc{i}" for i in range(n)]
    graph = nx.DiGraph()
    graph.add_nodes_from(names)
    for i in range(1, n):
        graph.add_edge(names[int(rng.integers(0, i))], names[i])
    leaves = [s for s in names if graph.out_degree(s) == 0]
    root = leaves[int(rng.integers(0, len(leaves)))]
    latency: dict[str, np.ndarray] = {}
    for svc in reversed(names):  # callees (higher index) first
        own = rng.normal(1, 0.1, N) + (step(1.0) if svc == root else 0.0)
        latency[svc] = own + sum(0.8 * latency[c] for c in graph.successors(svc))
    cols: dict[str, np.ndarray] = {}
    for svc in names:
        load = rng.normal(100, 5, N)
        cols[f"{svc}_workload"] = load
        cols[f"{svc}_cpu"] = 0.01 * load + rng.normal(0, 0.05, N)
        cols[f"{svc}_mem"] = rng.normal(500, 10, N)
        cols[f"{svc}_latency-90"] = latency[svc] + rng.normal(0, 0.05, N)
        cols[f"{svc}_error"] = 0.02 * latency[svc] + rng.normal(0, 0.01, N)
    return table_of(cols), graph, root


def test_hundred_services_fast_and_right() -> None:
    table, graph, root = random_tree_system(100, seed=8)
    start = time.perf_counter()
    causes = CausalRca().rank(table, T0, graph)
    elapsed = time.perf_counter() - start
    print(f"\ncausal RCA, 100 services x 5 signals, {N} rows: {elapsed:.3f} s")
    assert order(causes)[0] == root
    assert elapsed < 5.0  # the target is 1 s; shared CI cores get slack


SCENARIO = Path(__file__).resolve().parents[1] / "scenarios" / "bad-deploy.yaml"


def test_twin_bad_deploy_finds_productcatalog(tmp_path: Path) -> None:
    from twin.run.runner import run_scenario
    from twin.scenario.loader import load_scenario
    from twin.telemetry.spans import EPOCH_UNIX_S
    from twin.telemetry.widecsv import write_wide_csv

    scenario = load_scenario(SCENARIO, duration=6300)
    run_scenario(scenario, tmp_path / "run")
    write_wide_csv(tmp_path / "run", tmp_path / "data.csv")
    table = pd.read_csv(tmp_path / "data.csv")
    graph = scenario.topology.graph()
    method = CausalRca()
    start = time.perf_counter()
    causes = method.rank(table, EPOCH_UNIX_S + 3600.0, graph)
    elapsed = time.perf_counter() - start
    print(f"\ncausal RCA, Online Boutique bad deploy: {elapsed:.3f} s")
    assert "productcatalogservice" in order(causes)[:3]
    assert elapsed < 1.0
    late = method.rank(table, EPOCH_UNIX_S + 3600.0 + 60.0, graph)  # a detector's lag
    assert "productcatalogservice" in order(late)[:3]
