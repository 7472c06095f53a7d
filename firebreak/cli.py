"""`firebreak` command line. Errors print one clear message and exit 2, never a traceback."""

from __future__ import annotations

import argparse
import importlib
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path

from twin.errors import FirebreakError
from twin.scenario.durations import parse_duration

EXIT_USAGE = 2
EXIT_INTERRUPTED = 130

# Commands that live in modules of their own: each module has `register(subparsers)`.
COMMAND_MODULES: tuple[str, ...] = (
    "firebreak.commands.serve",
    "firebreak.commands.export",
    "firebreak.commands.import_traces",
    "firebreak.commands.fidelity",
    "firebreak.commands.detect",
    "firebreak.commands.detect_suite",
    "firebreak.commands.nab",
    "firebreak.commands.rca",
    "firebreak.commands.rca_suite",
    "firebreak.commands.capacity_study",
    "firebreak.commands.forecast",
    "firebreak.commands.validate_change",
    "firebreak.commands.rehearse",
    "firebreak.commands.train",
    "firebreak.commands.evaluate",
    "firebreak.commands.impact_study",
)


def _duration_arg(text: str) -> float:
    try:
        value = parse_duration(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be positive: {text!r}")
    return value


def _share_arg(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1: {text!r}")
    return value


def _progress_bar(enabled: bool):
    """A tqdm bar per phase when attached to a terminal; silent otherwise."""
    if not enabled:
        return None, lambda: None
    from tqdm import tqdm

    bars: dict[str, tqdm] = {}

    def update(phase: str, done: float, total: float) -> None:
        bar = bars.get(phase)
        if bar is None:
            unit = "sim-s" if phase == "simulate" else "fault"
            desc = "simulating" if phase == "simulate" else "labelling (fault-free replays)"
            width = shutil.get_terminal_size((100, 24)).columns or 100
            bar = bars[phase] = tqdm(
                total=total, desc=desc, unit=unit, leave=False, file=sys.stderr, ncols=width
            )
        bar.update(done - bar.n)

    def close() -> None:
        for bar in bars.values():
            bar.close()

    return update, close


def _choose_fidelity(scenario, wanted: str):
    """The fidelity to run and the watcher of the flow model's envelope. `auto` runs flow
    unless a flow pre-pass finds the scenario outside the envelope (then request)."""
    from twin.run.envelope import EnvelopeWatcher, check_envelope

    if wanted == "auto":
        envelope = check_envelope(scenario)
        for warning in envelope.warnings:
            print(f"warning: {warning}", file=sys.stderr)
        chosen = "flow" if envelope.inside else "request"
        print(f"--fidelity auto: running {chosen} fidelity", file=sys.stderr)
        return chosen, None
    return wanted, EnvelopeWatcher() if wanted == "flow" else None


def cmd_run(args: argparse.Namespace) -> int:
    from twin.run.runner import run_scenario
    from twin.scenario.loader import load_scenario

    scenario = load_scenario(args.scenario, seed=args.seed, duration=args.duration)
    if args.trace_rate is not None:
        telemetry = scenario.telemetry.model_copy(update={"trace_rate": args.trace_rate})
        scenario = scenario.model_copy(update={"telemetry": telemetry})
    fidelity, watcher = _choose_fidelity(scenario, args.fidelity)
    show = sys.stderr.isatty() and not args.quiet
    update, close = _progress_bar(show)
    try:
        result = run_scenario(
            scenario,
            Path(args.out),
            progress=update,
            labels=not args.no_labels,
            fidelity=fidelity,
            on_tick=[watcher] if watcher is not None else (),
        )
    finally:
        close()
    if watcher is not None:
        for warning in watcher.envelope().warnings:
            print(f"warning: {warning}", file=sys.stderr)
    s = result.summary
    if result.interrupted:
        print(
            f"interrupted at t={s['sim_seconds']:g}s: kept {s['sim_seconds']:g} simulated "
            f"seconds in {result.out}",
            file=sys.stderr,
        )
        return EXIT_INTERRUPTED
    adherence = s["slo_adherence"]
    shown = f"{adherence:.2%}" if adherence is not None else "n/a"
    print(
        f"{s['scenario']} seed {s['seed']}: {s['sim_seconds']:g} s simulated in "
        f"{s['simulate_wall_seconds']:.2f} s ({s['speed_x_realtime']:,.0f}x real time); "
        f"SLO adherence {shown}; run directory {result.out}"
    )
    return 0


def cmd_validate(args: argparse.Namespace) -> int:
    from twin.scenario.loader import load_scenario

    failures = 0
    for path in args.files:
        try:
            sc = load_scenario(path)
        except FirebreakError as exc:
            failures += 1
            print(f"FAIL {exc}", file=sys.stderr)
        else:
            print(
                f"ok   {path}: {sc.name} ({len(sc.topology.services)} services, "
                f"{len(sc.faults)} faults, {sc.duration:g} s)"
            )
    return EXIT_USAGE if failures else 0


def cmd_generate_topology(args: argparse.Namespace) -> int:
    from twin.scenario.generate import write_topology

    if args.services < 2:
        raise FirebreakError(f"--services: need at least 2, got {args.services}")
    write_topology(Path(args.output), args.services, args.seed)
    print(f"wrote {args.output} ({args.services} services, seed {args.seed})")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="firebreak", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="simulate a scenario and write its run directory")
    run.add_argument("scenario", help="scenario YAML file")
    run.add_argument("--out", required=True, help="run directory to write")
    run.add_argument("--seed", type=int, default=None, help="override the scenario's seed")
    run.add_argument("--duration", type=_duration_arg, default=None, help="e.g. 24h, 90m")
    run.add_argument(
        "--no-labels",
        action="store_true",
        help="skip the fault-free replays that compute ground truth",
    )
    run.add_argument(
        "--fidelity",
        choices=("flow", "request", "auto"),
        default="flow",
        help="flow: per-tick queueing model (fast, default); request: every request "
        "simulated; auto: flow unless a flow pre-pass finds the scenario where flow is known "
        "to be off (it warns either way)",
    )
    run.add_argument(
        "--trace-rate",
        type=_share_arg,
        default=None,
        help="share of external requests traced (default 1e-4 flow, 1e-3 request)",
    )
    run.add_argument("--quiet", action="store_true", help="no progress bar")
    run.set_defaults(func=cmd_run)

    val = sub.add_parser("validate", help="check scenario files")
    val.add_argument("files", nargs="+")
    val.set_defaults(func=cmd_validate)

    gen = sub.add_parser("generate-topology", help="a large synthetic production-like topology")
    gen.add_argument("--services", type=int, required=True)
    gen.add_argument("--seed", type=int, default=0)
    gen.add_argument("-o", "--output", required=True)
    gen.set_defaults(func=cmd_generate_topology)

    for module_name in COMMAND_MODULES:
        importlib.import_module(module_name).register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except FirebreakError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
