"""`firebreak sim2real DATA_DIR`: the same RCA methods on real Nezha Train Ticket faults and
on twin cases of the calibrated Train Ticket (same fault kinds, roots and windows), AC@1
side by side, and whether the methods come in the same order."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from firebreak.argtypes import int_at_least, positive_int


def cmd_sim2real(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from experiments.realbench.nezha import DEV_DAY
    from experiments.sim2real import check
    from experiments.sim2real.faults import Sim2RealError

    began = time.perf_counter()
    try:
        notes = check.method_notes(args.methods)
    except KeyError as exc:
        raise Sim2RealError(f"--methods: {exc.args[0]}") from None
    root = check.dataset_root(Path(args.data_dir))
    days = check.check_days(root, args.days)
    if args.scenario is not None:
        from twin.scenario.loader import load_scenario

        scenario, source = load_scenario(args.scenario), str(args.scenario)
    else:
        scenario, source = check.calibrated(root, args.calibrate_day or DEV_DAY, args.seed)
    print(f"twin: {scenario.name}, {len(scenario.topology.services)} services ({source})")
    real_kinds = check.SIMULATED_KINDS if args.real_kinds == "simulated" else None
    if real_kinds:
        print(f"real metric table cut to the kinds the twin simulates: {', '.join(real_kinds)}")
    exporters = None
    if args.twin_layout == "nezha":
        exporters = check.exporter_models(root, args.calibrate_day or DEV_DAY)
        print(
            "twin metric table: Nezha's 19 kinds (exporter columns fitted on "
            f"{args.calibrate_day or DEV_DAY}'s fault-free phase)"
        )
    for note in notes:
        print(f"note: {note}")
    bars = []

    def progress(name: str, total: int):
        bar = tqdm(
            total=total, desc=name, unit="case", file=sys.stderr, disable=not sys.stderr.isatty()
        )
        bars.append(bar)
        return bar.update

    results = []
    try:
        for day in days:
            results.append(
                check.run_day(root, day, scenario, source, args.seed, args.methods, args.limit,
                              progress, whole_table=args.whole_table, exporters=exporters,
                              real_kinds=real_kinds)
            )  # fmt: skip
    finally:
        for bar in bars:
            bar.close()
    f = check.framing_for()
    framed = (
        "whole tables"
        if args.whole_table
        else f"tables cut to {f.before_s:g} s before and {f.after_s:g} s after"
    )
    for r in results:
        role = "development: settings chosen here" if r.dev else "held out"
        print(f"\n== {r.day} ({role}; {r.real['case'].nunique()} cases, real vs twin; {framed})")
        for line in check.compare.format_table(r.table, r.verdict):
            print(line)
        for s in r.skipped:
            print(f"   skipped {s}")
    wall = time.perf_counter() - began
    if args.out is not None:
        doc = {
            "data": str(root),
            "twin": {"name": scenario.name, "source": source},
            "seed": args.seed,
            "whole_table": args.whole_table,
            "twin_layout": args.twin_layout,
            "real_kinds": args.real_kinds,
            "settings": check.settings(),
            "notes": notes,
            "days": check.as_json(results),
            "wall_s": round(wall, 1),
        }
        Path(args.out).write_text(json.dumps(doc, indent=1, default=float) + "\n")
        print(f"\nwrote {args.out} in {wall:.0f} s")
    else:
        print(f"\ndone in {wall:.0f} s")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "sim2real",
        help="the same RCA methods on real Nezha faults and on twin cases of them",
        description=(
            "Calibrate Train Ticket from DATA_DIR's fault-free phase (or take --scenario), "
            "mirror each real fault in the twin (same kind, same service, same windows, "
            "production-like telemetry), run the same RCA methods on both and print AC@1 "
            "side by side with the Kendall τ of the methods' order."
        ),
    )
    p.add_argument("data_dir", help="Nezha Train Ticket folder (or one holding it)")
    p.add_argument("--days", nargs="+", default=None, help="days to check (default: all)")
    p.add_argument(
        "--scenario", default=None, help="a calibrated scenario YAML (default: calibrate)"
    )
    p.add_argument(
        "--calibrate-day", default=None, help="construct_data day to calibrate from (dev day)"
    )
    p.add_argument("--methods", nargs="+", default=None, help="default: all")
    p.add_argument("--limit", type=positive_int, default=None, help="first N cases per day")
    p.add_argument("--seed", type=int_at_least(0), default=0, help="twin seed (0)")
    p.add_argument(
        "--whole-table",
        action="store_true",
        help="give methods the whole metric table (the real day's, as real-bench does) "
        "instead of the observation window on both sides",
    )
    p.add_argument(
        "--twin-layout",
        choices=("nezha", "rcaeval"),
        default="nezha",
        help=(
            "the twin's metric table: Nezha's 19 kinds, the unsimulated ones from exporter "
            "models fitted on the calibration day (default), or RCAEval's six simulated kinds"
        ),
    )
    p.add_argument(
        "--real-kinds",
        choices=("all", "simulated"),
        default="all",
        help=(
            "the real metric table's kinds: all (default) or only those the twin simulates "
            "(CPU, memory, load, server p90, success rate): an ablation"
        ),
    )
    p.add_argument("--out", default=None, help="JSON file to write")
    p.set_defaults(func=cmd_sim2real)
