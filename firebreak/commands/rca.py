"""`firebreak rca FILE --at T`: rank the likely root causes of an incident in recorded
telemetry: metrics in any format `detectors.ingest` reads, and optionally a separate
normal period, traces and logs, and the symptom the alert named."""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def _describe(evidence: dict) -> str:
    """One line of evidence for a human: the top signals, modalities or impact, the path."""
    parts = []
    if evidence.get("by"):
        parts.append(f"[{evidence['by']}]")
    moved = evidence.get("signals", [])
    if isinstance(moved, dict):  # the causal method: signal → its shift and unexplained part
        top = sorted(moved.items(), key=lambda kv: -abs(kv[1].get("shift_z", 0.0)))[:3]
        signals = ", ".join(f"{name} shift z {v.get('shift_z', 0.0):.3g}" for name, v in top)
    else:
        signals = ", ".join(f"{s['signal']} {s['direction']} {s['score']:.3g}" for s in moved)
    if signals:
        parts.append(signals)
    if evidence.get("modalities"):
        shown = ", ".join(f"{k} {v:.3g}" for k, v in evidence["modalities"].items() if v > 0)
        parts.append(f"moved: {shown or 'nothing'}")
    for key in ("metric", "logs"):
        if evidence.get(key):
            value = evidence[key]
            parts.append(f"{key}: {'; '.join(value) if isinstance(value, list) else value}")
    if evidence.get("impact"):
        parts.append(f"{evidence['impact']} impact z {evidence.get('z', 0):.3g}")
    path = evidence.get("path")
    if path and len(path) > 1:
        parts.append(f"path {' → '.join(path)}")
    return " ".join(parts) or "no signal moved"


def _check_target(target: str, file: str, services: list[str], telemetry, graph) -> None:
    """A --target must be a service the telemetry or the call graph knows: a typo would
    otherwise rank as if no symptom had been given."""
    from twin.errors import FirebreakError

    known = set(services) | set(graph.nodes if graph is not None else ())
    for frame in (telemetry.spans, telemetry.logs):
        if frame is not None and "service" in frame.columns:
            known |= set(frame["service"].dropna().astype(str))
    if target not in known:
        shown = ", ".join(sorted(known)[:12]) + (", ..." if len(known) > 12 else "")
        raise FirebreakError(f"--target {target!r}: no such service in {file} (services: {shown})")


def cmd_rca(args: argparse.Namespace) -> int:
    from detectors.ingest.read import read_log_files, read_traces
    from detectors.rca.base import IncidentTelemetry, join_normal
    from detectors.rca.registry import make_method, takes_telemetry
    from detectors.rca.table import causes_to_dicts, load_graph, parse_time, read_signal_table
    from twin.errors import FirebreakError

    if args.at is None and args.normal is None:
        raise FirebreakError("--at is required (it may be left out only with --normal)")
    graph = load_graph(args.topology) if args.topology else None
    known = list(graph.nodes) if graph is not None else None
    incident = read_signal_table(args.file, args.time_column, known, args.exclude)
    if not incident.services():
        shown = ", ".join(map(str, incident.columns[:8])) or "none with values"
        raise FirebreakError(
            f"{args.file}: no numeric <service>_<metric> signal to rank (signals: {shown})"
        )
    notes = list(incident.notes)
    table = incident.wide()
    telemetry = IncidentTelemetry(target=args.target, target_kind=args.target_kind)
    before = args.before
    if args.normal:
        normal = read_signal_table(args.normal, args.time_column, known, args.exclude)
        notes += [f"normal period: {n}" for n in normal.notes]
        telemetry.normal = normal.wide()
        before = float("inf")  # the whole normal period is the baseline
    at = parse_time(args.at) if args.at is not None else float(table["time"].iloc[0])
    if args.traces:
        telemetry.spans, more = read_traces(args.traces)
        notes += more
    if args.logs:
        telemetry.logs, more = read_log_files(args.logs)
        notes += more
    if args.normal_traces:
        telemetry.normal_spans, more = read_traces(args.normal_traces)
        notes += [f"normal traces: {n}" for n in more]
    if args.normal_logs:
        telemetry.normal_logs, more = read_log_files(args.normal_logs)
        notes += [f"normal logs: {n}" for n in more]
    if args.target is not None:
        _check_target(args.target, args.file, incident.services(), telemetry, graph)
    windows = {"before_s": before, "after_s": args.after}
    method = make_method(args.method, **{k: v for k, v in windows.items() if v is not None})
    if takes_telemetry(method):
        causes = method.rank(table, at, graph, telemetry=telemetry)
    else:
        if telemetry.normal is not None:
            table = join_normal(telemetry.normal, table)
        if telemetry.spans is not None or telemetry.logs is not None:
            notes.append(f"{args.method} reads metrics only: the traces and logs were not used")
        causes = method.rank(table, at, graph)
    for note in dict.fromkeys(notes):
        print(f"note: {note}")
    shown = causes_to_dicts(causes, args.top)
    print(f"{args.file}: {args.method} ranking at {at:.10g} ({len(causes)} services)")
    width = max((len(c["service"]) for c in shown), default=7)
    for c in shown:
        print(
            f"{c['rank']:>3}  {c['service']:<{width}}  {c['score']:>10.4g}  "
            f"{_describe(c['evidence'])}"
        )
    if causes and causes[0].evidence.get("note"):
        print(f"note: {causes[0].evidence['note']}")
    if args.json:
        doc = {"table": str(args.file), "method": args.method, "anomaly_time": at, "causes": shown}
        try:
            tmp = Path(args.json + ".tmp")
            tmp.write_text(json.dumps(doc, indent=2, default=str) + "\n")
            tmp.replace(args.json)
        except OSError as exc:
            raise FirebreakError(f"{args.json}: cannot write: {exc.strerror or exc}") from None
        print(f"wrote {args.json}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    from detectors.rca.registry import DEFAULT_METHOD, METHODS

    p = sub.add_parser("rca", help="rank root-cause services of an incident in recorded telemetry")
    p.add_argument(
        "file",
        help="metrics: wide or long CSV, Prometheus JSON, PetShop CSV, or a folder of pod CSVs",
    )
    p.add_argument("--at", default=None, help="anomaly time, in the table's clock (or ISO)")
    p.add_argument(
        "--method",
        choices=tuple(METHODS),
        default=DEFAULT_METHOD,
        help=f"default {DEFAULT_METHOD}: multimodal with traces or logs, impact with a "
        "--target, randomwalk with a --topology, robust otherwise",
    )
    p.add_argument(
        "--normal",
        default=None,
        help="metrics of a normal period recorded apart (then --at defaults to FILE's start)",
    )
    p.add_argument("--traces", nargs="+", default=None, help="span CSV or OTLP JSON files")
    p.add_argument("--logs", nargs="+", default=None, help="log CSV or JSON-lines files")
    p.add_argument("--normal-traces", nargs="+", default=None, help="traces of a normal period")
    p.add_argument("--normal-logs", nargs="+", default=None, help="logs of a normal period")
    p.add_argument("--target", default=None, help="service where the symptom was seen")
    p.add_argument(
        "--target-kind", choices=("latency", "errors"), default=None, help="what the symptom was"
    )
    p.add_argument(
        "--topology", default=None, help="call graph: topology or scenario YAML, or adjacency CSV"
    )
    p.add_argument("--exclude", nargs="+", default=[], help="columns never used (globs)")
    from firebreak.argtypes import positive_float, positive_int

    p.add_argument("--top", type=positive_int, default=5, help="causes to print")
    p.add_argument("--json", default=None, help="also write the ranking as JSON here")
    p.add_argument(
        "--before",
        type=positive_float,
        default=None,
        help="normal window, seconds (method's default)",
    )
    p.add_argument(
        "--after",
        type=positive_float,
        default=None,
        help="incident window, seconds (method's default)",
    )
    p.add_argument("--time-column", default=None, help="default: time, timestamp, ts, ...")
    p.set_defaults(func=cmd_rca)
