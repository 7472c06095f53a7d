"""The gymnasium environments: registration, the env checkers, spaces, determinism, masks
from the guardrails, a reward that does not pay for shedding, the topology-agnostic layout."""

from __future__ import annotations

import warnings

import gymnasium as gym
import numpy as np
import pytest

import agents.rl
from agents.rl.envs import AUTOSCALE_ID, REMEDIATION_ID, make_autoscale, make_remediation
from agents.rl.policies import RunbookPolicy
from agents.safety.guardrails import Guardrails
from twin.envs import EnvConfigError, ObservationLayout, RemediationEnv, window_mttr
from twin.envs.remediation import GLOBAL_ACTIONS

# Warnings the checkers may raise that are not defects of these envs. Empty today: both envs
# pass gymnasium's and stable-baselines3's checkers silently. Add (pattern, why) pairs here.
ALLOWED_WARNINGS: tuple[tuple[str, str], ...] = ()

SHORT = {"episode_s": 300.0, "fault_start_s": (60.0, 90.0)}


def _short_remediation(**kw) -> RemediationEnv:
    return make_remediation(**{**SHORT, **kw})


def _short_autoscale(**kw):
    return make_autoscale(**{"episode_s": 1800.0, **kw})


def _rollout(env, seed: int, steps: int, masked: bool = True):
    """(observations, rewards) of a seeded random (masked) policy."""
    rng = np.random.default_rng(seed)
    obs, _ = env.reset(seed=seed)
    observations, rewards = [obs], []
    for _ in range(steps):
        if isinstance(env.action_space, gym.spaces.Discrete):
            allowed = (
                np.flatnonzero(env.action_masks()) if masked else np.arange(env.action_space.n)
            )
            action = int(rng.choice(allowed))
        else:
            action = rng.integers(0, 3, size=env.action_space.shape)
        obs, reward, terminated, truncated, _ = env.step(action)
        observations.append(obs)
        rewards.append(reward)
        if terminated or truncated:
            obs, _ = env.reset()
            observations.append(obs)
    return np.array(observations), np.array(rewards)


def test_ids_are_registered_and_make_works():
    assert REMEDIATION_ID in gym.registry and AUTOSCALE_ID in gym.registry
    for env_id in agents.rl.ENV_IDS:
        env = gym.make(env_id)
        obs, _ = env.reset(seed=0)
        assert env.observation_space.contains(obs)
        env.close()
    # the module:id form imports the registering package itself
    env = gym.make("agents.rl:firebreak/Remediation-v0", topologies=["online-boutique"])
    assert env.unwrapped.settings["topologies"] == ["online-boutique"]


@pytest.mark.parametrize("env_id", [REMEDIATION_ID, AUTOSCALE_ID])
def test_env_checkers_pass_without_warnings(env_id):
    from gymnasium.utils.env_checker import check_env
    from stable_baselines3.common.env_checker import check_env as sb3_check_env

    env = gym.make(env_id).unwrapped
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        check_env(env)
        sb3_check_env(env, warn=True)
    unexpected = [
        str(w.message)
        for w in caught
        if not any(pattern in str(w.message) for pattern, _ in ALLOWED_WARNINGS)
    ]
    assert unexpected == []


@pytest.mark.parametrize(
    "make",
    [
        lambda: _short_remediation(),
        lambda: _short_remediation(observation="services", topologies=("online-boutique",)),
        lambda: _short_autoscale(),
    ],
    ids=["remediation-ranked", "remediation-services", "autoscale"],
)
def test_observations_stay_inside_the_space(make):
    env = make()
    for seed in (1, 2):
        observations, rewards = _rollout(env, seed, 70)
        assert observations.dtype == np.float32
        assert all(env.observation_space.contains(o) for o in observations)
        assert np.isfinite(rewards).all()
        # every term is a cost but the one-off payment for the first right remedy
        bonus = getattr(getattr(env.unwrapped, "weights", None), "right_remedy", 0.0)
        episodes = 1 + 70 // 30  # SHORT episodes are 30 decisions (autoscale's are longer)
        assert (rewards <= bonus).all() and (rewards > 0).sum() <= episodes


@pytest.mark.parametrize("make", [_short_remediation, _short_autoscale])
def test_same_seed_same_rollout_and_another_seed_differs(make):
    a_obs, a_rew = _rollout(make(), 7, 40)
    b_obs, b_rew = _rollout(make(), 7, 40)
    np.testing.assert_array_equal(a_obs, b_obs)
    np.testing.assert_array_equal(a_rew, b_rew)
    c_obs, _ = _rollout(make(), 8, 40)
    assert not np.array_equal(a_obs, c_obs)


def test_masks_hide_exactly_what_the_guardrails_refuse():
    env = _short_remediation()
    env.reset(seed=3)
    rng = np.random.default_rng(3)
    checked = 0
    for _ in range(25):
        mask = env.action_masks()
        shadow = Guardrails(env.gate.config)
        shadow._history = env.gate.guardrails._history.copy()  # the same windows
        for index in range(1, env.action_space.n):
            action, _ = env.build(index)
            if action is None:
                assert not mask[index]
                continue
            checked += 1
            assert mask[index] == shadow.check(action, env.view).allowed
        env.step(int(rng.choice(np.flatnonzero(mask))))
    assert checked > 0


def test_no_unsafe_action_executes_with_masks_and_refusals_are_not_applied():
    masked = _short_remediation()
    _rollout(masked, 5, 90, masked=True)
    assert masked.stats["refused"] == 0
    unmasked = _short_remediation()
    refused = applied = 0
    for seed in (5, 6):
        unmasked.reset(seed=seed)
        rng = np.random.default_rng(seed)
        truncated = False
        while not truncated:
            index = int(rng.integers(unmasked.action_space.n))
            action, _ = unmasked.build(index)
            verdict = None
            if action is not None:
                verdict = unmasked.gate.guardrails.check(action, unmasked.view).allowed
            before = len(unmasked.sim.action_log)
            _, _, _, truncated, info = unmasked.step(index)
            refused += info["refused"]
            assert info["refused"] == (verdict is False)
            if verdict is False:  # nothing of a refused action reached the twin
                assert all(a.kind == "stop_fault" for _, a in unmasked.sim.action_log[before:])
            applied += info["applied"] is not None
    assert refused > 0 and applied > 0


def _episode_return(env, seed: int, choose) -> float:
    env.reset(seed=seed)
    total, truncated = 0.0, False
    while not truncated:
        _obs, reward, _, truncated, _ = env.step(choose(env))
        total += reward
    return total


def test_shedding_everything_scores_worse_than_doing_nothing():
    env = _short_remediation(topologies=("online-boutique",))
    shed = GLOBAL_ACTIONS.index("shed")

    def shed_everything(e) -> int:
        return shed if e.action_masks()[shed] else 0

    seeds = range(20, 26)
    noop = [_episode_return(env, s, lambda e: 0) for s in seeds]
    shedding = [_episode_return(env, s, shed_everything) for s in seeds]
    assert all(s < n for s, n in zip(shedding, noop, strict=True))
    # shed requests count as failed: the SLO part of the cost is what grows
    env.reset(seed=20)
    env.step(shed)
    for _ in range(3):
        _, _, _, _, info = env.step(0)
    assert info["bad_share"] >= 0.25


def test_ranked_layout_runs_a_policy_on_a_topology_it_never_saw():
    from stable_baselines3 import PPO

    trained_on = _short_remediation()
    policy = PPO("MlpPolicy", trained_on, n_steps=64, batch_size=32, seed=0, device="cpu")
    unseen = _short_remediation(topologies=("train-ticket",))
    assert unseen.observation_space == trained_on.observation_space
    assert unseen.action_space == trained_on.action_space
    obs, _ = unseen.reset(seed=0)
    assert len(unseen.statics.names) > 20
    for _ in range(20):
        action, _ = policy.predict(obs, deterministic=True)
        obs, _, _, _truncated, _ = unseen.step(action)
        assert unseen.observation_space.contains(obs)
    layout = ObservationLayout("ranked", 5, None)
    runbook = RunbookPolicy(layout, unseen.decision_s)
    action, _ = runbook.predict(obs, action_masks=unseen.action_masks())
    assert 0 <= int(action) < unseen.action_space.n


def test_services_layout_is_tied_to_its_topology():
    with pytest.raises(EnvConfigError, match="exactly one topology"):
        make_remediation(observation="services")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"topologies": ("nope",)}, "unknown topology 'nope'"),
        ({"decision_s": 3.0}, "decision_s: must be a positive multiple of the tick"),
        ({"observation": "pixels"}, "observation: unknown layout 'pixels'"),
        ({"fault_kinds": ("meteor",)}, "fault_kinds: unknown fault kind 'meteor'"),
        ({"shed_share": 0.0}, "shed_share: must be in"),
        ({"episode_s": 30.0}, "fault_start_s"),
    ],
)
def test_config_errors_name_the_setting(kwargs, message):
    with pytest.raises(EnvConfigError, match=message):
        RemediationEnv(**kwargs)


def test_window_mttr_follows_the_rehearsal_rule():
    good = np.array([True, True, False, False, True, True, True, True, True, True])
    mttr, censored = window_mttr(good, 60.0, start=130.0, end=600.0)
    assert mttr == 4 * 60.0 - 130.0 and not censored
    mttr, censored = window_mttr(np.array([True, False, False, True]), 60.0, 60.0, 240.0)
    assert censored and mttr == 4 * 60.0 - 60.0
    assert window_mttr(np.ones(8, bool), 60.0, 60.0, 300.0) == (None, False)


def test_episode_summary_reports_mttr_and_costs():
    env = _short_remediation(topologies=("online-boutique",))
    env.reset(seed=11)
    truncated = False
    while not truncated:
        _, _, _, truncated, info = env.step(0)
    summary = info["firebreak"]
    assert summary["topology"] == "online-boutique"
    assert summary["actions"] == 0 and summary["refused"] == 0
    assert summary["slo_violating_min"] >= 0
    with pytest.raises(RuntimeError, match="call reset"):
        env.step(0)


def test_autoscale_costs_replicas_and_masks_bounds():
    env = _short_autoscale()
    env.reset(seed=4)
    mask = env.action_masks().reshape(-1, 3)
    assert mask.shape == (env.n_services, 3) and mask[:, 1].all()
    hold = np.ones(env.n_services, np.int64)
    out = np.full(env.n_services, 2, np.int64)
    _, r_hold, *_ = env.step(hold)
    for _ in range(3):
        env.step(out)
    _, r_out, *_ = env.step(hold)
    assert r_out < r_hold  # more replicas, more replica-hours, no SLO to win at rest


def test_a_twin_failure_ends_the_episode_with_a_reproducer(monkeypatch, caplog):
    env = _short_remediation(topologies=("online-boutique",))
    env.reset(seed=2)
    env.step(0)

    def broken(until: float) -> None:
        raise ZeroDivisionError("division by zero")

    monkeypatch.setattr(env.sim, "advance", broken)
    obs, reward, terminated, truncated, info = env.step(0)
    assert truncated and not terminated and env.observation_space.contains(obs)
    remaining = env.distribution.episode_s / env.decision_s - 2
    assert reward <= -remaining * env.decision_s / 60.0  # never cheaper than going on
    failure = info["firebreak"]["twin_failure"]
    assert "ZeroDivisionError" in failure["error"] and failure["topology"] == "online-boutique"
    assert "twin failure" in caplog.text
    obs, _ = env.reset(seed=3)
    assert env.observation_space.contains(obs)


def test_episodes_share_their_topologys_compiled_arrays_and_run_as_if_compiled_anew():
    from twin.flow.engine import Simulation

    env = make_remediation(topologies=["online-boutique"], episode_s=120.0, fault_start_s=(30, 60))
    env.reset(seed=4)
    first = env.sim.topo
    rewards = [env.step(0)[1] for _ in range(5)]
    env.reset(seed=4)
    assert env.sim.topo is first  # the second episode did not compile the topology again
    assert not first.base_services.flags.writeable  # shared, so nobody may write to it
    assert [env.step(0)[1] for _ in range(5)] == rewards
    fresh = Simulation(env.scenario)  # compiled from the scenario alone
    np.testing.assert_array_equal(fresh.topo.base_services, first.base_services)
    np.testing.assert_array_equal(fresh.topo.order, first.order)


def test_a_compiled_topology_of_another_topology_or_tick_is_refused():
    from twin.envs.distribution import topology
    from twin.flow.compiled import compile_topology
    from twin.flow.inputs import prepare_inputs

    env = make_remediation(topologies=["online-boutique"])
    env.reset(seed=1)
    other = env.scenario.model_copy(update={"topology": topology("sock-shop")})
    with pytest.raises(ValueError, match="compiled for other services than the scenario's"):
        prepare_inputs(env.scenario, compile_topology(other))
    coarser = env.scenario.model_copy(update={"tick": 2.0 * env.scenario.tick})
    with pytest.raises(ValueError, match="compiled for other tick than the scenario's"):
        prepare_inputs(env.scenario, compile_topology(coarser))
    shared = compile_topology(env.scenario)
    prepare_inputs(env.scenario, shared)
    assert not any(array.flags.writeable for array in shared.arrays())


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_gymnasiums_vector_api_steps_the_envs_as_single_envs(mode):
    short = {"episode_s": 120.0, "fault_start_s": (30.0, 60.0), "topologies": ["sock-shop"]}
    vec = gym.make_vec(REMEDIATION_ID, num_envs=2, vectorization_mode=mode, **short)
    singles = [gym.make(REMEDIATION_ID, **short) for _ in range(2)]
    try:
        obs, _ = vec.reset(seed=21)  # env i is seeded 21 + i
        for i, env in enumerate(singles):
            np.testing.assert_array_equal(obs[i], env.reset(seed=21 + i)[0])
        masks = vec.call("action_masks")
        for i, env in enumerate(singles):
            np.testing.assert_array_equal(masks[i], env.unwrapped.action_masks())
        for action in (0, 3, 1):
            obs, rewards, *_ = vec.step(np.array([action, action]))
            for i, env in enumerate(singles):
                single_obs, single_reward, *_ = env.step(action)
                np.testing.assert_array_equal(obs[i], single_obs)
                assert rewards[i] == single_reward
    finally:
        vec.close()
        for env in singles:
            env.close()
