"""PPO and maskable PPO whose rollouts are collected by the shards of a `ShardedVecEnv` in
parallel, each with its own copy of the policy, instead of in lock-step.

Why: in SB3's lock-step collection, every step the workers wait while the learner's policy
picks all actions, and the learner waits for the slowest shard (resets, and topologies
whose steps cost three times others'). Here each shard steps its slice of the envs through
the whole rollout on its own (`ShardedVecEnv.collect_rollout`); the learner only waits once
a rollout, for the slowest shard's total.

What stays as in SB3: on-policy (every copy holds the weights of the update before), the
buffer's contents and layout, value bootstrap at time limits, the last value and GAE, and
callbacks called once per vector step with that step's `infos` and `dones` (after the
rollout's collection, before the update, so the policy they see is the one that
collected). What differs: each shard runs its policy on its own slice and samples from its
own random stream (a float matmul's result depends on the batch it is in), so the weights
differ from lock-step training's for the same seed; the same seed and shard count always
give the same weights (tested). Envs not sharded over workers collect as SB3 does.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from gymnasium import spaces
from sb3_contrib import MaskablePPO
from stable_baselines3 import PPO
from stable_baselines3.common.utils import obs_as_tensor

from agents.rl.rollouts import PieceAsk


def _workers_of(env) -> Any:
    """The `ShardedVecEnv` under `env` when it has worker processes and no wrapper between
    them but `VecCheckNan` (whose checks the pieces repeat where the envs step; another
    wrapper, such as VecNormalize, would be bypassed), else None."""
    from stable_baselines3.common.vec_env import VecCheckNan, VecEnvWrapper

    from agents.rl.sharded import ShardedVecEnv

    while isinstance(env, VecEnvWrapper):
        if not isinstance(env, VecCheckNan):
            return None
        env = env.venv
    return env if isinstance(env, ShardedVecEnv) and env.n_workers else None


def _refuse_unsupported(model, masked: bool, env) -> None:
    """What SB3's loop handles and the pieces do not: refused by name, not run wrongly."""
    if not isinstance(model.action_space, spaces.Discrete | spaces.MultiDiscrete):
        raise ValueError(
            f"parallel rollouts: need a discrete action space, got {model.action_space}"
        )
    if model.use_sde:
        raise ValueError("parallel rollouts: state-dependent exploration (use_sde) is unsupported")
    if masked:
        from sb3_contrib.common.maskable.utils import is_masking_supported

        if not is_masking_supported(env):
            raise ValueError(
                "Environment does not support action masking. Consider using ActionMasker wrapper"
            )


def _stream_seed(model) -> int:
    """The seed the workers' sampling streams derive from: the model's, or fresh entropy
    for an unseeded model (which is not meant to repeat)."""
    if model.seed is not None:
        return int(model.seed)
    return int(np.random.SeedSequence().entropy % 2**32)


def _collect_in_parallel(model, env, callback, rollout_buffer, n_rollout_steps, masked) -> bool:
    """`collect_rollouts` with the shards collecting at once (see the module docstring)."""
    sharded = _workers_of(env)
    _refuse_unsupported(model, masked, env)
    model.policy.set_training_mode(False)
    rollout_buffer.reset()
    callback.on_rollout_start()
    piece = sharded.collect_rollout(
        model.policy,
        _stream_seed(model),
        model._last_obs,
        np.asarray(model._last_episode_starts, dtype=bool),
        PieceAsk(n_rollout_steps, float(model.gamma), masked),
    )
    # where the envs now are, even if a callback stops learning part way through the piece
    model._last_obs = piece["last_obs"]
    model._last_episode_starts = piece["last_starts"]
    for t in range(n_rollout_steps):
        model.num_timesteps += env.num_envs
        infos, dones = piece["infos"][t], piece["dones"][t]
        new_obs = piece["obs"][t + 1] if t + 1 < n_rollout_steps else piece["last_obs"]
        callback.update_locals(
            {
                "n_steps": t,
                "infos": infos,
                "dones": dones,
                "new_obs": new_obs,
                "rewards": piece["rewards"][t],  # as the envs gave them, as SB3 shows them
                "actions": piece["actions"][t],
                "values": piece["values"][t],
                "log_probs": piece["log_probs"][t],
            }
        )
        if not callback.on_step():
            return False
        model._update_info_buffer(infos, dones)
        extra = {"action_masks": piece["masks"][t]} if masked else {}
        actions = piece["actions"][t]
        if isinstance(model.action_space, spaces.Discrete):
            actions = actions.reshape(-1, 1)  # as SB3's loop reshapes them
        rollout_buffer.add(
            piece["obs"][t],
            actions,
            piece["returns"][t],
            piece["starts"][t],
            torch.from_numpy(piece["values"][t]),
            torch.from_numpy(piece["log_probs"][t]),
            **extra,
        )
    with torch.no_grad():
        values = model.policy.predict_values(obs_as_tensor(model._last_obs, model.device))
    rollout_buffer.compute_returns_and_advantage(last_values=values, dones=piece["last_starts"])
    callback.update_locals({"values": values, "dones": piece["last_starts"]})
    callback.on_rollout_end()
    return True


class ParallelPPO(PPO):
    """PPO collecting each rollout in parallel over a sharded VecEnv's workers."""

    def collect_rollouts(self, env, callback, rollout_buffer, n_rollout_steps) -> bool:
        if _workers_of(env) is None:
            return super().collect_rollouts(env, callback, rollout_buffer, n_rollout_steps)
        return _collect_in_parallel(self, env, callback, rollout_buffer, n_rollout_steps, False)


class ParallelMaskablePPO(MaskablePPO):
    """Maskable PPO collecting each rollout in parallel (each shard asks its own envs for
    their masks)."""

    def collect_rollouts(
        self, env, callback, rollout_buffer, n_rollout_steps, use_masking: bool = True
    ) -> bool:
        if _workers_of(env) is None:
            return super().collect_rollouts(
                env, callback, rollout_buffer, n_rollout_steps, use_masking
            )
        return _collect_in_parallel(
            self, env, callback, rollout_buffer, n_rollout_steps, use_masking
        )
