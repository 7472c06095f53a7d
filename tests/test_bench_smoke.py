"""A small smoke run of `make bench`'s pieces (the full benchmark is a command of its own)."""

from __future__ import annotations

import numpy as np
from conftest import SCENARIOS, simulate

from benchmarks.bench_engine import bare_simpy, engine_wall, generated_scenario
from twin.scenario.loader import load_scenario


def test_bench_pieces_run_on_small_cases(tmp_path):
    wall, ticks = engine_wall(load_scenario(SCENARIOS / "steady-state.yaml", duration=600))
    assert ticks == 600 and wall > 0
    assert bare_simpy(ticks, 1.0) > 0


def test_generated_fleet_runs_and_conserves_requests(tmp_path):
    scenario = generated_scenario(200, 3, 600, tmp_path)
    run = simulate(scenario)
    cons = run.sim.conservation()
    balance = (
        cons["arrived"] - cons["completed"] - cons["failed"] - cons["shed"] - cons["in_flight"]
    )
    assert np.all(np.abs(balance) <= 1e-6 * np.maximum(cons["arrived"], 1.0))
    assert np.all(np.isfinite(run.values))
    # at its suggested load the fleet is healthy
    assert run.values[:, :, 4].max() < 0.01


def test_request_bench_pieces_run_and_compare_like_with_like():
    from benchmarks.bench_request import bare_chain, request_fidelity

    scenario = load_scenario(SCENARIOS / "steady-state.yaml", duration=20)
    full = request_fidelity(scenario)
    bare = bare_chain(scenario, requests=full["requests"], rate=100.0)
    assert full["requests"] > 1000 and bare["requests"] == full["requests"]
    assert full["requests_per_cpu_s"] > 0 and bare["requests_per_cpu_s"] > 0


def test_train_bench_measures_both_algorithms_against_the_same_run_baseline():
    import pytest

    from agents.rl.hyperparams import usable_cores
    from benchmarks.bench_train import ALGOS, bench, report

    short = {"episode_s": 300.0, "fault_start_s": [60.0, 90.0], "topologies": ["online-boutique"]}
    result = bench(
        steps=32,
        env_steps=50,
        repeats=1,
        env_kwargs=short,
        hyperparams={"n_steps": 8, "batch_size": 16, "n_epochs": 1},
    )
    assert set(result["raw"]) >= {"env", "env + action_masks"}
    assert all(rate["steps_per_s"] > 0 for rate in result["raw"].values())
    rows = result["training"]
    assert {(r["algo"], r["case"]) for r in rows} == {
        (a, c) for a in ALGOS for c in ("baseline", "defaults", "defaults, envs in process")
    }
    assert "VecEnv (16 x dummy)" in result["raw"]
    for name, rate in result["raw"].items():  # shard workers' CPU time counts too
        assert rate["steps_per_cpu_s"] > 0
        assert ("busy_workers" in rate) == ("shards" in name)
    for r in rows:
        assert r["steps_per_s"] > 0 and r["steps_per_cpu_s"] > 0
        if r["vec_env"] == "shards":  # each CPU second of this process and its workers
            workers = min(r["n_envs"], usable_cores()) - 1
            assert 0 < r["busy_here"] <= 1.2 and 0 < r["busy_workers"] <= 1.2
            cpu_per_wall = r["busy_here"] + r["busy_workers"] * workers
            assert r["steps_per_cpu_s"] == pytest.approx(r["steps_per_s"] / cpu_per_wall)
        else:
            assert "busy_here" not in r
        assert 0 < r["rollout_share"] <= 1
        assert r["vs_env_s"] == r["steps_per_s"] / result["raw"]["env"]["steps_per_s"]
        if r["case"] == "baseline":
            assert r["vs_baseline_s"] == r["vs_baseline_cpu_s"] == 1.0
        else:  # the defaults step more envs together
            assert r["n_envs"] > 4
    text = report(result)
    assert "maskable-ppo" in text and "end-to-end PPO steps/s" in text


def test_bench_forecast_runs_end_to_end(tmp_path, capsys):
    import pytest

    from benchmarks import bench_forecast
    from detectors.forecast import traffic

    # the classic part with the cheapest model: the taxi (if present) and twin backtests
    bench_forecast.main(["--parts", "classic", "--models", "seasonal-naive", "--out",
                         str(tmp_path)])  # fmt: skip
    assert (tmp_path / "forecast_twin.csv").is_file()
    if not traffic.NAB_ROOT.is_dir():
        pytest.skip(f"NAB corpus not found at {traffic.NAB_ROOT}")
    # a real series whose first hours are too sparse for the model: skipped, not a crash
    table = bench_forecast.real(tmp_path, {"held-out": ("realTraffic/TravelTime_451.csv",)})
    assert table["origins"].iloc[0] > 100 and 0 < table["coverage"].iloc[0] < 1
    assert "held-out: coverage" in capsys.readouterr().out


def test_mask_bench_times_both_ways_on_the_same_run():
    from benchmarks.bench_env import mask_times

    out = mask_times(steps=50)
    assert out["steps"] == 50 and out["check_each_us"] > 0 and out["permits_us"] > 0


def test_env_bench_times_the_kernel_alone_on_each_training_topology():
    from benchmarks.bench_env import kernel_times
    from twin.envs.remediation import TRAINING_TOPOLOGIES

    rows = kernel_times(steps=3, reps=1)
    assert [r["topology"] for r in rows] == list(TRAINING_TOPOLOGIES)
    assert all(r["us_per_tick"] > 0 and r["ticks"] >= 16 for r in rows)
    by_name = {r["topology"]: r for r in rows}
    assert by_name["social-network"]["edges"] > by_name["online-boutique"]["edges"]
