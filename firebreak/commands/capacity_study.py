"""`firebreak capacity-study`: predictive scaling vs the HPA vs static peak provisioning.

Three sources of cases, one set of outputs (capacity_runs.csv, capacity_summary.csv,
capacity_study.png, and capacity_never_worse.csv where the predictive scaler is checked
against the HPA run by run):

- the synthetic families on Online Boutique (default);
- `--scenario FILE`: a user's own system, optionally under `--trace CSV` (a recorded rate
  series replayed as its load, each class peaking at `--peak-x` × its rate);
- `--trace CSV` alone: the families' topology under that series;
- `--real-traces PART`: NAB's traffic series (development, held-out or all) at each
  `--peak-x` multiple of Online Boutique's nominal load.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

PARTS = ("development", "held-out", "all")


def _cases(args: argparse.Namespace, out: Path) -> list:
    from detectors.forecast import traffic
    from experiments.capacity import traces
    from experiments.capacity.families import FAMILIES
    from experiments.capacity.study import family_cases, scenario_cases
    from twin.errors import FirebreakError
    from twin.scenario.loader import load_scenario

    if args.seeds < 1:
        raise FirebreakError(f"--seeds: must be at least 1, got {args.seeds}")
    if args.days is not None and args.days <= 0:
        raise FirebreakError(f"--days: must be > 0, got {args.days:g}")
    peaks = args.peak_x or [1.0]
    if args.trace and len(peaks) != 1:
        raise FirebreakError(f"--peak-x: one value with --trace, got {len(peaks)}")
    if args.real_traces:
        if args.scenario or args.trace or args.families:
            raise FirebreakError(
                "--real-traces: runs on its own (no --scenario, --trace or --families)"
            )
        names = {
            "development": list(traffic.DEVELOPMENT),
            "held-out": list(traffic.HELD_OUT),
            "all": list(traffic.DEVELOPMENT + traffic.HELD_OUT),
        }[args.real_traces]
        if not traffic.NAB_ROOT.is_dir():
            raise FirebreakError(f"--real-traces: NAB corpus not found at {traffic.NAB_ROOT}")
        split = {n: "development" for n in traffic.DEVELOPMENT}
        split |= {n: "held-out" for n in traffic.HELD_OUT}
        days = 14.0 if args.days is None else args.days
        return traces.nab_cases(
            names, peaks, args.seeds, out / "traces", days=days, tick=args.tick, split=split
        )
    if args.scenario or args.trace:
        if args.families:
            raise FirebreakError("--families: only for the synthetic study (no --scenario)")
        base = load_scenario(args.scenario) if args.scenario else traces.base_scenario(args.tick)
        if args.trace:
            base = traces.with_trace(
                base,
                Path(args.trace),
                peaks[0],
                days=args.days,
                value_column=args.value_column,
                time_column=args.time_column or None,
            )
        elif args.days is not None:
            base = base.model_copy(update={"duration": args.days * 86_400.0})
        return scenario_cases(base, args.seeds)
    families = tuple(args.families or FAMILIES)
    unknown = [f for f in families if f not in FAMILIES]
    if unknown:
        raise FirebreakError(f"--families: unknown {unknown[0]!r}; choose from {FAMILIES}")
    return family_cases(families, args.seeds, args.days or 2.0, args.tick)


def _print_summary(summary, families: list[str]) -> None:
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


def cmd_capacity_study(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from experiments.capacity.study import (
        never_worse,
        never_worse_lines,
        plot,
        run_study,
        summarise,
        targets,
    )

    out = Path(args.out)
    began = time.perf_counter()
    cases = _cases(args, out)  # validates every input before anything runs
    out.mkdir(parents=True, exist_ok=True)
    bar = tqdm(total=len(cases), desc="cases", file=sys.stderr, disable=not sys.stderr.isatty())
    table = run_study(cases, progress=bar.update)
    bar.close()
    summary = summarise(table)
    check = never_worse(table)
    table.to_csv(out / "capacity_runs.csv", index=False)
    summary.to_csv(out / "capacity_summary.csv", index=False)
    check.to_csv(out / "capacity_never_worse.csv")
    plot(summary, out / "capacity_study.png")
    wall = time.perf_counter() - began
    families = list(dict.fromkeys(table.family))
    print(
        f"{len(table)} runs ({len(families)} families/traces x {args.seeds} seeds x 3 "
        f"policies), tick {args.tick:g} s; first day (or half) warm-up, not scored; "
        f"wall {wall:.0f} s"
    )
    _print_summary(summary, families)
    print()
    for line in targets(summary):
        print(line)
    for line in never_worse_lines(check):
        print(line)
    print(
        f"wrote {out / 'capacity_runs.csv'}, capacity_summary.csv, capacity_never_worse.csv, "
        "capacity_study.png"
    )
    return 0


def register(subparsers) -> None:
    from firebreak.argtypes import positive_float, positive_int

    p = subparsers.add_parser(
        "capacity-study",
        help="predictive autoscaling vs the HPA vs static peak provisioning",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--scenario", default=None, help="your scenario YAML (your system)")
    p.add_argument(
        "--trace", default=None, help="CSV rate series replayed as the load (timestamp,value)"
    )
    p.add_argument("--value-column", default="value", help="rate column of --trace")
    p.add_argument(
        "--time-column",
        default="timestamp",
        help="time column of --trace (unix seconds or ISO date-times)",
    )
    p.add_argument(
        "--peak-x",
        type=positive_float,
        nargs="+",
        default=None,
        help="the trace's peak as a multiple of each class's rate (default 1; several "
        "with --real-traces)",
    )
    p.add_argument(
        "--real-traces",
        choices=PARTS,
        default=None,
        help="NAB traffic series as the load (development or held-out part, or all)",
    )
    p.add_argument("--seeds", type=positive_int, default=10, help="seeds per case (default 10)")
    p.add_argument(
        "--days",
        type=positive_float,
        default=None,
        help="days per run (families: default 2; traces: the series, NAB capped at 14)",
    )
    p.add_argument("--tick", type=positive_float, default=10.0, help="tick seconds (default 10)")
    p.add_argument("--families", nargs="+", default=None, help="families (default all)")
    p.add_argument("--out", default="out/capacity-study", help="output directory")
    p.set_defaults(func=cmd_capacity_study)
