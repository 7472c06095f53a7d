"""`firebreak detect FILE`: the tiered detectors on any recorded metrics file."""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def _write(path: Path, text: str) -> None:
    """Write whole or not at all: a temporary name, then a rename."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    tmp.replace(path)


def cmd_detect(args: argparse.Namespace) -> int:
    import pandas as pd

    from detectors.anomaly.table import detect_table, read_table
    from detectors.ingest.read import METRIC_FORMATS
    from twin.errors import FirebreakError

    if args.format not in METRIC_FORMATS:
        raise FirebreakError(
            f"--format: unknown format {args.format!r} (one of {', '.join(METRIC_FORMATS)})"
        )
    table = read_table(Path(args.file), args.time_column, exclude=args.exclude, fmt=args.format)
    result = detect_table(table, z=args.z, persist=args.persist, window=args.window)
    out = Path(args.out)
    try:
        out.mkdir(parents=True, exist_ok=True)
        scores = pd.DataFrame(result.scores, columns=result.columns)
        scores.insert(0, "time", result.times)
        _write(out / "scores.csv", scores.to_csv(index=False))
        _write(
            out / "alerts.jsonl",
            "".join(json.dumps(a.to_dict()) + "\n" for a in result.alerts),
        )
    except OSError as exc:
        raise FirebreakError(f"{out}: cannot write: {exc.strerror or exc}") from None
    for note in result.notes:
        print(f"note: {note}")
    print(
        f"{args.file}: {len(result.times)} rows × {len(result.columns)} signals; "
        f"{len(result.alerts)} alerts; wrote {out / 'scores.csv'} and {out / 'alerts.jsonl'}"
    )
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "detect",
        help="run the tiered detectors on a recorded metrics file (CSV, Prometheus JSON, ...)",
    )
    p.add_argument(
        "file",
        help="wide or long CSV, Prometheus range-query JSON, PetShop CSV, or a folder of CSVs",
    )
    p.add_argument("--out", required=True, help="directory for scores.csv and alerts.jsonl")
    p.add_argument("--format", default="auto", help="auto (default), wide, long, prometheus, ...")
    p.add_argument("--time-column", default=None, help="default: time, timestamp, ts, ...")
    p.add_argument(
        "--exclude",
        nargs="+",
        default=[],
        metavar="COLUMN",
        help="columns never scored (glob patterns); label, is_anomaly, ... always are",
    )
    from firebreak.argtypes import int_at_least, positive_float, positive_int

    p.add_argument("--z", type=positive_float, default=6.0, help="score that counts as anomalous")
    p.add_argument("--persist", type=positive_int, default=3, help="rows in a row before alerting")
    p.add_argument(
        "--window", type=int_at_least(10), default=720, help="rows in the rolling baseline"
    )
    p.set_defaults(func=cmd_detect)
