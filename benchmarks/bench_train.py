"""`python -m benchmarks.bench_train`: end-to-end training steps/s for PPO and maskable PPO
beside the environment's raw steps/s, all measured in one run.

Training is timed as `firebreak train` runs it (`agents.rl.train.make_envs`/`make_model`,
no evaluation or checkpoints), after one warm-up rollout, as a ratio against a baseline
configuration measured in the same run: the settings `firebreak train` used before its
throughput defaults (`BASELINE`). Each repeat measures every case back to back, and a
case's ratio is the median of its per-repeat ratios, so load from other processes on a
shared machine moves both sides of a ratio alike. The raw env rows step one
`firebreak/Remediation-v0` (and the training's VecEnv) with seeded random actions, resets
included, so "train/env" is what the learner adds on top of simulating.

Targets (issue T18): >= 5,000 end-to-end PPO steps/s on two cores. `--long` trains for
longer, repeats more and evaluates each trained policy on held-out seeds (mean return), the
check that a faster configuration did not learn worse.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from contextlib import ExitStack
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from agents.rl.envs import REMEDIATION_ID
from agents.rl.train import (
    SHARDED,
    TrainConfig,
    fast_distributions,
    frozen_heap,
    make_env,
    make_envs,
    make_model,
)

TARGET_PPO_STEPS_PER_S = 5000.0
# what `firebreak train` ran with before T18: 4 in-process envs, torch's distribution checks
# on, the garbage collector walking the whole heap (`fast` False: neither of `train`'s two
# learning contexts, `fast_distributions` and `frozen_heap`)
BASELINE: dict[str, Any] = {"n_envs": 4, "vec_env": "dummy", "threads": 1, "fast": False}
DEFAULTS: dict[str, Any] = {"fast": True}  # TrainConfig's own defaults otherwise
# the defaults with every env in this process (`--vec-env dummy`; the default on one core)
IN_PROCESS: dict[str, Any] = {**DEFAULTS, "vec_env": "dummy"}
# the defaults with the shards stepped in lock-step by SB3's own rollout loop (`--vec-env
# shards`, the default before parallel rollouts: the same weights as in process)
LOCK_STEP: dict[str, Any] = {**DEFAULTS, "vec_env": "shards"}
ALGOS = ("ppo", "maskable-ppo")


def env_rate(
    steps: int, seed: int, masks: bool, env_kwargs: dict | None = None
) -> dict[str, float]:
    """Raw steps per wall and per CPU second of one env under seeded random actions
    (valid ones when `masks`)."""
    env = make_env(REMEDIATION_ID, **dict(env_kwargs or {}))
    rng = np.random.default_rng(seed)
    env.reset(seed=seed)
    n = env.action_space.n
    start, cpu = time.perf_counter(), time.process_time()
    for _ in range(steps):
        if masks:
            action = rng.choice(np.flatnonzero(env.unwrapped.action_masks()))
        else:
            action = rng.integers(n)
        _, _, terminated, truncated, _ = env.step(action)
        if terminated or truncated:
            env.reset()
    rate = _rates(steps, start, cpu)
    env.close()
    return rate


def _rates(steps: int, start: float, cpu: float) -> dict[str, float]:
    """Steps per wall second and per CPU second of this process since (start, cpu)."""
    wall, used = time.perf_counter() - start, time.process_time() - cpu
    return {"steps_per_s": steps / wall, "steps_per_cpu_s": steps / used if used > 0 else 0.0}


def _worker_meter(envs) -> Any:
    """The envs' `ShardedVecEnv` when they step in shard workers (their CPU time can be
    asked), else None."""
    from agents.rl.sharded import ShardedVecEnv

    inner = envs.unwrapped
    return inner if isinstance(inner, ShardedVecEnv) and inner.n_workers else None


def _with_workers(rates: dict[str, Any], steps: int, meter, before: float):
    """`rates` (this process's, from `_rates`) counting the shard workers' CPU seconds too
    (so per CPU second is the whole work's cost), and how busy this process and the workers
    were over the wall time."""
    wall = steps / rates["steps_per_s"]
    here_s = steps / rates["steps_per_cpu_s"] if rates["steps_per_cpu_s"] else 0.0
    workers_s = meter.worker_cpu_seconds() - before
    total = here_s + workers_s
    return {
        **rates,
        "steps_per_cpu_s": steps / total if total > 0 else 0.0,
        "busy_here": here_s / wall,
        "busy_workers": workers_s / (wall * meter.n_workers),
    }


def vec_env_rate(config: TrainConfig, steps: int, seed: int) -> dict[str, float]:
    """Raw steps/s of the training's VecEnv under seeded random actions (no policy)."""
    envs = make_envs(config, config.n_envs, config.seed)
    try:
        rng = np.random.default_rng(seed)
        envs.reset()
        n = envs.action_space.n
        rounds = max(steps // config.n_envs, 1)
        meter = _worker_meter(envs)
        before = meter.worker_cpu_seconds() if meter else 0.0
        start, cpu = time.perf_counter(), time.process_time()
        for _ in range(rounds):
            envs.step(rng.integers(n, size=config.n_envs))
        rates = _rates(rounds * config.n_envs, start, cpu)
        if meter is not None:
            rates = _with_workers(rates, rounds * config.n_envs, meter, before)
        elif _in_other_processes(config):
            rates["steps_per_cpu_s"] = None
        return rates
    finally:
        envs.close()


def _in_other_processes(config: TrainConfig) -> bool:
    """Whether the envs step in worker processes (then this process's CPU time is not
    what the work cost: shard workers report theirs, SB3's subprocess workers do not, and
    no per-CPU-second rate is given for them)."""
    return config.vec_env_used in ("subproc", *SHARDED) and config.n_envs > 1


def _rollout_timer():
    from stable_baselines3.common.callbacks import BaseCallback

    class RolloutTimer(BaseCallback):
        """Seconds spent collecting rollouts (the rest of `learn` is gradient updates)."""

        def __init__(self) -> None:
            super().__init__()
            self.seconds = 0.0
            self._began = 0.0

        def _on_rollout_start(self) -> None:
            self._began = time.perf_counter()

        def _on_rollout_end(self) -> None:
            self.seconds += time.perf_counter() - self._began

        def _on_step(self) -> bool:
            return True

    return RolloutTimer()


def config_for(algo: str, steps: int, seed: int, case: dict[str, Any], **extra: Any):
    """The TrainConfig of one case (`fast` is not a config field: popped by the caller)."""
    fields = {k: v for k, v in case.items() if k != "fast"}
    base = TrainConfig(
        algo, REMEDIATION_ID, steps, Path("unused"), seed=seed, progress_bar=False, **extra
    )
    return replace(base, **fields)


def train_rate(config: TrainConfig, fast: bool, eval_episodes: int = 0) -> dict[str, Any]:
    """End-to-end training steps/s of `config` after one warm-up rollout."""
    import torch

    torch.set_num_threads(config.threads)
    envs = make_envs(config, config.n_envs, config.seed)
    try:
        model = make_model(config, envs)
        timer = _rollout_timer()
        with ExitStack() as learning:
            if fast:  # as `firebreak train` learns
                learning.enter_context(fast_distributions())
                learning.enter_context(frozen_heap())
            model.learn(1)  # warm-up: one rollout and update (lazy imports, first calls)
            warm = model.num_timesteps
            meter = _worker_meter(envs)
            before = meter.worker_cpu_seconds() if meter else 0.0
            began, cpu = time.perf_counter(), time.process_time()
            model.learn(config.steps, callback=timer, reset_num_timesteps=False)
            wall = time.perf_counter() - began
            done = model.num_timesteps - warm
            rates = _rates(done, began, cpu)
            if meter is not None:
                rates = _with_workers(rates, done, meter, before)
    finally:
        envs.close()
    row = {"steps": int(model.num_timesteps - warm), **rates}
    row["rollout_share"] = timer.seconds / wall
    if meter is None and _in_other_processes(config):
        row["steps_per_cpu_s"] = None
    if eval_episodes:
        row["eval_return"] = _eval_return(model, config, eval_episodes)
    return row


def _eval_return(model, config: TrainConfig, episodes: int) -> float:
    """Mean return of the deterministic policy over held-out seeds (as `evaluate` picks)."""
    from agents.rl.evaluation import eval_seeds, run_episode

    env = make_env(config.env_id, **dict(config.env_kwargs or {}))
    masked = config.algo == "maskable-ppo"
    returns = [run_episode(env, model, s, masked)["return"] for s in eval_seeds(episodes)]
    env.close()
    return float(np.mean(returns))


def cases(long: bool) -> list[tuple[str, str, dict[str, Any]]]:
    """(algo, label, settings): the baseline first for each algorithm."""
    out = []
    for algo in ALGOS:
        out.append((algo, "baseline", BASELINE))
        out.append((algo, "defaults", DEFAULTS))
        out.append((algo, "defaults, lock-step shards", LOCK_STEP))
        out.append((algo, "defaults, envs in process", IN_PROCESS))
        if long:
            out.append((algo, "defaults, 2 torch threads", {**DEFAULTS, "threads": 2}))
    return out


def bench(
    steps: int = 4096,
    env_steps: int = 4000,
    repeats: int = 2,
    seed: int = 0,
    long: bool = False,
    eval_episodes: int = 0,
    **extra: Any,
) -> dict[str, Any]:
    """Every case `repeats` times, interleaved; `extra` goes to every TrainConfig (tests
    shrink episodes and rollouts with it)."""
    env_kwargs = extra.get("env_kwargs")
    raw = {
        "env": env_rate(env_steps, seed, False, env_kwargs),
        "env + action_masks": env_rate(env_steps, seed, True, env_kwargs),
    }
    in_process = config_for("ppo", steps, seed, IN_PROCESS, **extra)
    for settings in (IN_PROCESS, LOCK_STEP):  # no policy: parallel steps as shards do
        config = config_for("ppo", steps, seed, settings, **extra)
        name = f"VecEnv ({config.n_envs} x {config.vec_env_used})"
        raw[name] = vec_env_rate(config, env_steps, seed)
    todo = cases(long)
    runs: dict[int, list[dict[str, Any]]] = {i: [] for i in range(len(todo))}
    for r in range(repeats):
        last = r == repeats - 1
        for i, (algo, _, case) in enumerate(todo):
            config = config_for(algo, steps, seed, case, **extra)
            runs[i].append(train_rate(config, case["fast"], eval_episodes if last else 0))
    rows = []
    for i, (algo, label, case) in enumerate(todo):
        base = runs[next(j for j, c in enumerate(todo) if c[0] == algo and c[1] == "baseline")]
        config = config_for(algo, steps, seed, case, **extra)
        row = {
            "algo": algo,
            "case": label,
            "n_envs": config.n_envs,
            "vec_env": config.vec_env_used,
            "threads": config.threads,
            "fast_distributions": case["fast"],
            "rollout_share": statistics.median(x["rollout_share"] for x in runs[i]),
        }
        for key, env_key in (("steps_per_s", "env"), ("steps_per_cpu_s", "env")):
            row.update(_summary(key, runs[i], base, raw[env_key][key]))
        for key in ("busy_here", "busy_workers"):
            if all(key in x for x in runs[i]):
                row[key] = statistics.median(x[key] for x in runs[i])
        if "eval_return" in runs[i][-1]:
            row["eval_return"] = runs[i][-1]["eval_return"]
        rows.append(row)
    bound = bounds(raw[f"VecEnv ({in_process.n_envs} x dummy)"], rows)
    return {"raw": raw, "training": rows, "steps": steps, "repeats": repeats, "bound": bound}


def bounds(vec_env: dict[str, Any], rows: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The most end-to-end PPO steps/s each way of using this machine's cores could reach
    with this run's costs, from in-process PPO (its CPU a step, split by its rollout share
    into collecting and updating) and the raw in-process VecEnv (the envs' share of
    collecting; the rest is the policy's calls and SB3's loop):
    lock-step (`shards`): the update and the policy's calls overlap no env stepping, the
    envs split evenly over the cores; parallel rollouts: only the update is serial, the
    whole of collecting splits evenly. Upper bounds: they assume perfect balance and no
    cost for the messages. None without both measurements."""
    from agents.rl.hyperparams import usable_cores

    trained = next(
        (r for r in rows if r["algo"] == "ppo" and r["case"] == "defaults, envs in process"), None
    )
    if trained is None or not trained.get("steps_per_cpu_s") or not vec_env["steps_per_cpu_s"]:
        return None
    step_us = 1e6 / trained["steps_per_cpu_s"]
    collect_us = step_us * trained["rollout_share"]
    env_us = min(1e6 / vec_env["steps_per_cpu_s"], collect_us)
    update_us = step_us - collect_us
    cores = usable_cores()
    return {
        "cores": cores,
        "env_us": env_us,
        "policy_us": collect_us - env_us,
        "update_us": update_us,
        "lock_step": 1e6 / (update_us + collect_us - env_us + env_us / cores),
        "parallel": 1e6 / (update_us + collect_us / cores),
    }


def _summary(key: str, runs: list[dict], base: list[dict], env: float) -> dict[str, Any]:
    """Median of `key` over repeats, the median of its per-repeat ratios to the baseline,
    and its ratio to the raw env; None where `key` was not measurable (subprocess envs)."""
    values = [x[key] for x in runs]
    unit = key.removeprefix("steps_per_")
    if any(v is None for v in values):
        return {key: None, f"vs_baseline_{unit}": None, f"vs_env_{unit}": None}
    pairs = zip(values, [x[key] for x in base], strict=True)
    ratios = [v / b for v, b in pairs if b]
    median = statistics.median(values)
    return {
        key: median,
        f"{key}_all": values,
        f"vs_baseline_{unit}": statistics.median(ratios) if ratios else None,
        f"vs_env_{unit}": median / env if env else None,
    }


def _num(value: float | None, width: int, fmt: str) -> str:
    return f"{'-':>{width}s}" if value is None else f"{value:{width}{fmt}}"


def _busy(rate: dict[str, Any]) -> str:
    """'this process / each worker' busy over the wall time, where shard workers stepped."""
    if "busy_here" not in rate:
        return f"{'-':>9s}"
    return f"{rate['busy_here']:.0%}/{rate['busy_workers']:.0%}".rjust(9)


def report(result: dict[str, Any]) -> str:
    """The tables as text: per wall second (what a user waits) and per CPU second of this
    process and its shard workers (what the work costs, steadier when other processes
    share the cores); 'busy' is how much of the wall time this process and each worker ran."""
    lines = [
        f"{'raw environment (Remediation-v0)':34s} {'steps/s':>9s} {'per CPU-s':>9s} {'busy':>9s}"
    ]
    for name, rate in result["raw"].items():
        cpu = _num(rate["steps_per_cpu_s"], 9, ",.0f")
        lines.append(f"{name:34s} {rate['steps_per_s']:9,.0f} {cpu} {_busy(rate)}")
    lines.append("")
    has_eval = any("eval_return" in r for r in result["training"])
    lines.append(
        f"{'algo':13s} {'case':26s} {'envs':>10s} {'thr':>3s} {'steps/s':>8s} "
        f"{'x base':>6s} {'x env':>5s} {'per CPU-s':>9s} {'x base':>6s} {'x env':>5s} "
        f"{'rollout':>7s} {'busy':>9s}" + (f" {'eval return':>11s}" if has_eval else "")
    )
    for r in result["training"]:
        envs = f"{r['n_envs']} {r['vec_env']}"
        line = (
            f"{r['algo']:13s} {r['case']:26s} {envs:>10s} {r['threads']:3d} "
            f"{r['steps_per_s']:8,.0f} {_num(r['vs_baseline_s'], 6, '.2f')} "
            f"{_num(r['vs_env_s'], 5, '.2f')} {_num(r['steps_per_cpu_s'], 9, ',.0f')} "
            f"{_num(r['vs_baseline_cpu_s'], 6, '.2f')} {_num(r['vs_env_cpu_s'], 5, '.2f')} "
            f"{r['rollout_share']:7.0%} {_busy(r)}"
        )
        if "eval_return" in r:
            line += f" {r['eval_return']:11.2f}"
        lines.append(line)
    best = max((r["steps_per_s"] for r in result["training"] if r["algo"] == "ppo"), default=0.0)
    verdict = "ok" if best >= TARGET_PPO_STEPS_PER_S else "MISSED"
    lines.append(
        f"\n{result['steps']:,} timed steps per case, median of {result['repeats']} "
        "interleaved repeats; 'x base' is the median ratio to the baseline measured in the "
        "same repeat, 'x env' the ratio to one raw env; 'busy' is this process / each shard "
        "worker's CPU time over the wall time"
    )
    lines.append(
        f"target >= {TARGET_PPO_STEPS_PER_S:,.0f} end-to-end PPO steps/s: {best:,.0f} {verdict}"
    )
    bound = result.get("bound")
    if bound is not None:
        lines.append(
            f"upper bounds on {bound['cores']} core(s) at this run's costs (a step: env "
            f"{bound['env_us']:,.0f} us, policy calls {bound['policy_us']:,.0f}, update "
            f"{bound['update_us']:,.0f}): lock-step {bound['lock_step']:,.0f} PPO steps/s, "
            f"parallel rollouts {bound['parallel']:,.0f}"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=None, help="timed steps per case")
    parser.add_argument("--repeats", type=int, default=None, help="interleaved repeats")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--long",
        action="store_true",
        help="50k steps a case, 3 repeats, 2 torch threads too, held-out evaluation",
    )
    parser.add_argument("--json", help="also write the results to this file")
    args = parser.parse_args(argv)
    for name in ("steps", "repeats"):
        value = getattr(args, name)
        if value is not None and value < 1:
            parser.error(f"--{name}: must be >= 1, got {value}")
    steps = args.steps or (50_000 if args.long else 4096)
    repeats = args.repeats or (3 if args.long else 2)
    result = bench(
        steps=steps,
        env_steps=20_000 if args.long else 4000,
        repeats=repeats,
        seed=args.seed,
        long=args.long,
        eval_episodes=10 if args.long else 0,
    )
    print(report(result))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
