"""`firebreak serve`: a scenario in scaled real time behind a Prometheus /metrics endpoint."""

from __future__ import annotations

import argparse
import ipaddress
import math
import sys

EXIT_INTERRUPTED = 130


def _duration(text: str) -> float:
    """A positive duration argument (the CLI's own parser)."""
    from firebreak.cli import _duration_arg

    return _duration_arg(text)


def _speed(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive finite number: {text!r}")
    return value


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"must be 0-65535: {text!r}")
    return value


def is_loopback(host: str) -> bool:
    """Whether `host` only listens on this machine (127.0.0.0/8, ::1, localhost)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a name that may resolve anywhere: say so


def cmd_serve(args: argparse.Namespace) -> int:
    from twin.scenario.loader import load_scenario
    from twin.telemetry.serve import serve_scenario

    scenario = load_scenario(args.scenario, seed=args.seed, duration=args.duration)
    if not is_loopback(args.host):
        print(
            f"warning: --host {args.host} serves /metrics beyond this machine (every interface "
            "for 0.0.0.0 or ::); anyone who can reach the port can read the twin's telemetry. "
            "Use the default 127.0.0.1 unless a Prometheus elsewhere must scrape it.",
            file=sys.stderr,
        )
    result = serve_scenario(
        scenario,
        speed=args.speed,
        host=args.host,
        port=args.port,
        linger=args.linger,
        announce=lambda line: print(line, flush=True),
    )
    if result.interrupted:
        print(f"interrupted at t={result.sim_seconds:g}s", file=sys.stderr)
        return EXIT_INTERRUPTED
    print(
        f"done: {result.sim_seconds:g} simulated seconds in {result.wall_seconds:.1f} s",
        flush=True,
    )
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "serve", help="run a scenario in scaled real time and serve /metrics for Prometheus"
    )
    p.add_argument("scenario", help="scenario YAML file")
    p.add_argument(
        "--speed",
        type=_speed,
        default=1.0,
        help="simulated seconds per wall-clock second (default 1: real time; e.g. 60)",
    )
    p.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to listen on (default loopback; anything else is warned about)",
    )
    p.add_argument("--port", type=_port, default=9464, help="TCP port; 0 picks a free one")
    p.add_argument("--seed", type=int, default=None, help="override the scenario's seed")
    p.add_argument("--duration", type=_duration, default=None, help="e.g. 2h, 90m")
    p.add_argument(
        "--linger", action="store_true", help="keep serving the final state after the end"
    )
    p.set_defaults(func=cmd_serve)
