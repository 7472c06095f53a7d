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
        (a, c)
        for a in ALGOS
        for c in ("baseline", "defaults", "defaults, lock-step shards", "defaults, envs in process")
    }
    vec_envs = {(r["algo"], r["case"]): r["vec_env"] for r in rows}
    if usable_cores() > 1:  # parallel rollouts by default, beside SB3's lock-step
        assert vec_envs["ppo", "defaults"] == "parallel"
        assert vec_envs["ppo", "defaults, lock-step shards"] == "shards"
    assert "VecEnv (16 x dummy)" in result["raw"]
    for name, rate in result["raw"].items():  # shard workers' CPU time counts too
        assert rate["steps_per_cpu_s"] > 0
        assert ("busy_workers" in rate) == ("shards" in name)
    for r in rows:
        assert r["steps_per_s"] > 0 and r["steps_per_cpu_s"] > 0
        if r["vec_env"] in ("shards", "parallel"):  # each CPU second, workers' too
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
    bound = result["bound"]  # from the same run's in-process PPO and raw in-process VecEnv
    in_process = next(r for r in rows if r["algo"] == "ppo" and r["case"].endswith("in process"))
    step_us = 1e6 / in_process["steps_per_cpu_s"]
    assert bound["env_us"] + bound["policy_us"] + bound["update_us"] == pytest.approx(step_us)
    update, policy, env = bound["update_us"], bound["policy_us"], bound["env_us"]
    cores = bound["cores"]
    assert bound["lock_step"] == pytest.approx(1e6 / (update + policy + env / cores))
    assert bound["parallel"] == pytest.approx(1e6 / (update + (policy + env) / cores))
    text = report(result)
    assert "maskable-ppo" in text and "end-to-end PPO steps/s" in text
    assert "lock-step" in text and "parallel rollouts" in text


def test_bounds_keep_serial_what_each_way_cannot_overlap(monkeypatch):
    import pytest

    from agents.rl import hyperparams
    from benchmarks.bench_train import bounds

    monkeypatch.setattr(hyperparams, "usable_cores", lambda: 2)
    raw = {"steps_per_s": 3900.0, "steps_per_cpu_s": 4000.0}  # 250 us of env a step
    trained = {  # 400 us a step, 80% of it collecting: 250 env, 70 policy, 80 update
        "algo": "ppo",
        "case": "defaults, envs in process",
        "steps_per_cpu_s": 2500.0,
        "rollout_share": 0.8,
    }
    other = {**trained, "algo": "maskable-ppo", "steps_per_cpu_s": 1.0}
    bound = bounds(raw, [other, trained])
    assert bound["cores"] == 2
    assert bound["env_us"] == pytest.approx(250.0) and bound["policy_us"] == pytest.approx(70.0)
    assert bound["update_us"] == pytest.approx(80.0)
    assert bound["lock_step"] == pytest.approx(1e6 / (80.0 + 70.0 + 125.0))
    assert bound["parallel"] == pytest.approx(1e6 / (80.0 + 160.0))
    monkeypatch.setattr(hyperparams, "usable_cores", lambda: 1)  # one core: no overlap at all
    one = bounds(raw, [trained])
    assert one["lock_step"] == pytest.approx(2500.0) == one["parallel"]
    assert bounds(raw, [other]) is None  # no in-process PPO measured
    assert bounds({**raw, "steps_per_cpu_s": None}, [trained]) is None


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


def test_env_bench_sets_the_vectorised_target_against_the_kernel_alone(monkeypatch):
    import pytest

    from agents.rl import hyperparams
    from benchmarks.bench_env import TARGET_VECTOR_STEPS_PER_S, mix_budget
    from twin.envs.remediation import TRAINING_TOPOLOGIES

    monkeypatch.setattr(hyperparams, "usable_cores", lambda: 2)
    kernel = [
        {"topology": t, "us_per_tick": 10.0 * (i + 1)} for i, t in enumerate(TRAINING_TOPOLOGIES)
    ]
    mix = mix_budget(kernel, steps=50)
    assert mix["ticks_per_step"] == 5 and mix["kernel_us"] == pytest.approx(5 * 25.0)
    assert mix["budget_us"] == pytest.approx(2e6 / TARGET_VECTOR_STEPS_PER_S)
    assert mix["left_beside_kernel_us"] == pytest.approx(mix["budget_us"] - 125.0)
    assert mix["kernel_only_ceiling_steps_per_s"] == pytest.approx(2e6 / 125.0)
    assert mix["step_cpu_us"] > 0
    assert mix["rest_us"] == pytest.approx(mix["step_cpu_us"] - 125.0, abs=0.2)
    with pytest.raises(ValueError, match="every training topology"):
        mix_budget(kernel[:2], steps=5)


def test_env_bench_times_the_kernel_alone_on_each_training_topology():
    from benchmarks.bench_env import kernel_times
    from twin.envs.remediation import TRAINING_TOPOLOGIES

    rows = kernel_times(steps=3, reps=1)
    assert [r["topology"] for r in rows] == list(TRAINING_TOPOLOGIES)
    assert all(r["us_per_tick"] > 0 and r["ticks"] >= 16 for r in rows)
    by_name = {r["topology"]: r for r in rows}
    assert by_name["social-network"]["edges"] > by_name["online-boutique"]["edges"]
