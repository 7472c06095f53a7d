"""`firebreak rca TABLE.csv --at T`: rank the likely root causes of an incident in a
recorded wide table (time + `<service>_<metric>` columns, as in RCAEval)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def _describe(evidence: dict) -> str:
    """One line of evidence for a human: the top signals and the propagation path."""
    signals = ", ".join(
        f"{s['signal']} {s['direction']} {s['score']:.3g}" for s in evidence.get("signals", [])
    )
    path = evidence.get("path")
    out = signals or "no signal moved"
    if path and len(path) > 1:
        out += f"; path {' → '.join(path)}"
    return out


def cmd_rca(args: argparse.Namespace) -> int:
    from detectors.rca.table import (
        causes_to_dicts,
        load_graph,
        parse_time,
        rank_table,
        read_wide_table,
    )
    from twin.errors import FirebreakError

    if args.top < 1 or args.before <= 0 or args.after <= 0:
        raise FirebreakError("--top must be >= 1, --before and --after > 0")
    table = read_wide_table(Path(args.file), args.time_column)
    at = parse_time(args.at)
    graph = load_graph(args.topology) if args.topology else None
    causes = rank_table(
        table, at, method=args.method, graph=graph, before_s=args.before, after_s=args.after
    )
    shown = causes_to_dicts(causes, args.top)
    print(f"{args.file}: {args.method} ranking at {at:.10g} ({len(causes)} services)")
    width = max((len(c["service"]) for c in shown), default=7)
    for c in shown:
        print(
            f"{c['rank']:>3}  {c['service']:<{width}}  {c['score']:>10.4g}  "
            f"{_describe(c['evidence'])}"
        )
    if causes and causes[0].evidence.get("note"):
        print(f"note: {causes[0].evidence['note']}")
    if args.json:
        doc = {"table": str(args.file), "method": args.method, "anomaly_time": at, "causes": shown}
        try:
            Path(args.json).write_text(json.dumps(doc, indent=2) + "\n")
        except OSError as exc:
            raise FirebreakError(f"{args.json}: cannot write: {exc.strerror or exc}") from None
        print(f"wrote {args.json}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "rca", help="rank root-cause services in a recorded wide table at an anomaly time"
    )
    p.add_argument("file", help="CSV: a time column (unix seconds or ISO) + <service>_<metric>")
    p.add_argument("--at", required=True, help="anomaly time, in the table's clock (or ISO)")
    p.add_argument("--method", choices=("robust", "randomwalk"), default="robust")
    p.add_argument("--topology", default=None, help="topology or scenario YAML (call graph)")
    p.add_argument("--top", type=int, default=5, help="causes to print")
    p.add_argument("--json", default=None, help="also write the ranking as JSON here")
    p.add_argument("--before", type=float, default=1800.0, help="normal window, seconds")
    p.add_argument("--after", type=float, default=300.0, help="incident window, seconds")
    p.add_argument("--time-column", default=None, help="default: time, timestamp or ts")
    p.set_defaults(func=cmd_rca)
