"""A code fault that fails nothing (Nezha's `return` and `exception`): every metric is what
the fault-free run has, and only the faulty path's log lines show it, for its target and
while it lasts."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.dataset as ds
import pytest
from conftest import chain_topology, make_scenario

from twin.run.runner import run_scenario

START, DURATION = 120.0, 120.0


def _run(tmp_path: Path, name: str, faults: list[dict]) -> Path:
    scenario = make_scenario(
        chain_topology(),
        duration=360,
        faults=faults,
        workload={"classes": [{"name": "all", "entry": "entry", "rate": 200.0}], "noise": 0.0},
        telemetry={"log_info_rate": 0.01},  # about 240 of the path's lines at share 1
    )
    out = tmp_path / name
    run_scenario(scenario, out)
    return out


def _metrics(out: Path):
    table = ds.dataset(out / "metrics.parquet", format="parquet").to_table().to_pandas()
    return table.sort_values(list(table.columns[:3])).reset_index(drop=True)


def _code_lines(out: Path) -> list[dict]:
    with (out / "logs.jsonl").open() as fh:
        return [r for r in map(json.loads, fh) if r["template_id"].startswith("code.")]


@pytest.mark.parametrize(("exception", "template", "level"), [
    (True, "code.caught", "ERROR"), (False, "code.wrong_value", "WARN"),
])  # fmt: skip
def test_only_the_logs_of_the_target_show_it_while_it_lasts(
    tmp_path: Path, exception: bool, template: str, level: str
) -> None:
    fault = {"kind": "bad_response", "target": "mid", "start": START, "duration": DURATION,
             "share": 1.0, "exception": exception}  # fmt: skip
    clean, faulty = _run(tmp_path, "clean", []), _run(tmp_path, "faulty", [fault])
    assert _metrics(clean).equals(_metrics(faulty))  # nothing fails, nothing slows
    lines = _code_lines(faulty)
    assert lines, "the faulty path logged nothing"
    seen = {(r["service"], r["template_id"], r["level"]) for r in lines}
    assert seen == {("mid", template, level)}
    assert all(START <= r["t"] < START + DURATION + 1.0 for r in lines)
    assert ("stack" in lines[0]) == exception
    assert _code_lines(clean) == []
    labels = json.loads((faulty / "labels.json").read_text())["faults"][0]
    assert labels["kind"] == "bad_response" and labels["roots"] == ["mid"]
    assert {r["action"] for r in labels["remedies"]["ends"]} >= {"restart_pods", "rollback"}


def test_its_log_lines_grow_with_its_share(tmp_path: Path) -> None:
    def lines(share: float) -> int:
        fault = {"kind": "bad_response", "target": "mid", "start": START,
                 "duration": DURATION, "share": share}  # fmt: skip
        return len(_code_lines(_run(tmp_path, f"s{share}", [fault])))

    assert lines(1.0) > 2 * lines(0.2) > 0


def test_the_remediation_env_draws_it_only_when_asked() -> None:
    """Its observation is metrics: a logs-only fault would be noise to a policy."""
    import numpy as np

    from twin.envs.distribution import REMEDIATION_FAULTS, draw_fault

    assert "bad_response" not in REMEDIATION_FAULTS
    fault = draw_fault(np.random.default_rng(0), "bad_response", "online-boutique", 60.0, 120.0)
    assert fault.kind == "bad_response" and 0.2 <= fault.share <= 1.0


def _fully_traced(tmp_path: Path, name: str, fault: dict, rate: float, duration: float):
    """A run with every request traced and logged: (mid's server spans, mid's log lines)."""
    from detectors.ingest.read import read_traces

    scenario = make_scenario(
        chain_topology(),
        duration=duration,
        faults=[fault],
        workload={"classes": [{"name": "all", "entry": "entry", "rate": rate}], "noise": 0.0},
        telemetry={"traces": True, "logs": True, "trace_rate": 1.0, "log_info_rate": 1.0},
    )
    run_scenario(scenario, tmp_path / name)
    spans, _ = read_traces(tmp_path / name / "traces.json")
    with (tmp_path / name / "logs.jsonl").open() as fh:
        lines = [r for r in map(json.loads, fh) if r["service"] == "mid"]
    return spans[(spans["service"] == "mid") & (spans["kind"] == "server")], lines


def test_a_slow_services_code_fault_lines_carry_its_own_spans(tmp_path: Path) -> None:
    """At a request every 20 s, with every request traced and logged, each traced request
    writes its own lines with its ids: the fault's lines name spans of the faulty service
    (drawn apart from the spans, a slow service's lines and spans almost never met in a
    tick, and a log-and-trace RCA method could not tie the lines to the service)."""
    fault = {"kind": "bad_response", "target": "mid", "start": START, "duration": 600.0,
             "share": 1.0}  # fmt: skip
    mid, records = _fully_traced(tmp_path, "slow", fault, rate=0.05, duration=900)
    own = set(zip(mid["trace"], mid["span"], strict=True))
    code = [r for r in records if r["template_id"] == "code.wrong_value"]
    info = [r for r in records if r["level"] == "INFO"]
    assert len(code) >= 10 and len(info) >= 10
    for lines in (code, info):
        tied = sum((r["trace_id"], r.get("span_id")) in own for r in lines)
        assert tied / len(lines) >= 0.9


@pytest.mark.parametrize("trace_rate", [0.0, 0.5, 1.0])
def test_info_lines_stay_a_share_of_the_requests_whatever_is_traced(
    tmp_path: Path, trace_rate: float
) -> None:
    """Traced requests write their own lines and the rest are drawn per tick: the count is
    `log_info_rate` of the served requests either way (no request logged twice), within a
    Poisson interval."""
    scenario = make_scenario(
        chain_topology(),
        duration=600,
        workload={"classes": [{"name": "all", "entry": "entry", "rate": 2.0}], "noise": 0.0},
        telemetry={"trace_rate": trace_rate, "log_info_rate": 0.5},
    )
    out = tmp_path / f"r{trace_rate}"
    run_scenario(scenario, out)
    with (out / "logs.jsonl").open() as fh:
        info = sum(r["level"] == "INFO" and r["service"] == "mid" for r in map(json.loads, fh))
    expected = 0.5 * 2.0 * 600  # mid serves every request once
    assert abs(info - expected) <= 4 * expected**0.5


def test_every_traced_request_writes_one_access_line_failed_or_not(tmp_path: Path) -> None:
    """A slow leaf times out some of mid's calls: each of mid's traced requests still
    writes exactly one access line, a failed one with a failure status (were failed
    requests silent, the timeouts would read as mid's lines vanishing)."""
    fault = {"kind": "latency", "target": "leaf", "start": 60.0, "duration": 120.0,
             "factor": 1.0, "add_ms": 950.0}  # fmt: skip
    mid, records = _fully_traced(tmp_path, "timeouts", fault, rate=1.0, duration=240)
    bad = mid[mid["error"] > 0]
    failed = set(zip(bad["trace"], bad["span"], strict=True))
    assert len(failed) >= 5 and len(mid) > len(failed)
    per_span: dict[tuple[str, str], list[str]] = {}
    for r in records:
        if r["level"] == "INFO":
            per_span.setdefault((r["trace_id"], r.get("span_id", "")), []).append(r["message"])
    for ids in zip(mid["trace"], mid["span"], strict=True):
        assert len(per_span.get(ids, [])) == 1, ids
        assert ("grpc.code=Unavailable" in per_span[ids][0]) == (ids in failed)
