"""The wide metrics CSV of the RCAEval benchmark, from a run's long metrics table.

RCAEval (phamquiluan/RCAEval) reads one `data.csv` per case: a `time` column in unix
seconds, then one column per `<service>_<metric>`; its evaluation takes the service of a
column as the text before the first underscore (`column.split("_")[0]`) and drops
`_latency-50` before renaming `_latency-90` to `_latency`. Columns written here, with
the twin metric each comes from:

==================  =================================================  ==================
column              value                                              twin metric
==================  =================================================  ==================
<svc>_cpu           CPU cores used (rate of container CPU seconds)     cpu_cores
<svc>_mem           working set of one pod, bytes (RCAEval divides     memory_mb × 2**20
                    by 1e6 to get MB; the twin's MB are Mi)
<svc>_workload      requests per second arriving (retries included)    arrival_rate
<svc>_latency-50    median residence time, seconds                     latency_p50_ms / 1000
<svc>_latency-90    90th percentile residence time, seconds            from p50/p95/p99
<svc>_error         failed and shed requests per second                error_rate + shed_rate
==================  =================================================  ==================

The twin keeps no p90, but each tick's latency is shift + lognormal and the table holds
its p50, p95 and p99, which determine it exactly (`dist_from_quantiles`). With `full`,
every other twin metric is added under its own name with `_` turned into `-`, in the
twin's units (`frontend_queue`, `frontend_latency-p99-ms`, ...).

With infrastructure the table also holds one block per node (its name never clashes
with a service's), from node_metrics.parquet: `<node>_cpu-other` (cores used on it outside
the topology's pods: node-exporter's total minus the containers'), `<node>_mem-other`
(bytes, likewise), `<node>_notready` (1 while NotReady or not answering scrapes),
`<node>_io-wait` (seconds),
`<node>_net-drop` (share of packets dropped), `<node>_oom` (OOM kills so far): what is the
node's own doing, not an echo of its pods, so an RCA method reading the table can rank a
node as the cause like any service.

Service names: an underscore would make RCAEval attribute the column to the wrong service,
so `_` becomes `-` (Kubernetes names cannot hold `_` either); two services that would then
collide are an error. Resampling (`step`) averages the ticks of each window and labels the
row with the window's start.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa

from twin.errors import FirebreakError
from twin.fields import SERVICE_METRICS
from twin.telemetry.exposition import MIB, dist_from_quantiles
from twin.telemetry.longtable import open_long_table, read_long_table
from twin.telemetry.spans import EPOCH_UNIX_S

Z90 = 1.2815515655446004
RCAEVAL_METRICS = ("cpu", "mem", "workload", "latency-50", "latency-90", "error")
_NEEDED = (
    "cpu_cores",
    "memory_mb",
    "arrival_rate",
    "error_rate",
    "shed_rate",
    "latency_p50_ms",
    "latency_p95_ms",
    "latency_p99_ms",
)
_NOT_IN_FULL = {"cpu_cores", "memory_mb", "arrival_rate"}


def rcaeval_service_name(name: str) -> str:
    """A service name RCAEval splits back correctly: no underscore."""
    return name.replace("_", "-")


def read_long_metrics(path: Path) -> pd.DataFrame:
    """A run's long table (time, service, metric, value); a run directory or the file."""
    return read_long_table(path).to_pandas()


def long_to_cube(
    df: pd.DataFrame, entity: str = "service"
) -> tuple[np.ndarray, tuple[str, ...], tuple[str, ...], np.ndarray]:
    """(times, entities, metrics, cube T × entities × metrics) from a long table.

    Entities and metrics keep their order of first appearance (the topology's order);
    combinations absent from the table are NaN.
    """
    missing = [c for c in ("time", entity, "metric", "value") if c not in df.columns]
    if missing:
        raise FirebreakError(f"long metrics table lacks column(s) {missing}")
    times, t_idx = np.unique(df["time"].to_numpy(dtype=float), return_inverse=True)
    e_idx, entities = pd.factorize(df[entity], sort=False)
    m_idx, metrics = pd.factorize(df["metric"], sort=False)
    cube = np.full((len(times), len(entities), len(metrics)), np.nan)
    cube[t_idx, e_idx, m_idx] = df["value"].to_numpy(dtype=float)
    return times, tuple(map(str, entities)), tuple(map(str, metrics)), cube


def read_cube(
    path: Path, entity: str = "service", batch_rows: int = 1 << 20
) -> tuple[np.ndarray, tuple[str, ...], tuple[str, ...], np.ndarray]:
    """`long_to_cube` of a Parquet file, batch by batch, so a day-long run never sits in
    memory as a table (only its cube: ticks × entities × metrics floats)."""
    columns = ["time", entity, "metric", "value"]
    dataset = open_long_table(path)
    try:
        missing = [c for c in columns if c not in dataset.schema.names]
        if missing:
            raise FirebreakError(f"{path}: long metrics table lacks column(s) {missing}")
        # pass 1: the ticks and the names, in order of first appearance
        entities: dict[str, int] = {}
        metrics: dict[str, int] = {}
        seen_times = [np.zeros(0)]
        for batch in dataset.to_batches(columns=columns[:3], batch_size=batch_rows):
            seen_times.append(np.unique(batch.column(0).to_numpy()))
            _global_codes(batch.column(1), entities)
            _global_codes(batch.column(2), metrics)
        times = np.unique(np.concatenate(seen_times))
        # pass 2: the values into their cells
        cube = np.full((len(times), len(entities), len(metrics)), np.nan)
        for batch in dataset.to_batches(columns=columns, batch_size=batch_rows):
            t_idx = np.searchsorted(times, batch.column(0).to_numpy())
            e_idx = _global_codes(batch.column(1), entities)
            m_idx = _global_codes(batch.column(2), metrics)
            cube[t_idx, e_idx, m_idx] = batch.column(3).to_numpy(zero_copy_only=False)
    except (OSError, pa.ArrowException) as exc:
        raise FirebreakError(f"{path}: cannot read as Parquet: {exc}") from None
    return times, tuple(entities), tuple(metrics), cube


def _global_codes(column: pa.Array, seen: dict[str, int]) -> np.ndarray:
    """Codes into `seen` (names in order of first appearance) for a string column."""
    if not pa.types.is_dictionary(column.type):
        column = column.dictionary_encode()
    local = column.indices.to_numpy(zero_copy_only=False)
    names = column.dictionary.to_pylist()
    _, first = np.unique(local, return_index=True)
    for code in local[np.sort(first)]:
        seen.setdefault(names[code], len(seen))
    mapping = np.array([seen.get(n, -1) for n in names], dtype=np.int64)
    return mapping[local]


def _service_columns(names: Sequence[str]) -> list[str]:
    out = [rcaeval_service_name(n) for n in names]
    seen: dict[str, str] = {}
    for original, renamed in zip(names, out, strict=True):
        if renamed in seen:
            raise FirebreakError(
                f"services {seen[renamed]!r} and {original!r} both become {renamed!r} "
                "once '_' is replaced by '-' for RCAEval"
            )
        seen[renamed] = original
    return out


def p90_from_quantiles(p50: np.ndarray, p95: np.ndarray, p99: np.ndarray) -> np.ndarray:
    """The 90th percentile of shift + lognormal latencies with these quantiles (0 where
    there is no p50: no requests)."""
    mu, sigma, shift = np.moveaxis(dist_from_quantiles(p50, p95, p99), -1, 0)
    return np.where(p50 > 0.0, shift + np.exp(mu + Z90 * sigma), 0.0)


def _rcaeval_block(get) -> dict[str, np.ndarray]:
    """The RCAEval metrics of one service from its twin series (`get(metric)`)."""
    p50, p95, p99 = (get(f"latency_p{p}_ms") / 1000.0 for p in (50, 95, 99))
    p90 = p90_from_quantiles(p50, p95, p99)
    return {
        "cpu": get("cpu_cores"),
        "mem": get("memory_mb") * MIB,
        "workload": get("arrival_rate"),
        "latency-50": p50,
        "latency-90": p90,
        "error": get("error_rate") + get("shed_rate"),
    }


NODE_COLUMNS = ("cpu-other", "mem-other", "notready", "io-wait", "net-drop", "oom")


def node_columns(
    nodes: Sequence[str], metrics: Sequence[str], cube: np.ndarray
) -> dict[str, np.ndarray]:
    """The node blocks of the wide table from a T × nodes × NODE_METRICS cube."""
    metrics = list(metrics)

    def get(i: int, m: str) -> np.ndarray:
        return cube[:, i, metrics.index(m)]

    out: dict[str, np.ndarray] = {}
    for i, node in enumerate(_service_columns(nodes)):
        block = {
            "cpu-other": get(i, "cpu_other_cores"),
            "mem-other": get(i, "memory_other_mb") * MIB,
            "notready": 1.0 - np.minimum(get(i, "ready"), get(i, "up")),
            "io-wait": get(i, "io_wait_ms") / 1000.0,
            "net-drop": get(i, "network_drop_ratio"),
            "oom": get(i, "oom_kills"),
        }
        for name in NODE_COLUMNS:
            out[f"{node}_{name}"] = block[name]
    return out


def wide_from_long(
    df: pd.DataFrame, *, step: float | None = None, full: bool = False
) -> pd.DataFrame:
    """The RCAEval wide table of a long metrics table, optionally averaged over `step` s."""
    return wide_from_cube(*long_to_cube(df), step=step, full=full)


def wide_from_cube(
    times: np.ndarray,
    services: Sequence[str],
    metrics: Sequence[str],
    cube: np.ndarray,
    *,
    step: float | None = None,
    full: bool = False,
    nodes: tuple[Sequence[str], Sequence[str], np.ndarray] | None = None,
) -> pd.DataFrame:
    """The RCAEval wide table of a T × services × metrics cube (see `long_to_cube`);
    `nodes`: (node names, node metric names, T × nodes × metrics) for the node blocks."""
    metrics = list(metrics)
    absent = [m for m in _NEEDED if m not in metrics]
    if absent:
        raise FirebreakError(f"long metrics table lacks metric(s) {absent}")
    columns: dict[str, np.ndarray] = {}
    for i, svc in enumerate(_service_columns(services)):
        block = _rcaeval_block(lambda m, i=i: cube[:, i, metrics.index(m)])
        for name in RCAEVAL_METRICS:
            columns[f"{svc}_{name}"] = block[name]
        if full:
            for m in SERVICE_METRICS:
                if m in metrics and m not in _NOT_IN_FULL:
                    columns[f"{svc}_{m.replace('_', '-')}"] = cube[:, i, metrics.index(m)]
    if nodes is not None and len(nodes[0]):
        clash = set(_service_columns(nodes[0])) & set(_service_columns(services))
        if clash:
            raise FirebreakError(f"{sorted(clash)[0]!r} names both a node and a service")
        columns.update(node_columns(*nodes))
    wide = pd.DataFrame(columns)
    sim_time = pd.Series(times)
    if step is not None:
        sim_time, wide = _resample(times, wide, step)
    wide.insert(0, "time", _unix_time(sim_time.to_numpy(dtype=float)))
    return wide


def resample(times: np.ndarray, wide: pd.DataFrame, step: float) -> tuple[pd.Series, pd.DataFrame]:
    """Each `step`-second window's mean, labelled with the window's start."""
    return _resample(times, wide, step)


def unix_time(sim_seconds: np.ndarray) -> np.ndarray:
    """Simulated seconds as the unix time the exports write."""
    return _unix_time(sim_seconds)


def _resample(times: np.ndarray, wide: pd.DataFrame, step: float) -> tuple[pd.Series, pd.DataFrame]:
    if not step > 0:
        raise FirebreakError(f"step must be positive, got {step:g}")
    tick = float(np.median(np.diff(times))) if len(times) > 1 else step
    if step < tick - 1e-9:
        raise FirebreakError(f"step {step:g}s is shorter than the run's tick {tick:g}s")
    window = np.floor((times - times[0]) / step + 1e-9).astype(np.int64)
    means = wide.groupby(window, sort=True).mean()
    return pd.Series(times[0] + means.index.to_numpy() * step), means.reset_index(drop=True)


def _unix_time(sim_seconds: np.ndarray) -> np.ndarray:
    unix = EPOCH_UNIX_S + sim_seconds
    rounded = np.round(unix)
    return rounded.astype(np.int64) if np.allclose(unix, rounded, atol=1e-6) else unix


def wide_table(run_dir: Path, *, step: float | None = None, full: bool = False) -> pd.DataFrame:
    """A run's RCAEval table, node blocks too when the run has nodes (one place, so the
    export command and `write_wide_csv` never disagree)."""
    nodes = None
    node_file = Path(run_dir) / "node_metrics.parquet"
    if node_file.exists():
        _, names, metrics, cube = read_cube(node_file, entity="node")
        nodes = (names, metrics, cube)
    return wide_from_cube(*read_cube(run_dir), step=step, full=full, nodes=nodes)


def write_wide_csv(
    run_dir: Path, out: Path, *, step: float | None = None, full: bool = False
) -> pd.DataFrame:
    """Write a run's RCAEval CSV to `out` (node blocks too, when the run has nodes);
    returns the table written."""
    wide = wide_table(run_dir, step=step, full=full)
    out = Path(out)
    try:
        wide.to_csv(out, index=False, float_format="%.10g")
    except OSError as exc:
        raise FirebreakError(f"{out}: cannot write: {exc.strerror or exc}") from None
    return wide
