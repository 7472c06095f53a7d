"""Training a policy on a Firebreak env with stable-baselines3 / sb3-contrib.

One call sets up vectorised envs (by default in this process, one torch thread: on a
small machine that is the fastest, see `benchmarks.bench_train`), evaluation on held-out seeds
during training (the best model is kept), checkpoints, TensorBoard logs and a progress
bar, and writes `policy.safetensors` + `policy.json` (weights and the network described as
data: `agents.rl.policy_files`) and `settings.json` (the algorithm, the env id and every env
setting) into the output directory, which is what `load_policy` and the policy runner read.
The best model (`best/`) and the checkpoints (`checkpoints/policy_N_steps.*`) are saved the
same way; no stable-baselines3 zip is written, since loading one can run code.
"""

from __future__ import annotations

import gc
import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from agents.rl import hyperparams
from agents.rl.envs import ENV_IDS
from agents.rl.evaluation import EVAL_SEED_BASE
from agents.rl.policy_files import ALGOS, SETTINGS_FILE, save_policy
from twin.errors import FirebreakError


class TrainingError(FirebreakError):
    """A training request is invalid (algorithm, env id, counts) or its output unreadable."""


MIN_EVAL_GAP = 1_000  # env steps between two evaluations at least (unless eval_freq says)
# envs in this process, one process per env, or split over one worker process per core
VEC_ENVS = ("dummy", "subproc", "shards", "parallel")
SHARDED = ("shards", "parallel")  # the envs split over worker processes (`ShardedVecEnv`)


@dataclass(frozen=True)
class TrainConfig:
    """What `train` needs; checked on construction so a bad value fails before any work."""

    algo: str
    env_id: str
    steps: int
    out: Path
    seed: int = 0
    n_envs: int | None = None  # None: `hyperparams.default_n_envs(algo)`
    env_kwargs: dict | None = None
    eval_episodes: int = 10
    eval_freq: int | None = None  # env steps between evaluations (default: steps / 10)
    checkpoints: int = 5
    threads: int = 1
    progress_bar: bool = True
    vec_env: str | None = None  # None: `hyperparams.default_vec_env(algo, n_envs)`
    hyperparams: dict | None = None  # overrides of `agents.rl.hyperparams.defaults`
    warm_start: str | None = None  # a teacher to clone first (`agents.rl.warm_start`)
    warm_episodes: int = 200
    warm_epochs: int = 120  # passes over the demonstrations (`warm_start.EPOCHS`)

    @property
    def vec_env_used(self) -> str:
        """`vec_env`, or where the envs step by default (worked out when asked, so a
        `replace` of algo or n_envs is never stuck with an earlier default)."""
        if self.vec_env is not None:
            return self.vec_env
        return hyperparams.default_vec_env(self.algo, int(self.n_envs or 1))

    def __post_init__(self) -> None:
        if self.algo not in ALGOS:
            raise TrainingError(f"--algo: unknown {self.algo!r} (algorithms: {', '.join(ALGOS)})")
        if self.env_id not in ENV_IDS:
            raise TrainingError(f"--env: unknown {self.env_id!r} (envs: {', '.join(ENV_IDS)})")
        if self.n_envs is None:  # frozen: set once, here, before anything reads it
            object.__setattr__(self, "n_envs", hyperparams.default_n_envs(self.algo))
        for name in ("steps", "n_envs", "threads"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise TrainingError(f"--{name.replace('_', '-')}: must be >= 1, got {value!r}")
        if self.eval_episodes < 0:
            raise TrainingError(f"--eval-episodes: must be >= 0, got {self.eval_episodes}")
        if self.vec_env is not None and self.vec_env not in VEC_ENVS:
            raise TrainingError(
                f"--vec-env: unknown {self.vec_env!r} (choices: {', '.join(VEC_ENVS)})"
            )
        if self.vec_env == "parallel" and self.algo == "dqn":
            raise TrainingError(
                "--vec-env: parallel collects PPO's rollouts; DQN learns between vector steps "
                "(use shards to split its envs over the cores)"
            )
        hyperparams.check(self.algo, self.hyperparams)
        if self.warm_start is not None:
            from agents.rl.warm_start import TEACHERS

            if self.warm_start not in TEACHERS:
                raise TrainingError(
                    f"--warm-start: unknown teacher {self.warm_start!r} (teachers: "
                    f"{', '.join(TEACHERS)})"
                )
            if self.algo == "dqn":
                raise TrainingError("--warm-start: clones into PPO or maskable PPO, not DQN")
            if self.warm_episodes < 1:
                raise TrainingError(
                    f"--warm-start-episodes: must be >= 1, got {self.warm_episodes}"
                )
            if self.warm_epochs < 1:
                raise TrainingError(f"--warm-start-epochs: must be >= 1, got {self.warm_epochs}")


def _algo_class(algo: str, vec_env: str = "dummy"):
    """SB3's class for `algo`; PPO's and maskable PPO's that collect each rollout over the
    shards in parallel for `--vec-env parallel` (`agents.rl.parallel_ppo`)."""
    if vec_env == "parallel" and algo in ("ppo", "maskable-ppo"):
        from agents.rl.parallel_ppo import ParallelMaskablePPO, ParallelPPO

        return ParallelPPO if algo == "ppo" else ParallelMaskablePPO
    if algo == "maskable-ppo":
        from sb3_contrib import MaskablePPO

        return MaskablePPO
    if algo == "dqn":
        from stable_baselines3 import DQN

        return DQN
    from stable_baselines3 import PPO

    return PPO


def _safe_saver(algo: str, env_id: str, folder: Path, stem: str | None):
    """An SB3 callback writing the model's policy in Firebreak's safe format when called.

    `stem` None names each file by the step count (checkpoints); a fixed stem overwrites
    (the best model). Built here so SB3 is imported only when training.
    """
    from stable_baselines3.common.callbacks import BaseCallback

    class SafeSave(BaseCallback):
        def __init__(self, every: int = 0) -> None:
            super().__init__()
            self.every = every

        def _on_step(self) -> bool:
            if self.every and self.n_calls % self.every:
                return True
            name = stem or f"policy_{self.num_timesteps}_steps"
            save_policy(self.model.policy, algo=algo, env_id=env_id, folder=folder, stem=name)
            return True

    return SafeSave


def _write_settings(out: Path, summary: dict[str, Any]) -> None:
    path = out / SETTINGS_FILE
    tmp = path.with_name(f".{SETTINGS_FILE}.tmp")
    tmp.write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    tmp.replace(path)


def train(config: TrainConfig) -> dict[str, Any]:
    """Train, evaluate on held-out seeds as it goes, save; returns the run's summary."""
    return train_model(config)[1]


def make_env(env_id: str, **kwargs: Any):
    """One env by id; module-level so a subprocess worker can rebuild it from its name
    (importing this module registers the ids there too)."""
    import gymnasium as gym

    return gym.make(env_id, **kwargs)


def make_envs(config: TrainConfig, n_envs: int, seed: int):
    """`n_envs` seeded envs (seeds `seed`, `seed + 1`, ...) behind SB3's VecEnv, in this
    process or one process each (`config.vec_env`), NaN-checked where a NaN enters."""
    from functools import partial

    from stable_baselines3.common.env_util import make_vec_env
    from stable_baselines3.common.vec_env import DummyVecEnv, SubprocVecEnv, VecCheckNan

    from agents.rl.sharded import ShardedVecEnv

    vec_env_cls: type = DummyVecEnv
    vec_env_kwargs: dict[str, Any] = {}
    where = config.vec_env_used
    if where == "subproc" and n_envs > 1:
        vec_env_cls = SubprocVecEnv
    elif where in SHARDED and n_envs > 1:
        vec_env_cls = ShardedVecEnv
        vec_env_kwargs = {"n_shards": min(n_envs, hyperparams.usable_cores())}
    envs = make_vec_env(
        partial(make_env, config.env_id),
        n_envs=n_envs,
        seed=seed,
        env_kwargs=dict(config.env_kwargs or {}),
        vec_env_cls=vec_env_cls,
        vec_env_kwargs=vec_env_kwargs,
    )
    return VecCheckNan(envs, raise_exception=True)


def make_model(config: TrainConfig, envs, tensorboard_log: str | None = None):
    """The SB3 model `config` describes on `envs` (defaults plus checked overrides)."""
    return _algo_class(config.algo, config.vec_env_used)(
        "MlpPolicy",
        envs,
        seed=config.seed,
        verbose=0,
        tensorboard_log=tensorboard_log,
        device="cpu",
        **hyperparams.hyperparameters(config.algo, config.n_envs, config.hyperparams),
    )


@contextmanager
def fast_distributions() -> Iterator[None]:
    """torch's per-call argument checks of distributions off while training (they check
    values SB3 builds itself, at a cost per policy call); restored afterwards."""
    from torch.distributions import Distribution

    before = Distribution._validate_args
    Distribution.set_default_validate_args(False)
    try:
        yield
    finally:
        Distribution.set_default_validate_args(before)


@contextmanager
def frozen_heap() -> Iterator[None]:
    """What exists before learning (torch, SB3, the compiled kernels, the envs: about half
    a million objects) is moved out of the garbage collector's view while learning, so the
    collector's full passes stop walking it: one such pass took about 0.3 s of every 8,192
    PPO steps (about 7% of the wall time; `gc.callbacks`, measured in the session that
    added this). Only objects made before learning are frozen; what learning makes is
    collected as before. Unfrozen afterwards (left as it was if the caller had frozen it)."""
    if gc.get_freeze_count():  # the caller froze the heap already: theirs to thaw
        yield
        return
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


def _probe(config: TrainConfig) -> dict[str, Any]:
    """The env's settings; refuses bad env kwargs and DQN on a non-Discrete space."""
    import gymnasium as gym

    try:
        probe = make_env(config.env_id, **dict(config.env_kwargs or {}))
    except TypeError as exc:
        raise TrainingError(f"--env-kwargs: {exc}") from None
    settings = dict(probe.unwrapped.settings)
    space = probe.action_space
    probe.close()
    if config.algo == "dqn" and not isinstance(space, gym.spaces.Discrete):
        raise TrainingError(
            f"--algo dqn: needs a Discrete action space; {config.env_id} has "
            f"{space} (use ppo or maskable-ppo)"
        )
    return settings


def _eval_callback(config: TrainConfig, out: Path, seed: int):
    """Evaluation on held-out seeds during training; the best model saved safely."""
    eval_env = make_envs(replace(config, vec_env="dummy"), 1, seed)
    # about ten evaluations a run, never closer than MIN_EVAL_GAP steps: a tiny --steps
    # would otherwise evaluate a whole set of episodes after every single step
    freq = config.eval_freq or max(config.steps // 10, MIN_EVAL_GAP)
    eval_kw = {
        "n_eval_episodes": config.eval_episodes,
        "eval_freq": max(freq // config.n_envs, 1),
        "callback_on_new_best": _safe_saver(config.algo, config.env_id, out / "best", "policy")(),
        "log_path": str(out / "eval"),
        "deterministic": True,
        "verbose": 0,
    }
    if config.algo == "maskable-ppo":
        from sb3_contrib.common.maskable.callbacks import MaskableEvalCallback

        return MaskableEvalCallback(eval_env, **eval_kw)
    from stable_baselines3.common.callbacks import EvalCallback

    return EvalCallback(eval_env, **eval_kw)


def train_model(config: TrainConfig) -> tuple[Any, dict[str, Any]]:
    """`train`, also handing back the trained SB3 model (to compare with what was saved)."""
    import torch
    from stable_baselines3.common.callbacks import CallbackList

    torch.set_num_threads(config.threads)
    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    summary: dict[str, Any] = {
        "algo": config.algo,
        "env_id": config.env_id,
        "env_settings": _probe(config),
        "env_kwargs": dict(config.env_kwargs or {}),
        "steps": config.steps,
        "seed": config.seed,
        "n_envs": config.n_envs,
        "threads": config.threads,
        "vec_env": config.vec_env_used,
        "hyperparams": hyperparams.check(config.algo, config.hyperparams),
        "eval_seed_base": EVAL_SEED_BASE + 500_000 + config.seed,
        "warm_start": config.warm_start,
    }
    _write_settings(out, summary)  # now, so checkpoints of an interrupted run are loadable
    envs = make_envs(config, config.n_envs, config.seed)
    try:
        model = make_model(config, envs, str(out / "tensorboard"))
        if config.warm_start is not None:
            summary["warm_start_fit"] = _warm_start(config, model)
        checkpoint = _safe_saver(config.algo, config.env_id, out / "checkpoints", None)
        callbacks = [checkpoint(max(config.steps // (config.checkpoints * config.n_envs), 1))]
        if config.eval_episodes > 0:
            callbacks.append(_eval_callback(config, out, summary["eval_seed_base"]))
        began = time.perf_counter()
        with fast_distributions(), frozen_heap():
            model.learn(
                total_timesteps=config.steps,
                callback=CallbackList(callbacks),
                progress_bar=config.progress_bar,
                tb_log_name=config.algo,
            )
        wall = time.perf_counter() - began
    finally:
        envs.close()
    save_policy(model.policy, algo=config.algo, env_id=config.env_id, folder=out)
    done = int(model.num_timesteps)  # whole rollouts: PPO collects at least one
    summary["steps_done"] = done
    summary["wall_s"] = round(wall, 1)
    summary["steps_per_s"] = round(done / wall, 1) if wall > 0 else None
    summary["policy_sha256"] = policy_digest(model.policy)
    _write_settings(out, summary)
    return model, summary


def _warm_start(config: TrainConfig, model) -> dict[str, Any]:
    """Clone the teacher into `model` before learning (see `agents.rl.warm_start`)."""
    from agents.rl.warm_start import WarmStartError, clone, demonstrations

    try:
        obs, actions, masks = demonstrations(
            lambda: make_env(config.env_id, **dict(config.env_kwargs or {})),
            config.warm_start,
            config.warm_episodes,
            config.seed,
        )
    except WarmStartError as exc:
        raise TrainingError(str(exc)) from None
    fit = clone(model, obs, actions, masks, epochs=config.warm_epochs, seed=config.seed)
    return {
        "teacher": config.warm_start,
        "episodes": config.warm_episodes,
        "epochs": config.warm_epochs,
        **fit,
    }


def policy_digest(policy) -> str:
    """SHA-256 over the policy's parameters in name order: equal digests, equal weights
    (how a sweep shows two backends trained the same policy from the same seed)."""
    import hashlib

    digest = hashlib.sha256()
    for name, tensor in sorted(policy.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()
