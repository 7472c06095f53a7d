"""`firebreak no-fault-day SERIES --out DIR`: a day of real traffic, no fault, three ways."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

MAX_HOURS = 24.0 * 14  # two weeks: each of the three runs is a flow run of that length


def cmd_no_fault_day(args: argparse.Namespace) -> int:
    from experiments.impact.no_fault_day import MAX_PAGES, MAX_REPLICA_RATIO, run_day
    from twin.errors import FirebreakError

    if args.hours > MAX_HOURS:
        raise FirebreakError(f"--hours: at most {MAX_HOURS:g} (two weeks), got {args.hours:g}")

    print(
        f"replaying {args.series} as Online Boutique's load ({args.load:g}x, {args.hours:g} h, "
        f"provisioned: {args.provision}), no faults: the HPA alone, traditional and AI "
        "operations ...",
        file=sys.stderr,
    )
    report = run_day(
        Path(args.series),
        Path(args.out),
        hours=args.hours,
        seed=args.seed,
        load=args.load,
        provision=args.provision,
    )
    runs = report["runs"]
    print(
        f"{'':14s}{'replica-hours':>15s}{'x HPA':>8s}{'pages':>7s}{'incidents':>11s}"
        f"{'SLO':>8s}{'served':>9s}"
    )
    base = runs["hpa"]["replica_hours"]
    for mode in ("hpa", "traditional", "ai"):
        r = runs[mode]
        print(
            f"{mode:14s}{r['replica_hours']:15.1f}{r['replica_hours'] / base:8.3f}"
            f"{r['pages']:7d}{r['incidents']:11d}{r['slo_adherence']:8.1%}{r['served']:9.1%}"
        )
    per_served = report["ai_replica_ratio_per_served"]
    if per_served is not None:
        print(f"AI replica-hours per request served: {per_served:.3f} x the HPA alone's")
    verdict = "meets" if report["ai_meets_bar"] else "misses"
    print(
        f"AI operations {verdict} the bar (replica-hours <= {MAX_REPLICA_RATIO:g} x HPA, "
        f"pages <= {MAX_PAGES}); wrote {Path(args.out) / 'no_fault_day.json'}"
    )
    return 0


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "no-fault-day",
        help="a day of a real rate series as load, no faults: the HPA alone vs both stacks",
        description=(
            "Replay a recorded rate series (a `timestamp,value` CSV, e.g. NAB's "
            "realKnownCause/nyc_taxi.csv) as Online Boutique's load with no fault, and compare "
            "what the HPA alone, traditional and AI operations cost in replica-hours and pages."
        ),
    )
    p.add_argument("series", help="rate series CSV with timestamp and value columns")
    p.add_argument("--out", default="runs/no-fault-day", help="output directory")
    from firebreak.argtypes import int_at_least, positive_float

    p.add_argument(
        "--hours",
        type=positive_float,
        default=24.0,
        help=f"hours to replay (default 24, at most {MAX_HOURS:g})",
    )
    p.add_argument("--load", type=float, default=1.0, help="mean load x the base rate (default 1)")
    p.add_argument("--seed", type=int_at_least(0), default=7, help="run seed (default 7)")
    p.add_argument(
        "--provision",
        choices=("peak", "as-shipped"),
        default="peak",
        help="size the topology for the replayed window's peak, as a system that has run on "
        "such traffic is (peak, default: services an HPA would need get one, HPA ceilings "
        "reach the peak), or keep the topology file's sizing (as-shipped: the peaks overload it)",
    )
    p.set_defaults(func=cmd_no_fault_day)
