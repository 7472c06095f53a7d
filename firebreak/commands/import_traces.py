"""`firebreak import-traces`: a runnable scenario (or a bare topology) from recorded Jaeger
or OTLP JSON traces."""

from __future__ import annotations

import argparse
from pathlib import Path

from firebreak.argtypes import int_at_least, positive_float


def _duration(text: str) -> float:
    """A run length such as 90s, 30m, 2h or 1d (argparse refuses anything else)."""
    from twin.scenario.durations import parse_duration

    try:
        value = parse_duration(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive duration: {text!r}")
    return value


def _share(text: str) -> float:
    """A share in (0, 1]."""
    value = positive_float(text)
    if value > 1:
        raise argparse.ArgumentTypeError(f"must be a share in (0, 1]: {text!r}")
    return value


def cmd_import_traces(args: argparse.Namespace) -> int:
    from twin.scenario import import_traces as it

    path, out = Path(args.file), Path(args.output)
    if args.topology_only:
        topology, summary = it.import_traces(path, name=args.name)
        it.write_yaml(topology, out, it.header(path, summary))
        what = "topology"
    else:
        from twin.scenario.trace_scenario import import_scenario, scenario_header

        scenario, summary = import_scenario(
            path,
            name=args.name,
            duration=args.duration,
            rate=args.rate,
            sampled=args.sampled,
            seed=args.seed,
        )
        topology = scenario["topology"]
        it.write_yaml(scenario, out, scenario_header(path, summary))
        what = f"scenario (entry rate {summary['rate']:.4g}/s, {summary['rate_source']})"
    print(
        f"wrote {args.output}: {what}, {len(topology['services'])} services, "
        f"{len(topology['calls'])} calls from {summary['traces']} traces "
        f"({summary['spans']} spans, {summary['format']})"
    )
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the command to the `firebreak` parser."""
    parser = subparsers.add_parser(
        "import-traces",
        help="build a runnable scenario (topology, client settings, workload) from Jaeger or "
        "OTLP JSON traces",
    )
    parser.add_argument("file", help="Jaeger JSON (query API download) or OTLP JSON traces")
    parser.add_argument("-o", "--output", required=True, help="scenario YAML to write")
    parser.add_argument("--name", default=None, help="scenario name (default: the file's stem)")
    parser.add_argument(
        "--duration", type=_duration, default=3600.0, help="run length (default 1h)"
    )
    parser.add_argument(
        "--rate",
        type=positive_float,
        default=None,
        help="total entry requests/s (default: from the root spans' start times)",
    )
    parser.add_argument(
        "--sampled",
        type=_share,
        default=1.0,
        help="share of requests the file traced, to scale the observed rate (default 1)",
    )
    parser.add_argument(
        "--seed", type=int_at_least(0), default=0, help="the scenario's seed (default 0)"
    )
    parser.add_argument(
        "--topology-only",
        action="store_true",
        help="write the bare topology (services and calls) instead of a scenario",
    )
    parser.set_defaults(func=cmd_import_traces)
