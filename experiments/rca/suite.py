"""The RCA suite: every method on the same seeded fault cases, with the true and inferred start.

Per case the twin streams one short flow-fidelity run once; the tiered detection pipeline
(tier 1 only: no fitted model is needed and none can leak) watches the same frames, and its
first alert inside the fault window is the inferred incident start (None: undetected). The
wide RCAEval table is built in memory from the run's chunks, with the run's WARN/ERROR log
rates per service fused in as `<service>_logerror` columns. Each method then sees that
table from the run's start up to `post_s` after the anomaly time, the anomaly time, and the
declared call graph: telemetry only. The fault's target and timing are read only to score.

Rows of the tidy result: one per (case, method, start), with the root's rank, AC@1..5,
Avg@5, reciprocal rank, wall time, detection delay and MTTI (see `rca_metrics`). With the
inferred start an undetected case has no rank: it counts as a miss. Twin-verified
counterfactual rows (method `twin-cf(<base>)`) re-rank the base method's top 3 and are
flagged `twin_verified`: they assume a twin that matches the system.

With `telemetry="production"` the case runs instead through `run_scenario` with
production-like telemetry into a temporary run directory (`experiments/observed.py`); the
detectors stream its observed 15 s steps (so the inferred start comes from them) and the
wide table and log columns are built from its metrics.parquet and logs.jsonl. Only the
counterfactual forks still use the finished twin, with the observed steps as its history.
"""

from __future__ import annotations

import json
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import networkx as nx
import numpy as np
import pandas as pd

from detectors.anomaly.pipeline import TieredPipeline
from detectors.rca.base import RcaMethod
from detectors.rca.fusion import log_error_columns, with_log_columns
from experiments.detection.suite import BASE_LOAD
from experiments.observed import TelemetryChoice, check_telemetry, observe
from experiments.rca.cases import CaseSpec, scenario_for
from experiments.rca.counterfactual import removal_shares, rerank
from experiments.rca.metrics import case_metrics, mtti, rank_of
from twin.control.fork import Recorder
from twin.fields import SERVICE_METRICS
from twin.flow.engine import Simulation
from twin.telemetry.logs import LogSink
from twin.telemetry.spans import EPOCH_UNIX_S
from twin.telemetry.widecsv import rcaeval_service_name, wide_from_cube

POST_S = 300.0  # seconds of telemetry after the anomaly time an analysis gets
CF_TOP = 3
STARTS = ("true", "inferred")


@dataclass
class CaseRun:
    """One simulated case: what the methods may see, plus the run kept for forks."""

    spec: CaseSpec
    sim: Simulation
    times: np.ndarray  # sim seconds per tick
    values: np.ndarray  # ticks × services × SERVICE_METRICS
    table: pd.DataFrame  # RCAEval wide table of the whole run (unix seconds)
    graph: nx.DiGraph  # declared call graph, services named as in the table
    inferred_start: float | None  # sim seconds, from the detectors

    @property
    def root(self) -> str:
        """The root as the table names it (scoring only)."""
        return rcaeval_service_name(self.spec.root)

    @property
    def roots(self) -> tuple[str, ...]:
        """Every acceptable root as the table names it (both ends of a broken link)."""
        return tuple(rcaeval_service_name(r) for r in self.spec.roots)

    def start(self, which: str) -> float | None:
        return self.spec.start if which == "true" else self.inferred_start

    def view(self, anomaly_s: float, post_s: float = POST_S) -> pd.DataFrame:
        """The table a method gets: the run's start to `post_s` after the anomaly time."""
        cut = EPOCH_UNIX_S + anomaly_s + post_s
        return self.table[self.table["time"] < cut].reset_index(drop=True)


def simulate_case(
    spec: CaseSpec, *, logs: bool = True, telemetry: TelemetryChoice = "ideal"
) -> CaseRun:
    """Run one case, stream it through the detectors and build its wide table (with the
    run's WARN/ERROR log rates fused in as `<service>_logerror` columns), from the ideal
    frames or from what a production run directory records (`telemetry`)."""
    if check_telemetry(telemetry) == "production":
        return _observed_case(spec, logs=logs)
    scenario = scenario_for(spec)
    sim = Simulation(scenario)
    names = sim.topo.names
    recorder = Recorder(names, sim.topo.edges)
    sim.sinks.append(recorder)
    with tempfile.TemporaryDirectory(prefix="rca-case-") as tmp:
        log_path = Path(tmp) / "logs.jsonl"
        if logs:
            sim.sinks.append(LogSink(log_path, scenario, names, sim.topo.edges, seed=spec.seed))
        pipeline = TieredPipeline(names)
        inferred: float | None = None
        for frame in sim.frames():
            alerts = pipeline.process(frame.time, frame.values)
            if inferred is None and alerts and spec.start <= frame.time < spec.end:
                inferred = float(frame.time)
        tel = recorder.telemetry()
        records: list[dict] = []
        if logs:
            with log_path.open() as fh:
                records = [json.loads(line) for line in fh]
    table = _table(tel.times, names, tel.values, records if logs else None)
    graph = nx.relabel_nodes(scenario.topology.graph(), rcaeval_service_name, copy=True)
    return CaseRun(spec, sim, tel.times, tel.values, table, graph, inferred)


def _observed_case(spec: CaseSpec, *, logs: bool) -> CaseRun:
    """The case as its production run directory records it: the detectors stream the
    observed steps, the table comes from metrics.parquet (and logs.jsonl)."""
    scenario = scenario_for(spec)
    with tempfile.TemporaryDirectory(prefix="rca-case-") as tmp:
        obs = observe(scenario, Path(tmp) / "run", logs=logs, keep_sim=True)
    pipeline = TieredPipeline(obs.services)
    inferred: float | None = None
    for t, values in obs.frames():
        alerts = pipeline.process(t, values)
        if inferred is None and alerts and spec.start <= t < spec.end:
            inferred = t
    table = _table(obs.times, obs.services, obs.values, obs.log_records if logs else None)
    graph = nx.relabel_nodes(scenario.topology.graph(), rcaeval_service_name, copy=True)
    if obs.sim is None:  # observe(keep_sim=True) always keeps it
        raise RuntimeError(f"{spec.case}: the finished twin was not kept")
    return CaseRun(spec, obs.sim, obs.times, obs.values, table, graph, inferred)


def _table(
    times: np.ndarray, names: Sequence[str], values: np.ndarray, records: list[dict] | None
) -> pd.DataFrame:
    """The RCAEval wide table of a services × SERVICE_METRICS cube, log columns fused in."""
    table = wide_from_cube(times, names, SERVICE_METRICS, values)
    if records is None:
        return table
    columns = log_error_columns(records, times, names)
    columns.columns = [
        f"{rcaeval_service_name(c.rsplit('_', 1)[0])}_{c.rsplit('_', 1)[1]}"
        for c in columns.columns
    ]
    return with_log_columns(table, columns)


def _row(run: CaseRun, method: str, start: str, ranking: list[str] | None, wall: float) -> dict:
    spec = run.spec
    t0 = run.start(start)
    rank = rank_of(ranking, run.roots) if ranking is not None else None
    delay = None if t0 is None else t0 - spec.start
    row = {
        "case": spec.case,
        "topology": spec.topology,
        "kind": spec.kind,
        "root": run.root,
        "method": method,
        "start": start,
        "anomaly_s": t0,
        "detected": t0 is not None,
        "rank": rank,
        **case_metrics(rank),
        "wall_s": wall,
        "delay_s": delay,
        "mtti_s": mtti(delay, wall, rank),
        "twin_verified": False,
        "top5": " ".join((ranking or [])[:5]),
    }
    return row


def score_case(
    run: CaseRun,
    methods: Mapping[str, RcaMethod],
    *,
    cf_method: str | None = None,
    starts: Sequence[str] = STARTS,
    post_s: float = POST_S,
) -> list[dict]:
    """Every method on one case with each start, plus the counterfactual re-ranking."""
    rows = []
    entries = tuple(BASE_LOAD[run.spec.topology])
    to_twin = {rcaeval_service_name(n): n for n in run.sim.topo.names}
    for start in starts:
        t0 = run.start(start)
        rankings: dict[str, list[str]] = {}
        walls: dict[str, float] = {}
        for name, method in methods.items():
            if t0 is None:
                rows.append(_row(run, name, start, None, 0.0))
                continue
            view = run.view(t0, post_s)
            began = time.perf_counter()
            try:
                causes = method.rank(view, EPOCH_UNIX_S + t0, run.graph)
                ranking = [c.service for c in causes]
            except Exception as exc:  # one method failing must not sink the suite
                ranking = []
                print(f"{name} failed on {run.spec.case}: {type(exc).__name__}: {exc}")
            wall = time.perf_counter() - began
            rankings[name], walls[name] = ranking, wall
            rows.append(_row(run, name, start, ranking, wall))
        if cf_method is None or cf_method not in methods:
            continue
        cf_name = f"twin-cf({cf_method})"
        if t0 is None:
            rows.append({**_row(run, cf_name, start, None, 0.0), "twin_verified": True})
            continue
        base = rankings[cf_method]
        top = [s for s in base[:CF_TOP] if s in to_twin]
        began = time.perf_counter()
        shares = removal_shares(
            run.sim,
            (run.times, run.values),
            [to_twin[s] for s in top],
            t0,
            run.spec.end,
            entries,
        )
        reranked = rerank(base, {rcaeval_service_name(k): v for k, v in shares.items()})
        wall = time.perf_counter() - began + walls[cf_method]
        row = _row(run, cf_name, start, reranked, wall)
        row["twin_verified"] = True
        rows.append(row)
    return rows


def run_suite(
    specs: Sequence[CaseSpec],
    methods: Mapping[str, RcaMethod],
    *,
    cf_method: str | None = None,
    post_s: float = POST_S,
    progress: Callable[[CaseSpec], None] | None = None,
    telemetry: TelemetryChoice = "ideal",
) -> pd.DataFrame:
    """The tidy table over all cases (see the module docstring)."""
    check_telemetry(telemetry)
    rows: list[dict] = []
    for spec in specs:
        run = simulate_case(spec, telemetry=telemetry)
        rows.extend(score_case(run, methods, cf_method=cf_method, post_s=post_s))
        if progress is not None:
            progress(spec)
    return pd.DataFrame(rows)
