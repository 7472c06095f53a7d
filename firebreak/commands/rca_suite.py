"""`firebreak rca-suite`: our RCA methods against RCAEval's BARO and NSigma on seeded faults."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

TARGET_AC1_MARGIN = 0.10  # beat BARO's AC@1 by 10 points, overall and per topology
TARGET_AVG5 = 0.90


def _fmt(value) -> str:
    if value is None or value != value:  # None or NaN
        return "-"
    return f"{value:.3f}" if isinstance(value, float) else str(value)


def _print_block(title: str, summary, group: str | None, baro) -> None:
    print(f"\n== {title}")
    cols = ["ac1", "ac3", "avg5", "mrr", "mtti_s"]
    head = f"{'group':20s}{'method':20s}{'cases':>6s}" + "".join(f"{c:>9s}" for c in cols)
    print(head + "   targets")
    for _, row in summary.iterrows():
        key = row[group] if group else "all"
        cells = "".join(f"{_fmt(row[c]):>9s}" for c in cols)
        note = ""
        if baro is not None and row["method"] not in ("baro", "nsigma"):
            ref = baro.get(key)
            if ref is not None:
                ok_ac1 = row["ac1"] >= ref + TARGET_AC1_MARGIN
                note = f"AC@1 vs BARO {row['ac1'] - ref:+.2f} {'ok' if ok_ac1 else 'MISS'}"
            note += f"; Avg@5 {'ok' if row['avg5'] >= TARGET_AVG5 else 'MISS'}"
        print(f"{key!s:20s}{row['method']:20s}{row['cases']:>6d}{cells}   {note}")


def cmd_rca_suite(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from experiments.rca.cases import TOPOLOGIES, generate_cases
    from experiments.rca.methods import DEFAULT_METHODS, load_methods, rcaeval_available
    from experiments.rca.metrics import summarise
    from experiments.rca.suite import POST_S, run_suite
    from twin.errors import FirebreakError

    try:
        specs = generate_cases(args.cases, args.seed, args.topologies or TOPOLOGIES)
    except ValueError as exc:
        raise FirebreakError(str(exc)) from None
    try:
        methods, notes = load_methods(args.methods or DEFAULT_METHODS)
    except KeyError as exc:
        raise FirebreakError(f"--methods: {exc.args[0]}") from None
    ok, why = rcaeval_available()
    if not ok:
        notes.append(f"RCAEval's BARO and NSigma not compared: {why}")
    for note in notes:
        print(f"note: {note}")
    if not methods:
        raise FirebreakError("no RCA method could be loaded")
    cf = args.cf_method if args.cf_method in methods else next(iter(methods))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    began = time.perf_counter()
    bar = tqdm(total=len(specs), desc="cases", file=sys.stderr, disable=not sys.stderr.isatty())
    table = run_suite(
        specs,
        methods,
        cf_method=cf,
        progress=lambda _s: bar.update(),
        telemetry=args.telemetry,
    )
    bar.close()
    wall = time.perf_counter() - began
    table.to_csv(out / "rca_suite.csv", index=False)
    try:
        table.to_parquet(out / "rca_suite.parquet", index=False)
    except Exception as exc:  # parquet is a convenience; the CSV is the record
        print(f"note: no parquet written ({exc})")
    print(
        f"{len(specs)} cases, {table['topology'].nunique()} topologies, "
        f"{table['kind'].nunique()} fault kinds; methods: {', '.join(methods)}; "
        f"analysis window: history to anomaly time + {POST_S:g} s; "
        f"telemetry: {args.telemetry}; wall {wall:.0f} s"
    )
    det = table[(table["start"] == "inferred")].drop_duplicates("case")["detected"].mean()
    print(f"detected by the tiered pipeline (inferred start available): {det:.1%}")
    print(
        "MTTI = detection delay + analysis wall time, mean over cases with a correct top-1; "
        f"twin-cf({cf}) is twin-verified (assumes a twin matching the system)"
    )
    ours = table[~table["twin_verified"]]
    cf_rows = table[table["twin_verified"]]
    for start in ("true", "inferred"):
        sub = ours[ours["start"] == start]
        for group in (None, "topology", "kind"):
            by = ["method"] if group is None else [group, "method"]
            summary = summarise(sub, by=by)
            baro = None
            if "baro" in methods:
                ref = summary[summary["method"] == "baro"]
                baro = {(r[group] if group else "all"): r["ac1"] for _, r in ref.iterrows()}
            _print_block(f"start={start} by {group or 'overall'}", summary, group, baro)
        cfs = summarise(cf_rows[cf_rows["start"] == start], by=["method"])
        _print_block(f"start={start} twin-verified counterfactual (separate)", cfs, None, None)
    print(f"\nwrote {out / 'rca_suite.csv'}")
    return 0


def register(subparsers) -> None:
    from experiments.observed import TELEMETRY_CHOICES, TELEMETRY_HELP
    from firebreak.argtypes import positive_int

    p = subparsers.add_parser(
        "rca-suite",
        help="RCA methods vs RCAEval BARO/NSigma on seeded twin fault cases",
        description=(
            "Generate seeded fault cases across topologies and fault kinds, run every RCA "
            "method with the true and the detector-inferred start, and write a tidy table."
        ),
    )
    p.add_argument(
        "--cases", type=positive_int, default=200, help="number of fault cases (default 200)"
    )
    p.add_argument("--seed", type=int, default=0, help="suite seed (default 0)")
    p.add_argument("--topologies", nargs="+", default=None, help="topologies (default all)")
    p.add_argument("--methods", nargs="+", default=None, help="methods (default all known)")
    p.add_argument("--cf-method", default="robust", help="method the counterfactual re-ranks")
    p.add_argument("--out", default="out/rca-suite", help="output directory")
    p.add_argument("--telemetry", choices=TELEMETRY_CHOICES, default="ideal", help=TELEMETRY_HELP)
    p.set_defaults(func=cmd_rca_suite)
