"""`firebreak capacity-study`: predictive scaling vs the HPA vs static peak provisioning."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path


def cmd_capacity_study(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from experiments.capacity.study import FAMILIES, plot, run_study, summarise, targets
    from twin.errors import FirebreakError

    families = tuple(args.families or FAMILIES)
    unknown = [f for f in families if f not in FAMILIES]
    if unknown:
        raise FirebreakError(f"--families: unknown {unknown[0]!r}; choose from {FAMILIES}")
    if args.seeds < 1:
        raise FirebreakError(f"--seeds: must be at least 1, got {args.seeds}")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    began = time.perf_counter()
    bar = tqdm(
        total=len(families) * args.seeds,
        desc="runs",
        file=sys.stderr,
        disable=not sys.stderr.isatty(),
    )
    table = run_study(args.seeds, families, args.days, args.tick, progress=bar.update)
    bar.close()
    summary = summarise(table)
    table.to_csv(out / "capacity_runs.csv", index=False)
    summary.to_csv(out / "capacity_summary.csv", index=False)
    plot(summary, out / "capacity_study.png")
    wall = time.perf_counter() - began
    print(
        f"{len(table)} runs ({len(families)} families x {args.seeds} seeds x 3 policies), "
        f"{args.days:g} days each (first day warm-up, not scored), tick {args.tick:g} s; "
        f"wall {wall:.0f} s"
    )
    cols = ["slo_adherence", "slo_violating_min", "replica_hours", "underprovisioned_min"]
    for family in families:
        print(f"\n== {family}  (mean [95% CI]; paired diff vs HPA)")
        for policy in ("hpa", "static", "predictive"):
            cells = []
            for metric in cols:
                r = summary[
                    (summary.family == family)
                    & (summary.policy == policy)
                    & (summary.metric == metric)
                ].iloc[0]
                cells.append(
                    f"{metric} {r['mean']:.3f} [{r['ci_low']:.3f},{r['ci_high']:.3f}]"
                    + (f" d{r['diff_vs_hpa']:+.3f}" if policy != "hpa" else "")
                )
            print(f"  {policy:11s} " + "; ".join(cells))
    print()
    for line in targets(summary):
        print(line)
    print(f"wrote {out / 'capacity_runs.csv'}, capacity_summary.csv, capacity_study.png")
    return 0


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "capacity-study",
        help="predictive autoscaling vs the HPA vs static peak provisioning",
        description=(
            "Daily cycles, calendar flash sales and unannounced surges on Online Boutique, "
            "each seed under three policies: SLO adherence, replica-hours, under-provisioned "
            "minutes and p99 with 95% confidence intervals, a CSV and a plot."
        ),
    )
    p.add_argument("--seeds", type=int, default=10, help="seeds per family (default 10)")
    p.add_argument("--days", type=float, default=2.0, help="days per run, first is warm-up")
    p.add_argument("--tick", type=float, default=10.0, help="tick seconds (default 10)")
    p.add_argument("--families", nargs="+", default=None, help="families (default all)")
    p.add_argument("--out", default="out/capacity-study", help="output directory")
    p.set_defaults(func=cmd_capacity_study)
