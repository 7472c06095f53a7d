"""`firebreak export`: a run directory's metrics in a format other tools read."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from twin.errors import FirebreakError

FORMATS = ("rcaeval", "prometheus", "openmetrics")


def _step(text: str) -> float:
    """A positive duration argument (the CLI's own parser)."""
    from firebreak.cli import _duration_arg

    return _duration_arg(text)


def _service_cube(run_dir: Path) -> tuple[np.ndarray, tuple[str, ...], np.ndarray]:
    """(times, services, T × services × SERVICE_METRICS) read back from metrics.parquet."""
    from twin.fields import SERVICE_METRICS
    from twin.telemetry.widecsv import read_cube

    times, services, metrics, cube = read_cube(run_dir)
    absent = [m for m in SERVICE_METRICS if m not in metrics]
    if absent:
        raise FirebreakError(f"{run_dir}: metrics.parquet lacks metric(s) {absent}")
    order = [metrics.index(m) for m in SERVICE_METRICS]
    return times, services, np.nan_to_num(cube[:, :, order])


def _edge_cube(run_dir: Path, times: np.ndarray) -> tuple[list[tuple[str, str]], np.ndarray]:
    """Edges and their T × edges × EDGE_METRICS block, aligned on the services' ticks."""
    from twin.fields import EDGE_METRICS
    from twin.telemetry.widecsv import read_cube

    path = run_dir / "edge_metrics.parquet"
    if not path.exists():
        return [], np.zeros((len(times), 0, len(EDGE_METRICS)))
    e_times, names, metrics, cube = read_cube(path, entity="edge")
    block = np.zeros((len(times), len(names), len(EDGE_METRICS)))
    rows = np.searchsorted(times, e_times)
    ok = (rows < len(times)) & (times[np.minimum(rows, len(times) - 1)] == e_times)
    for j, m in enumerate(EDGE_METRICS):
        if m in metrics:
            block[rows[ok], :, j] = np.nan_to_num(cube[ok, :, metrics.index(m)])
    edges = [tuple(name.split("->", 1)) for name in names]
    return [(a, b) for a, b in edges], block


def export_exposition(run_dir: Path, *, openmetrics_format: bool = False) -> bytes:
    """The exposition a scrape would have returned at the end of the run."""
    from twin.telemetry.exposition import render, state_from_run

    times, services, cube = _service_cube(run_dir)
    if len(times) == 0:
        raise FirebreakError(f"{run_dir}: metrics.parquet holds no ticks")
    dt = float(np.median(np.diff(times))) if len(times) > 1 else 1.0
    edges, edge_cube = _edge_cube(run_dir, times)
    state = state_from_run(times, cube, services, dt, edges, edge_cube)
    return render(state, openmetrics_format=openmetrics_format)


def cmd_export(args: argparse.Namespace) -> int:
    run_dir = Path(args.run_dir)
    if not run_dir.is_dir():
        raise FirebreakError(f"{run_dir}: not a run directory")
    if args.format == "rcaeval":
        from twin.telemetry.widecsv import wide_table

        wide = wide_table(run_dir, step=args.step, full=args.full)
        data = wide.to_csv(index=False, float_format="%.10g").encode()
        what = f"{len(wide)} rows × {wide.shape[1]} columns"
    else:
        if args.step is not None or args.full:
            raise FirebreakError("--step and --full apply to --format rcaeval only")
        data = export_exposition(run_dir, openmetrics_format=args.format == "openmetrics")
        n_lines = data.count(b"\n")
        what = f"{n_lines} lines"
    if args.output == "-":
        sys.stdout.buffer.write(data)
        sys.stdout.flush()
        return 0
    try:
        Path(args.output).write_bytes(data)
    except OSError as exc:
        raise FirebreakError(f"{args.output}: cannot write: {exc.strerror or exc}") from None
    print(f"wrote {args.output} ({args.format}, {what})")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "export", help="a run's metrics as RCAEval wide CSV or Prometheus exposition text"
    )
    p.add_argument("run_dir", help="run directory (written by `firebreak run`)")
    p.add_argument("--format", choices=FORMATS, required=True)
    p.add_argument("-o", "--output", required=True, help="file to write, or - for stdout")
    p.add_argument("--step", type=_step, default=None, help="rcaeval: average over e.g. 15s")
    p.add_argument(
        "--full", action="store_true", help="rcaeval: add every other twin metric as a column"
    )
    p.set_defaults(func=cmd_export)
