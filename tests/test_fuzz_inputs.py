"""Fuzzing the edges: mutated scenarios, CSV tables and trace files through the command line.

Hypothesis edits valid files the way hands and tools break them (a slice deleted, a line
doubled, a character of YAML/JSON/CSV syntax inserted, a number replaced by an extreme one)
and every command that reads them must end in exit 0 or 2: never an exception escaping,
never a hang (a per-test time limit), never an output that does not open.
"""

from __future__ import annotations

import contextlib
import io
import json

import numpy as np
import pytest
import yaml
from bad_input_corpus import valid_scenario
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from run_files import assert_every_file_opens

from firebreak.cli import main

SYNTAX = [*list(":-[]{},#&*!|>'\"%@`\n\t "), "0", "1e309", "-1", "nan", "null", "~", "true"]
NUMBERS = ["0", "-1", "1e309", "-1e309", "nan", "inf", "1e-320", "99999999999999999999", "0.5"]
FUZZ = settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)


@st.composite
def mutated(draw: st.DrawFn, text: str) -> str:
    """The text with one to three edits."""
    for _ in range(draw(st.integers(1, 3))):
        kind = draw(st.sampled_from(["delete", "insert", "double", "number", "truncate"]))
        n = len(text)
        i = draw(st.integers(0, max(n - 1, 0)))
        if kind == "delete":
            j = draw(st.integers(i, min(n, i + 40)))
            text = text[:i] + text[j:]
        elif kind == "insert":
            text = text[:i] + draw(st.sampled_from(SYNTAX)) + text[i:]
        elif kind == "double":
            lines = text.splitlines(keepends=True)
            if lines:
                k = draw(st.integers(0, len(lines) - 1))
                lines.insert(k, lines[k])
                text = "".join(lines)
        elif kind == "number":
            digits = [k for k, ch in enumerate(text) if ch.isdigit()]
            if digits:
                k = draw(st.sampled_from(digits))
                text = text[:k] + draw(st.sampled_from(NUMBERS)) + text[k + 1 :]
        else:
            text = text[:i]
    return text


def _run(argv: list[str]) -> tuple[int, str]:
    err = io.StringIO()
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(err):
        try:
            code = main(argv)
        except SystemExit as exc:
            code = exc.code
    return code, err.getvalue()


SCENARIO_TEXT = yaml.safe_dump(valid_scenario(), sort_keys=False)


@pytest.mark.timeout(600)
@FUZZ
@given(text=mutated(SCENARIO_TEXT))
def test_mutated_scenarios_validate_or_fail_cleanly(tmp_path_factory, text: str) -> None:
    path = tmp_path_factory.mktemp("fuzz") / "scenario.yaml"
    path.write_text(text, encoding="utf-8")
    code, err = _run(["validate", str(path)])
    event(f"exit {code}")
    assert code in (0, 2), err
    assert "Traceback" not in err


@pytest.mark.timeout(900)
@settings(FUZZ, max_examples=15)
@given(text=mutated(SCENARIO_TEXT))
def test_mutated_scenarios_run_or_fail_cleanly(tmp_path_factory, text: str) -> None:
    folder = tmp_path_factory.mktemp("fuzzrun")
    path = folder / "scenario.yaml"
    path.write_text(text, encoding="utf-8")
    out = folder / "out"
    code, err = _run(["run", str(path), "--duration", "6m", "--out", str(out), "--quiet"])
    event(f"exit {code}")
    assert code in (0, 2), err
    assert "Traceback" not in err
    assert_every_file_opens(out)


def _jaeger() -> str:
    spans = []
    for k, (svc, parent) in enumerate([("p1", None), ("p2", "s0"), ("p3", "s1")]):
        spans.append(
            {
                "traceID": "abc",
                "spanID": f"s{k}",
                "operationName": f"op{k}",
                "startTime": 1_000_000 + k * 10,
                "duration": 100 - k * 20,
                "processID": svc,
                "references": [] if parent is None else
                [{"refType": "CHILD_OF", "traceID": "abc", "spanID": parent}],
                "tags": [],
            }
        )  # fmt: skip
    processes = {f"p{k}": {"serviceName": name} for k, name in enumerate("xabc") if k}
    return json.dumps({"data": [{"traceID": "abc", "spans": spans, "processes": processes}]})


@pytest.mark.timeout(600)
@FUZZ
@given(text=mutated(_jaeger()))
def test_mutated_traces_import_or_fail_cleanly(tmp_path_factory, text: str) -> None:
    folder = tmp_path_factory.mktemp("fuzztrace")
    path = folder / "traces.json"
    path.write_text(text, encoding="utf-8")
    code, err = _run(["import-traces", str(path), "-o", str(folder / "topology.yaml")])
    event(f"exit {code}")
    assert code in (0, 2), err
    assert "Traceback" not in err
    assert_every_file_opens(folder / "topology.yaml")


def _table() -> str:
    rng = np.random.default_rng(0)
    rows = ["time,api_latency_ms,api_errors,db_cpu"]
    for k in range(300):
        rows.append(f"{k * 60},{100 + rng.normal(0, 5):.3f},{rng.poisson(2)},{0.3:.2f}")
    return "\n".join(rows) + "\n"


@pytest.mark.timeout(600)
@FUZZ
@given(text=mutated(_table()))
def test_mutated_tables_detect_or_fail_cleanly(tmp_path_factory, text: str) -> None:
    folder = tmp_path_factory.mktemp("fuzzcsv")
    path = folder / "table.csv"
    path.write_text(text, encoding="utf-8")
    out = folder / "out"
    code, err = _run(["detect", str(path), "--out", str(out)])
    event(f"exit {code}")
    assert code in (0, 2), err
    assert "Traceback" not in err
    assert_every_file_opens(out)
