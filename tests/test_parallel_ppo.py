"""Parallel rollouts (`--vec-env parallel`): each shard's piece is what its envs did under the
policy, the learner sees the same callbacks and buffer as SB3's loop would fill, the same
seed gives the same weights, and a failure in a worker is raised here."""

from __future__ import annotations

from functools import partial

import gymnasium as gym
import numpy as np
import pytest
import torch
from sb3_contrib import MaskablePPO
from stable_baselines3 import PPO
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.vec_env import DummyVecEnv

from agents.rl.envs import REMEDIATION_ID
from agents.rl.parallel_ppo import ParallelMaskablePPO, ParallelPPO
from agents.rl.rollouts import PieceAsk, RolloutError
from agents.rl.sharded import ShardedVecEnv
from agents.rl.train import TrainConfig, TrainingError, make_env, train

# 12 decisions an episode, so a 16-step rollout crosses a time limit (bootstrapped values)
SHORT = {"episode_s": 120.0, "fault_start_s": [30.0, 60.0], "topologies": ["online-boutique"]}
SEED = 5


def _envs(cls, n_envs=4, **kwargs):
    return make_vec_env(
        partial(make_env, REMEDIATION_ID, **SHORT),
        n_envs=n_envs,
        seed=SEED,
        vec_env_cls=cls,
        vec_env_kwargs=kwargs,
    )


def _hyper(n_steps=16):
    return {"n_steps": n_steps, "batch_size": 32, "n_epochs": 1, "device": "cpu", "seed": SEED}


@pytest.mark.parametrize("masked", [False, True])
def test_each_piece_is_what_its_envs_did_under_the_policy(masked):
    """Replaying the recorded actions in fresh envs seeded alike gives the recorded
    observations, rewards (a time limit's plus gamma times the terminal value) and episode
    starts; the values and log-probabilities are the policy's for those observations."""
    cls = MaskablePPO if masked else PPO
    envs = _envs(ShardedVecEnv, n_shards=2, in_process=True)
    try:
        model = cls("MlpPolicy", envs, **_hyper())
        obs = envs.reset()
        starts = np.ones(envs.num_envs, dtype=bool)
        ask = PieceAsk(16, model.gamma, masked)
        piece = envs.collect_rollout(model.policy, SEED, obs, starts, ask)
    finally:
        envs.close()
    replay = _envs(DummyVecEnv)
    assert piece["obs"].shape == (16, 4, *replay.observation_space.shape)
    np.testing.assert_array_equal(piece["obs"][0], replay.reset())
    np.testing.assert_array_equal(piece["starts"][0], starts)
    truncated = 0
    for t in range(16):
        if masked:  # the masks each env gave at that step
            np.testing.assert_array_equal(
                piece["masks"][t], np.stack(replay.env_method("action_masks"))
            )
        new_obs, rewards, dones, infos = replay.step(piece["actions"][t].ravel())
        np.testing.assert_array_equal(piece["dones"][t], dones)
        np.testing.assert_array_equal(piece["rewards"][t], rewards)  # as callbacks see them
        for i, info in enumerate(infos):
            expected = rewards[i]  # the buffer's: a time limit's bootstrapped
            if dones[i] and info.get("TimeLimit.truncated"):
                truncated += 1
                with torch.no_grad():
                    terminal = model.policy.obs_to_tensor(info["terminal_observation"])[0]
                    expected += model.gamma * model.policy.predict_values(terminal)[0].item()
                assert piece["returns"][t, i] != rewards[i]
            assert piece["returns"][t, i] == pytest.approx(expected, rel=1e-5, abs=1e-6)
        if t + 1 < 16:
            np.testing.assert_array_equal(piece["obs"][t + 1], new_obs)
            np.testing.assert_array_equal(piece["starts"][t + 1], dones)
    assert truncated == 4  # every env reached its time limit once
    np.testing.assert_array_equal(piece["last_obs"], new_obs)
    flat_obs = torch.as_tensor(piece["obs"].reshape(64, -1))
    actions = torch.as_tensor(piece["actions"].reshape(64))
    kwargs = {"action_masks": piece["masks"].reshape(64, -1)} if masked else {}
    with torch.no_grad():
        values, log_probs, _ = model.policy.evaluate_actions(flat_obs, actions, **kwargs)
    np.testing.assert_allclose(piece["values"].reshape(64), values.numpy().ravel(), atol=1e-5)
    np.testing.assert_allclose(piece["log_probs"].reshape(64), log_probs.numpy(), atol=1e-5)


class _Record(BaseCallback):
    """Records the timesteps, done counts, rewards and action shapes at each step; stops
    after `stop_after` calls."""

    def __init__(self, stop_after: int | None = None) -> None:
        super().__init__()
        self.seen: list[tuple] = []
        self.running = np.zeros(0)
        self.episode_sums: list[tuple[float, float]] = []  # (callbacks' rewards, Monitor's)
        self.rollouts = 0
        self.stop_after = stop_after

    def _on_rollout_end(self) -> None:
        self.rollouts += 1

    def _on_step(self) -> bool:
        loc = self.locals
        dones = int(loc["dones"].sum())
        self.seen.append((self.num_timesteps, dones, loc["actions"].shape, loc["rewards"].dtype))
        self.running = self.running + loc["rewards"] if len(self.seen) > 1 else loc["rewards"]
        for i, info in enumerate(loc["infos"]):  # Monitor sums the envs' own rewards
            if "episode" in info:
                self.episode_sums.append((float(self.running[i]), info["episode"]["r"]))
                self.running[i] = 0.0
        return self.stop_after is None or len(self.seen) < self.stop_after


@pytest.mark.parametrize("algo", [ParallelPPO, ParallelMaskablePPO])
def test_learning_sees_the_same_callbacks_and_episodes_as_lock_step(algo):
    """Per vector step, as SB3's loop: the timestep count, the step's dones (the same
    episodes end: the envs are seeded alike and episodes last a fixed count of steps),
    episode statistics; a callback that stops learning stops it."""
    base = MaskablePPO if algo is ParallelMaskablePPO else PPO
    records, shown = {}, {}
    for cls, vec in ((base, DummyVecEnv), (algo, ShardedVecEnv)):
        envs = _envs(vec, **({"n_shards": 2} if vec is ShardedVecEnv else {}))
        try:
            model = cls("MlpPolicy", envs, **_hyper())
            record = _Record()
            model.learn(128, callback=record)
            records[cls] = (record.seen, record.rollouts, len(model.ep_info_buffer))
            shown[cls] = record.episode_sums
        finally:
            envs.close()
    assert records[base] == records[algo]
    # the rewards callbacks see are the envs' own (they add up to Monitor's episode returns),
    # never the buffer's, whose last step of an episode is bootstrapped
    for cls in (base, algo):
        assert len(shown[cls]) == 8
        for seen, monitor in shown[cls]:
            assert seen == pytest.approx(monitor, abs=1e-4)
    assert records[algo][1] == 2 and records[algo][2] == 8  # 2 rollouts, 8 episodes ended
    last_obs = []
    for stop_after in (None, 5):  # the same seed: the same first rollout
        envs = _envs(ShardedVecEnv, n_shards=2)
        try:
            model = algo("MlpPolicy", envs, **_hyper())
            record = _Record(stop_after=stop_after)
            model.learn(64, callback=record)
            last_obs.append(model._last_obs)
        finally:
            envs.close()
    assert model.num_timesteps == 5 * 4 and record.rollouts == 0
    # the envs ran the whole piece before the stop: the learner's last observation is where
    # they are, as after the whole rollout
    np.testing.assert_array_equal(last_obs[0], last_obs[1])


def _digest(config_kw, tmp_path, name):
    config = TrainConfig(
        env_id=REMEDIATION_ID,
        steps=64,
        out=tmp_path / name,
        n_envs=4,
        env_kwargs=SHORT,
        eval_episodes=0,
        progress_bar=False,
        hyperparams={"n_steps": 16, "batch_size": 32, "n_epochs": 2},
        **config_kw,
    )
    return train(config)["policy_sha256"]


def test_parallel_rollouts_train_the_same_weights_for_the_same_seed(tmp_path, monkeypatch):
    from agents.rl import hyperparams

    monkeypatch.setattr(hyperparams, "usable_cores", lambda: 2)  # a worker, on any machine
    one = _digest({"algo": "maskable-ppo", "vec_env": "parallel"}, tmp_path, "a")
    again = _digest({"algo": "maskable-ppo", "vec_env": "parallel"}, tmp_path, "b")
    other_seed = _digest({"algo": "maskable-ppo", "vec_env": "parallel", "seed": 1}, tmp_path, "c")
    assert one == again != other_seed


def test_without_workers_parallel_ppo_is_sb3_ppo():
    """Envs all in this process: SB3's own loop, so the very same weights."""
    weights = []
    for cls in (PPO, ParallelPPO):
        envs = _envs(DummyVecEnv)
        model = cls("MlpPolicy", envs, **_hyper())
        model.learn(64)
        weights.append(torch.cat([p.detach().ravel() for p in model.policy.parameters()]))
        envs.close()
    assert torch.equal(weights[0], weights[1])


class _NaNs(gym.Env):
    observation_space = gym.spaces.Box(-1.0, 1.0, (2,))
    action_space = gym.spaces.Discrete(2)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return np.zeros(2, np.float32), {}

    def step(self, action):
        self.t += 1
        value = np.nan if self.t == 3 else 0.0
        return np.full(2, value, np.float32), 0.0, False, False, {}


class _Finite(_NaNs):
    def step(self, action):
        return np.zeros(2, np.float32), 0.0, False, False, {}


def test_a_non_finite_step_in_a_worker_is_raised_here():
    envs = ShardedVecEnv([_Finite, _NaNs], n_shards=2, in_process=True)  # the worker's NaNs
    try:
        model = ParallelPPO("MlpPolicy", envs, n_steps=8, batch_size=16, device="cpu")
        with pytest.raises(RolloutError, match="non-finite observation"):
            model.learn(16)
    finally:
        envs.close()


def test_what_the_pieces_cannot_do_falls_back_or_is_refused():
    """Another wrapper than VecCheckNan (it would be bypassed): SB3's own loop, so the same
    weights as lock-step; masks asked of envs without them: SB3's error, by name."""
    from stable_baselines3.common.vec_env import VecCheckNan, VecNormalize

    from agents.rl.parallel_ppo import _workers_of

    envs = _envs(ShardedVecEnv, n_shards=2)
    try:
        assert _workers_of(VecCheckNan(envs)) is envs
        assert _workers_of(VecNormalize(envs)) is None
        assert _workers_of(VecCheckNan(VecNormalize(envs))) is None
    finally:
        envs.close()
    plain = ShardedVecEnv([_Finite, _Finite], n_shards=2)
    try:
        model = ParallelMaskablePPO("MlpPolicy", plain, n_steps=8, batch_size=16, device="cpu")
        with pytest.raises(ValueError, match="does not support action masking"):
            model.learn(16)
    finally:
        plain.close()


def test_parallel_is_for_ppo_and_the_default_on_several_cores(monkeypatch, tmp_path):
    from agents.rl import hyperparams

    monkeypatch.setattr(hyperparams, "usable_cores", lambda: 2)
    with pytest.raises(TrainingError, match="--vec-env: parallel collects PPO's rollouts"):
        TrainConfig("dqn", REMEDIATION_ID, 64, tmp_path, vec_env="parallel")
    assert TrainConfig("ppo", REMEDIATION_ID, 64, tmp_path).vec_env_used == "parallel"
    assert TrainConfig("maskable-ppo", REMEDIATION_ID, 64, tmp_path).vec_env_used == "parallel"
