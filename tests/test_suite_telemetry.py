"""The evaluation suites with production-like telemetry (`--telemetry production`): the
methods and detectors see only what a production run directory holds, deterministically."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from experiments.detection.suite import load_suite, run_case
from experiments.observed import check_telemetry, observe
from experiments.rca.cases import CaseSpec
from experiments.rca.suite import run_suite, simulate_case
from firebreak.cli import main
from twin.errors import FirebreakError
from twin.scenario.observe_schema import DEFAULT_MODE
from twin.telemetry.spans import EPOCH_UNIX_S

SCRAPE_STEP_S = 15.0  # ProductionTelemetry's default step_s


def _case(seed: int = 3) -> CaseSpec:
    return CaseSpec(
        case="tiny-prod",
        topology="online-boutique",
        kind="latency",
        target="productcatalogservice",
        start=1200.0,
        duration=300.0,
        seed=seed,
        run_s=1620.0,
        params={"factor": 8.0},
    )


def _metric_columns(table: pd.DataFrame) -> list[str]:
    """Metric columns (the fused log columns count events, which may well be zero)."""
    return [c for c in table.columns if c != "time" and not c.endswith("_logerror")]


def _constant(table: pd.DataFrame, before_s: float) -> list[str]:
    pre = table[table["time"] < EPOCH_UNIX_S + before_s]
    return [c for c in _metric_columns(table) if pre[c].nunique() <= 1]


@pytest.fixture(scope="module")
def runs() -> dict[str, object]:
    spec = _case()
    return {
        "spec": spec,
        "ideal": simulate_case(spec),
        "production": simulate_case(spec, telemetry="production"),
        "again": simulate_case(spec, telemetry="production"),
    }


def test_the_suites_read_ideal_ticks_unless_asked() -> None:
    """Run directories are production-like by default; the suites keep reading the engine's
    ticks unless told otherwise, so their published ideal tables reproduce."""
    from firebreak.cli import build_parser

    assert DEFAULT_MODE == "production"
    for command in ("rca-suite", "detect-suite"):
        assert build_parser().parse_args([command, "--out", "x"]).telemetry == "ideal"


def test_a_method_sees_the_scrape_step_not_the_tick(runs) -> None:
    ideal, prod = runs["ideal"].table, runs["production"].table
    assert np.median(np.diff(ideal["time"].to_numpy(dtype=float))) == pytest.approx(1.0)
    steps = np.diff(prod["time"].to_numpy(dtype=float))
    assert np.median(steps) == pytest.approx(SCRAPE_STEP_S)
    assert len(prod) < len(ideal) / 10
    assert list(prod.columns) == list(ideal.columns)  # same wide table, log columns included
    assert any(c.endswith("_logerror") for c in prod.columns)


def test_no_metric_column_is_constant_before_the_fault(runs) -> None:
    spec = runs["spec"]
    # the ideal frames have exactly constant columns (error rates of healthy services) ...
    assert _constant(runs["ideal"].table, spec.start)
    # ... what production would have recorded has none
    assert _constant(runs["production"].table, spec.start) == []


def test_the_inferred_start_comes_from_observed_steps(runs) -> None:
    spec, prod = runs["spec"], runs["production"]
    assert prod.inferred_start is not None, "an 8x latency fault must be detected"
    assert spec.start <= prod.inferred_start < spec.end
    assert np.isclose(prod.times, prod.inferred_start).any()  # on the scrape grid
    assert prod.inferred_start % SCRAPE_STEP_S == pytest.approx(0.0)


def test_same_seed_same_observed_case(runs) -> None:
    a, b = runs["production"], runs["again"]
    pd.testing.assert_frame_equal(a.table, b.table)
    assert a.inferred_start == b.inferred_start
    other = simulate_case(_case(seed=4), telemetry="production")
    assert not other.table.equals(a.table)


def test_suite_rows_are_deterministic_in_production_mode() -> None:
    from experiments.rca.methods import load_methods

    methods, _ = load_methods(["robust", "randomwalk"])
    specs = [_case(seed=5)]
    a = run_suite(specs, methods, cf_method="robust", telemetry="production")
    b = run_suite(specs, methods, cf_method="robust", telemetry="production")
    cols = [c for c in a.columns if c not in ("wall_s", "mtti_s")]
    pd.testing.assert_frame_equal(a[cols], b[cols])
    assert a["twin_verified"].any()  # the counterfactual still runs (on the kept twin)


def test_bad_telemetry_mode_is_a_clear_error() -> None:
    with pytest.raises(FirebreakError, match="telemetry: expected one of ideal, production"):
        check_telemetry("perfect")
    with pytest.raises(FirebreakError, match="perfect"):
        simulate_case(_case(), telemetry="perfect")  # type: ignore[arg-type]


def test_observed_run_holds_only_the_run_directory(tmp_path: Path) -> None:
    scenario = load_suite(["dependency-outage"])[0].model_copy(update={"duration": 3600.0})
    obs = observe(scenario, tmp_path / "run", labels=True, logs=False)
    assert (tmp_path / "run" / "telemetry.json").exists()
    assert json.loads((tmp_path / "run" / "telemetry.json").read_text())["mode"] == "production"
    assert obs.values.shape == (len(obs.times), len(obs.services), obs.values.shape[2])
    assert np.isfinite(obs.values).all()
    assert obs.labels is not None and "faults" in obs.labels
    assert obs.sim is None  # not kept unless asked


def _cli(argv: list[str]) -> tuple[int, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(argv)
        except SystemExit as exc:
            code = exc.code
    return int(code or 0), out.getvalue() + err.getvalue()


def test_rca_suite_cli_production_smoke(tmp_path: Path) -> None:
    out = tmp_path / "rca"
    code, text = _cli(
        ["rca-suite", "--cases", "1", "--seed", "0", "--methods", "robust", "--telemetry",
         "production", "--out", str(out)]
    )  # fmt: skip
    assert code == 0, text
    assert "telemetry: production" in text
    table = pd.read_csv(out / "rca_suite.csv")
    assert set(table["start"]) == {"true", "inferred"} and len(table) >= 2


def test_detect_suite_cli_production_smoke(tmp_path: Path) -> None:
    out = tmp_path / "det"
    code, text = _cli(
        ["detect-suite", "--scenarios", "dependency-outage", "--telemetry", "production",
         "--out", str(out)]
    )  # fmt: skip
    assert code == 0, text
    payload = json.loads((out / "detection_suite.json").read_text())
    assert payload["telemetry"] == "production"
    assert set(payload["summary"]) == {"static", "tier1", "tiered", "tier2-always"}
    assert payload["summary"]["tier1"]["faults"] >= 1


def test_detect_case_sees_observed_steps_only() -> None:
    scenario = load_suite(["dependency-outage"])[0].model_copy(update={"duration": 3600.0})
    result = run_case(scenario, None, telemetry="production")
    tier1 = result.detectors["tier1"]
    # one service-frame per service per 15 s step, not per 1 s tick
    steps = tier1["service_frames"] / result.services
    assert steps == pytest.approx(scenario.duration / SCRAPE_STEP_S, rel=0.1)


@pytest.mark.parametrize("command", ["rca-suite", "detect-suite"])
def test_bad_telemetry_flag_exits_2(command: str, tmp_path: Path) -> None:
    code, text = _cli([command, "--telemetry", "perfect", "--out", str(tmp_path / "x")])
    assert code == 2
    assert "--telemetry" in text and "perfect" in text
    assert "Traceback" not in text
