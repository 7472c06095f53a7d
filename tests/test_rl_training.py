"""Training smoke tests, the saved policy driving a live simulation, `firebreak train` and
`firebreak evaluate` (including their error messages)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from agents.rl.envs import AUTOSCALE_ID, REMEDIATION_ID
from agents.rl.policy_files import load_policy
from agents.rl.policy_runner import PolicyRunner
from agents.rl.train import TrainConfig, TrainingError, train, train_model
from firebreak.cli import main
from twin.flow.engine import Simulation
from twin.scenario.loader import load_scenario

SHORT = {"episode_s": 300.0, "fault_start_s": [60.0, 90.0], "topologies": ["online-boutique"]}


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A maskable PPO policy after a few hundred steps (seconds): enough to test the plumbing."""
    out = tmp_path_factory.mktemp("policy")
    config = TrainConfig(
        algo="maskable-ppo",
        env_id=REMEDIATION_ID,
        steps=256,
        out=out,
        n_envs=2,
        env_kwargs=SHORT,
        eval_episodes=1,
        eval_freq=256,
        progress_bar=False,
    )
    model, summary = train_model(config)
    return out, summary, model


def test_training_writes_policy_settings_logs_and_checkpoints(trained):
    out, summary, _ = trained
    assert (out / "policy.safetensors").is_file() and (out / "policy.json").is_file()
    settings = json.loads((out / "settings.json").read_text())
    assert settings["algo"] == "maskable-ppo" and settings["env_id"] == REMEDIATION_ID
    assert settings["env_settings"]["episode_s"] == 300.0
    assert settings["env_kwargs"] == SHORT
    assert any((out / "tensorboard").rglob("events.out.tfevents*"))
    checkpoints = sorted((out / "checkpoints").glob("policy_*_steps.json"))
    assert checkpoints and all(p.with_suffix(".safetensors").is_file() for p in checkpoints)
    assert (out / "best" / "policy.json").is_file()
    assert (out / "eval" / "evaluations.npz").is_file()
    assert not list(out.rglob("*.zip"))  # nothing that loading would have to unpickle
    _model, loaded = load_policy(out)
    assert loaded == settings and summary["steps"] == 256
    for path in (out / "best", checkpoints[-1]):  # best and checkpoints load the same way
        assert load_policy(path)[1] == settings


def test_the_saved_policy_predicts_what_the_trained_model_does(trained):
    """The safe file, rebuilt without pickle, answers as the in-memory trained model."""
    import gymnasium as gym

    out, _, model = trained
    policy, _ = load_policy(out)
    env = gym.make(REMEDIATION_ID, **SHORT)
    env.observation_space.seed(1)
    obs = np.stack([env.observation_space.sample() for _ in range(512)])
    want, _ = model.predict(obs, deterministic=True)
    got, _ = policy.predict(obs, deterministic=True)
    assert np.array_equal(want, got) and len(np.unique(want)) > 1


@pytest.mark.parametrize(("algo", "env_id"), [("ppo", AUTOSCALE_ID), ("dqn", REMEDIATION_ID)])
def test_other_algorithms_train(tmp_path, algo, env_id):
    kwargs = {"episode_s": 1800.0} if env_id == AUTOSCALE_ID else SHORT
    config = TrainConfig(
        algo=algo,
        env_id=env_id,
        steps=128,
        out=tmp_path,
        n_envs=1,
        env_kwargs=kwargs,
        eval_episodes=0,
        progress_bar=False,
    )
    train(config)
    _model, settings = load_policy(tmp_path / "policy.json")
    assert settings["algo"] == algo


def test_dqn_refuses_a_multidiscrete_env(tmp_path):
    config = TrainConfig("dqn", AUTOSCALE_ID, 64, tmp_path, progress_bar=False)
    with pytest.raises(TrainingError, match="needs a Discrete action space"):
        train(config)


def test_policy_runner_drives_a_live_simulation(trained):
    out, _, _ = trained
    scenario = load_scenario("scenarios/steady-state.yaml", duration=600)
    sim = Simulation(scenario)
    runner = PolicyRunner.load(out, sim)
    decisions = 0
    for frame in sim.frames():
        before = runner.last_obs
        runner.observe(frame)
        if runner.last_obs is not before:
            decisions += 1
            assert runner.last_obs.shape == (runner.encoder.size,)
            assert np.all(runner.last_obs >= runner.encoder.low)
            assert np.all(runner.last_obs <= runner.encoder.high)
    assert decisions == int(600 / runner.decision_s)
    for record in runner.actions:
        assert not record.get("refused")  # masked: the guardrails are never crossed
        assert record["time"] % runner.decision_s == pytest.approx(0.0)
    applied = [a for _, a in sim.action_log]
    assert len(applied) == sum("action" in r for r in runner.actions)


def _cli(capsys, *argv) -> tuple[int, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out + captured.err


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--algo", "a2c"], "error: --algo: unknown 'a2c'"),
        (["--env", "CartPole-v1"], "error: --env: unknown 'CartPole-v1'"),
        (["--steps", "0"], "error: --steps: must be >= 1, got 0"),
        (["--n-envs", "0"], "error: --n-envs: must be >= 1, got 0"),
        (["--env-kwargs", "{oops"], "error: --env-kwargs: not JSON"),
        (["--env-kwargs", "[1]"], "error: --env-kwargs: expected a JSON object"),
        (["--env-kwargs", '{"bogus": 1}'], "error: --env-kwargs:"),
        (["--env-kwargs", '{"topologies": ["x"]}'], "error: topologies: unknown topology 'x'"),
        (["--vec-env", "gpu"], "error: --vec-env: unknown 'gpu'"),
        (["--hyperparams", '{"lr": 1}'], "error: hyperparams.lr: unknown for ppo"),
        (["--hyperparams", '{"gamma": 2}'], "error: hyperparams.gamma: must be in (0, 1]"),
        (["--warm-start", "oracle"], "error: --warm-start: unknown teacher 'oracle'"),
        (["--warm-start", "triage", "--algo", "dqn"], "error: --warm-start: clones into PPO"),
        (["--warm-start", "triage", "--env", AUTOSCALE_ID], "error: --warm-start triage: only"),
        (["--warm-start", "triage", "--warm-start-episodes", "0"], "must be >= 1, got 0"),
        (["--warm-start", "triage", "--warm-start-epochs", "0"], "epochs: must be >= 1, got 0"),
    ],
)
def test_train_cli_errors(tmp_path, capsys, extra, message):
    argv = {"--algo": "ppo", "--env": REMEDIATION_ID, "--steps": "10", "--out": str(tmp_path)}
    argv.update(dict(zip(extra[::2], extra[1::2], strict=True)))
    flat = [x for pair in argv.items() for x in pair] + ["--quiet"]
    code, text = _cli(capsys, "train", *flat)
    assert code == 2
    assert message in text
    assert "Traceback" not in text


def test_evaluate_cli_errors(tmp_path, capsys, trained):
    out, _, _ = trained
    code, text = _cli(capsys, "evaluate", "--policy", str(tmp_path / "none"), "--quiet")
    assert code == 2 and "no saved policy there" in text
    code, text = _cli(capsys, "evaluate", "--policy", str(out), "--episodes", "1", "--quiet")
    assert code == 2 and "--episodes: need at least 2" in text
    code, text = _cli(
        capsys, "evaluate", "--policy", str(out), "--unseen-topology", "online-boutique"
    )
    assert code == 2 and "the policy was trained on online-boutique" in text
    code, text = _cli(capsys, "evaluate", "--policy", str(out), "--unseen-topology", "atlantis")
    assert code == 2 and "--unseen-topology: unknown 'atlantis'" in text


def test_evaluate_cli_writes_table_csv_and_plot(tmp_path, capsys, trained):
    out, _, _ = trained
    report = tmp_path / "report"
    code, text = _cli(
        capsys,
        "evaluate",
        "--policy",
        str(out),
        "--episodes",
        "2",
        "--unseen-topology",
        "sock-shop",
        "--out",
        str(report),
        "--quiet",
    )
    assert code == 0, text
    for name in ("rl", "runbook", "triage", "do-nothing", "random"):
        assert name in text
    assert "unseen sock-shop" in text and "rl - runbook MTTR" in text
    rows = (report / "episodes.csv").read_text().splitlines()
    assert len(rows) == 1 + 2 * 5 * 2
    assert (report / "summary.csv").is_file() and (report / "evaluation.png").stat().st_size > 0
    assert "right remedy first" in text and "to right remedy s" in text
    header, *fault_rows = (report / "by_fault.csv").read_text().splitlines()
    assert header.startswith("suite,policy,fault,episodes,responded,right_first")
    assert sum(int(r.split(",")[3]) for r in fault_rows) == 2 * 5 * 2  # every episode once


def test_a_tiny_run_evaluates_once_not_after_every_step(tmp_path):
    """`--steps 10` used to evaluate a set of episodes after every step of a whole rollout
    (256 evaluations, minutes): evaluations are at least MIN_EVAL_GAP steps apart."""
    config = TrainConfig(
        algo="ppo",
        env_id=REMEDIATION_ID,
        steps=10,
        out=tmp_path,
        n_envs=2,
        env_kwargs=SHORT,
        eval_episodes=1,
        progress_bar=False,
    )
    summary = train(config)
    evaluations = np.load(tmp_path / "eval" / "evaluations.npz")["timesteps"]
    assert len(evaluations) <= 1
    assert summary["steps_done"] >= 10  # a whole rollout, reported as such
    assert summary["steps_per_s"] == pytest.approx(summary["steps_done"] / summary["wall_s"], 0.1)


def test_envs_in_subprocesses_train_the_same_weights_as_in_process(tmp_path):
    """The VecEnv choice is a throughput setting only: same seed, same policy."""
    digests = []
    for vec_env in ("dummy", "subproc", "shards"):
        config = TrainConfig(
            algo="ppo",
            env_id=REMEDIATION_ID,
            steps=32,
            out=tmp_path / vec_env,
            n_envs=2,
            env_kwargs=SHORT,
            eval_episodes=0,
            progress_bar=False,
            vec_env=vec_env,
            hyperparams={"n_steps": 16, "batch_size": 16, "n_epochs": 1},
        )
        digests.append(train(config)["policy_sha256"])
    assert digests[0] == digests[1] == digests[2]


def test_evaluate_refuses_a_policy_for_other_spaces_by_name():
    import gymnasium as gym

    from firebreak.commands.evaluate import _check_spaces
    from twin.errors import FirebreakError

    class Model:
        observation_space = gym.spaces.Box(0.0, 1.0, (145,))
        action_space = gym.spaces.Discrete(29)

    class Env:
        observation_space = gym.spaces.Box(0.0, 1.0, (147,))
        action_space = gym.spaces.Discrete(31)

    with pytest.raises(FirebreakError, match=r"old/policy: policy.json: observation_space"):
        _check_spaces("old/policy", Model(), Env())
    Model.observation_space = Env.observation_space
    with pytest.raises(FirebreakError, match="action_space"):
        _check_spaces("old/policy", Model(), Env())
    Model.action_space = Env.action_space
    _check_spaces("ok", Model(), Env())


def test_learning_freezes_what_existed_before_it_and_thaws_it_after():
    """`frozen_heap` hides the pre-learning heap from the collector's full passes while
    learning, and only then: an error inside still thaws it."""
    import gc

    from agents.rl.train import frozen_heap

    assert gc.get_freeze_count() == 0
    with pytest.raises(RuntimeError), frozen_heap():
        assert gc.get_freeze_count() > 0
        raise RuntimeError("learning failed")
    assert gc.get_freeze_count() == 0


def test_envs_are_split_over_the_cores_by_default_where_there_are_several(monkeypatch):
    from dataclasses import replace

    from agents.rl import hyperparams

    def config(algo, cores, **kw):
        monkeypatch.setattr(hyperparams, "usable_cores", lambda: cores)
        return TrainConfig(algo, REMEDIATION_ID, 64, Path("unused"), **kw)

    assert config("ppo", 2).vec_env_used == "parallel"
    assert config("maskable-ppo", 4).vec_env_used == "parallel"
    assert config("ppo", 1).vec_env_used == "dummy"
    one_env = config("ppo", 2, n_envs=1)
    assert one_env.vec_env_used == "dummy"
    assert replace(one_env, n_envs=16).vec_env_used == "parallel"  # worked out when asked
    assert replace(one_env, algo="dqn", n_envs=4).vec_env_used == "dummy"
    assert config("dqn", 2).vec_env_used == "dummy"
    assert config("ppo", 2, vec_env="subproc").vec_env_used == "subproc"


def test_learning_leaves_a_heap_the_caller_froze_frozen():
    import gc

    from agents.rl.train import frozen_heap

    gc.freeze()
    try:
        with frozen_heap():
            pass
        assert gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()
