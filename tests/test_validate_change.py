"""validate-change: the verdicts the issue asks for, the canary, the search, the schema's
errors, the report and the command's exit codes.

Runs are short (23 simulated minutes, the smoke suite, one or two seeds) so the file stays
well under a minute; the command's defaults are larger.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import SCENARIOS

from experiments.change import resilience as resilience_search
from experiments.change.canary import rehearse_canary
from experiments.change.spec import ChangeError, apply_change, load_change, parse_change
from experiments.change.suite import (
    SuiteTiming,
    ValidationConfig,
    build_suite,
    case_scenario,
    critical_services,
)
from experiments.change.validate import validate_change
from firebreak.cli import main
from twin.errors import FirebreakError
from twin.scenario.loader import load_scenario

CHANGES = SCENARIOS / "changes"
BASE = CHANGES / "boutique-base.yaml"
TIMING = SuiteTiming(warmup_s=300, before_s=180, trigger_s=300, grace_s=300, after_s=300)
FAST = ValidationConfig(
    suite="smoke", seeds=2, timing=TIMING, backend="serial", progress=False, search=None
)


@pytest.fixture(scope="module")
def base():
    return load_scenario(BASE)


def _validate(base, name: str, config: ValidationConfig = FAST) -> dict:
    return validate_change(base, load_change(CHANGES / f"{name}.yaml"), config)


def _row(result: dict, case: str) -> dict:
    return next(r for r in result["comparison"] if r["case"] == case)


# -- the four verdicts the issue asks for --------------------------------------------------
def test_timeout_below_dependency_p99_is_unsafe(base) -> None:
    result = _validate(base, "timeout-below-p99")
    assert result["verdict"] == "unsafe"
    finding = result["findings"][0]
    assert finding["edge"] == "cartservice -> redis-cart" and finding["new"]
    assert finding["timeout_ms"] < finding["p99_ms"]
    steady = _row(result, "steady-state")
    assert steady["d_p99_ms_lo"] > 0, "timeouts and their retries slow every request"
    assert any("redis-cart" in line for line in result["deciding"])


def test_adding_a_replica_is_safe(base) -> None:
    result = _validate(base, "add-replica")
    assert result["verdict"] == "safe", result["deciding"]
    assert all(r["status"] in ("same", "improved") for r in result["comparison"])
    assert _row(result, "steady-state")["d_replica_hours"] > 0  # it costs, and says so


def test_aggressive_retries_turn_a_flash_crowd_metastable(base) -> None:
    result = _validate(base, "aggressive-retries")
    assert result["verdict"] == "unsafe"
    crowd = _row(result, "flash-crowd")
    assert crowd["status"] == "unsafe"
    assert crowd["held_base"] == crowd["seeds"], "the base rides out the crowd"
    assert crowd["metastable"] == crowd["seeds"], "the change never recovers after it"
    assert _row(result, "steady-state")["status"] == "same", "harmless on a quiet day"
    assert any(line.startswith("flash-crowd: metastable failure") for line in result["deciding"])


def test_canary_rolls_back_a_5x_latency_regression_before_full_rollout(base) -> None:
    config = ValidationConfig(
        suite="smoke", seeds=1, timing=TIMING, backend="serial", progress=False, search=None
    )
    result = _validate(base, "canary-5x-latency", config)
    (own,) = result["canary"]
    assert own["caught_before_full"] == own["seeds"] == 1
    run = own["runs"][0]
    assert run["rolled_back"] and not run["reached_full"]
    assert run["rollback_weight"] == 0.05 and run["time_to_rollback_s"] <= 120
    assert own["budget_30d"] <= own["big_bang_budget_30d"]
    # slower but inside the SLOs: risky (not unsafe), and the plan is not what makes it so
    assert result["verdict"] == "risky"
    assert not any(line.startswith("canary") for line in result["deciding"])


def test_canary_criterion_tells_regressions_apart(base) -> None:
    change = load_change(CHANGES / "canary-5x-latency.yaml")
    plan, version = change.deploy, change.version
    outcomes = {}
    for factor in (1.0, 5.0):
        v = version.model_copy(update={"latency_factor": factor})
        outcomes[factor] = rehearse_canary(base, base.topology, v.service, plan, v, seed=3)
    assert not outcomes[1.0]["rolled_back"], "an unchanged version is promoted"
    assert outcomes[1.0]["reached_full"]
    assert outcomes[5.0]["caught_before_full"]
    assert outcomes[5.0]["failed_checks"] == plan.rollback.failure_limit


def test_deploy_plan_alone_is_rehearsed_against_a_5x_default(base) -> None:
    change = parse_change(
        {
            "name": "plan-only",
            "deploy": {
                "service": "productcatalogservice",
                "steps": [{"weight": 0.1, "bake": "2m"}, {"weight": 1.0, "bake": "2m"}],
            },
        }
    )
    result = validate_change(base, change, FAST)
    assert result["comparison"] == []  # nothing changes in the system itself
    (rehearsal,) = result["canary"]
    assert rehearsal["label"] == "regression: 5x latency"
    assert rehearsal["caught_before_full"] == FAST.seeds
    assert result["verdict"] == "safe"


def test_resilience_search_recommends_settings_without_metastable_failure(
    base, monkeypatch
) -> None:
    monkeypatch.setattr(resilience_search, "TIMEOUT_P99_MULTIPLES", (30.0,))
    monkeypatch.setattr(resilience_search, "RETRIES", (0, 3))
    monkeypatch.setattr(resilience_search, "BACKOFFS_MS", (0.0,))
    change = load_change(CHANGES / "aggressive-retries.yaml")
    changed = apply_change(base, change)
    config = ValidationConfig(timing=TIMING, backend="serial", progress=False, search_seeds=1)
    search = resilience_search.search_resilience(
        base, changed, "productcatalogservice", config, steady_p99_ms={"productcatalogservice": 7}
    )
    assert search["current"]["metastable"] > 0
    assert search["best"]["metastable"] == 0 and search["best"]["failed"] == 0
    assert not search["best"]["current"]
    assert len(search["ranked"]) == 2 + 4  # current, the base's setting, the grid
    assert "flash-crowd" in search["current"]["failing_cases"]


# -- the suite -----------------------------------------------------------------------------
def test_critical_services_are_entries_and_their_sync_required_path(base) -> None:
    critical = critical_services(base.topology, ["frontend"])
    assert critical == [
        "frontend",
        "currencyservice",
        "productcatalogservice",
        "cartservice",
        "redis-cart",
    ]  # recommendation and ads are optional; shipping and checkout reach < 50% of requests
    assert "checkoutservice" in critical_services(base.topology, ["frontend"], ["checkoutservice"])


def test_suite_covers_every_fault_kind_on_critical_services_once_per_link(base) -> None:
    cases = build_suite("standard", base.topology, ["frontend"])
    names = [c.name for c in cases]
    assert names[:2] == ["steady-state", "flash-crowd"]
    assert "retry_storm@redis-cart" in names and "memory_leak@frontend" in names
    links = [frozenset((c.target, c.fault["peer"])) for c in cases if c.kind == "network_partition"]
    assert len(links) == len(set(links))
    smoke = build_suite("smoke", base.topology, ["frontend"])
    assert {c.kind for c in smoke} == {"steady", "flash_crowd", "crash", "latency", "errors"}


def test_a_new_dependency_fails_only_where_it_exists(base) -> None:
    changed = apply_change(base, load_change(CHANGES / "new-dependency.yaml"))
    cases = {c.name: c for c in build_suite("smoke", changed, ["frontend"], ["pricing"])}
    crash = cases["crash@pricing"]
    on_change = case_scenario(base, changed, crash, 1, TIMING)
    on_base = case_scenario(base, base.topology, crash, 1, TIMING)
    assert [f.target for f in on_change.faults] == ["pricing"]
    assert on_base.faults == []  # the base, which never called pricing, runs without it
    assert on_base.workload == on_change.workload  # same traffic, paired


def test_validation_is_deterministic(base) -> None:
    config = ValidationConfig(
        suite="smoke", seeds=1, timing=TIMING, backend="serial", progress=False, search=None
    )
    a = _validate(base, "add-replica", config)
    b = _validate(base, "add-replica", config)
    assert a["comparison"] == b["comparison"] and a["runs"] == b["runs"]


# -- schema errors name their path ---------------------------------------------------------
def _write(tmp_path: Path, data: Any) -> Path:
    path = tmp_path / "change.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path


def _error(base, tmp_path: Path, data: Any) -> str:
    path = _write(tmp_path, data)
    with pytest.raises(ChangeError) as info:
        apply_change(base, load_change(path), str(path))
    assert isinstance(info.value, FirebreakError)
    return str(info.value)


STEPS = [{"weight": 0.1}, {"weight": 1.0}]


@pytest.mark.parametrize(
    ("data", "fragments"),
    [
        ({"name": "x", "replicas": 3}, ["replicas: Extra inputs are not permitted"]),
        ({"name": "x"}, ["(top level): changes nothing"]),
        (
            {"topology_patch": {"services": {"cartservice": {"replicas": -1}}}},
            ["topology_patch.services.cartservice.replicas", "(got -1)"],
        ),
        (
            {"topology_patch": {"services": {"cartt": {"replicas": 2}}}},
            ["topology_patch.services.cartt: unknown service 'cartt'"],
        ),
        (
            {"topology_patch": {"calls": [{"from": "frontend", "to": "redis-cart"}]}},
            ["topology_patch.calls[0]: no call 'frontend' -> 'redis-cart'"],
        ),
        (
            {
                "topology_patch": {
                    "calls": [{"from": "frontend", "to": "cartservice", "retries": {"max": 50}}]
                }
            },
            ["topology_patch.calls[0].retries.max", "(got 50)"],
        ),
        (
            {"topology_patch": {"defaults": {"timeout_ms": 0}}},
            ["topology_patch.defaults.timeout_ms", "(got 0)"],
        ),
        (
            {"add_calls": [{"from": "frontend", "to": "nosuch"}]},
            ["add_calls[0].to: unknown service"],
        ),
        (
            {"add_calls": [{"from": "frontend", "to": "cartservice"}]},
            ["add_calls[0]: frontend -> cartservice already exists"],
        ),
        (
            {"add_services": {"frontend": {"service_time": {"mean_ms": 1}}}},
            ["add_services.frontend: service 'frontend' already exists"],
        ),
        ({"version": {"service": "nosuch"}}, ["version.service: unknown service 'nosuch'"]),
        (
            {"version": {"service": "cartservice", "latency_factor": 0}},
            ["version.latency_factor", "(got 0)"],
        ),
        (
            {"version": {"service": "cartservice"}, "deploy": {"steps": [{"weight": 0.5}]}},
            ["deploy.steps[0].weight: the last step must be 1.0"],
        ),
        (
            {
                "version": {"service": "cartservice"},
                "deploy": {"steps": [{"weight": 0.5}, {"weight": 0.2}, {"weight": 1.0}]},
            },
            ["deploy.steps[1].weight: 0.2 does not increase on 0.5"],
        ),
        (
            {
                "version": {"service": "cartservice"},
                "deploy": {"steps": STEPS, "rollback": {"max_error_ratio": 2}},
            },
            ["deploy.rollback.max_error_ratio", "(got 2)"],
        ),
        (
            {"deploy": {"steps": STEPS}},
            ["deploy.service: needed when there is no version"],
        ),
        (
            {
                "deploy": {
                    "service": "cartservice",
                    "steps": STEPS,
                    "regressions": [{"latency_factor": 0.5}],
                }
            },
            ["deploy.regressions[0].latency_factor", "(got 0.5)"],
        ),
    ],
)
def test_schema_errors_name_file_path_and_value(
    base, tmp_path: Path, data: dict, fragments: list[str]
) -> None:
    message = _error(base, tmp_path, data)
    assert message.startswith(str(tmp_path / "change.yaml") + ": ")
    for fragment in fragments:
        assert fragment in message, f"{fragment!r} not in {message!r}"


def test_unreadable_change_files(tmp_path: Path) -> None:
    with pytest.raises(ChangeError, match="file not found"):
        load_change(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: [unclosed\n", encoding="utf-8")
    with pytest.raises(ChangeError, match=r"malformed YAML \(line 2"):
        load_change(bad)
    listed = _write(tmp_path, ["a", "b"])
    with pytest.raises(ChangeError, match="expected a mapping at the top level"):
        load_change(listed)


def test_example_changes_load_and_apply(base) -> None:
    files = sorted(CHANGES.glob("*.yaml"))
    changes = [p for p in files if p.name != BASE.name]
    assert {p.stem for p in changes} >= {
        "timeout-below-p99",
        "add-replica",
        "aggressive-retries",
        "canary-5x-latency",
        "new-dependency",
    }
    for path in changes:
        apply_change(base, load_change(path), str(path))


# -- the command ---------------------------------------------------------------------------
def _cli(tmp_path: Path, change: str, *extra: str) -> int:
    return main(
        [
            "validate-change",
            str(BASE),
            str(CHANGES / f"{change}.yaml"),
            "--suite",
            "smoke",
            "--seeds",
            "1",
            "--backend",
            "serial",
            "--search",
            "none",
            "--quiet",
            "--out",
            str(tmp_path / change),
            *extra,
        ]
    )


def test_cli_exit_codes_and_report(tmp_path: Path, capsys) -> None:
    assert _cli(tmp_path, "add-replica") == 0
    out = capsys.readouterr().out
    assert out.startswith("verdict: SAFE")
    assert _cli(tmp_path, "aggressive-retries") == 3
    assert "verdict: UNSAFE" in capsys.readouterr().out
    assert _cli(tmp_path, "canary-5x-latency") == 0  # risky passes ...
    assert _cli(tmp_path, "canary-5x-latency", "--strict", "--force") == 4  # ... unless strict
    capsys.readouterr()
    report = tmp_path / "aggressive-retries"
    html = (report / "verdict.html").read_text(encoding="utf-8")
    assert "UNSAFE" in html and "data:image/png;base64," in html
    assert "src='http" not in html and 'src="http' not in html  # self-contained
    markdown = (report / "verdict.md").read_text(encoding="utf-8")
    assert "## Verdict: **UNSAFE**" in markdown and "flash-crowd" in markdown
    assert (report / "timelines.png").stat().st_size > 0
    assert (report / "comparison.csv").is_file() and (report / "validation.json").is_file()
    canary_md = (tmp_path / "canary-5x-latency" / "verdict.md").read_text(encoding="utf-8")
    assert "## Canary rehearsal" in canary_md


def test_cli_bad_input_exits_2_without_traceback(tmp_path: Path, capsys) -> None:
    bad = _write(tmp_path, {"version": {"service": "nosuch"}})
    code = main(["validate-change", str(BASE), str(bad), "--quiet", "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("error: ") and "version.service: unknown service 'nosuch'" in err
    assert "Traceback" not in err
    code = main(["validate-change", str(BASE), str(bad), "--suite", "huge"])
    assert code == 2 and "--suite: unknown 'huge'" in capsys.readouterr().err
