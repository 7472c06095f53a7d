"""Training hyper-parameters: the defaults per algorithm and checked overrides (sweeps).

The defaults are small nets and short rollouts (episodes are ~120 decisions, observations
~150 floats). A PPO rollout is `ROLLOUT_STEPS` env steps in all, split over the envs, so
changing `n_envs` changes how many envs one policy call serves, not how much experience
an update sees. Overrides are plain JSON values (a sweep's grid, `--hyperparams`), checked
here so a bad one names itself before any work starts.
"""

from __future__ import annotations

import math
import os
from typing import Any

from twin.errors import FirebreakError

ROLLOUT_STEPS = 1024  # env steps per PPO rollout, all envs together
# envs stepped together by default: PPO's policy call per step serves all of them, so more
# envs means fewer, larger torch calls for the same rollout (measured: benchmarks.bench_train);
# DQN keeps 4, since it trains once per `train_freq` vector steps, whatever their width
PPO_N_ENVS = 16
DQN_N_ENVS = 4
MIN_ENV_STEPS = 64  # per env and rollout at least (GAE needs a horizon)

_PPO_FLOATS = ("learning_rate", "gamma", "gae_lambda", "ent_coef", "clip_range", "vf_coef")
_PPO_INTS = ("n_steps", "batch_size", "n_epochs")
_DQN_FLOATS = ("learning_rate", "gamma", "exploration_fraction")
_DQN_INTS = ("buffer_size", "learning_starts", "batch_size", "train_freq")
_UNIT = ("gamma", "gae_lambda", "exploration_fraction")  # within (0, 1]


class HyperparameterError(FirebreakError):
    """A hyper-parameter override is unknown or out of range (named with its value)."""


def known(algo: str) -> tuple[str, ...]:
    """The override names `algo` accepts (`net_arch` is the hidden layer sizes)."""
    if algo == "dqn":
        return (*_DQN_FLOATS, *_DQN_INTS, "net_arch")
    return (*_PPO_FLOATS, *_PPO_INTS, "net_arch")


def default_n_envs(algo: str) -> int:
    """How many envs `algo` steps together unless told otherwise."""
    return DQN_N_ENVS if algo == "dqn" else PPO_N_ENVS


def default_vec_env(algo: str, n_envs: int) -> str:
    """Where `algo`'s envs step unless told otherwise: split over this process and one
    worker per further core when there are several cores and envs, each shard collecting
    its slice's share of every rollout with its own copy of the policy (`parallel`; see
    `agents.rl.parallel_ppo` and `benchmarks.bench_train` for what it gains over lock-step
    `shards`), else all in this process. DQN keeps its few envs here: its gradient steps,
    not its envs, are the cost."""
    if algo != "dqn" and n_envs > 1 and usable_cores() > 1:
        return "parallel"
    return "dummy"


def usable_cores() -> int:
    """The cores this process may run on (its affinity, which `taskset` and container
    CPU sets narrow), not every core the machine has."""
    if hasattr(os, "sched_getaffinity"):
        return max(len(os.sched_getaffinity(0)), 1)
    return os.cpu_count() or 1


def defaults(algo: str, n_envs: int) -> dict[str, Any]:
    """The defaults for `algo` with `n_envs` envs stepped together."""
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
        "n_steps": max(MIN_ENV_STEPS, ROLLOUT_STEPS // n_envs),
        "batch_size": 256,
        "n_epochs": 5,
        "gamma": 0.98,
        "gae_lambda": 0.95,
        "ent_coef": 0.01,
        "policy_kwargs": {"net_arch": [128, 128]},
    }


def check(algo: str, overrides: dict[str, Any] | None) -> dict[str, Any]:
    """The overrides, checked: names from `known(algo)`, finite numbers in range."""
    out: dict[str, Any] = {}
    names = known(algo)
    for name, value in (overrides or {}).items():
        where = f"hyperparams.{name}"
        if name not in names:
            raise HyperparameterError(f"{where}: unknown for {algo} (known: {', '.join(names)})")
        if name == "net_arch":
            ok = isinstance(value, list) and value and all(_count(v) for v in value)
            if not ok:
                raise HyperparameterError(
                    f"{where}: expected a list of layer sizes >= 1, got {value!r}"
                )
            out[name] = [int(v) for v in value]
        elif name in _PPO_INTS or name in _DQN_INTS:
            if not _count(value):
                raise HyperparameterError(f"{where}: expected a whole number >= 1, got {value!r}")
            out[name] = int(value)
        else:
            number = value if isinstance(value, int | float) else None
            if isinstance(value, bool) or number is None or not math.isfinite(number):
                raise HyperparameterError(f"{where}: expected a finite number, got {value!r}")
            low_ok = number > 0 if name != "ent_coef" else number >= 0
            if not low_ok or (name in _UNIT and number > 1):
                bound = "in (0, 1]" if name in _UNIT else "> 0"
                bound = ">= 0" if name == "ent_coef" else bound
                raise HyperparameterError(f"{where}: must be {bound}, got {value!r}")
            out[name] = float(number)
    return out


def hyperparameters(
    algo: str, n_envs: int, overrides: dict[str, Any] | None = None
) -> dict[str, Any]:
    """The keyword arguments for the SB3 algorithm: defaults, then checked overrides."""
    params = defaults(algo, n_envs)
    for name, value in check(algo, overrides).items():
        if name == "net_arch":
            params["policy_kwargs"] = {**params["policy_kwargs"], "net_arch": value}
        else:
            params[name] = value
    return params


def _count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1
