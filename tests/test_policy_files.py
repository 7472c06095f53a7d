"""Safe policy files: weights in safetensors plus the network as JSON, loaded without pickle.

A crafted stable-baselines3 zip (its `data` entry would run `touch MARKER`) is refused by
`load_policy`, `firebreak evaluate` and `firebreak rehearse --ops rl:DIR` with exit 2 and a
message naming the file, and the marker never appears; with `--trust-pickle` it is loaded
(and the payload runs: that is what the flag says). Edited, damaged or missing files are
clear errors, never tracebacks.
"""

from __future__ import annotations

import json
import pickle
import shutil
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
from conftest import SCENARIOS
from crafted import crafted_policy_dir, evil_pickle

import agents.rl
from agents.rl.policy_files import (
    DESCRIPTION_FILE,
    WEIGHTS_FILE,
    PolicyFileError,
    load_policy,
    save_policy,
)
from firebreak.cli import main
from twin.errors import FirebreakError

REMEDIATION = {"episode_s": 300.0, "topologies": ["online-boutique"]}
AUTOSCALE = {"episode_s": 1800.0}
CASES = [
    ("maskable-ppo", agents.rl.REMEDIATION_ID, REMEDIATION),
    ("ppo", agents.rl.AUTOSCALE_ID, AUTOSCALE),
    ("dqn", agents.rl.REMEDIATION_ID, REMEDIATION),
]


def _model(algo: str, env, seed: int):
    from sb3_contrib import MaskablePPO
    from stable_baselines3 import DQN, PPO

    cls = {"ppo": PPO, "maskable-ppo": MaskablePPO, "dqn": DQN}[algo]
    extra = {"buffer_size": 100} if algo == "dqn" else {"n_steps": 64, "batch_size": 64}
    kwargs = {"net_arch": [32, 16]} | ({"activation_fn": _relu()} if algo == "ppo" else {})
    return cls("MlpPolicy", env, seed=seed, device="cpu", policy_kwargs=kwargs, **extra)


def _relu():
    from torch import nn

    return nn.ReLU


def _settings(folder: Path, algo: str, env_id: str, env, kwargs: dict) -> None:
    settings = {
        "algo": algo,
        "env_id": env_id,
        "env_settings": env.unwrapped.settings,
        "env_kwargs": kwargs,
    }
    (folder / "settings.json").write_text(json.dumps(settings))


def _observations(env, n: int = 256) -> np.ndarray:
    env.observation_space.seed(0)
    return np.stack([env.observation_space.sample() for _ in range(n)])


@pytest.mark.parametrize(("algo", "env_id", "kwargs"), CASES)
def test_the_safe_file_predicts_what_the_model_did(tmp_path, algo, env_id, kwargs):
    env = gym.make(env_id, **kwargs)
    model = _model(algo, env, seed=3)
    _settings(tmp_path, algo, env_id, env, kwargs)
    save_policy(model.policy, algo=algo, env_id=env_id, folder=tmp_path)
    policy, settings = load_policy(tmp_path)
    assert settings["algo"] == algo and type(policy) is type(model.policy)
    assert policy.observation_space == model.observation_space
    assert policy.action_space == model.action_space
    obs = _observations(env)
    want, _ = model.predict(obs, deterministic=True)
    got, _ = policy.predict(obs, deterministic=True)
    assert np.array_equal(want, got)
    for name, tensor in model.policy.state_dict().items():
        assert np.array_equal(tensor.numpy(), policy.state_dict()[name].numpy()), name
    # the check can fail: another initialisation answers differently on the same batch
    other, _ = _model(algo, env, seed=4).predict(obs, deterministic=True)
    assert not np.array_equal(want, other)
    if algo == "maskable-ppo":
        masks = np.random.default_rng(0).random((len(obs), env.action_space.n)) < 0.5
        masks[:, 0] = True
        want, _ = model.predict(obs, deterministic=True, action_masks=masks)
        got, _ = policy.predict(obs, deterministic=True, action_masks=masks)
        assert np.array_equal(want, got) and masks[np.arange(len(obs)), got].all()
    text = (tmp_path / DESCRIPTION_FILE).read_text()
    assert "pickle" not in text and json.loads(text)["policy_kwargs"]["net_arch"] == [32, 16]
    assert not list(tmp_path.glob("*.zip"))


@pytest.fixture(scope="module")
def saved(tmp_path_factory) -> Path:
    """A small maskable PPO policy in the safe format, with its settings."""
    folder = tmp_path_factory.mktemp("safe")
    algo, env_id, kwargs = CASES[0]
    env = gym.make(env_id, **kwargs)
    save_policy(_model(algo, env, 0).policy, algo=algo, env_id=env_id, folder=folder)
    _settings(folder, algo, env_id, env, kwargs)
    return folder


def test_the_payload_is_live(tmp_path):
    """The crafted pickle really runs its command, so the refusals below mean something."""
    marker = tmp_path / "ran"
    pickle.loads(evil_pickle(marker))
    assert marker.exists()


def test_a_crafted_zip_is_refused_and_runs_nothing(tmp_path):
    marker = tmp_path / "pwned"
    folder = crafted_policy_dir(tmp_path / "policy", marker, agents.rl.REMEDIATION_ID)
    for path in (folder, folder / "policy.zip"):
        with pytest.raises(PolicyFileError, match=r"policy\.zip: a stable-baselines3 zip"):
            load_policy(path)
    renamed = folder / "other.zip"
    (folder / "policy.zip").rename(renamed)  # any zip, whatever its name
    with pytest.raises(PolicyFileError, match=r"other\.zip: .*--trust-pickle"):
        load_policy(folder)
    assert not marker.exists()


def test_trust_pickle_loads_the_zip_and_so_runs_its_code(tmp_path):
    """What the flag means, shown: the crafted zip's payload runs under --trust-pickle."""
    marker = tmp_path / "pwned"
    folder = crafted_policy_dir(tmp_path / "policy", marker, agents.rl.REMEDIATION_ID)
    with pytest.raises(PolicyFileError, match="stable-baselines3 could not load it"):
        load_policy(folder, trust_pickle=True)  # data unpickled, then SB3 finds no weights
    assert marker.exists()


def test_trust_pickle_loads_a_genuine_zip(tmp_path):
    algo, env_id, kwargs = CASES[0]
    env = gym.make(env_id, **kwargs)
    model = _model(algo, env, seed=5)
    model.save(tmp_path / "policy.zip")
    _settings(tmp_path, algo, env_id, env, kwargs)
    with pytest.raises(PolicyFileError, match="--trust-pickle"):
        load_policy(tmp_path)
    policy, _ = load_policy(tmp_path, trust_pickle=True)
    obs = _observations(env, 64)
    want, _ = model.predict(obs, deterministic=True)
    assert np.array_equal(want, policy.predict(obs, deterministic=True)[0])


def test_safe_files_win_over_a_zip_beside_them(tmp_path, saved):
    marker = tmp_path / "pwned"
    folder = tmp_path / "policy"
    shutil.copytree(saved, folder)
    crafted_policy_dir(folder, marker, agents.rl.REMEDIATION_ID, algo="maskable-ppo")
    shutil.copy(saved / "settings.json", folder / "settings.json")  # the policy's own again
    policy, _ = load_policy(folder, trust_pickle=True)
    assert type(policy).__name__ == "MaskableActorCriticPolicy"
    assert not marker.exists()


def _cli(capsys, *argv: str) -> tuple[int, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out + captured.err


def test_evaluate_refuses_a_crafted_policy_dir(tmp_path, capsys):
    marker = tmp_path / "pwned"
    folder = crafted_policy_dir(tmp_path / "policy", marker, agents.rl.REMEDIATION_ID)
    code, text = _cli(
        capsys, "evaluate", "--policy", str(folder), "--out", str(tmp_path / "ev"), "--quiet"
    )
    assert code == 2 and "Traceback" not in text
    assert f"{folder / 'policy.zip'}: a stable-baselines3 zip" in text and "--trust-pickle" in text
    assert not marker.exists()
    assert not (tmp_path / "ev").exists()


def test_rehearse_refuses_a_crafted_policy_dir(tmp_path, capsys):
    marker = tmp_path / "pwned"
    folder = crafted_policy_dir(tmp_path / "policy", marker, agents.rl.REMEDIATION_ID)
    out = tmp_path / "run"
    scenario = str(SCENARIOS / "steady-state.yaml")
    code, text = _cli(capsys, "rehearse", scenario, "--ops", f"rl:{folder}", "--out", str(out))
    assert code == 2 and "Traceback" not in text
    assert f"{folder / 'policy.zip'}: a stable-baselines3 zip" in text
    assert not marker.exists()
    assert not list(out.rglob("*.parquet"))  # refused before the run began


@pytest.mark.parametrize("command", ["evaluate", "rehearse"])
def test_trust_pickle_says_what_it_means(capsys, command):
    assert main([command, "--help"]) == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "--trust-pickle" in text and "RUNS ANY CODE the file holds" in text


# ---- damaged, edited and missing files --------------------------------------------------
def _edit_description(folder: Path, edit) -> None:
    path = folder / DESCRIPTION_FILE
    data = json.loads(path.read_text())
    edit(data)
    path.write_text(json.dumps(data))


def _edit_settings(folder: Path, edit) -> None:
    path = folder / "settings.json"
    data = json.loads(path.read_text())
    edit(data)
    path.write_text(json.dumps(data))


def _set(path: list, value):
    def edit(data):
        node = data
        for key in path[:-1]:
            node = node[key]
        node[path[-1]] = value

    return edit


def _truncate(folder: Path) -> None:
    weights = folder / WEIGHTS_FILE
    weights.write_bytes(weights.read_bytes()[:1000])


def _resized_weights(folder: Path) -> None:
    """Weights of another network, with the hash updated: consistent files, wrong shapes."""
    import hashlib

    from safetensors.torch import load, save

    tensors = load((folder / WEIGHTS_FILE).read_bytes())
    name = min(k for k, t in tensors.items() if t.shape[0] > 1)
    tensors[name] = tensors[name][:1].clone()
    data = save(tensors)
    (folder / WEIGHTS_FILE).write_bytes(data)
    _edit_description(folder, _set(["weights", "sha256"], hashlib.sha256(data).hexdigest()))


DAMAGE = [
    (lambda f: (f / WEIGHTS_FILE).unlink(), r"policy\.safetensors: cannot read the weights"),
    (_truncate, r"policy\.safetensors: the weights do not match the SHA-256"),
    (_resized_weights, r"the weights do not fit the described network"),
    (lambda f: (f / DESCRIPTION_FILE).write_text("{oops"), r"policy\.json: .*not valid JSON"),
    (lambda f: (f / DESCRIPTION_FILE).write_text("[" * 100_000), r"policy\.json: .*not valid"),
    (lambda f: (f / DESCRIPTION_FILE).write_text("[]"), r"policy\.json: .*must be a JSON object"),
    (lambda f: _edit_description(f, _set(["format"], "x")), r"not a firebreak-policy v1"),
    (lambda f: _edit_description(f, _set(["algo"], "a2c")), r"algo: unknown 'a2c'"),
    (lambda f: _edit_description(f, _set(["algo"], "ppo")), r"algo 'ppo' disagrees with"),
    (
        lambda f: _edit_description(f, _set(["policy_kwargs", "activation_fn"], "os.system")),
        r"activation_fn: 'os\.system' is not one of Tanh",
    ),
    (
        lambda f: _edit_description(
            f, _set(["policy_kwargs", "features_extractor_class"], "subprocess:Popen")
        ),
        r"features_extractor_class: 'subprocess:Popen' is not one of FlattenExtractor",
    ),
    (
        lambda f: _edit_description(f, _set(["policy_kwargs", "net_arch"], [60_000, 60_000])),
        r"may hold up to .* parameters, more than",
    ),
    (
        lambda f: _edit_description(f, _set(["policy_kwargs", "bogus"], 1)),
        r"policy cannot be built: .*bogus",
    ),
    (
        lambda f: _edit_description(f, _set(["weights", "file"], "../../etc/passwd")),
        r"weights\.file: '\.\./\.\./etc/passwd' is not a \.safetensors name",
    ),
    (
        lambda f: _edit_description(f, _set(["observation_space", "type"], "Dict")),
        r"observation_space\.type: expected Box",
    ),
    (
        lambda f: _edit_description(f, _set(["observation_space", "low"], [0.0])),
        r"observation_space\.low: expected 147 values",
    ),
    (
        lambda f: _edit_description(f, _set(["action_space", "n"], -3)),
        r"action_space\.n: expected an integer in \[1, ",
    ),
    (lambda f: (f / "settings.json").unlink(), r"settings\.json: the policy's settings file is"),
    (lambda f: (f / "settings.json").write_text("{}"), r"settings\.json: algo: expected a str"),
    (lambda f: (f / DESCRIPTION_FILE).unlink(), r"policy\.json: no saved policy there"),
    (
        lambda f: _edit_settings(f, _set(["env_id"], "CartPole-v1")),
        r"settings\.json: env_id: unknown 'CartPole-v1'",
    ),
    (
        lambda f: _edit_settings(f, _set(["env_settings", "top_k"], "five")),
        r"settings\.json: env_settings\.top_k: expected an integer in \[1, 1000\], got 'five'",
    ),
    (
        lambda f: _edit_settings(f, lambda d: d["env_settings"].pop("observation")),
        r"settings\.json: env_settings\.observation: expected 'ranked' or 'services', got None",
    ),
]


@pytest.mark.parametrize(("damage", "message"), DAMAGE)
def test_damaged_policy_files_are_clear_errors(tmp_path, saved, capsys, damage, message):
    folder = tmp_path / "policy"
    shutil.copytree(saved, folder)
    damage(folder)
    with pytest.raises(PolicyFileError, match=message) as info:
        load_policy(folder)
    assert isinstance(info.value, FirebreakError)
    out = tmp_path / "evaluation"
    code, text = _cli(capsys, "evaluate", "--policy", str(folder), "--out", str(out), "--quiet")
    assert code == 2 and "Traceback" not in text and f"error: {info.value}" in text


def test_evaluate_names_an_env_keyword_that_does_not_exist(tmp_path, saved, capsys):
    folder = tmp_path / "policy"
    shutil.copytree(saved, folder)
    _edit_settings(folder, _set(["env_kwargs", "bogus"], 1))
    code, text = _cli(capsys, "evaluate", "--policy", str(folder), "--out", str(tmp_path / "e"))
    assert code == 2 and "Traceback" not in text
    assert "settings.json: env_kwargs:" in text and "bogus" in text


def test_a_policy_path_that_is_not_one(tmp_path, saved):
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(PolicyFileError, match=r"notes\.txt: not a policy"):
        load_policy(tmp_path / "notes.txt")
    with pytest.raises(PolicyFileError, match=r"nowhere: no saved policy there"):
        load_policy(tmp_path / "nowhere")
    policy, _ = load_policy(saved / WEIGHTS_FILE)  # the weights file names its description
    assert type(policy).__name__ == "MaskableActorCriticPolicy"
