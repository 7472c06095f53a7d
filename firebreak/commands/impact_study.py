"""`firebreak impact-study`: traditional vs AI-driven operations, paired, with the claims."""

from __future__ import annotations

import argparse
import os
import shlex
import sys
import time
from pathlib import Path

# the smoke run's dozen: every topology, every fault kind but one, load events and the control
QUICK_FAMILIES = (
    "bad-deploy",
    "memory-leak",
    "network-partition",
    "retry-storm",
    "train-ticket-cascade",
    "black-friday",
    "flash-crowd",
    "steady-state",
    "sockshop-cpu-hog",
    "hotel-misconfig",
    "social-crash-latency",
    "trainticket-deploy-errors",
)
QUICK_SEEDS = 2
QUICK_TIME_SCALE = 0.5


def _check(args: argparse.Namespace) -> tuple[list[str], int, float]:
    from experiments.impact.study import ImpactStudyError, suite_parts
    from experiments.sweep import BACKENDS

    FAMILIES = suite_parts(args.suite)[0]

    if args.backend not in BACKENDS:
        raise ImpactStudyError(
            f"--backend: expected one of {', '.join(BACKENDS)}, got {args.backend!r}"
        )
    if args.jobs is not None and args.jobs < 1:
        raise ImpactStudyError(f"--jobs: need at least one worker, got {args.jobs}")
    names = list(args.scenarios) if args.scenarios else None
    if names is None:
        if args.quick and args.suite == "remediable":
            names = list(FAMILIES)
        else:
            names = list(QUICK_FAMILIES if args.quick else FAMILIES)
    unknown = [n for n in names if n not in FAMILIES]
    if unknown:
        raise ImpactStudyError(
            f"--scenarios: unknown scenario {unknown[0]!r}; choose from {', '.join(FAMILIES)}"
        )
    seeds = args.seeds if args.seeds is not None else (QUICK_SEEDS if args.quick else 10)
    if seeds < 1:
        raise ImpactStudyError(f"--seeds: must be at least 1, got {seeds}")
    scale = (
        args.time_scale
        if args.time_scale is not None
        else (QUICK_TIME_SCALE if args.quick else 1.0)
    )
    if not 0.05 <= scale <= 4.0:
        raise ImpactStudyError(f"--time-scale: must be between 0.05 and 4, got {scale}")
    return names, seeds, scale


def cmd_impact_study(args: argparse.Namespace) -> int:
    from experiments.impact.claims import by_family, claims_table
    from experiments.impact.outputs import write_all
    from experiments.impact.study import estimate_wall_s, make_jobs, run_study

    names, seeds, scale = _check(args)
    out = Path(args.out)
    keep = str(out / "runs") if args.keep_runs else None
    workers = args.jobs or os.cpu_count() or 1
    if args.backend == "serial":
        workers = 1
    jobs = make_jobs(names, seeds, scale, keep, args.suite, args.first_seed, args.telemetry)
    est = estimate_wall_s(jobs, min(workers, len(jobs)))
    print(
        f"impact study: {len(names)} scenario families x {seeds} seeds x 2 modes = "
        f"{len(jobs)} rehearsals, time scale {scale:g}, {args.telemetry} telemetry in the loop, "
        f"backend {args.backend}"
        + ("" if args.backend == "ray" else f" ({workers} workers)")
        + f"; estimated wall {est / 60:.1f} min on free cores",
        file=sys.stderr,
    )
    began = time.perf_counter()
    table = run_study(
        names,
        seeds,
        time_scale=scale,
        backend=args.backend,
        jobs_n=args.jobs,
        keep_dir=keep,
        progress=True,
        suite=args.suite,
        first_seed=args.first_seed,
        telemetry=args.telemetry,
    )
    wall = time.perf_counter() - began
    controls = None
    scored = table
    if args.suite == "remediable" and "remediable" in table and len(table):
        # the claims are about faults a remedy can end; the controls are reported apart
        keep = table["remediable"].astype(bool)
        scored = table[keep].reset_index(drop=True)
        if (~keep).any():
            controls = claims_table(table[~keep].reset_index(drop=True))
    claims = claims_table(scored)
    fam = by_family(table)
    command = _command(args, names, seeds, scale)
    paths = write_all(
        table,
        claims,
        fam,
        out,
        seeds=seeds,
        time_scale=scale,
        wall_s=wall,
        command=command,
        suite=args.suite,
        controls=controls,
    )
    print(_console(claims))
    failed = table[table["error"].notna()]
    for _, r in failed.iterrows():
        print(f"FAILED {r['family']} seed {r['seed']} {r['mode']}: {r['error']}", file=sys.stderr)
    print(
        f"\n{len(table)} rehearsals in {wall / 60:.1f} min ({len(failed)} failed, left out); "
        f"wrote {paths[0].parent}/: " + ", ".join(p.name for p in paths)
    )
    return 0


def _command(args: argparse.Namespace, names: list[str], seeds: int, scale: float) -> str:
    """The command that reproduces this study (quick mode spelled out)."""
    parts = ["firebreak", "impact-study", "--suite", args.suite, "--seeds", str(seeds)]
    if args.first_seed:
        parts += ["--first-seed", str(args.first_seed)]
    parts += ["--time-scale", f"{scale:g}"]
    if args.telemetry != "ideal":
        parts += ["--telemetry", args.telemetry]
    parts += ["--backend", args.backend, "--out", str(args.out)]
    if args.scenarios or args.quick:
        parts += ["--scenarios", *names]
    return shlex.join(parts)


def _console(claims) -> str:
    import math

    lines = [f"{'claim':32s} {'claimed':>13s} {'estimate':>9s} {'95% CI':>20s}  verdict"]
    for _, r in claims[claims["role"] == "claim"].iterrows():
        level = r["key"] in ("slo_adherence", "right_remedy_first")

        def fmt(x: float, level: bool = level) -> str:
            if not math.isfinite(x):
                return "n/a"
            return f"{x:.1%}" if level else f"{x:+.1%}"

        ci = f"[{fmt(r['ci_low'])}, {fmt(r['ci_high'])}]"
        lines.append(
            f"{r['claim']:32s} {r['claimed']:>13s} {fmt(r['estimate']):>9s} {ci:>20s}  "
            f"{r['verdict']}"
        )
    return "\n".join(lines)


def register(subparsers) -> None:
    from experiments.observed import LOOP_TELEMETRY_HELP, TELEMETRY_CHOICES

    p = subparsers.add_parser(
        "impact-study",
        help="traditional vs AI-driven operations over a scenario suite, with the claims",
        description=(
            "Rehearse every scenario family x seed under traditional and AI-driven operations "
            "(paired: same scenario, same seed) and compare MTTR, incident frequency, alerts "
            "per incident, efficiency, SLO adherence and cost with the published claims: "
            "95% bootstrap CIs, verdicts, a tidy table (Parquet/CSV), plots and a Markdown "
            "summary."
        ),
    )
    p.add_argument("--seeds", type=int, default=None, help="seeds per family (default 10)")
    p.add_argument(
        "--first-seed",
        type=int,
        default=0,
        help="first seed index (default 0): a study on seeds not looked at while developing",
    )
    p.add_argument(
        "--suite",
        default="classic",
        help="classic (faults run their scheduled length; default) or remediable (faults last "
        "until a remedy ends them, one family per fault kind, with nodes and zones)",
    )
    p.add_argument(
        "--backend", default="process", help="process (default), serial or ray (RAY_ADDRESS)"
    )
    p.add_argument("--jobs", type=int, default=None, help="workers (default: every CPU)")
    p.add_argument("--out", default="runs/impact-study", help="output directory")
    p.add_argument("--scenarios", nargs="+", default=None, help="families (default: all)")
    p.add_argument(
        "--quick",
        action="store_true",
        help=f"smoke run: {len(QUICK_FAMILIES)} families x {QUICK_SEEDS} seeds at half length",
    )
    p.add_argument(
        "--time-scale",
        type=float,
        default=None,
        help="multiply every duration and time (default 1; --quick 0.5)",
    )
    p.add_argument("--keep-runs", action="store_true", help="keep run directories under OUT/runs")
    p.add_argument(
        "--telemetry", choices=TELEMETRY_CHOICES, default="ideal", help=LOOP_TELEMETRY_HELP
    )
    p.set_defaults(func=cmd_impact_study)
