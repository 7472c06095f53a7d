"""The capacity study: families, a user's scenario, replayed traces, the never-worse check."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from experiments.capacity import traces
from experiments.capacity.families import DAY_S, build_scenario
from experiments.capacity.study import (
    family_cases,
    never_worse,
    never_worse_lines,
    run_study,
    scenario_cases,
    summarise,
    targets,
)
from experiments.detection.suite import load_topology_dict
from twin.errors import FirebreakError
from twin.scenario.workload import rate_curves

ROOT = Path(__file__).resolve().parents[1]


def _trace_csv(path: Path, days: float = 2.0, step: float = 300.0) -> Path:
    """A daily cycle sampled every five minutes, NAB-style timestamps."""
    n = int(days * DAY_S / step)
    t = np.arange(n) * step
    rate = 50 + 40 * np.sin(2 * np.pi * t / DAY_S)
    stamps = pd.to_datetime(t + 1.4e9, unit="s").strftime("%Y-%m-%d %H:%M:%S")
    pd.DataFrame({"timestamp": stamps, "value": rate}).to_csv(path, index=False)
    return path


def test_family_study_smoke() -> None:
    table = run_study(family_cases(["calendar"], 2, days=0.05))
    assert len(table) == 6 and set(table.policy) == {"hpa", "static", "predictive"}
    summary = summarise(table)
    assert {"ci_low", "ci_high", "diff_vs_hpa"} <= set(summary.columns)
    assert any("published claims" in line for line in targets(summary))
    assert set(never_worse(table).index) == {"calendar"}


def test_study_scenarios_are_a_fair_test() -> None:
    cal = build_scenario("calendar", seed=4, days=3.0)
    services = cal.topology.services
    for name in ("redis-cart", "recommendationservice"):  # the study's topology patch
        assert services[name].hpa is not None
    assert load_topology_dict("online-boutique")["services"]["redis-cart"].get("hpa") is None
    sales = cal.workload.calendar
    assert len(sales) == 3
    assert len({round(e.start % DAY_S, 6) for e in sales}) == 1  # same hour: learnable
    hpa = services["frontend"].hpa
    fastest = min(s.startup_s for s in services.values() if s.hpa is not None)
    for e in sales:
        assert e.ramp_s < hpa.sync_s + fastest  # faster than the reactive HPA can follow
        assert e.lift * (1 + cal.workload.daily_amplitude * 0.6) > 1 / (hpa.target_cpu * 0.5)
    daily = build_scenario("daily", seed=0, days=2.0)
    assert daily.workload.calendar == [] and daily.workload.flash_crowds == []


def test_a_trace_peaks_at_the_asked_multiple_of_each_class(tmp_path: Path) -> None:
    csv = _trace_csv(tmp_path / "load.csv")
    scenario = traces.with_trace(traces.base_scenario(), csv, 3.0)
    assert scenario.duration == pytest.approx(2 * DAY_S)
    assert scenario.workload.classes[0].rate == pytest.approx(300.0)
    rates = rate_curves(scenario.workload, int(scenario.duration / 60), 60.0)
    assert rates.max() == pytest.approx(300.0, rel=1e-3)  # the trace's peak, rescaled
    assert rates.min() == pytest.approx(300.0 * 10 / 90, rel=0.02)  # its shape kept
    # a user's own scenario keeps its classes' shares, faults and SLOs
    own = load_scenario_text(tmp_path, csv)
    shaped = traces.with_trace(own, csv, 2.0, days=2.0)
    assert [c.rate for c in shaped.workload.classes] == [160.0, 40.0]
    assert shaped.slos == own.slos and shaped.topology == own.topology


def load_scenario_text(tmp_path: Path, csv: Path):
    from twin.scenario.loader import load_scenario

    path = tmp_path / "mine.yaml"
    topo = ROOT / "scenarios" / "topologies" / "online-boutique.yaml"
    path.write_text(
        f"name: mine\ntopology: {topo}\nduration: 1h\ntick: 30\n"
        "workload:\n  classes:\n"
        "    - {name: browse, entry: frontend, rate: 80}\n"
        "    - {name: buy, entry: frontend, rate: 20}\n"
        "slos:\n  - {availability: 0.999, latency_ms: 500}\n"
    )
    return load_scenario(path)


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("ts,value\n0,1\n300,2\n", "workload.replay.time_column: no column 'timestamp'"),
        ("timestamp,rps\n0,1\n300,2\n", "workload.replay.value_column: no column 'value'"),
        ("timestamp,value\n0,1\n300,-2\n", "negative value -2 at line 3"),
        ("timestamp,value\n0,1\n300,2\n", "covers 0.01 days; the study needs 2"),
    ],
)
def test_a_bad_trace_is_named_before_anything_runs(tmp_path: Path, text, needle) -> None:
    csv = tmp_path / "load.csv"
    csv.write_text(text)
    with pytest.raises(FirebreakError) as info:
        traces.with_trace(traces.base_scenario(), csv, 1.0)
    assert needle in str(info.value) and "load.csv" in str(info.value)


def test_scenario_cases_need_an_slo_and_an_hpa(tmp_path: Path) -> None:
    own = load_scenario_text(tmp_path, tmp_path / "x.csv")
    cases = scenario_cases(own, 3)
    assert [c.seed for c in cases] == [own.seed, own.seed + 1, own.seed + 2]
    with pytest.raises(FirebreakError, match="declares no SLO"):
        scenario_cases(own.model_copy(update={"slos": []}), 1)


def _row(family, seed, policy, minutes, hours, take=0.0):
    return {
        "family": family,
        "kind": "trace",
        "seed": seed,
        "policy": policy,
        "slo_violating_min": minutes,
        "replica_hours": hours,
        "take_overs": take,
    }


def test_never_worse_check_on_a_hand_made_table() -> None:
    rows = [
        _row("a", 0, "hpa", 0, 100), _row("a", 0, "predictive", 0, 101.9),  # ok: +1.9%
        _row("b", 0, "hpa", 0, 100), _row("b", 0, "predictive", 0, 102.5),  # +2.5%: no
        _row("c", 0, "hpa", 3, 100), _row("c", 0, "predictive", 1, 110),  # helps: may spend
        _row("d", 0, "hpa", 1, 100), _row("d", 0, "predictive", 2, 99),  # more minutes: no
    ]  # fmt: skip
    check = never_worse(pd.DataFrame(rows))
    assert check.loc["a", "cost_ok"] and check.loc["a", "slo_ok"]
    assert not check.loc["b", "cost_ok"]
    assert check.loc["c", "cost_ok"] and check.loc["c", "slo_ok"]
    assert not check.loc["d", "slo_ok"]
    lines = never_worse_lines(check)
    assert lines[0].endswith("MET") and lines[1].endswith("NOT MET")


def test_command_with_a_trace_and_with_a_scenario(tmp_path: Path, capsys) -> None:
    from firebreak.cli import main

    csv = _trace_csv(tmp_path / "load.csv")
    out = tmp_path / "study"
    argv = ["capacity-study", "--trace", str(csv), "--peak-x", "2", "--seeds", "1"]
    assert main([*argv, "--tick", "60", "--out", str(out)]) == 0
    for name in ("capacity_runs.csv", "capacity_summary.csv", "capacity_never_worse.csv"):
        assert (out / name).is_file()
    assert (out / "capacity_study.png").stat().st_size > 1000
    text = capsys.readouterr().out
    assert "predictive/HPA replica-hours" in text
    runs = pd.read_csv(out / "capacity_runs.csv")
    assert set(runs.policy) == {"hpa", "static", "predictive"}
    own = tmp_path / "mine.yaml"
    load_scenario_text(tmp_path, csv)
    out2 = tmp_path / "study2"
    argv = ["capacity-study", "--scenario", str(own), "--days", "0.05", "--seeds", "1"]
    assert main([*argv, "--out", str(out2)]) == 0
    assert pd.read_csv(out2 / "capacity_runs.csv").family.unique().tolist() == ["mine"]


@pytest.mark.parametrize(
    ("extra", "needle"),
    [
        (["--families", "weekly"], "--families: unknown 'weekly'"),
        (["--seeds", "0"], "--seeds: must be at least 1"),
        (["--real-traces", "development", "--families", "daily"], "runs on its own"),
        (["--trace", "nowhere.csv"], "file not found"),
        (["--trace", "x.csv", "--peak-x", "1", "3"], "--peak-x: one value"),
    ],
)
def test_command_errors(tmp_path: Path, capsys, extra, needle) -> None:
    from firebreak.cli import main

    assert main(["capacity-study", *extra, "--out", str(tmp_path / "o")]) == 2
    assert needle in capsys.readouterr().err
    assert not (tmp_path / "o").exists()  # nothing half-written


def test_validate_reads_the_replayed_csv(tmp_path: Path, capsys) -> None:
    from firebreak.cli import main

    (tmp_path / "load.csv").write_text("ts,rps\n0,1\n300,2\n")
    topo = ROOT / "scenarios" / "topologies" / "online-boutique.yaml"
    scenario = tmp_path / "replay.yaml"
    scenario.write_text(
        f"name: replay\ntopology: {topo}\nduration: 1h\n"
        "workload:\n  classes: [{name: shop, entry: frontend, rate: 10}]\n"
        "  replay: {file: load.csv, time_column: ts}\n"
    )
    assert main(["validate", str(scenario)]) == 2
    err = capsys.readouterr().err
    assert "workload.replay.value_column: no column 'value'" in err and "load.csv" in err
    text = scenario.read_text().replace("time_column: ts}", "time_column: ts, value_column: rps}")
    scenario.write_text(text)
    assert main(["validate", str(scenario)]) == 0


def test_a_loss_reads_as_higher_never_as_a_negative_saving() -> None:
    from experiments.capacity.study import _lower

    assert _lower(0.54) == "54% lower"
    assert _lower(-0.057) == "6% higher"
    assert _lower(-0.5, "fewer", "more") == "50% more"
