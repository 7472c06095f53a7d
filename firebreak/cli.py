"""`firebreak` command line. Errors print one clear message and exit 2, never a traceback."""

from __future__ import annotations

import argparse
import importlib
import shutil
import signal
import sys
from collections.abc import Sequence
from pathlib import Path

from firebreak.outdir import add_force, prepare_output_dir, prepare_output_file
from twin.errors import FirebreakError
from twin.scenario.durations import parse_duration

EXIT_USAGE = 2
EXIT_INTERRUPTED = 130

# Commands that write a directory or a file: (argument, option as the user types it). Their
# parsers get `--force` (directories), and main() checks the paths before the command runs
# (see firebreak.outdir).
OUTPUT_DIRS: dict[str, tuple[str, str]] = {
    "run": ("out", "--out"),
    "rehearse": ("out", "--out"),
    "detect": ("out", "--out"),
    "detect-suite": ("out", "--out"),
    "rca-suite": ("out", "--out"),
    "real-bench": ("out", "--out"),
    "capacity-study": ("out", "--out"),
    "forecast": ("out", "--out"),
    "validate-change": ("out", "--out"),
    "train": ("out", "--out"),
    "train-sweep": ("out", "--out"),
    "evaluate": ("out", "--out"),
    "impact-study": ("out", "--out"),
    "no-fault-day": ("out", "--out"),
    "nab": ("out", "--out"),
}
OUTPUT_FILES: dict[str, tuple[str, str]] = {
    "generate-topology": ("output", "-o"),
    "import-traces": ("output", "-o"),
    "calibrate": ("output", "-o"),
    "export": ("output", "-o"),
    "rca": ("json", "--json"),
    "sim2real": ("out", "--out"),
}

# Commands that live in modules of their own: each module has `register(subparsers)`.
COMMAND_MODULES: tuple[str, ...] = (
    "firebreak.commands.serve",
    "firebreak.commands.export",
    "firebreak.commands.import_traces",
    "firebreak.commands.calibrate",
    "firebreak.commands.fidelity",
    "firebreak.commands.detect",
    "firebreak.commands.detect_suite",
    "firebreak.commands.nab",
    "firebreak.commands.rca",
    "firebreak.commands.rca_suite",
    "firebreak.commands.real_bench",
    "firebreak.commands.sim2real",
    "firebreak.commands.capacity_study",
    "firebreak.commands.forecast",
    "firebreak.commands.validate_change",
    "firebreak.commands.rehearse",
    "firebreak.commands.train",
    "firebreak.commands.train_sweep",
    "firebreak.commands.evaluate",
    "firebreak.commands.impact_study",
    "firebreak.commands.no_fault_day",
    "firebreak.commands.incidents",
    "firebreak.commands.remedy_prior",
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
            allow_large=args.allow_large,
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
    run.add_argument(
        "--allow-large",
        action="store_true",
        help="run even when the estimated memory, disk or time passes this machine's limits",
    )
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
    for name in OUTPUT_DIRS:
        if name in sub.choices:
            add_force(sub.choices[name])
    return parser


def _check_outputs(args: argparse.Namespace) -> None:
    """Refuse an empty, clashing or occupied output path before any work starts; with
    --force, clear an occupied directory (never `.`, a parent of it, home or a git repo)."""
    if args.command in OUTPUT_DIRS:
        attr, option = OUTPUT_DIRS[args.command]
        value = getattr(args, attr, None)
        if value is not None:
            path = Path(value) if str(value).strip() else None
            if path is None or path.exists():  # a new directory is made by the command
                prepare_output_dir(value, getattr(args, "force", False), option)
    elif args.command in OUTPUT_FILES:
        attr, option = OUTPUT_FILES[args.command]
        value = getattr(args, attr, None)
        if value is not None and str(value) != "-":
            prepare_output_file(value, option)


def _terminate_as_interrupt() -> object:
    """SIGTERM (docker stop, kill) stops a run like Ctrl-C: what was simulated is kept."""

    def handler(signum, frame):
        raise KeyboardInterrupt

    try:
        return signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread (embedded use): leave signals alone
        return None


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse's usage errors (2) and --help (0) as a return code
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    previous = _terminate_as_interrupt()
    try:
        _check_outputs(args)
        return args.func(args)
    except FirebreakError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except OSError as exc:
        print(f"error: {_os_error(exc)}", file=sys.stderr)
        return EXIT_USAGE
    except RecursionError:
        print("error: input nested too deeply to read", file=sys.stderr)
        return EXIT_USAGE
    except MemoryError:
        print(
            "error: out of memory (the scenario or input is too large for this machine; "
            "shorten the run or reduce its size)",
            file=sys.stderr,
        )
        return EXIT_USAGE
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def _os_error(exc: OSError) -> str:
    """An OS error as a user reads it: the file first, then what went wrong."""
    what = exc.strerror or str(exc)
    if exc.filename is not None:
        return f"{exc.filename}: {what}"
    return what


if __name__ == "__main__":
    sys.exit(main())
