"""Seed and hyper-parameter sweeps of training runs, through the sweep runner's backends.

One training run per (grid point, seed): every run is `agents.rl.train.train` with the base
configuration, that seed and that point's hyper-parameter overrides, written to a folder of
its own under the sweep's output (loadable by `firebreak evaluate` like any trained
policy). A run is a pure function of its configuration (seeded envs and model, torch on
the CPU with a fixed thread count), so the serial, process-pool and Ray backends train the
same weights from the same seed; `policy_sha256` in each row shows it.

Writes `sweep.csv` (one row per run) and `sweep.json` (the rows and, per grid point, the
mean final held-out return across seeds with its 95% interval).
"""

from __future__ import annotations

import csv
import itertools
import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from agents.rl import hyperparams
from agents.rl.evaluation import eval_seeds, mean_ci, run_episode
from agents.rl.train import TrainConfig, make_env, train_model
from experiments.sweep import Job, run_sweep
from twin.errors import FirebreakError

ROW_FIELDS = (
    "label",
    "seed",
    "point",
    "steps_done",
    "wall_s",
    "steps_per_s",
    "eval_return",
    "best_eval_return",
    "policy_sha256",
)


def grid_points(algo: str, grid: Mapping[str, Sequence[Any]] | None) -> list[dict[str, Any]]:
    """Every combination of the grid's values (one empty point without a grid), each
    checked as hyper-parameter overrides of `algo` before any run starts."""
    grid = dict(grid or {})
    for name, values in grid.items():
        if not isinstance(values, list | tuple) or not values:
            raise FirebreakError(
                f"grid.{name}: expected a non-empty list of values, got {values!r}"
            )
    names = sorted(grid)
    points = [
        dict(zip(names, combo, strict=True))
        for combo in itertools.product(*(grid[n] for n in names))
    ]
    for point in points:
        hyperparams.check(algo, point)
    return points


def point_label(point: Mapping[str, Any]) -> str:
    """A folder-safe name for a grid point: `learning_rate=0.0003,n_epochs=5`."""
    if not point:
        return "defaults"
    text = ",".join(f"{k}={_value_text(v)}" for k, v in sorted(point.items()))
    return re.sub(r"[^A-Za-z0-9_.,=+-]", "_", text)


def _value_text(value: Any) -> str:
    if isinstance(value, list):
        return "x".join(str(v) for v in value)
    return f"{value:g}" if isinstance(value, float) else str(value)


def sweep_configs(
    base: TrainConfig, seeds: Sequence[int], grid: Mapping[str, Sequence[Any]] | None = None
) -> list[tuple[str, dict[str, Any], TrainConfig]]:
    """(run label, grid point, config) for every grid point × seed, outputs under base.out."""
    if not seeds:
        raise FirebreakError("--seeds: need at least one seed")
    bad = [s for s in seeds if not isinstance(s, int) or isinstance(s, bool) or s < 0]
    if bad:
        raise FirebreakError(f"--seeds: must be whole numbers >= 0, got {bad[0]!r}")
    if len(set(seeds)) != len(seeds):
        raise FirebreakError(f"--seeds: listed twice: {sorted(seeds)}")
    runs = []
    for point in grid_points(base.algo, grid):
        merged = {**(base.hyperparams or {}), **point}
        for seed in seeds:
            label = f"{point_label(point)}/seed-{seed}"
            config = replace(
                base,
                seed=seed,
                hyperparams=merged,
                out=Path(base.out) / label,
                progress_bar=False,
                # runs train side by side: each keeps its envs at home unless told otherwise
                vec_env=base.vec_env or "dummy",
            )
            runs.append((label, point, config))
    return runs


def train_job(config: TrainConfig) -> dict[str, Any]:
    """One sweep run: train; then the final policy's mean return over `eval_episodes`
    held-out episodes (the seeds `train` evaluates on), and the best evaluation during
    training where one ran."""
    model, summary = train_model(config)
    row = {k: summary[k] for k in ("seed", "steps_done", "wall_s", "steps_per_s")}
    row["policy_sha256"] = summary["policy_sha256"]
    row["eval_return"] = row["best_eval_return"] = None
    if config.eval_episodes > 0:
        env = make_env(config.env_id, **dict(config.env_kwargs or {}))
        masked = config.algo == "maskable-ppo"
        seeds = eval_seeds(config.eval_episodes, summary["eval_seed_base"])
        row["eval_return"] = float(
            np.mean([run_episode(env, model, s, masked)["return"] for s in seeds])
        )
        env.close()
    path = Path(config.out) / "eval" / "evaluations.npz"
    if path.is_file():
        with np.load(path, allow_pickle=False) as data:
            means = data["results"].mean(axis=1)
        if len(means):
            row["best_eval_return"] = float(means.max())
    return row


def run_train_sweep(
    base: TrainConfig,
    seeds: Sequence[int],
    grid: Mapping[str, Sequence[Any]] | None = None,
    backend: str = "process",
    jobs_n: int | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Train every run of the sweep on `backend`; write and return the tables."""
    runs = sweep_configs(base, seeds, grid)
    jobs = [Job(train_job, {"config": config}, label=label) for label, _, config in runs]
    results = run_sweep(jobs, backend=backend, jobs_n=jobs_n, progress=progress, desc="runs")
    rows = []
    for (label, point, _), result in zip(runs, results, strict=True):
        rows.append({"label": label, "point": point_label(point), **result})
    points = []
    for name in dict.fromkeys(r["point"] for r in rows):
        returns = [r["eval_return"] for r in rows if r["point"] == name]
        mean, low, high = (
            None if math.isnan(x) else x for x in mean_ci([x for x in returns if x is not None])
        )
        points.append(
            {"point": name, "seeds": len(returns), "eval_return": mean, "ci95": [low, high]}
        )
    table = {"algo": base.algo, "env_id": base.env_id, "steps": base.steps, "backend": backend}
    table.update(rows=rows, points=points)
    _write(Path(base.out), table)
    return table


def _write(out: Path, table: dict[str, Any]) -> None:
    out.mkdir(parents=True, exist_ok=True)
    with (out / "sweep.csv").open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=ROW_FIELDS)
        writer.writeheader()
        for row in table["rows"]:
            writer.writerow({k: row.get(k) for k in ROW_FIELDS})
    (out / "sweep.json").write_text(json.dumps(table, indent=2) + "\n", encoding="utf-8")
