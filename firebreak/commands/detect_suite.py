"""`firebreak detect-suite`: every detector on the suite of twin scenarios, scored honestly."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

COLUMNS = (
    ("precision", "P", "{:.3f}"),
    ("recall", "R", "{:.3f}"),
    ("f1", "F1", "{:.3f}"),
    ("mttd_s", "MTTD s", "{:.0f}"),
    ("false_alerts_per_service_day", "FA/svc-day", "{:.3f}"),
    ("alerts", "alerts", "{}"),
    ("incidents", "incidents", "{}"),
    ("compression", "compress", "{:.3f}"),
    ("purity", "purity", "{:.3f}"),
    ("surfaced_share", "surfaced", "{:.3f}"),
)


def _fmt(fmt: str, value) -> str:
    return "-" if value is None else fmt.format(value)


def cmd_detect_suite(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from experiments.detection.suite import (
        SUITE,
        fit_tier2,
        load_suite,
        normal_run,
        run_case,
        summarise,
    )
    from twin.errors import FirebreakError

    if args.cold_start:
        return _cold_start(args)
    names = args.scenarios or list(SUITE)
    unknown = [n for n in names if n not in SUITE]
    if unknown:
        raise FirebreakError(f"unknown suite scenario(s): {', '.join(unknown)}; known: {SUITE}")
    scenarios = load_suite(names)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    results = []
    models = {}
    show = sys.stderr.isatty()
    for sc in tqdm(scenarios, desc="scenarios", disable=not show, file=sys.stderr):
        key = sc.topology.name
        if key not in models:
            models[key] = fit_tier2([normal_run(sc)], kind=args.tier2, telemetry=args.telemetry)
        results.append(run_case(sc, models[key], telemetry=args.telemetry))
    summary = summarise(results)
    payload = {
        "telemetry": args.telemetry,
        "cases": [vars(r) for r in results],
        "summary": summary,
    }
    (out / "detection_suite.json").write_text(json.dumps(payload, indent=2) + "\n")
    head = f"{'detector':14s}" + "".join(f"{label:>11s}" for _, label, _ in COLUMNS)
    print(f"suite: {', '.join(names)}; tier 2: {args.tier2}; telemetry: {args.telemetry}")
    print(head)
    for name, row in summary.items():
        cells = "".join(f"{_fmt(fmt, row[key]):>11s}" for key, _, fmt in COLUMNS)
        print(f"{name:14s}{cells}")
    tiered = summary.get("tiered", {})
    if "tier2_compute_saved_x" in tiered:
        kept = tiered["recall_kept_vs_tier2_always"]
        print(
            f"tier 2 compute saved: {tiered['tier2_compute_saved_x']}x fewer evaluations than "
            f"on every service-frame; recall kept "
            + ("- (tier 2 on every frame detected nothing)" if kept is None else f"{kept:.1%}")
        )
    print(f"wrote {out / 'detection_suite.json'}")
    return 0


def _cold_start(args: argparse.Namespace) -> int:
    from experiments.detection.suite import BASE_LOAD, cold_start, load_suite
    from twin.errors import FirebreakError

    target = load_suite([args.cold_start])[0]
    sources = [name for name in BASE_LOAD if name != target.topology.name]
    if not sources:
        raise FirebreakError("no other topology to transfer from")
    out = cold_start(target, sources, telemetry=args.telemetry)
    Path(args.out).mkdir(parents=True, exist_ok=True)
    (Path(args.out) / "cold_start.json").write_text(json.dumps(out, indent=2) + "\n")
    print(
        f"cold start on {target.topology.name} ({target.name}, first day, "
        f"{args.telemetry} telemetry); "
        f"tier 2 learned on: {', '.join(sources)}"
    )
    for label, row in out.items():
        a = row["alerts"]
        print(
            f"  {label:9s} F1 {a['f1']:.3f}  precision {a['precision']:.3f}  recall "
            f"{a['recall']:.3f}  MTTD {_fmt('{:.0f}', a['mttd_s'])} s  false alerts per "
            f"service-day {row['false_alerts_per_service_day']:.3f}"
        )
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    from experiments.observed import TELEMETRY_CHOICES, TELEMETRY_HELP

    p = sub.add_parser(
        "detect-suite",
        help="score the detectors (static baseline, tier 1, tiered, tier 2) on twin scenarios",
    )
    p.add_argument("--scenarios", nargs="*", help="a subset of the suite (default: all)")
    p.add_argument("--out", required=True, help="directory for detection_suite.json")
    p.add_argument(
        "--tier2",
        choices=("pca", "iforest", "autoencoder"),
        default="pca",
        help="the tier-2 model (default pca)",
    )
    p.add_argument(
        "--cold-start",
        metavar="SCENARIO",
        help="instead: transfer tier 2 from the other topologies to this scenario's, "
        "against learning it from scratch",
    )
    p.add_argument("--telemetry", choices=TELEMETRY_CHOICES, default="ideal", help=TELEMETRY_HELP)
    p.set_defaults(func=cmd_detect_suite)
