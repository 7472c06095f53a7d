"""`ShardedVecEnv` is a throughput setting only: it steps, resets and answers exactly as
`DummyVecEnv` over the same env functions, and fails loudly, naming what failed."""

from __future__ import annotations

from functools import partial

import gymnasium as gym
import numpy as np
import pytest
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.monitor import Monitor
from stable_baselines3.common.vec_env import DummyVecEnv

from agents.rl.envs import REMEDIATION_ID
from agents.rl.sharded import ShardedVecEnv
from agents.rl.train import make_env

SHORT = {"episode_s": 120.0, "fault_start_s": [30.0, 60.0], "topologies": ["online-boutique"]}


def _envs(cls, n_envs=5, **kwargs):
    return make_vec_env(
        partial(make_env, REMEDIATION_ID, **SHORT),
        n_envs=n_envs,
        seed=11,
        vec_env_cls=cls,
        vec_env_kwargs=kwargs,
    )


def _same_infos(a: list[dict], b: list[dict]) -> None:
    assert [sorted(x) for x in a] == [sorted(x) for x in b]
    for x, y in zip(a, b, strict=True):
        for key in x:
            if key == "episode":  # Monitor's return and length; its "t" is wall time
                assert (x[key]["r"], x[key]["l"]) == (y[key]["r"], y[key]["l"])
            elif isinstance(x[key], np.ndarray):
                np.testing.assert_array_equal(x[key], y[key])
            else:
                assert x[key] == y[key], key


@pytest.mark.parametrize("in_process", [True, False])
def test_shards_step_reset_and_answer_as_one_process_does(in_process):
    one, sharded = _envs(DummyVecEnv), _envs(ShardedVecEnv, n_shards=2, in_process=in_process)
    try:
        assert sharded.num_envs == 5 and sharded.observation_space == one.observation_space
        np.testing.assert_array_equal(one.reset(), sharded.reset())
        rng = np.random.default_rng(0)
        dones = 0
        for _ in range(30):  # 12 decisions an episode: every env resets twice or more
            masks = np.stack(one.env_method("action_masks"))
            np.testing.assert_array_equal(masks, np.stack(sharded.env_method("action_masks")))
            actions = np.array([rng.choice(np.flatnonzero(m)) for m in masks])
            a, b = one.step(actions), sharded.step(actions)
            for x, y in zip(a[:3], b[:3], strict=True):
                np.testing.assert_array_equal(x, y)
            _same_infos(a[3], b[3])
            dones += int(a[2].sum())
        assert dones >= 10
        _same_infos(one.reset_infos, sharded.reset_infos)
        picked = [4, 0, 2]  # across both shards, out of order
        assert one.get_attr("decision_s", picked) == sharded.get_attr("decision_s", picked)
        sharded.set_attr("decision_s", 20.0, [1, 3])
        assert sharded.get_attr("decision_s") == [10.0, 20.0, 10.0, 20.0, 10.0]
        assert sharded.env_is_wrapped(Monitor) == [True] * 5
        sharded.seed(3)
        one.seed(3)
        np.testing.assert_array_equal(one.reset(), sharded.reset())
    finally:
        one.close()
        sharded.close()


def test_a_bad_shard_count_is_refused():
    with pytest.raises(ValueError, match=r"n_shards: must be an integer in \[1, 5\], got 6"):
        _envs(ShardedVecEnv, n_shards=6)


class _Breaks(gym.Env):
    observation_space = gym.spaces.Box(0.0, 1.0, (1,))
    action_space = gym.spaces.Discrete(2)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        return np.zeros(1, np.float32), {}

    def step(self, action):
        raise ValueError(f"step {action}: the twin refused")


def _dies():
    raise SystemExit(3)


def test_an_env_error_in_a_worker_is_raised_here_and_a_dead_worker_is_named():
    for in_process in (True, False):
        envs = ShardedVecEnv([_Breaks, _Breaks], n_shards=2, in_process=in_process)
        try:
            envs.reset()
            with pytest.raises(ValueError, match="step 1: the twin refused"):
                envs.step(np.array([1, 1]))
            np.testing.assert_array_equal(envs.reset(), np.zeros((2, 1)))  # still answers
        finally:
            envs.close()
    with pytest.raises(RuntimeError, match=r"shard 1: its worker process ended \(exit code 3\)"):
        ShardedVecEnv([_Breaks, _dies], n_shards=2)  # shard 0 steps in this process


class _Counts(_Breaks):
    """Counts its steps; answers with a generator when asked (which cannot be pickled)."""

    def reset(self, *, seed=None, options=None):
        self.steps = 0
        return super().reset(seed=seed, options=options)

    def step(self, action):
        self.steps += 1
        return np.zeros(1, np.float32), 0.0, False, False, {}

    def lazy(self):
        return (i for i in range(3))


@pytest.mark.parametrize("in_process", [True, False])
def test_indices_are_read_as_a_list_would_and_the_pipes_stay_in_step(in_process):
    envs = ShardedVecEnv([_Counts] * 4, n_shards=2, in_process=in_process)
    try:
        envs.reset()
        assert envs.get_attr("steps", -1) == [0]
        with pytest.raises(IndexError, match="env index 4 is out of range for 4 envs"):
            envs.get_attr("steps", [4])
        envs.step_async(np.ones(4, int))
        envs.reset()  # cancels the step not waited for; every later answer is its own
        assert envs.get_attr("steps") == [0, 0, 0, 0]
        with pytest.raises(Exception, match="generator"):
            envs.env_method("lazy", indices=[3])  # env 3 steps in a worker either way
        envs.step(np.ones(4, int))
        assert envs.get_attr("steps", [3, 0]) == [1, 1]
    finally:
        envs.close()


class _Draws(_Counts):
    """Renders an `rgb_array` frame that shows how many steps it took."""

    metadata = {"render_modes": ["rgb_array"]}  # noqa: RUF012 - gymnasium's class attribute

    def __init__(self, render_mode="rgb_array"):
        self.render_mode = render_mode

    def render(self):
        return np.full((2, 3, 3), self.steps, dtype=np.uint8)


@pytest.mark.parametrize("in_process", [True, False])
def test_frames_come_back_in_env_order_as_one_process_renders_them(in_process):
    fns = [_Draws] * 3
    envs = ShardedVecEnv(fns, n_shards=2, in_process=in_process)
    alone = DummyVecEnv(fns)
    try:
        for vec in (envs, alone):
            vec.reset()
            vec.step(np.zeros(3, dtype=int))
            vec.env_method("step", 0, indices=[2])  # the last env is a step ahead
        frames = envs.get_images()
        expected = alone.get_images()
        assert [f.tolist() for f in frames] == [f.tolist() for f in expected]
        assert [int(f[0, 0, 0]) for f in frames] == [1, 1, 2]
        np.testing.assert_array_equal(envs.render(), alone.render())  # the tiled picture
    finally:
        envs.close()
        alone.close()


@pytest.mark.parametrize("in_process", [True, False])
def test_workers_report_the_cpu_seconds_they_used(in_process):
    envs = _envs(ShardedVecEnv, n_envs=4, n_shards=2, in_process=in_process)
    try:
        assert envs.n_workers == (1 if in_process else 2)
        envs.reset()
        before = envs.worker_cpu_seconds()
        for _ in range(20):
            envs.step(np.zeros(4, dtype=int))
        assert envs.worker_cpu_seconds() > before > 0.0
    finally:
        envs.close()
