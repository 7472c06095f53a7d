"""`firebreak rehearse SCENARIO --ops traditional|ai|both --out DIR`: the closed loop."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROWS = (
    ("alerts", "alerts"),
    ("incidents", "incidents"),
    ("alerts_per_incident", "alerts per incident"),
    ("faults_detected", "faults detected"),
    ("mttd_s", "MTTD s"),
    ("faults_identified", "faults identified"),
    ("mtti_s", "MTTI s"),
    ("faults_with_slo_impact", "faults with SLO impact"),
    ("mttr_s", "MTTR s (fault start to SLO restored)"),
    ("slo_adherence", "SLO adherence"),
    ("slo_violating_min", "SLO-violating minutes"),
    ("replica_hours", "replica-hours"),
    ("pages", "pages to the on-call engineer"),
    ("actions_automated", "actions automated"),
    ("actions_approved", "actions approved"),
    ("actions_by_human", "actions by the engineer"),
    ("actions_undone", "actions undone"),
    ("escalated", "decisions escalated"),
    ("unsafe_actions", "unsafe actions"),
)


def _cell(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4f}" if value <= 1.0 else f"{value:,.1f}"
    return str(value)


def table(stacks: dict[str, dict]) -> str:
    """A side-by-side table of the stacks' figures."""
    modes = list(stacks)
    width = max(len(label) for _, label in ROWS) + 2
    lines = [" " * width + "".join(f"{m:>14}" for m in modes)]
    for key, label in ROWS:
        lines.append(
            f"{label:<{width}}" + "".join(f"{_cell(stacks[m].get(key)):>14}" for m in modes)
        )
    return "\n".join(lines)


def _ops(text: str) -> str:
    if text in ("traditional", "ai", "both") or (text.startswith("rl:") and len(text) > 3):
        return text
    raise argparse.ArgumentTypeError(
        f"expected traditional, ai, both or rl:POLICY_DIR, got {text!r}"
    )


def _similar_section(runs: dict, library: str) -> str:
    """The report's similar-past-incidents section, from the AI stack's run when there is
    one (its incidents are the operator's)."""
    from experiments.rehearsal.memory import section_html, similar_past

    mode = "ai" if "ai" in runs else next(iter(runs))
    rows = similar_past(Path(runs[mode]), Path(library))
    for r in rows:
        best = r["nearest"][0] if r["nearest"] else None
        fix = ", ".join(best["fixed_by"]) if best and best["fixed_by"] else "nothing recorded"
        shown = f"nearest {best['name']} ({best['kind']}, fixed by {fix})" if best else "-"
        print(f"{r['id']}: looks like {r['kind']}; {shown}")
    return section_html(rows, Path(library))


def cmd_rehearse(args: argparse.Namespace) -> int:
    from experiments.rehearsal.run import StackSettings, rehearse
    from experiments.report.html import report_modes, write_report
    from twin.scenario.loader import load_scenario

    if args.incidents:  # refuse a bad library before the run, not after it
        from detectors.memory.library import IncidentLibrary

        with IncidentLibrary.open(args.incidents):
            pass
    scenario = load_scenario(args.scenario, seed=args.seed, duration=args.duration)
    modes = ("traditional", "ai") if args.ops == "both" else (args.ops,)
    out = Path(args.out)
    stacks = {}
    interrupted = False
    truth = None  # the fault labels depend on the scenario alone: computed once
    for mode in modes:
        target = out / mode if len(modes) > 1 else out
        settings = StackSettings(
            runbook=args.runbook, trust_pickle=args.trust_pickle, telemetry=args.telemetry
        )
        print(
            f"rehearsing {scenario.name} (seed {scenario.seed}) with {mode} operations on "
            f"{args.telemetry} telemetry ...",
            file=sys.stderr,
        )
        result = rehearse(
            scenario, mode, target, settings=settings, truth=truth, allow_large=args.allow_large
        )
        if truth is None and not result.interrupted:
            truth = json.loads((target / "labels.json").read_text())
        name = mode.partition(":")[0]  # rl:DIR reports as "rl"
        stacks[name] = result.summary["stacks"][name]
        interrupted |= result.interrupted
        print(f"{mode}: run directory {target}", file=sys.stderr)
        if interrupted:  # Ctrl-C or SIGTERM: stop here, keep what was rehearsed
            break
    print(table(stacks))
    if interrupted:
        print(f"interrupted: kept the run directories in {out}", file=sys.stderr)
        return 130
    names = [m.partition(":")[0] for m in modes]
    runs = report_modes(out, names)
    extra = _similar_section(runs, args.incidents) if args.incidents else ""
    print(f"report: {write_report(out, runs, extra)}")
    return 0


def register(subparsers) -> None:
    from experiments.observed import LOOP_TELEMETRY_HELP, TELEMETRY_CHOICES
    from firebreak.cli import _duration_arg
    from firebreak.commands.evaluate import add_trust_pickle

    p = subparsers.add_parser(
        "rehearse",
        help="run a scenario under traditional or AI-driven operations (closed loop)",
        description=(
            "The twin's stream feeds detectors, correlation, RCA and remediation, whose "
            "actions flow back into the twin; traditional operations page a simulated on-call "
            "engineer instead. Writes a run directory per mode with the scored summary "
            "(MTTD, MTTI, MTTR, alerts per incident, actions, unsafe actions) and, for AI "
            "operations, the audit log."
        ),
    )
    p.add_argument("scenario", help="scenario YAML file")
    p.add_argument(
        "--ops",
        type=_ops,
        default="both",
        help="traditional, ai, both (the default), or rl:DIR for a policy `firebreak train` saved",
    )
    p.add_argument("--out", default="runs/rehearsal", help="output directory")
    p.add_argument("--seed", type=int, default=None, help="override the scenario's seed")
    p.add_argument("--duration", type=_duration_arg, default=None, help="override duration")
    p.add_argument("--runbook", default=None, help="runbook YAML (default: runbooks/default.yaml)")
    p.add_argument(
        "--allow-large",
        action="store_true",
        help="run even when the estimated memory, disk or time passes this machine's limits",
    )
    p.add_argument(
        "--incidents",
        default=None,
        help="incident library (firebreak incidents add): the report lists the nearest past "
        "incidents of each incident opened, with what fixed them",
    )
    p.add_argument(
        "--telemetry", choices=TELEMETRY_CHOICES, default="ideal", help=LOOP_TELEMETRY_HELP
    )
    add_trust_pickle(p)
    p.set_defaults(func=cmd_rehearse)
