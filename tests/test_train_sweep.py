"""Training sweeps: one run per grid point and seed, the same weights on every backend."""

from __future__ import annotations

import csv
import importlib.util
import json

import pytest

from agents.rl.envs import REMEDIATION_ID
from agents.rl.hyperparams import HyperparameterError
from agents.rl.train import TrainConfig
from experiments.train_sweep import grid_points, point_label, run_train_sweep, sweep_configs
from firebreak.cli import main
from twin.errors import FirebreakError

HAS_RAY = importlib.util.find_spec("ray") is not None
SHORT = {"episode_s": 300.0, "fault_start_s": [60.0, 90.0], "topologies": ["online-boutique"]}
TINY = {"n_steps": 16, "batch_size": 16, "n_epochs": 1}
GRID = {"learning_rate": [3e-4, 1e-3]}


def _base(out) -> TrainConfig:
    return TrainConfig(
        "ppo",
        REMEDIATION_ID,
        16,
        out,
        n_envs=1,
        env_kwargs=SHORT,
        eval_episodes=1,
        eval_freq=16,
        progress_bar=False,
        hyperparams=TINY,
    )


@pytest.fixture(scope="module")
def serial(tmp_path_factory):
    out = tmp_path_factory.mktemp("serial")
    return out, run_train_sweep(_base(out), [0, 1], GRID, backend="serial", progress=False)


def test_one_run_per_point_and_seed_with_tables_and_loadable_policies(serial):
    from agents.rl.policy_files import load_policy

    out, table = serial
    labels = [r["label"] for r in table["rows"]]
    assert labels == [
        "learning_rate=0.0003/seed-0",
        "learning_rate=0.0003/seed-1",
        "learning_rate=0.001/seed-0",
        "learning_rate=0.001/seed-1",
    ]
    for label in labels:
        _, settings = load_policy(out / label)
        assert settings["seed"] == int(label[-1])
        assert settings["hyperparams"]["learning_rate"] in GRID["learning_rate"]
        assert settings["hyperparams"]["n_steps"] == TINY["n_steps"]
    rows = list(csv.DictReader((out / "sweep.csv").open()))
    assert [r["label"] for r in rows] == labels
    saved = json.loads((out / "sweep.json").read_text())
    assert [p["point"] for p in saved["points"]] == ["learning_rate=0.0003", "learning_rate=0.001"]
    assert all(p["seeds"] == 2 and p["eval_return"] is not None for p in saved["points"])
    # the seed and the learning rate change the weights
    assert len({r["policy_sha256"] for r in table["rows"]}) == 4


def test_same_seed_same_weights_again(serial, tmp_path):
    _, table = serial
    again = run_train_sweep(_base(tmp_path), [1], {"learning_rate": [1e-3]}, "serial", None, False)
    assert again["rows"][0]["policy_sha256"] == table["rows"][3]["policy_sha256"]
    assert again["rows"][0]["eval_return"] == table["rows"][3]["eval_return"]


@pytest.mark.skipif(not HAS_RAY, reason="ray not installed (pip install 'firebreak[ray]')")
def test_ray_trains_what_a_local_run_trains(serial, tmp_path):
    import ray

    _, local = serial
    ray.init(num_cpus=1, include_dashboard=False, log_to_driver=False)
    try:
        on_ray = run_train_sweep(_base(tmp_path), [0, 1], GRID, backend="ray", progress=False)
    finally:
        ray.shutdown()
    for mine, theirs in zip(on_ray["rows"], local["rows"], strict=True):
        for key in ("label", "seed", "steps_done", "policy_sha256", "eval_return"):
            assert mine[key] == theirs[key], key
    assert on_ray["points"] == local["points"]


def test_bad_grids_and_seeds_name_themselves(tmp_path):
    with pytest.raises(HyperparameterError, match=r"hyperparams\.lr: unknown for ppo"):
        grid_points("ppo", {"lr": [1e-3]})
    with pytest.raises(HyperparameterError, match=r"hyperparams\.gamma: must be in \(0, 1\]"):
        grid_points("ppo", {"gamma": [0.9, 1.5]})
    with pytest.raises(FirebreakError, match=r"grid\.gamma: expected a non-empty list"):
        grid_points("ppo", {"gamma": []})
    with pytest.raises(FirebreakError, match="--seeds: listed twice"):
        sweep_configs(_base(tmp_path), [1, 1])
    with pytest.raises(FirebreakError, match="--seeds: must be whole numbers >= 0, got -1"):
        sweep_configs(_base(tmp_path), [-1])
    assert point_label({}) == "defaults"
    assert point_label({"net_arch": [64, 64]}) == "net_arch=64x64"


def test_train_sweep_cli(tmp_path, capsys):
    argv = ["train-sweep", "--algo", "ppo", "--env", REMEDIATION_ID, "--steps", "16"]
    argv += ["--n-envs", "1", "--env-kwargs", json.dumps(SHORT), "--eval-episodes", "0"]
    argv += ["--hyperparams", json.dumps(TINY), "--backend", "serial", "--quiet"]
    code = main([*argv, "--out", str(tmp_path / "ok"), "--seeds", "3-4"])
    text = capsys.readouterr().out
    assert code == 0, text
    assert "defaults/seed-3" in text and "defaults/seed-4" in text and "2 runs on serial" in text
    for extra, message in [
        (["--grid", "{oops"], "error: --grid: not JSON"),
        (["--grid", '{"lr": [1]}'], "error: hyperparams.lr: unknown for ppo"),
        (["--hyperparams", '{"batch_size": 0}'], "hyperparams.batch_size: expected a whole"),
    ]:
        code = main([*argv, "--out", str(tmp_path / "bad"), "--force", *extra])
        captured = capsys.readouterr()
        assert code == 2, extra
        assert message in captured.out + captured.err
        assert "Traceback" not in captured.out + captured.err


def test_overrides_merge_into_the_defaults_and_the_rollout_keeps_its_size():
    from agents.rl.hyperparams import ROLLOUT_STEPS, check, default_n_envs, hyperparameters

    params = hyperparameters("ppo", 16, {"net_arch": [64], "learning_rate": 1e-4})
    assert params["n_steps"] * 16 == ROLLOUT_STEPS == hyperparameters("ppo", 4)["n_steps"] * 4
    assert params["policy_kwargs"]["net_arch"] == [64] and params["learning_rate"] == 1e-4
    with pytest.raises(HyperparameterError, match="expected a finite number, got True"):
        check("ppo", {"learning_rate": True})
    with pytest.raises(HyperparameterError, match="ent_coef: must be >= 0, got -1"):
        check("ppo", {"ent_coef": -1})
    with pytest.raises(HyperparameterError, match="n_epochs: unknown for dqn"):
        check("dqn", {"n_epochs": 3})
    assert (
        default_n_envs("dqn")
        < default_n_envs("ppo")
        == TrainConfig("ppo", REMEDIATION_ID, 1, "x").n_envs
    )
