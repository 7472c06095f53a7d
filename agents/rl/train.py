"""Training a policy on a Firebreak env with stable-baselines3 / sb3-contrib.

One call sets up vectorised envs (in-process: one core), evaluation on held-out seeds
during training (the best model is kept), checkpoints, TensorBoard logs and a progress
bar, and writes `policy.zip` plus `settings.json` (the algorithm, the env id and every env
setting) into the output directory, which is what `load_policy` and the policy runner read.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agents.rl.envs import ENV_IDS
from agents.rl.evaluation import EVAL_SEED_BASE
from twin.errors import FirebreakError

ALGOS = ("ppo", "maskable-ppo", "dqn")
POLICY_FILE = "policy.zip"
SETTINGS_FILE = "settings.json"


class TrainingError(FirebreakError):
    """A training request is invalid (algorithm, env id, counts) or its output unreadable."""


@dataclass(frozen=True)
class TrainConfig:
    """What `train` needs; checked on construction so a bad value fails before any work."""

    algo: str
    env_id: str
    steps: int
    out: Path
    seed: int = 0
    n_envs: int = 4
    env_kwargs: dict | None = None
    eval_episodes: int = 10
    eval_freq: int | None = None  # env steps between evaluations (default: steps / 10)
    checkpoints: int = 5
    threads: int = 1
    progress_bar: bool = True

    def __post_init__(self) -> None:
        if self.algo not in ALGOS:
            raise TrainingError(f"--algo: unknown {self.algo!r} (algorithms: {', '.join(ALGOS)})")
        if self.env_id not in ENV_IDS:
            raise TrainingError(f"--env: unknown {self.env_id!r} (envs: {', '.join(ENV_IDS)})")
        for name in ("steps", "n_envs", "threads"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise TrainingError(f"--{name.replace('_', '-')}: must be >= 1, got {value!r}")
        if self.eval_episodes < 0:
            raise TrainingError(f"--eval-episodes: must be >= 0, got {self.eval_episodes}")


def _hyperparameters(algo: str, n_envs: int) -> dict[str, Any]:
    """Small nets and short rollouts: episodes are ~120 decisions, observations ~150 floats."""
    if algo == "dqn":
        return {
            "learning_rate": 5e-4,
            "buffer_size": 50_000,
            "learning_starts": 1_000,
            "batch_size": 64,
            "gamma": 0.98,
            "train_freq": 4,
            "target_update_interval": 1_000,
            "exploration_fraction": 0.3,
            "policy_kwargs": {"net_arch": [128, 128]},
        }
    return {
        "learning_rate": 3e-4,
        "n_steps": max(64, 1024 // n_envs),
        "batch_size": 256,
        "n_epochs": 5,
        "gamma": 0.98,
        "gae_lambda": 0.95,
        "ent_coef": 0.01,
        "policy_kwargs": {"net_arch": [128, 128]},
    }


def _algo_class(algo: str):
    if algo == "maskable-ppo":
        from sb3_contrib import MaskablePPO

        return MaskablePPO
    if algo == "dqn":
        from stable_baselines3 import DQN

        return DQN
    from stable_baselines3 import PPO

    return PPO


def train(config: TrainConfig) -> dict[str, Any]:
    """Train, evaluate on held-out seeds as it goes, save; returns the run's summary."""
    import gymnasium as gym
    import torch
    from stable_baselines3.common.callbacks import CallbackList, CheckpointCallback
    from stable_baselines3.common.env_util import make_vec_env
    from stable_baselines3.common.vec_env import DummyVecEnv, VecCheckNan

    torch.set_num_threads(config.threads)
    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    kwargs = dict(config.env_kwargs or {})
    try:
        probe = gym.make(config.env_id, **kwargs)
    except TypeError as exc:
        raise TrainingError(f"--env-kwargs: {exc}") from None
    settings = dict(probe.unwrapped.settings)
    if config.algo == "dqn" and not isinstance(probe.action_space, gym.spaces.Discrete):
        raise TrainingError(
            f"--algo dqn: needs a Discrete action space; {config.env_id} has "
            f"{probe.action_space} (use ppo or maskable-ppo)"
        )
    probe.close()
    envs = make_vec_env(
        config.env_id,
        n_envs=config.n_envs,
        seed=config.seed,
        env_kwargs=kwargs,
        vec_env_cls=DummyVecEnv,
    )
    envs = VecCheckNan(envs, raise_exception=True)  # name a NaN where it enters, not later
    algo_cls = _algo_class(config.algo)
    model = algo_cls(
        "MlpPolicy",
        envs,
        seed=config.seed,
        verbose=0,
        tensorboard_log=str(out / "tensorboard"),
        device="cpu",
        **_hyperparameters(config.algo, config.n_envs),
    )
    callbacks = [
        CheckpointCallback(
            save_freq=max(config.steps // (config.checkpoints * config.n_envs), 1),
            save_path=str(out / "checkpoints"),
            name_prefix="policy",
        )
    ]
    if config.eval_episodes > 0:
        eval_env = VecCheckNan(
            make_vec_env(
                config.env_id,
                n_envs=1,
                seed=EVAL_SEED_BASE + 500_000 + config.seed,
                env_kwargs=kwargs,
                vec_env_cls=DummyVecEnv,
            ),
            raise_exception=True,
        )
        freq = config.eval_freq or max(config.steps // 10, 1)
        eval_kw = {
            "n_eval_episodes": config.eval_episodes,
            "eval_freq": max(freq // config.n_envs, 1),
            "best_model_save_path": str(out / "best"),
            "log_path": str(out / "eval"),
            "deterministic": True,
            "verbose": 0,
        }
        if config.algo == "maskable-ppo":
            from sb3_contrib.common.maskable.callbacks import MaskableEvalCallback

            callbacks.append(MaskableEvalCallback(eval_env, **eval_kw))
        else:
            from stable_baselines3.common.callbacks import EvalCallback

            callbacks.append(EvalCallback(eval_env, **eval_kw))
    began = time.perf_counter()
    model.learn(
        total_timesteps=config.steps,
        callback=CallbackList(callbacks),
        progress_bar=config.progress_bar,
        tb_log_name=config.algo,
    )
    wall = time.perf_counter() - began
    model.save(out / POLICY_FILE)
    summary = {
        "algo": config.algo,
        "env_id": config.env_id,
        "env_settings": settings,
        "env_kwargs": kwargs,
        "steps": config.steps,
        "seed": config.seed,
        "n_envs": config.n_envs,
        "threads": config.threads,
        "wall_s": round(wall, 1),
        "steps_per_s": round(config.steps / wall, 1) if wall > 0 else None,
        "eval_seed_base": EVAL_SEED_BASE + 500_000 + config.seed,
    }
    (out / SETTINGS_FILE).write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    envs.close()
    return summary


def load_policy(path: str | Path) -> tuple[Any, dict[str, Any]]:
    """A saved policy and its settings: `path` is the training directory or its zip."""
    path = Path(path)
    folder = path if path.is_dir() else path.parent
    zip_path = path / POLICY_FILE if path.is_dir() else path
    settings_path = folder / SETTINGS_FILE
    if not settings_path.is_file() and (folder.parent / SETTINGS_FILE).is_file():
        settings_path = folder.parent / SETTINGS_FILE  # best/ and checkpoints/ models
    if not zip_path.is_file():
        raise TrainingError(f"{zip_path}: no saved policy there (train one with firebreak train)")
    if not settings_path.is_file():
        raise TrainingError(f"{settings_path}: the policy's settings file is missing")
    try:
        settings = json.loads(settings_path.read_text(encoding="utf-8"))
        algo = settings["algo"]
    except (json.JSONDecodeError, KeyError) as exc:
        raise TrainingError(f"{settings_path}: unreadable settings ({exc})") from None
    if algo not in ALGOS:
        raise TrainingError(f"{settings_path}: unknown algo {algo!r}")
    model = _algo_class(algo).load(zip_path, device="cpu")
    return model, settings
