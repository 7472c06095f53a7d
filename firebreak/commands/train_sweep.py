"""`firebreak train-sweep`: seed and hyper-parameter sweeps of `firebreak train` runs."""

from __future__ import annotations

import argparse


def _seeds(text: str) -> list[int]:
    """`0,1,2` or a range `0-4` (both ends included)."""
    try:
        if "-" in text.strip("-") and "," not in text:
            low, high = (int(x) for x in text.split("-", 1))
            return list(range(low, high + 1))
        return [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected '0,1,2' or '0-4', got {text!r}") from None


def _grid(text: str | None) -> dict:
    """--grid: a JSON object (hyper-parameter -> values), checked like --env-kwargs."""
    from firebreak.commands.train import _json_object

    return _json_object(text, "--grid")


def cmd_train_sweep(args: argparse.Namespace) -> int:
    from pathlib import Path

    from agents.rl.train import TrainConfig
    from experiments.train_sweep import run_train_sweep
    from firebreak.commands.train import _json_object

    chosen = {
        k: v for k, v in {"n_envs": args.n_envs, "threads": args.threads}.items() if v is not None
    }
    base = TrainConfig(
        algo=args.algo,
        env_id=args.env,
        steps=args.steps,
        out=Path(args.out),
        env_kwargs=_json_object(args.env_kwargs),
        eval_episodes=args.eval_episodes,
        progress_bar=False,
        hyperparams=_json_object(args.hyperparams, "--hyperparams"),
        vec_env="dummy",  # the sweep runs trainings side by side: each keeps its envs at home
        **chosen,
    )
    table = run_train_sweep(
        base, args.seeds, _grid(args.grid), args.backend, args.jobs, progress=not args.quiet
    )
    print(f"{'run':48s} {'steps/s':>8s} {'eval return':>11s}  policy sha256")
    for row in table["rows"]:
        ret = row["eval_return"]
        shown = f"{ret:11.2f}" if ret is not None else f"{'-':>11s}"
        print(f"{row['label']:48s} {row['steps_per_s']:8,.0f} {shown}  {row['policy_sha256'][:16]}")
    for point in table["points"]:
        if point["eval_return"] is not None:
            low, high = point["ci95"]
            print(
                f"{point['point']}: mean eval return {point['eval_return']:.2f} "
                f"[{low:.2f}, {high:.2f}] over {point['seeds']} seeds"
            )
    print(
        f"{len(table['rows'])} runs on {args.backend}; {Path(args.out) / 'sweep.csv'}, sweep.json"
    )
    return 0


def register(subparsers) -> None:
    from firebreak.argtypes import positive_int
    from firebreak.commands.train import add_run_arguments

    p = subparsers.add_parser(
        "train-sweep",
        help="train one policy per seed and grid point (locally or on Ray)",
        description=(
            "Every (grid point, seed) is a `firebreak train` run in OUT/POINT/seed-N; "
            "OUT/sweep.csv and OUT/sweep.json tabulate them. Runs are deterministic per "
            "seed: every backend trains the same weights (the policy_sha256 column)."
        ),
    )
    add_run_arguments(p, "environment steps per run")
    p.add_argument("--seeds", type=_seeds, default=[0, 1, 2], help="'0,1,2' or '0-4'")
    p.add_argument(
        "--grid",
        default=None,
        help="JSON: hyper-parameter -> values, e.g. '{\"learning_rate\": [1e-4, 3e-4]}'",
    )
    p.add_argument("--hyperparams", default=None, help="JSON overrides shared by every run")
    p.add_argument("--env-kwargs", default=None, help="JSON env settings")
    p.add_argument("--n-envs", type=positive_int, default=None, help="envs per run")
    p.add_argument("--threads", type=positive_int, default=None, help="torch threads per run")
    p.add_argument("--eval-episodes", type=int, default=10, help="held-out episodes per eval")
    p.add_argument(
        "--backend",
        choices=("process", "serial", "ray"),
        default="process",
        help="where runs execute: a local process pool (default), serially, or on Ray",
    )
    p.add_argument("--jobs", type=positive_int, default=None, help="workers (default: all CPUs)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_train_sweep)
