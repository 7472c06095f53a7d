"""`firebreak detect FILE.csv`: the tier-1 detectors on any recorded table."""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def cmd_detect(args: argparse.Namespace) -> int:
    import pandas as pd

    from detectors.anomaly.table import detect_table, read_table
    from twin.errors import FirebreakError

    if args.z <= 0 or args.persist < 1 or args.window < 10:
        raise FirebreakError("--z must be > 0, --persist >= 1 and --window >= 10")
    times, signals = read_table(Path(args.file), args.time_column)
    result = detect_table(times, signals, z=args.z, persist=args.persist, window=args.window)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    scores = pd.DataFrame(result.scores, columns=result.columns)
    scores.insert(0, "time", result.times)
    scores.to_csv(out / "scores.csv", index=False)
    with (out / "alerts.jsonl").open("w") as fh:
        for alert in result.alerts:
            fh.write(json.dumps(alert.to_dict()) + "\n")
    print(
        f"{args.file}: {len(result.times)} rows × {len(result.columns)} signals; "
        f"{len(result.alerts)} alerts; wrote {out / 'scores.csv'} and {out / 'alerts.jsonl'}"
    )
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "detect",
        help="run the streaming detectors on a recorded table (time column + one per signal)",
    )
    p.add_argument("file", help="CSV with a time column (unix seconds or ISO timestamps)")
    p.add_argument("--out", required=True, help="directory for scores.csv and alerts.jsonl")
    p.add_argument("--time-column", default=None, help="default: time, timestamp or ts")
    p.add_argument("--z", type=float, default=6.0, help="score that counts as anomalous")
    p.add_argument("--persist", type=int, default=3, help="rows in a row before alerting")
    p.add_argument("--window", type=int, default=720, help="rows in the rolling baseline")
    p.set_defaults(func=cmd_detect)
