"""`firebreak import-traces`: a topology from recorded Jaeger or OTLP JSON traces."""

from __future__ import annotations

import argparse
from pathlib import Path


def cmd_import_traces(args: argparse.Namespace) -> int:
    from twin.scenario.import_traces import header, import_traces, write_topology

    topology, summary = import_traces(Path(args.file), name=args.name)
    write_topology(topology, Path(args.output), header(Path(args.file), summary))
    print(
        f"wrote {args.output}: {len(topology['services'])} services, "
        f"{len(topology['calls'])} calls from {summary['traces']} traces "
        f"({summary['spans']} spans, {summary['format']})"
    )
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the command to the `firebreak` parser."""
    parser = subparsers.add_parser(
        "import-traces",
        help="build a topology (services, calls, latencies) from Jaeger or OTLP JSON traces",
    )
    parser.add_argument("file", help="Jaeger JSON (query API download) or OTLP JSON traces")
    parser.add_argument("-o", "--output", required=True, help="topology YAML to write")
    parser.add_argument("--name", default=None, help="topology name (default: the file's stem)")
    parser.set_defaults(func=cmd_import_traces)
