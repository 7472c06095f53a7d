"""`firebreak fidelity SCENARIO | --suite NAME`: run flow and request fidelity and compare."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

EXIT_DISAGREE = 1


def _onset(value: float | None) -> str:
    return "none" if value is None else f"t={value:g} s"


def _print_storms(report) -> bool:
    agree = report.storms_agree()
    flow, request = report.storm_onset.get("flow"), report.storm_onset.get("request")
    print(
        f"{'ok  ' if agree else 'MISS'} storms: flow {_onset(flow)}, request {_onset(request)}"
        " (both or neither, onsets within 30 s)"
    )
    return agree


def _print_envelope(scenario) -> None:
    from twin.run.envelope import check_envelope

    for warning in check_envelope(scenario).warnings:
        print(f"warning: {warning}", file=sys.stderr)


def _cmd_suite(args: argparse.Namespace) -> int:
    from twin.run.stress import STRESS_TARGETS, run_suite, suite_paths, summary_table

    paths = suite_paths(args.suite)
    results = run_suite(
        paths,
        duration=args.duration,
        warmup_s=args.warmup,
        progress=lambda name: print(f"running {name} in both fidelities ...", file=sys.stderr),
    )
    for res in results:
        rep = res.report
        print(
            f"\n{rep.scenario} seed {rep.seed}, window {rep.window[0]:g}-{rep.window[1]:g} s; "
            f"flow {rep.wall_seconds['flow']:.2f} s, request {rep.wall_seconds['request']:.2f} s"
        )
        print(rep.table())
    print(
        f"\nstress suite {args.suite}: flow against request on every service above 1 req/s "
        f"(throughput {STRESS_TARGETS['throughput']:.0%}, mean "
        f"{STRESS_TARGETS['latency_mean_ms']:.0%}, p99 {STRESS_TARGETS['latency_p99_ms']:.0%}, "
        "error ratio 0.02, or the request run's own uncertainty; storms in both or neither)"
    )
    print(summary_table(results))
    if args.json:
        out = [
            {
                "case": res.path.stem,
                "passed": res.passed,
                "misses": res.misses,
                "storm_onset": res.report.storm_onset,
                "services": list(res.report.services),
                "flow": [vars(x) for x in res.report.flow],
                "request": [vars(x) for x in res.report.request],
                "wall_seconds": res.report.wall_seconds,
            }
            for res in results
        ]
        Path(args.json).write_text(json.dumps(out, indent=2) + "\n")
    return 0 if all(res.passed for res in results) else EXIT_DISAGREE


def cmd_fidelity(args: argparse.Namespace) -> int:
    from firebreak.outdir import prepare_output_file
    from twin.errors import FirebreakError

    if (args.scenario is None) == (args.suite is None):
        raise FirebreakError("fidelity: give one scenario file or --suite NAME, not both")
    if args.json:  # refused before the runs, not after minutes of them
        prepare_output_file(args.json, "--json")
    if args.suite is not None:
        return _cmd_suite(args)

    from twin.run.fidelity import TARGETS, affected_services, latency_fault_indices, run_both
    from twin.scenario.loader import load_scenario

    scenario = load_scenario(args.scenario, seed=args.seed, duration=args.duration)
    if args.warmup >= scenario.duration:
        raise FirebreakError(
            f"--warmup: {args.warmup:g}s is not shorter than the run ({scenario.duration:g}s)"
        )
    _print_envelope(scenario)
    print(f"running {scenario.name} in both fidelities ...", file=sys.stderr)
    report = run_both(scenario, warmup_s=args.warmup)
    print(
        f"{scenario.name} seed {scenario.seed}, window {report.window[0]:g}-{report.window[1]:g}"
        f" s; flow {report.wall_seconds['flow']:.2f} s, request "
        f"{report.wall_seconds['request']:.2f} s of wall time"
    )
    print(report.table())
    verdict = report.within_targets()
    for metric, ok in verdict.items():
        target = f"{TARGETS[metric]:.0%}" if metric in TARGETS else "0.02"
        print(
            f"{'ok  ' if ok else 'MISS'} {metric}: every service within "
            f"{target} or the request run's own uncertainty"
        )
    agree = _print_storms(report)
    faults = []
    for index in latency_fault_indices(scenario):
        flow_hit = affected_services(scenario, index, "flow")
        request_hit = affected_services(scenario, index, "request")
        same = set(flow_hit) == set(request_hit)
        agree &= same
        name = scenario.faults[index].name or f"latency-{index}"
        print(
            f"{'ok  ' if same else 'MISS'} fault {name}: flow affects {', '.join(flow_hit)}; "
            f"request affects {', '.join(request_hit)}"
        )
        faults.append({"fault": name, "flow": flow_hit, "request": request_hit, "agree": same})
    if args.json:
        out = {
            "scenario": scenario.name,
            "seed": scenario.seed,
            "window_s": list(report.window),
            "wall_seconds": report.wall_seconds,
            "services": list(report.services),
            "flow": [vars(x) for x in report.flow],
            "request": [vars(x) for x in report.request],
            "within_targets": verdict,
            "storm_onset": report.storm_onset,
            "latency_faults": faults,
        }
        Path(args.json).write_text(json.dumps(out, indent=2) + "\n")
    return 0 if all(verdict.values()) and agree else EXIT_DISAGREE


def register(sub: argparse._SubParsersAction) -> None:
    from firebreak.cli import _duration_arg

    p = sub.add_parser(
        "fidelity",
        help="run flow and request fidelity on one scenario (or a suite) and compare them",
        description="Exit 0 when every service is within the targets (throughput 2%% or the "
        "request run's own noise, mean latency 10%%, p99 20%%, error ratio 0.02), both "
        "fidelities fall into a storm or neither, and both see the same services hit by each "
        "latency fault; 1 otherwise. --suite stress runs every case in scenarios/stress "
        "(targets: 2%%, 10%%, 25%% on services above 1 req/s).",
    )
    p.add_argument("scenario", nargs="?", default=None, help="scenario YAML file")
    p.add_argument("--suite", default=None, help="a folder of scenarios (e.g. stress)")
    p.add_argument("--duration", type=_duration_arg, default=None, help="e.g. 30m")
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--warmup", type=_duration_arg, default=60.0, help="cut from the start")
    p.add_argument("--json", help="also write the figures to this JSON file")
    p.set_defaults(func=cmd_fidelity)
