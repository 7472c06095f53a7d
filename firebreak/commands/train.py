"""`firebreak train`: train an RL policy on a Firebreak gymnasium environment."""

from __future__ import annotations

import argparse
import json
import sys


def _json_object(text: str | None, flag: str = "--env-kwargs") -> dict:
    from twin.errors import FirebreakError

    if text is None:
        return {}
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise FirebreakError(f"{flag}: not JSON ({exc.msg}): {text!r}") from None
    if not isinstance(value, dict):
        raise FirebreakError(f"{flag}: expected a JSON object, got {text!r}")
    return value


def cmd_train(args: argparse.Namespace) -> int:
    from pathlib import Path

    from agents.rl.train import TrainConfig, train

    chosen = {
        k: v
        for k, v in {
            "n_envs": args.n_envs,
            "threads": args.threads,
            "vec_env": args.vec_env,
            "warm_epochs": args.warm_start_epochs,
        }.items()
        if v is not None
    }
    config = TrainConfig(
        algo=args.algo,
        env_id=args.env,
        steps=args.steps,
        out=Path(args.out),
        seed=args.seed,
        env_kwargs=_json_object(args.env_kwargs),
        eval_episodes=args.eval_episodes,
        progress_bar=not args.quiet,
        hyperparams=_json_object(args.hyperparams, "--hyperparams"),
        warm_start=args.warm_start,
        warm_episodes=args.warm_start_episodes,
        **chosen,
    )
    summary = train(config)
    print(
        f"trained {summary['algo']} on {summary['env_id']} for {summary['steps_done']} steps "
        f"({summary['n_envs']} envs, seed {summary['seed']}) in {summary['wall_s']:g} s "
        f"({summary['steps_per_s']:g} steps/s); policy {Path(args.out) / 'policy.safetensors'} "
        "+ policy.json (data only, no pickle), settings.json, tensorboard/, checkpoints/ and "
        "best/ beside it",
        file=sys.stdout,
    )
    fit = summary.get("warm_start_fit")
    if fit:
        print(
            f"warm start: cloned {fit['teacher']} over {fit['episodes']} episodes "
            f"({fit['samples']} decisions, {fit['epochs']} passes), agreement "
            f"{fit['agreement']:.1%} before learning, {fit['acting_agreement']:.1%} where the "
            "teacher acts"
        )
    return 0


def add_run_arguments(p, steps_help: str) -> None:
    """What every training command asks for: the algorithm, the env, the budget, the output."""
    p.add_argument("--algo", required=True, help="ppo, maskable-ppo or dqn")
    p.add_argument(
        "--env", required=True, help="firebreak/Remediation-v0 or firebreak/Autoscale-v0"
    )
    p.add_argument("--steps", type=int, required=True, help=steps_help)
    p.add_argument("--out", required=True, help="output directory")


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "train",
        help="train an RL policy (PPO, maskable PPO, DQN) on a Firebreak env",
        description=(
            "Vectorised envs, evaluation on held-out seeds during training (best model kept), "
            "checkpoints, TensorBoard logs in OUT/tensorboard, a progress bar; saves "
            "OUT/policy.safetensors (weights) + OUT/policy.json (the network as data) and "
            "OUT/settings.json: files that hold no code, unlike a stable-baselines3 zip."
        ),
    )
    add_run_arguments(p, "environment steps to train for")
    from firebreak.argtypes import int_at_least

    p.add_argument("--seed", type=int_at_least(0), default=0)
    p.add_argument(
        "--n-envs",
        type=int,
        default=None,
        help="envs stepped together (one policy call serves them all; default: the trainer's)",
    )
    p.add_argument(
        "--vec-env",
        default=None,
        help="dummy (envs in this process), subproc (one process each), shards (split over "
        "one worker process per core, stepped in lock-step: the same weights as dummy) or "
        "parallel (split so, each worker collecting its share of a rollout with its own copy "
        "of the policy: same seed, same weights, but not dummy's); default: parallel for PPO "
        "on several cores, else dummy",
    )
    p.add_argument("--env-kwargs", default=None, help="JSON env settings, e.g. '{\"top_k\": 5}'")
    p.add_argument(
        "--hyperparams",
        default=None,
        help="JSON overrides of the algorithm's defaults, e.g. '{\"learning_rate\": 1e-4}'",
    )
    p.add_argument("--eval-episodes", type=int, default=10, help="held-out episodes per eval")
    p.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch threads (default: the trainer's, 1: these small nets gain nothing from more)",
    )
    p.add_argument(
        "--warm-start",
        default=None,
        help=(
            "clone a teacher before learning: 'triage' (drain a sick node or zone, else roll "
            "back the top suspect; remediation env, PPO or maskable PPO)"
        ),
    )
    p.add_argument(
        "--warm-start-episodes", type=int, default=200, help="teacher episodes to clone (200)"
    )
    p.add_argument(
        "--warm-start-epochs",
        type=int,
        default=None,
        help="passes over the teacher's decisions (120, chosen on held-apart demonstrations)",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_train)
