"""`firebreak calibrate`: a runnable scenario fitted to a real system's traces and pod
metrics, optionally checked against a held-out period."""

from __future__ import annotations

import argparse
from pathlib import Path

from firebreak.argtypes import int_at_least
from firebreak.commands.import_traces import _duration


def cmd_calibrate(args: argparse.Namespace) -> int:
    from experiments.calibration.fit import CalibrationError, calibrate
    from twin.scenario.import_traces import write_yaml
    from twin.scenario.trace_scenario import scenario_header

    if args.check is not None and not Path(args.check).is_dir():
        raise CalibrationError(f"--check: {args.check}: not a folder of telemetry")
    root = Path(args.folder)
    scenario, summary = calibrate(root, name=args.name, duration=args.duration, seed=args.seed)
    note = (
        f"# Calibrated by `firebreak calibrate` from {root} ({summary['pods']} pod metric files).\n"
    )
    write_yaml(scenario, Path(args.output), note + scenario_header(root, summary))
    topo = scenario["topology"]
    print(
        f"wrote {args.output}: {len(topo['services'])} services, {len(topo['calls'])} calls, "
        f"entry rate {summary['rate']:.4g}/s from {summary['traces']} traces"
    )
    if args.check is not None:
        _check(scenario, Path(args.check), root)
    return 0


def _check(scenario: dict, held_out: Path, fitted: Path) -> None:
    """Print the calibrated twin beside the held-out period, service by service, and the
    verdict of the fitted period's own real figures as a forecast of the held-out one (a
    persistence baseline: what the real system's own change between periods costs)."""
    from experiments.calibration import check

    real, rate, note = check.observed_period(held_out)
    if note:
        print(f"\n{note}")
    twin = check.simulated(scenario, rate)
    scale = check.metric_window_scale(real)
    twin_cpu = None
    if scale is not None and abs(scale - 1.0) > 0.05:
        twin_cpu = check.simulated(scenario, rate * scale)
    print(f"\nheld-out {held_out} (entry rate {rate:.3g}/s): real / twin (error)")
    if twin_cpu is not None:
        print(
            f"CPU at the pods' recorded load: entry rate {rate * scale:.3g}/s (the metrics' "
            f"window ran at {scale:.2f}x the traces' rate)"
        )
    print(f"{'service':32s} {'req/s':>13s} {'mean ms':>22s} {'p90 ms':>22s} {'CPU cores':>24s}")
    rows = check.compare(real, twin, twin_cpu)
    for r in rows:
        cells = [f"{r['rate'][0]:6.2f}/{r['rate'][1]:<6.2f}"]
        for key, fmt in (("mean_ms", ".1f"), ("p90_ms", ".1f"), ("cpu", ".4f")):
            a, b, e = r[key]
            cells.append(f"{a:{fmt}}/{b:{fmt}} ({e:+.0%})")
        print(f"{r['service']:32s} {cells[0]:>13s} {cells[1]:>22s} {cells[2]:>22s} {cells[3]:>24s}")
    _print_drift(real, check.MIN_RATE)
    v = check.verdict(rows)
    base = check.verdict(check.compare(real, check.observed(fitted)[0]))
    print(f"\nservices above {check.MIN_RATE:g} req/s: {v['services']}")
    print(f"  {'':26s} {'twin':28s} persistence (the fitted period's real figures)")
    for key, label in (("mean_ms", "mean latency"), ("p90_ms", "p90 latency"), ("cpu", "CPU")):
        label = f"{label} within {v[key]['target']:.0%}"
        print(f"  {label:26s} {_within(v[key]):28s} {_within(base[key])}")
    label = f"every service: CPU within {v['cpu_all']['target']:.0%}"
    print(f"  {label:26s} {_within(v['cpu_all']):28s} {_within(base['cpu_all'])}")


def _print_drift(real: dict, min_rate: float) -> None:
    """Each busy service's real mean latency by hour of a day of incidents' fault-free
    windows (only such a day has them): how far the real system moved within the period."""
    busy = [s for s, v in real.items() if "mean_ms_by_hour" in v and v["rate"] >= min_rate]
    if not busy:
        return
    print("\nreal mean latency (ms) by hour of the fault-free windows (UTC):")
    for svc in sorted(busy, key=lambda s: -real[s]["rate"]):
        hours = real[svc]["mean_ms_by_hour"]
        print(f"  {svc:30s} " + "  ".join(f"{h:02d}h {ms:.1f}" for h, ms in hours.items()))


def _within(s: dict) -> str:
    """'k/n (median |error| e)' for one row of a verdict."""
    med = "n/a" if s["median_abs_error"] is None else f"{s['median_abs_error']:.0%}"
    return f"{s['within']}/{s['of']} (median |error| {med})"


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the command to the `firebreak` parser."""
    parser = subparsers.add_parser(
        "calibrate",
        help="fit a runnable scenario to a real system's traces and pod metrics",
    )
    parser.add_argument("folder", help="telemetry folder: trace/ (span CSV or OTLP JSON), metric/")
    parser.add_argument("-o", "--output", required=True, help="scenario YAML to write")
    parser.add_argument("--name", default=None, help="scenario name (default: the folder's)")
    parser.add_argument("--duration", type=_duration, default=3600.0, help="run length (1h)")
    parser.add_argument("--seed", type=int_at_least(0), default=0, help="scenario seed (0)")
    parser.add_argument(
        "--check",
        default=None,
        help="held-out telemetry folder to compare the twin with (a day of incidents with a "
        "fault list, Nezha's rca_data/<day>: its fault-free parts only)",
    )
    parser.set_defaults(func=cmd_calibrate)
