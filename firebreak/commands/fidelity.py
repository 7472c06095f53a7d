"""`firebreak fidelity SCENARIO`: run flow and request fidelity on one scenario and compare."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

EXIT_DISAGREE = 1


def cmd_fidelity(args: argparse.Namespace) -> int:
    from twin.errors import FirebreakError
    from twin.run.fidelity import TARGETS, affected_services, latency_fault_indices, run_both
    from twin.scenario.loader import load_scenario

    scenario = load_scenario(args.scenario, seed=args.seed, duration=args.duration)
    if args.warmup >= scenario.duration:
        raise FirebreakError(
            f"--warmup: {args.warmup:g}s is not shorter than the run ({scenario.duration:g}s)"
        )
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
        print(
            f"{'ok  ' if ok else 'MISS'} {metric}: every service within "
            f"{TARGETS[metric]:.0%} or the request run's own uncertainty"
        )
    agree = True
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
            "latency_faults": faults,
        }
        Path(args.json).write_text(json.dumps(out, indent=2) + "\n")
    return 0 if all(verdict.values()) and agree else EXIT_DISAGREE


def register(sub: argparse._SubParsersAction) -> None:
    from firebreak.cli import _duration_arg

    p = sub.add_parser(
        "fidelity",
        help="run flow and request fidelity on one scenario and compare them per service",
        description="Exit 0 when every service is within the targets (throughput 2%% or the "
        "request run's own noise, mean latency 10%%, p99 20%%) and both fidelities see the "
        "same services hit by each latency fault; 1 otherwise.",
    )
    p.add_argument("scenario", help="scenario YAML file")
    p.add_argument("--duration", type=_duration_arg, default=None, help="e.g. 30m")
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--warmup", type=_duration_arg, default=60.0, help="cut from the start")
    p.add_argument("--json", help="also write the figures to this JSON file")
    p.set_defaults(func=cmd_fidelity)
