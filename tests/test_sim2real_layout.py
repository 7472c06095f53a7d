"""The twin's metric table in Nezha's layout: exporter columns fitted on the real fault-free
day, the simulated kinds with the real residuals on top, the same kinds as the real table,
co-located services sharing their node series, and one seed giving one table."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from test_real_bench import DAY, mini_nezha
from test_sim2real import nezha_with_twin_fault

from detectors.ingest.read import read_metrics
from experiments.realbench.cases import Answer, CaseInputs, RealCase
from experiments.sim2real.check import SIMULATED_KINDS, calibrated, exporter_models, only_kinds
from experiments.sim2real.exporters import LinearResidual, fit_linear
from experiments.sim2real.nezha_layout import NEZHA_KINDS
from experiments.sim2real.twin_cases import Framing, TwinCases
from firebreak.cli import main

FRAMING = Framing(before_s=120.0, after_s=60.0, step_s=60.0)


def test_a_column_is_fitted_as_intercept_slope_and_its_residuals():
    rng = np.random.default_rng(0)
    x = rng.uniform(0.0, 5.0, 400)
    y = 2.0 + 3.0 * x + rng.normal(0.0, 0.1, 400)
    model = fit_linear(y, x)
    assert model.a == pytest.approx(2.0, abs=0.05) and model.b == pytest.approx(3.0, abs=0.02)
    assert model.residuals.std() == pytest.approx(0.1, rel=0.15)
    assert fit_linear(np.array([1.0, np.nan]), np.array([1.0, 2.0])) is None


def test_noise_is_blocks_of_the_centred_residuals_and_seeded():
    model = LinearResidual(1.0, 0.0, np.arange(20, dtype=float))
    first = model.noise(13, np.random.default_rng(4))
    assert np.array_equal(first, model.noise(13, np.random.default_rng(4)))
    centred = set(np.arange(20, dtype=float) - 9.5)
    assert set(first) <= centred and len(first) == 13
    assert np.all(np.diff(first[:5]) == 1.0)  # the first block is consecutive residuals
    assert (model.draw(np.zeros(13), np.random.default_rng(4)) >= 0).all()  # never negative


def test_cpu_stress_minutes_are_not_resampled_as_noise(monkeypatch):
    """A pod at 90% of its limit for three minutes at steady load (a stress injection in the
    calibration day's folder) is left out of its own columns' fit, with the minute either
    side; the other minutes are all kept."""
    from types import SimpleNamespace

    from experiments.sim2real import exporters

    rng = np.random.default_rng(1)
    cpu = 10.0 + rng.normal(0.0, 1.0, 60)
    cpu[30:33] = 450.0
    table = pd.DataFrame({"time": np.arange(60) * 60.0, "a_PodWorkload(Ops)": np.ones(60),
                          "a_CpuUsage(m)": cpu, "a_CpuUsageRate(%)": cpu / 5.0})  # fmt: skip
    assert np.flatnonzero(exporters.stress_minutes(table, "a")).tolist() == [29, 30, 31, 32, 33]
    assert not exporters.stress_minutes(table, "b").any()  # no such column: nothing
    monkeypatch.setattr(exporters, "read_metrics", lambda _: SimpleNamespace(wide=lambda: table))
    residuals = exporters.fit_exporters(Path("metric")).own["a"]["CpuUsage(m)"].residuals
    assert len(residuals) == 55 and np.abs(residuals).max() < 5.0


@pytest.fixture(scope="module")
def mini(tmp_path_factory) -> Path:
    return mini_nezha(tmp_path_factory.mktemp("nezha"))


def test_the_twin_table_has_the_real_tables_kinds_and_one_seed_gives_one_table(mini):
    scenario, source = calibrated(mini, DAY, seed=0)
    models = exporter_models(mini, DAY)
    real = read_metrics(mini / "construct_data" / DAY / "metric").wide()
    tables = [TwinCases(scenario, FRAMING, 3, source, models).normal().table for _ in (0, 1)]
    twin = tables[0]
    assert twin.equals(tables[1])
    for service in models.own:
        real_kinds = {c.split("_", 1)[1] for c in real.columns if c.startswith(f"{service}_")}
        twin_kinds = {c.split("_", 1)[1] for c in twin.columns if c.startswith(f"{service}_")}
        assert twin_kinds == set(NEZHA_KINDS) == real_kinds  # the real table's kinds
        assert (twin[f"{service}_PodSuccessRate(%)"] == 0).all()  # as Nezha's exporter
        assert (twin.drop(columns="time") >= 0).all().all()
    other = TwinCases(scenario, FRAMING, 4, source, models).normal().table
    assert not other.equals(twin)


def test_services_on_one_real_node_share_their_node_series(mini):
    from experiments.sim2real.exporters import ExporterModels, _node_groups

    times = np.arange(5.0)
    shared = [1.0, 2.0, np.nan, 4.0, 5.0]  # a gap in the node series still groups
    table = pd.DataFrame({"time": times, "a_NodeCpuUsageRate(%)": shared,
                          "b_NodeCpuUsageRate(%)": shared,
                          "c_NodeCpuUsageRate(%)": [9.0] * 5})  # fmt: skip
    assert sorted(map(sorted, _node_groups(table, ["a", "b", "c"]))) == [["a", "b"], ["c"]]
    models = exporter_models(mini, DAY)
    assert sorted(s for g, _ in models.nodes for s in g) == sorted(models.own)  # each once
    both = tuple(sorted(models.own))
    assert len(both) >= 2
    node_models = next(m for _, m in models.nodes if m)
    together = ExporterModels(models.own, [(both, node_models)])  # one node for all
    scenario, source = calibrated(mini, DAY, seed=0)
    twin = TwinCases(scenario, FRAMING, 3, source, together).normal().table
    for kind in node_models:
        first = twin[f"{both[0]}_{kind}"]
        assert all(np.array_equal(twin[f"{s}_{kind}"], first) for s in both)


def test_latency_quantiles_stay_ordered_after_the_noise(mini):
    scenario, source = calibrated(mini, DAY, seed=0)
    twin = TwinCases(scenario, FRAMING, 3, source, exporter_models(mini, DAY)).normal().table
    for s in scenario.topology.services:
        p90, p95, p99 = (twin[f"{s}_PodServerLatencyP{q}(s)"] for q in (90, 95, 99))
        assert (p90 <= p95).all() and (p95 <= p99).all()


def _sim2real_json(tmp_path, capsys, *flags: str) -> dict:
    """`firebreak sim2real` on the miniature with `flags`; the JSON it wrote."""
    root = nezha_with_twin_fault(tmp_path)
    out = tmp_path / "s.json"
    code = main(["sim2real", str(root), "--methods", "robust", *flags, "--out", str(out)])
    assert code == 0, capsys.readouterr().err
    return json.loads(out.read_text())


def test_the_rcaeval_layout_stays_available(tmp_path, capsys):
    assert _sim2real_json(tmp_path, capsys, "--twin-layout", "rcaeval")["twin_layout"] == "rcaeval"
    assert "Nezha's 19 kinds" not in capsys.readouterr().out


def test_the_real_table_can_be_cut_to_the_simulated_kinds(tmp_path, capsys):
    table = pd.DataFrame(
        {"time": [0.0, 60.0], "a_CpuUsage(m)": [1.0, 2.0], "a_SyscallRead": [3.0, 4.0]}
    )
    case = RealCase("nezha-trainticket", DAY, True, "c", CaseInputs(table, 30.0),
                    Answer("a", "cpu_contention"))  # fmt: skip
    assert list(only_kinds(case, SIMULATED_KINDS).inputs.table) == ["time", "a_CpuUsage(m)"]
    assert only_kinds(case, None) is case
    doc = _sim2real_json(tmp_path, capsys, "--real-kinds", "simulated")
    assert doc["real_kinds"] == "simulated"
