"""One shard's piece of a PPO rollout, collected where its envs live with its own copy of the
policy (`agents.rl.parallel_ppo` merges the pieces).

The loop is stable-baselines3's `collect_rollouts` for one slice of the envs, step for step:
the policy picks every env's action (masked where asked: `action_masks()`, as MaskablePPO
asks), the envs step, a time limit's last reward is bootstrapped with the value of the
terminal observation, and each step's observation, action, reward, episode start, value,
log-probability (and mask) are kept. What the learner does per step in SB3 (callbacks, the
episode statistics, the buffer) it does afterwards, from the piece's `infos` and `dones`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

# rewards: as the envs gave them (what callbacks see); returns: with a time limit's
# bootstrap added (what the buffer stores, as SB3's loop adds it)
PIECE_FIELDS = ("obs", "actions", "rewards", "returns", "starts", "values", "log_probs", "dones")


class RolloutError(ValueError):
    """A step of a piece returned a non-finite observation or reward (as `VecCheckNan`
    would refuse it)."""


def build_policy(spec: tuple[type, dict[str, Any]], seed: int):
    """A worker's copy of the learner's policy from (class, constructor parameters), as SB3
    rebuilds a saved policy; its sampling draws from this process's torch stream, seeded
    here. One torch thread and no per-call distribution checks, as the learner runs."""
    import torch
    from torch.distributions import Distribution

    torch.set_num_threads(1)
    Distribution.set_default_validate_args(False)
    torch.manual_seed(seed)
    policy_class, params = spec
    policy = policy_class(**params)
    policy.set_training_mode(False)
    return policy


def weights_of(policy) -> dict[str, np.ndarray]:
    """The policy's parameters as numpy copies (pickled by value across the pipe: torch's own
    reductions would share memory the learner then changes in place)."""
    state = policy.state_dict()
    return {name: value.detach().cpu().numpy().copy() for name, value in state.items()}


def load_weights(policy, weights: dict[str, np.ndarray]) -> None:
    import torch

    policy.load_state_dict({name: torch.from_numpy(value) for name, value in weights.items()})


@dataclass(frozen=True)
class PieceAsk:
    """What every shard is asked for: `n_steps` steps, bootstrapping time limits with
    `gamma`, asking the envs for action masks when `masked`."""

    n_steps: int
    gamma: float
    masked: bool


def collect_piece(
    envs, policy, last_obs: np.ndarray, last_starts: np.ndarray, ask: PieceAsk
) -> dict[str, Any]:
    """`ask.n_steps` steps of `envs` (a VecEnv over this shard's slice) under `policy`,
    from `last_obs` (and whether each env's episode had just started): arrays shaped
    (n_steps, n_envs, ...) (actions as the policy gave them), each step's infos, and where
    the envs end (`last_obs`, `last_starts`)."""
    import torch
    from stable_baselines3.common.utils import obs_as_tensor

    n_steps, gamma, masked = ask.n_steps, ask.gamma, ask.masked
    policy.set_training_mode(False)
    n = envs.num_envs
    keep: dict[str, list[Any]] = {name: [] for name in PIECE_FIELDS}
    keep["masks"], keep["infos"] = [], []
    obs, starts = last_obs, last_starts
    for _ in range(n_steps):
        masks = None
        with torch.no_grad():
            obs_tensor = obs_as_tensor(obs, policy.device)
            if masked:
                masks = np.stack(envs.env_method("action_masks"))
                actions, values, log_probs = policy(obs_tensor, action_masks=masks)
            else:
                actions, values, log_probs = policy(obs_tensor)
        actions = actions.cpu().numpy()
        new_obs, rewards, dones, infos = envs.step(actions)
        _check_finite(new_obs, rewards)
        keep["rewards"].append(rewards.copy())
        for idx, done in enumerate(dones):  # a time limit is not a terminal state
            terminal = infos[idx].get("terminal_observation")
            if done and terminal is not None and infos[idx].get("TimeLimit.truncated", False):
                with torch.no_grad():
                    value = policy.predict_values(policy.obs_to_tensor(terminal)[0])[0]
                rewards[idx] += gamma * value
        keep["obs"].append(obs)
        keep["actions"].append(actions)
        keep["returns"].append(rewards)
        keep["starts"].append(starts)
        keep["values"].append(values.cpu().numpy().reshape(n))
        keep["log_probs"].append(log_probs.cpu().numpy().reshape(n))
        keep["dones"].append(dones)
        keep["masks"].append(masks)
        keep["infos"].append(infos)
        obs, starts = new_obs, dones
    piece: dict[str, Any] = {name: np.stack(keep[name]) for name in PIECE_FIELDS}
    piece["masks"] = np.stack(keep["masks"]) if masked else None
    piece["infos"] = keep["infos"]
    piece["last_obs"], piece["last_starts"] = obs, starts
    return piece


def _check_finite(obs: np.ndarray, rewards: np.ndarray) -> None:
    """What `VecCheckNan` checks after a step, here where the envs step."""
    for name, value in (("observation", obs), ("reward", rewards)):
        if not np.all(np.isfinite(value)):
            raise RolloutError(f"a rollout step returned a non-finite {name}: {value!r}")


def merge_pieces(pieces: list[dict[str, Any]]) -> dict[str, Any]:
    """The shards' pieces as one rollout in env order (the envs' axis is the second)."""
    merged: dict[str, Any] = {
        name: np.concatenate([p[name] for p in pieces], axis=1) for name in PIECE_FIELDS
    }
    masked = pieces[0]["masks"] is not None
    merged["masks"] = np.concatenate([p["masks"] for p in pieces], axis=1) if masked else None
    steps = len(pieces[0]["infos"])
    merged["infos"] = [[info for p in pieces for info in p["infos"][t]] for t in range(steps)]
    merged["last_obs"] = np.concatenate([p["last_obs"] for p in pieces])
    merged["last_starts"] = np.concatenate([p["last_starts"] for p in pieces])
    return merged
