"""`firebreak sim2real`: twin cases mirror the real ones (kind, root, windows), the same seed
gives the same twin cases, the comparison's bar is computed as the issue states it, and the
command runs end to end on a miniature of Nezha's layout."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from test_real_bench import DAY, mini_nezha

from experiments.realbench.cases import Answer, CaseInputs, RealCase
from experiments.sim2real import compare
from experiments.sim2real.check import calibrated, windowed
from experiments.sim2real.faults import TWIN_KIND, Sim2RealError, twin_fault
from experiments.sim2real.twin_cases import Framing, TwinCases
from firebreak.cli import main

FRAMING = Framing(before_s=120.0, after_s=60.0, step_s=60.0)  # short: a test runs in seconds


def nezha_with_twin_fault(folder: Path) -> Path:
    """The miniature with a second fault on a service its traces show (the first one's
    service is in no trace, only in the pod metrics)."""
    root = mini_nezha(folder)
    path = root / "rca_data" / DAY / f"{DAY}-fault_list.json"
    faults = json.loads(path.read_text())
    faults["08"].append({"inject_time": f"{DAY} 08:43:30", "inject_timestamp": "0",
                         "inject_pod": "ts-verification-code-service-866bd68c97-kqwzx",
                         "inject_type": "exception"})  # fmt: skip
    path.write_text(json.dumps(faults))
    return root


@pytest.fixture(scope="module")
def twin(tmp_path_factory) -> TwinCases:
    root = mini_nezha(tmp_path_factory.mktemp("nezha"))
    scenario, source = calibrated(root, DAY, seed=0)
    return TwinCases(scenario, FRAMING, seed=3, source=source)


def _real(kind: str, root: str, index: int = 0) -> RealCase:
    """A real case as the twin sees it: only its answer and part are read."""
    return RealCase("nezha-trainticket", DAY, True, f"case {index}", CaseInputs(None, 0.0),
                    Answer(root, kind), {"case": index})  # fmt: skip


def test_each_real_kind_becomes_its_twin_fault_on_the_same_service_and_window(twin) -> None:
    target = next(iter(twin.services))
    for i, kind in enumerate(TWIN_KIND):
        fault = twin.scenario_for(i, kind, target).faults[0]
        assert fault.kind == TWIN_KIND[kind] and fault.target == target
        assert fault.start == FRAMING.fault_at and fault.duration == FRAMING.after_s
    assert twin.scenario_for(0, "cpu_contention", target).telemetry.mode == "production"
    delay = twin.scenario_for(0, "network_delay", target).faults[0]
    assert delay.network and delay.factor == 1.0 and delay.add_ms > 0  # netem: on the wire
    code = twin.scenario_for(0, "return", target).faults[0]
    assert code.share == 1.0  # every call of the twin's one operation
    with pytest.raises(Sim2RealError, match="disk_fill"):
        twin_fault("disk_fill", target, 0.0, 60.0, twin.services)
    with pytest.raises(Sim2RealError, match="ts-nowhere"):
        twin_fault("exception", "ts-nowhere", 0.0, 60.0, twin.services)


def test_the_same_seed_gives_the_same_twin_case_and_another_seed_another(twin) -> None:
    target = "ts-verification-code-service"
    assert target in twin.services
    a, b = twin.case(0, _real("exception", target)), twin.case(0, _real("exception", target))
    pd.testing.assert_frame_equal(a.inputs.table, b.inputs.table)
    pd.testing.assert_frame_equal(a.inputs.telemetry.spans, b.inputs.telemetry.spans)
    assert a.answer == Answer(target, "exception") and a.meta["twin_fault"] == "bad_response"
    other = TwinCases(twin.scenario, FRAMING, seed=4, source="test")
    c = other.case(0, _real("exception", target))
    assert not a.inputs.table.drop(columns="time").equals(c.inputs.table.drop(columns="time"))
    # the anomaly time sits at the framing's fault start, with normal rows before it
    t = a.inputs.table["time"].to_numpy()
    assert (t < a.inputs.anomaly_time).sum() >= FRAMING.before_s / FRAMING.step_s


def test_the_bar_needs_four_methods_close_and_in_the_same_order() -> None:
    real = pd.DataFrame({"method": list("abcd"), "ac1": [0.9, 0.6, 0.3, 0.1]})
    close = pd.DataFrame({"method": list("abcd"), "ac1": [0.85, 0.65, 0.25, 0.05]})

    def table(twin_ac1):
        rows = []
        for side, frame in (("r", real), ("t", twin_ac1)):
            for m, v in zip(frame["method"], frame["ac1"], strict=True):
                rows.append({"side": side, "case": 0, "method": m, "ac1": v, "ac3": v})
        rows = pd.DataFrame(rows)
        return compare.side_by_side(rows[rows.side == "r"], rows[rows.side == "t"])

    v = compare.verdict(table(close))
    assert v["met"] and v["kendall_tau"] == pytest.approx(1.0) and v["within_tolerance"] == 4
    swapped = close.assign(ac1=[0.65, 0.85, 0.25, 0.05])
    v = compare.verdict(table(swapped))
    assert not v["met"] and any("off by more" in w for w in v["why_not"])
    flat = close.assign(ac1=[0.0] * 4)
    assert compare.verdict(table(flat))["kendall_tau"] is None
    assert not compare.verdict(table(close).iloc[:3])["met"]  # three methods are too few
    assert compare.kendall(np.array([1, 2, 3]), np.array([3, 2, 1])) == pytest.approx(-1.0)


def test_sim2real_runs_end_to_end_on_a_miniature(tmp_path: Path, capsys) -> None:
    root = nezha_with_twin_fault(tmp_path)
    out = tmp_path / "sim2real.json"
    code = main(["sim2real", str(root), "--methods", "robust", "impact", "multimodal", "auto",
                 "--out", str(out)])  # fmt: skip
    assert code == 0, capsys.readouterr().err
    printed = capsys.readouterr().out
    assert "AC@1 real" in printed and "Kendall" in printed and "development" in printed
    doc = json.loads(out.read_text())
    day = doc["days"][DAY]
    assert [r["method"] for r in day["table"]] == ["robust", "impact", "multimodal", "auto"]
    # ts-basic-service is in no trace, but its pod metrics keep it in the calibrated twin
    assert {r["kind"] for r in day["per_case"]} == {"exception", "return"}
    assert day["cases"] == 2 and day["skipped"] == []
    assert all(r["rank_twin"] is not None or r["error_twin"] for r in day["per_case"])
    assert doc["settings"]["fault_map"]["return"] == "bad_response"
    assert set(day["verdict"]) >= {"met", "kendall_tau", "why_not"}


def test_both_sides_see_the_same_window_of_the_metric_table() -> None:
    times = np.arange(0.0, 3600.0, 60.0)
    table = pd.DataFrame({"time": times, "a_cpu": np.arange(times.size, dtype=float)})
    case = RealCase("nezha-trainticket", DAY, True, "c", CaseInputs(table, 1800.0),
                    Answer("a", "cpu_contention"))  # fmt: skip
    cut = windowed(case, FRAMING).inputs.table["time"]
    assert cut.min() == 1800.0 - FRAMING.before_s and cut.max() < 1800.0 + FRAMING.after_s
    assert len(cut) == (FRAMING.before_s + FRAMING.after_s) / 60.0
    assert len(case.inputs.table) == times.size  # the real table itself is left whole
