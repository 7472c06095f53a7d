"""The impact study: a valid, varied suite; a tiny paired sweep; the claims' statistics; the CLI."""

from __future__ import annotations

import importlib.util
import itertools
import json

import numpy as np
import pandas as pd
import pytest

from experiments.impact.claim_defs import CLAIM_KEYS, CLAIMS, CLAIMS_COLUMNS
from experiments.impact.claims import (
    claims_table,
    estimate,
    paired,
    resample_weights,
    units,
    verdict,
)
from experiments.impact.study import MODES, run_study, slo_episodes
from experiments.impact.suite import FAMILIES, build
from firebreak.cli import main
from twin.scenario.loader import check_scenario
from twin.scenario.schema import FAULT_KINDS, INFRA_FAULT_KINDS

HAS_RAY = importlib.util.find_spec("ray") is not None
TINY = ("bad-deploy", "hotel-misconfig")
TINY_SCALE = 0.1  # 9-15 minute runs: enough for every stage of both stacks to run
STACK_COLUMNS = (
    "alerts",
    "incidents",
    "alerts_per_incident",
    "faults",
    "faults_detected",
    "mttd_s",
    "faults_identified",
    "mtti_s",
    "faults_with_slo_impact",
    "mttr_s",
    "mttr_censored",
    "slo_adherence",
    "slo_violating_min",
    "replica_hours",
    "pages",
    "actions_automated",
    "actions_approved",
    "actions_by_human",
    "escalated",
    "unsafe_actions",
)
STUDY_COLUMNS = (
    "family",
    "topology",
    "seed",
    "mode",
    "scenario_seed",
    "requests_completed",
    "slo_episodes",
    "engineer_min",
    "mttr_by_fault",
    "faults_json",
    "error",
)


# ---------------------------------------------------------------------------- the suite
def test_suite_has_twelve_or_more_valid_families_covering_every_fault_kind() -> None:
    assert len(FAMILIES) >= 12
    kinds, topologies, overlapping, calendar, crowds = set(), set(), 0, 0, 0
    for name in FAMILIES:
        sc = build(name, 0)
        check_scenario(sc, name)  # what load_scenario checks, again: it must not raise
        assert sc.name == name and 1.5 * 3600 <= sc.duration <= 3 * 3600
        kinds |= {f.kind for f in sc.faults}
        topologies.add(sc.topology.name)
        spans = sorted((f.start, f.start + f.duration) for f in sc.faults)
        overlapping += any(b[0] < a[1] for a, b in itertools.pairwise(spans))
        calendar += bool(sc.workload.calendar)
        crowds += bool(sc.workload.flash_crowds)
        for f in sc.faults:  # ~30 min of history for the RCA, recovery seen before the end
            assert f.start >= 29 * 60 and f.start + f.duration <= sc.duration - 20 * 60
    # infrastructure faults: the remediable suite; bad_response fails nothing, so it never
    # breaks an SLO and has no time to repair to measure
    assert kinds == set(FAULT_KINDS) - set(INFRA_FAULT_KINDS) - {"bad_response"}
    assert len(topologies) == 5
    assert overlapping >= 3 and calendar >= 2 and crowds >= 2


def test_seeds_vary_noise_timing_and_generated_targets_and_repeat_exactly() -> None:
    for name, family in FAMILIES.items():
        a, b = build(name, 0), build(name, 1)
        assert a == build(name, 0)  # deterministic
        assert a.seed != b.seed  # noise
        if a.faults:
            assert [f.start for f in a.faults] != [f.start for f in b.faults]
        if family.source == "generated":
            targets = {tuple(f.target for f in build(name, s).faults) for s in range(10)}
            assert len(targets) > 1, name
        else:
            assert [f.target for f in a.faults] == [f.target for f in b.faults]


def test_time_scale_shrinks_every_time_alike() -> None:
    full, short = build("black-friday", 3), build("black-friday", 3, 0.25)
    assert short.duration == pytest.approx(full.duration * 0.25)
    for f, g in zip(full.faults, short.faults, strict=True):
        assert (g.start, g.duration) == pytest.approx((f.start * 0.25, f.duration * 0.25))
    assert short.workload.calendar[0].start == pytest.approx(full.workload.calendar[0].start / 4)


# --------------------------------------------------------------------------- the sweep
@pytest.fixture(scope="module")
def tiny() -> pd.DataFrame:
    return run_study(TINY, 1, time_scale=TINY_SCALE, backend="serial", progress=False)


def test_tiny_sweep_gives_tidy_and_claims_tables(tiny: pd.DataFrame) -> None:
    assert len(tiny) == len(TINY) * len(MODES)
    assert list(tiny["family"]) == [f for f in TINY for _ in MODES]
    assert list(tiny["mode"]) == list(MODES) * len(TINY)
    for col in STACK_COLUMNS + STUDY_COLUMNS:
        assert col in tiny.columns, col
    assert tiny["error"].isna().all(), tiny["error"].tolist()
    # a pair shares its scenario: same seed, same faults, same traffic offered
    for _, pair in tiny.groupby("family"):
        assert pair["scenario_seed"].nunique() == 1
        assert pair["faults_json"].nunique() == 1
    claims = claims_table(tiny)
    assert tuple(claims.columns) == CLAIMS_COLUMNS
    assert list(claims["key"]) == [c.key for c in CLAIMS]
    main_rows = claims[claims["role"] == "claim"]
    assert list(main_rows["key"]) == list(CLAIM_KEYS)
    # one seed per family leaves nothing to resample: no interval, no verdict
    assert (main_rows["verdict"] == "undetermined").all()
    assert main_rows["statement"].str.startswith("undetermined").all()


def test_results_identical_serial_and_process(tiny: pd.DataFrame) -> None:
    pooled = run_study(TINY, 1, time_scale=TINY_SCALE, backend="process", jobs_n=2, progress=False)
    pd.testing.assert_frame_equal(pooled, tiny)


@pytest.mark.skipif(not HAS_RAY, reason="ray not installed (pip install 'firebreak[ray]')")
def test_results_identical_on_ray(tiny: pd.DataFrame) -> None:
    import ray

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        on_ray = run_study(TINY, 1, time_scale=TINY_SCALE, backend="ray", progress=False)
    finally:
        ray.shutdown()
    pd.testing.assert_frame_equal(on_ray, tiny)


# ---------------------------------------------------------------------- the statistics
def _hand_table() -> pd.DataFrame:
    """Two families x three seeds; AI halves alerts, restores faster, same pods."""
    rows = []
    for f in ("a", "b"):
        for s in range(3):
            base = 1.0 + s + (f == "b")
            for mode, k in (("traditional", 1.0), ("ai", 0.5)):
                mttr = {"x-0": [600.0 * base * k, False]}
                if mode == "traditional" and s == 0:
                    mttr["y-1"] = [300.0, False]  # a breach the AI prevented: counts 0 there
                rows.append(
                    {
                        "family": f, "seed": s, "mode": mode, "error": None,
                        "alerts": 10 * base * k, "incidents": 2 * base,
                        "slo_episodes": 2 * base * k, "requests_completed": 1000.0 * base,
                        "replica_hours": 10.0, "slo_adherence": 0.9 + 0.05 * k,
                        "mttr_by_fault": json.dumps(mttr),
                    }
                )  # fmt: skip
    return pd.DataFrame(rows)


def test_pooled_ratios_and_paired_mttr_on_a_hand_made_table() -> None:
    trad, ai = paired(_hand_table())
    w = resample_weights(trad.index.get_level_values("family").to_numpy(), b=500, seed=1)
    fatigue = estimate("change", units("alert_fatigue", trad, ai), w)
    assert fatigue["estimate"] == pytest.approx(-0.5)
    assert fatigue["traditional"] == pytest.approx(5.0)  # Σ alerts / Σ incidents
    mttr = estimate("change", units("mttr", trad, ai), w)
    sum_t = 600.0 * sum(1 + s + (f == "b") for f in "ab" for s in range(3)) + 2 * 300.0
    assert mttr["estimate"] == pytest.approx(0.5 * (sum_t - 600.0) / sum_t - 1.0)
    assert mttr["ci_low"] <= mttr["estimate"] <= mttr["ci_high"]
    assert mttr["ci_low"] < mttr["ci_high"]  # seeds differ, so resamples do
    cost = estimate("change", units("cost", trad, ai), w)
    assert cost["estimate"] == 0.0 and cost["ci_low"] == cost["ci_high"] == 0.0
    level = estimate("level", units("slo_adherence", trad, ai), w)
    assert level["estimate"] == pytest.approx(0.925) and level["traditional"] == pytest.approx(0.95)


def test_bootstrap_resamples_within_families_only() -> None:
    strata = np.array(["a"] * 3 + ["b"] * 5)
    w = resample_weights(strata, b=200, seed=3)
    assert w.shape == (200, 8)
    assert (w[:, :3].sum(axis=1) == 3).all() and (w[:, 3:].sum(axis=1) == 5).all()
    assert resample_weights(np.array(["a", "b"])).shape == (0, 2)  # nothing to resample
    a, b = resample_weights(strata, seed=4), resample_weights(strata, seed=4)
    assert (a == b).all()


def test_verdicts_compare_the_interval_with_the_claimed_range() -> None:
    mttr = next(c for c in CLAIMS if c.key == "mttr")  # -60% to -40%, lower is better
    assert verdict(mttr, -0.75, -0.65) == "exceed"
    assert verdict(mttr, -0.45, -0.10) == "match"
    assert verdict(mttr, -0.30, 0.05) == "fall short"
    slo = next(c for c in CLAIMS if c.key == "slo_adherence")  # 92%, higher is better
    assert verdict(slo, 0.93, 0.95) == "exceed"
    assert verdict(slo, 0.80, 0.93) == "match"
    assert verdict(slo, 0.70, 0.80) == "fall short"
    assert verdict(slo, float("nan"), float("nan")) == "undetermined"


def test_slo_episodes_join_violations_closer_than_the_stable_time() -> None:
    good = np.ones(30, bool)
    assert slo_episodes(good, 60.0) == 0
    good[[3, 4, 6]] = False  # one good minute between: one episode
    assert slo_episodes(good, 60.0) == 1
    good[20] = False  # five good minutes or more apart: another
    assert slo_episodes(good, 60.0) == 2


# ------------------------------------------------------------------------------ the CLI
@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--scenarios", "bad-deploy", "no-such-scenario"], "unknown scenario 'no-such-scenario'"),
        (["--backend", "threads"], "--backend: expected one of process, serial, ray"),
        (["--seeds", "0"], "--seeds: must be at least 1"),
        (["--jobs", "0"], "--jobs: need at least one worker"),
        (["--time-scale", "0"], "--time-scale: must be between"),
    ],
)
def test_cli_refuses_bad_input_with_exit_2(args, message, capsys, tmp_path) -> None:
    assert main(["impact-study", "--out", str(tmp_path), *args]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert not any(tmp_path.iterdir())  # refused before running anything


def test_cli_writes_every_file(tmp_path, capsys) -> None:
    args = ["--scenarios", "bad-deploy", "--seeds", "2", "--time-scale", str(TINY_SCALE)]
    assert main(["impact-study", *args, "--backend", "serial", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "MTTR" in out and "alerts per incident" in out
    for name in (
        "impact_runs.parquet",
        "impact_runs.csv",
        "impact_claims.parquet",
        "impact_claims.csv",
        "impact_by_scenario.csv",
        "impact_claims.png",
        "impact_by_scenario.png",
        "impact_summary.md",
    ):
        assert (tmp_path / name).stat().st_size > 0, name
    runs = pd.read_parquet(tmp_path / "impact_runs.parquet")
    assert len(runs) == 4 and set(runs["mode"]) == set(MODES)
    summary = (tmp_path / "impact_summary.md").read_text()
    assert "## Claims" in summary and "95% CI" in summary
