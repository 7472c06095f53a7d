"""`firebreak validate-change BASE.yaml CHANGE.yaml`: will this change survive production?

Exit codes (so the command can gate a deploy pipeline): 0 safe (and risky unless
--strict), 2 bad input (the CLI's convention for every FirebreakError), 3 unsafe, 4 risky
with --strict, 130 interrupted.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

EXIT_SAFE = 0
EXIT_UNSAFE = 3
EXIT_RISKY_STRICT = 4


def cmd_validate_change(args: argparse.Namespace) -> int:
    from experiments.change.report import summary_lines, write_report
    from experiments.change.spec import load_change
    from experiments.change.suite import SUITES, ValidationConfig
    from experiments.change.validate import validate_change
    from twin.errors import FirebreakError
    from twin.scenario.loader import load_scenario

    if args.seeds < 1:
        raise FirebreakError(f"--seeds: must be at least 1, got {args.seeds}")
    if args.suite not in SUITES:
        raise FirebreakError(f"--suite: unknown {args.suite!r}; choose from {', '.join(SUITES)}")
    base = load_scenario(args.base)
    change = load_change(args.change)
    config = ValidationConfig(
        suite=args.suite,
        seeds=args.seeds,
        backend=args.backend,
        jobs_n=args.jobs,
        progress=not args.quiet,
        search=args.search,
        search_seeds=args.search_seeds,
    )
    began = time.perf_counter()
    quiet = args.quiet

    def say(message: str) -> None:
        if not quiet:
            print(message, file=sys.stderr)

    result = validate_change(base, change, config, source=str(args.change), status=say)
    wall = time.perf_counter() - began
    paths = write_report(result, Path(args.out), wall_s=wall)
    for line in summary_lines(result):
        print(line)
    print(f"wall {wall:.0f} s; wrote {paths['markdown']} and {paths['html']}")
    if result["verdict"] == "unsafe":
        return EXIT_UNSAFE
    if result["verdict"] == "risky" and args.strict:
        return EXIT_RISKY_STRICT
    return EXIT_SAFE


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "validate-change",
        help="run a chaos suite on a system and on it with a change; verdict safe/risky/unsafe",
        description=(
            "Apply CHANGE (a YAML patch: service and call settings, new dependencies, a new "
            "version's profile, a deploy plan) on BASE (a scenario), run steady state, a "
            "flash crowd and each fault kind on each critical service on both with paired "
            "seeds, rehearse the deploy plan as a canary and search resilience settings, "
            "and write verdict.md and verdict.html. Exit codes: 0 safe (or risky without "
            "--strict), 2 bad input, 3 unsafe, 4 risky with --strict, 130 interrupted."
        ),
    )
    p.add_argument("base", help="base scenario YAML (topology, workload, SLOs)")
    p.add_argument("change", help="change YAML (see scenarios/changes/)")
    p.add_argument("--suite", default="standard", help="smoke, standard (default) or full")
    p.add_argument("--seeds", type=int, default=5, help="paired seeds per scenario (default 5)")
    p.add_argument("--out", default="out/validate-change", help="directory for the verdict")
    p.add_argument(
        "--backend",
        choices=("process", "serial", "ray"),
        default="process",
        help="where runs execute: a local process pool (default), serially, or on Ray",
    )
    p.add_argument("--jobs", type=int, default=None, help="worker processes (default: all CPUs)")
    p.add_argument(
        "--search",
        default="auto",
        help="resilience settings search for calls to SERVICE; 'auto' (default: the callee "
        "of the first call whose timeout, retries or breaker the change sets) or 'none'",
    )
    p.add_argument("--search-seeds", type=int, default=2, help="seeds per search run")
    p.add_argument("--strict", action="store_true", help="exit 4 on a risky verdict")
    p.add_argument("--quiet", action="store_true", help="no progress output")
    p.set_defaults(func=cmd_validate_change)
