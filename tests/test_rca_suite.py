"""The RCA suite: metrics, seeded case generation, an end-to-end smoke run, counterfactuals."""

from __future__ import annotations

import dataclasses

import networkx as nx
import numpy as np
import pandas as pd
import pytest

from detectors.rca.base import Cause, services_of
from experiments.rca.cases import KINDS, TOPOLOGIES, CaseSpec, generate_cases
from experiments.rca.counterfactual import removal_shares, rerank
from experiments.rca.metrics import (
    avg_at,
    case_metrics,
    dedupe_services,
    mtti,
    rank_of,
    reciprocal_rank,
    summarise,
)
from experiments.rca.suite import run_suite, simulate_case
from twin.telemetry.spans import EPOCH_UNIX_S


# ---------------------------------------------------------------------------- metrics
def test_rank_and_metrics_exact_values() -> None:
    ranking = ["a", "b", "b", "c", "d", "e", "f"]  # duplicates fold to the first place
    assert dedupe_services(ranking) == ["a", "b", "c", "d", "e", "f"]
    assert rank_of(ranking, "a") == 1
    assert rank_of(ranking, "c") == 3
    assert rank_of(ranking, "f") == 6
    assert rank_of(ranking, "zz") is None
    m = case_metrics(3)
    assert (m["ac1"], m["ac2"], m["ac3"], m["ac4"], m["ac5"]) == (0.0, 0.0, 1.0, 1.0, 1.0)
    assert m["avg5"] == pytest.approx(0.6)
    assert m["rr"] == pytest.approx(1 / 3)
    assert avg_at(1) == 1.0 and avg_at(5) == pytest.approx(0.2) and avg_at(6) == 0.0
    assert avg_at(None) == 0.0 and reciprocal_rank(None) == 0.0
    assert mtti(12.0, 0.5, 1) == pytest.approx(12.5)
    assert mtti(12.0, 0.5, 2) is None and mtti(None, 0.5, 1) is None


def test_summary_over_cases() -> None:
    rows = pd.DataFrame(
        [
            {"case": i, "method": "m", "start": "true", **case_metrics(r)}
            for i, r in enumerate([1, 2, None, 4])
        ]
    ).assign(mtti_s=[3.0, None, None, None])
    s = summarise(rows).iloc[0]
    assert s["ac1"] == pytest.approx(0.25)
    assert s["ac3"] == pytest.approx(0.5)
    assert s["avg5"] == pytest.approx((1.0 + 0.8 + 0.0 + 0.4) / 4)
    assert s["mrr"] == pytest.approx((1 + 0.5 + 0 + 0.25) / 4)
    assert s["mtti_s"] == pytest.approx(3.0)


def test_rerank_moves_effective_repairs_first() -> None:
    ranking = ["x", "y", "root", "z"]
    assert rerank(ranking, {"x": 0.0, "y": 0.01, "root": 0.9}) == ["root", "x", "y", "z"]
    assert rerank(ranking, {"x": 0.0, "y": 0.0, "root": 0.0}) == ranking


# ----------------------------------------------------------------------- generation
def test_generation_is_deterministic_and_covers_the_grid() -> None:
    a, b = generate_cases(200, seed=7), generate_cases(200, seed=7)
    assert a == b
    assert generate_cases(200, seed=8) != a
    assert len({c.topology for c in a}) >= 4 and set(TOPOLOGIES) == {c.topology for c in a}
    assert len({c.kind for c in a}) >= 6 and set(KINDS) == {c.kind for c in a}
    for c in a:
        assert 1800 <= c.start <= 1920 and 600 <= c.duration <= 840 and c.end <= c.run_s
        assert c.target not in ("frontend", "front-end", "nginx-thrift", "ts-ui-dashboard")
        if c.kind in ("packet_loss", "network_partition"):
            assert c.params["peer"] != c.target


def test_generation_rejects_unknown_names() -> None:
    with pytest.raises(ValueError, match="unknown topology"):
        generate_cases(3, topologies=["nope"])


# ----------------------------------------------------------------------- smoke run
def _tiny(kind: str, target: str, params: dict, i: int) -> CaseSpec:
    return CaseSpec(
        case=f"tiny-{i}",
        topology="online-boutique",
        kind=kind,
        target=target,
        start=600.0,
        duration=240.0,
        seed=11 + i,
        run_s=900.0,
        params=params,
    )


class LatencyJump:
    """A stub: services ranked by their largest p90 jump after the anomaly time."""

    name = "stub"

    def rank(self, table: pd.DataFrame, anomaly_time: float, graph: nx.DiGraph | None = None):
        before, after = table[table["time"] < anomaly_time], table[table["time"] >= anomaly_time]
        scores = {}
        for svc in services_of(table):
            col = f"{svc}_latency-90"
            base = before[col].median() + 1e-6
            err = after[f"{svc}_error"].mean() - before[f"{svc}_error"].mean()
            scores[svc] = float(after[col].median() / base) + err
        return [Cause(s, v) for s, v in sorted(scores.items(), key=lambda kv: -kv[1])]


def test_smoke_three_tiny_cases_end_to_end() -> None:
    specs = [
        _tiny("latency", "productcatalogservice", {"factor": 8.0}, 0),
        _tiny("errors", "cartservice", {"rate": 0.5}, 1),
        _tiny("latency", "currencyservice", {"factor": 6.0}, 2),
    ]
    table = run_suite(specs, {"stub": LatencyJump()}, cf_method="stub")
    assert len(table) == 3 * 2 * 2  # cases × starts × (stub + its counterfactual)
    assert set(table["start"]) == {"true", "inferred"}
    true = table[(table["start"] == "true") & (table["method"] == "stub")]
    assert true["rank"].notna().all() and (true["delay_s"] == 0).all()
    inferred = table[table["start"] == "inferred"]
    assert (inferred["delay_s"].dropna() >= 0).all()
    assert table[table["twin_verified"]]["method"].eq("twin-cf(stub)").all()
    assert (table["ac1"] <= table["ac3"]).all()


# ---------------------------------------------------------------------- counterfactual
def test_counterfactual_root_removes_violation_symptom_does_not() -> None:
    spec = _tiny("errors", "productcatalogservice", {"rate": 0.5}, 5)
    run = simulate_case(spec)
    assert run.table["time"].iloc[0] == EPOCH_UNIX_S
    assert np.isfinite(run.table.drop(columns="time").to_numpy()).all()
    shares = removal_shares(
        run.sim,
        (run.times, run.values),
        ["productcatalogservice", "frontend", "checkoutservice"],
        at=spec.start + 30.0,
        until=spec.end,
        entries=("frontend",),
    )
    assert shares["productcatalogservice"] > 0.8
    assert abs(shares["frontend"]) < 0.05 and abs(shares["checkoutservice"]) < 0.05


# ---------------------------------------------------------------------------- rcaeval
def test_rcaeval_baro_and_nsigma_side_by_side() -> None:
    pytest.importorskip(
        "RCAEval.e2e.baro", reason="rcaeval (optional extra) is not installed or not importable"
    )
    from experiments.rca.methods import load_method

    rng = np.random.default_rng(0)
    n = 400
    t = np.arange(n, dtype=float)
    cols = {"time": t}
    for svc in ("api", "cart-db", "pay"):
        for m in ("cpu", "latency-90", "error"):
            cols[f"{svc}_{m}"] = 1.0 + 0.05 * rng.standard_normal(n)
    cols["cart-db_latency-90"][300:] += 5.0
    table = pd.DataFrame(cols)
    for name in ("baro", "nsigma"):
        causes = load_method(name).rank(table, 300.0)
        assert causes[0].service == "cart-db", name
        assert {c.service for c in causes} <= {"api", "cart-db", "pay"}


def test_rcaeval_absent_is_a_note_not_an_error(monkeypatch) -> None:
    from experiments.rca import methods as rca_methods

    monkeypatch.setitem(rca_methods.EXTERNAL, "baro", ("no_such_module_xyz", "baro"))
    methods, notes = rca_methods.load_methods(["baro"])
    assert methods == {} and "skipped baro" in notes[0]
    assert dataclasses.is_dataclass(rca_methods.RcaevalMethod)


def test_a_link_fault_accepts_either_end_of_the_link():
    from experiments.rca.metrics import rank_of

    assert rank_of(["a", "b", "c"], ("c", "b")) == 2
    assert rank_of(["a", "b", "c"], ("x",)) is None
    assert rank_of(["a", "b", "c"], "a") == 1
