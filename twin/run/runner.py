"""One scenario → one run directory: telemetry, ground truth, summary and overview plot."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from twin.control.actions import Action, ActionError
from twin.errors import ScenarioError
from twin.fields import N_SERVICE_METRICS, M
from twin.flow.engine import Simulation
from twin.request.engine import RequestSimulation
from twin.run.budget import check_budget, estimate
from twin.run.directory import write_json
from twin.run.labels import ground_truth, record_signals
from twin.run.slo import SloTracker
from twin.scenario.schema import Scenario
from twin.telemetry.logs import LogSink
from twin.telemetry.observe import open_writer
from twin.telemetry.otlp import OtlpTraceWriter
from twin.telemetry.plots import overview_plot
from twin.telemetry.recorders import SignalRecorder, WindowedMeans
from twin.telemetry.trace_sampler import TraceSampler

FIDELITIES = ("flow", "request")
DEFAULT_TRACE_RATE = {"flow": 1e-4, "request": 1e-3}


@dataclass
class _Streams:
    """The run's trace and log writers, however the fidelity feeds them spans."""

    sinks: list
    writer: OtlpTraceWriter | None

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()

    def spans(self) -> int:
        return self.writer.count if self.writer is not None else 0


def _trace_and_log_sinks(scenario: Scenario, sim, out: Path, rate: float) -> _Streams:
    """traces.json (OTLP JSON) and logs.jsonl: sampled span trees in flow fidelity, the real
    spans in request fidelity; logs follow the telemetry, the events and those spans."""
    tel = scenario.telemetry
    names, edges = sim.topo.names, sim.topo.edges
    log_sink = None
    if tel.logs:
        log_sink = LogSink(
            out / "logs.jsonl",
            scenario,
            names,
            edges,
            seed=scenario.seed,
            info_rate=tel.log_info_rate,
            traced_share=rate if tel.traces else 0.0,
        )
    writer = OtlpTraceWriter(out / "traces.json", names) if tel.traces else None
    sinks: list = []
    if isinstance(sim, RequestSimulation):
        if writer is not None:
            sim.span_sinks.append(writer.add)
        if log_sink is not None:
            sim.span_sinks.append(log_sink.on_spans)
    elif writer is not None:
        listeners = [log_sink] if log_sink is not None else []
        sinks.append(
            TraceSampler(
                scenario,
                names,
                edges,
                rate=rate,
                seed=scenario.seed,
                writer=writer,
                listeners=listeners,
            )
        )
    if log_sink is not None:
        sinks.append(log_sink)
    return _Streams(sinks=sinks, writer=writer)


@dataclass
class RunResult:
    """What a finished (or interrupted) run reports back to its caller."""

    out: Path
    summary: dict
    interrupted: bool


def _replica_hours(means: WindowedMeans) -> float:
    """Ready replicas integrated over the run: what the run cost in pods."""
    _, series = means.series()
    return float(series[:, :, M["ready_replicas"]].sum() * means.window_s / 3600.0)


class RunController(Protocol):
    """Something that drives a run in place of `Simulation.run` (an operator closing the
    loop) and reports a stack block for the summary once the labels exist."""

    mode: str

    def drive(self, sim: Simulation) -> None: ...

    def finish(self, truth: dict, slo: SloTracker, summary: dict) -> dict[str, Any]: ...


def run_scenario(
    scenario: Scenario,
    out: Path,
    *,
    progress: Callable[[str, float, float], None] | None = None,
    labels: bool = True,
    fidelity: str = "flow",
    actions: Sequence[tuple[float, Action]] = (),
    controller: RunController | None = None,
    truth: dict | None = None,
    allow_large: bool = False,
    on_tick: Sequence[Callable[[Simulation], None]] = (),
) -> RunResult:
    """Simulate, write the run directory as the run goes, then label faults and summarise.

    `actions` are (time, action) pairs applied at those times (flow fidelity); their costs
    are in the summary (a failover's standby in replica_hours, features lost to rollbacks).
    The labels' but-for replays leave them out: ground truth is about the faults alone.

    In request fidelity the labels still come from the flow fidelity's but-for replays:
    per-request noise differs between a run and its replay once paths diverge, and the
    flow replays compare like with like (`firebreak fidelity` checks the two agree).

    A `controller` (flow fidelity) drives the run instead of `Simulation.run` and adds its
    block to ``summary["stacks"][controller.mode]``; the labels then come from a run of the
    scenario without its actions, so they describe the faults, not the operator's response;
    such labels depend on the scenario alone, so a caller rehearsing it again may pass them
    back as `truth` instead of recomputing them.

    Before anything is written, the run's memory, disk and wall time are estimated from the
    scenario (twin/run/budget.py) and a run past the machine's limits is refused, unless
    `allow_large`.

    `on_tick` hooks (flow fidelity) see the simulation after every tick (the validity
    envelope's watcher rides along this way).
    """
    if fidelity not in FIDELITIES:
        raise ScenarioError(f"fidelity: expected one of {', '.join(FIDELITIES)}, got {fidelity!r}")
    out = Path(out)
    if not allow_large:
        cost = estimate(scenario, fidelity, labels=labels)
        check_budget(cost, out, f"scenario {scenario.name!r}")
    wall0 = time.perf_counter()
    run = _start(scenario, out, fidelity, actions, controller, labels, on_tick)
    sim = run.sim
    try:
        write_json(out / "summary.json", _status_only(scenario, fidelity, "running"))
        _simulate(run, controller, progress)
    except BaseException as exc:
        _abandon(run, scenario, fidelity, out, exc)
        raise
    run.streams.close()
    sim_seconds = sim.tick_index * sim.dt
    sim_wall = time.perf_counter() - wall0

    status = "interrupted" if sim.interrupted else "complete"
    closed_loop = controller is not None or bool(actions)
    try:
        if not (truth is not None and closed_loop and labels and not sim.interrupted):
            try:
                truth = _label(scenario, run, labels, closed_loop, sim_seconds, progress)
            except KeyboardInterrupt:  # Ctrl-C or SIGTERM while labelling: keep the run
                status = "interrupted"
                truth = _unlabelled(scenario, sim_seconds, "labelling interrupted")
        write_json(out / "labels.json", truth)
        summary = _summarise(scenario, run, fidelity, sim_seconds, wall0, sim_wall)
        summary["status"] = status
        if controller is not None:
            summary["stacks"] = {controller.mode: controller.finish(truth, run.slo, summary)}
        write_json(out / "summary.json", summary)
        if scenario.telemetry.plot and status == "complete":
            try:
                _plot(scenario, run, truth, out, sim_seconds)
            except KeyboardInterrupt:
                summary["status"] = status = "interrupted"
                write_json(out / "summary.json", summary)
    except BaseException as exc:
        if not isinstance(exc, KeyboardInterrupt):
            _abandon(run, scenario, fidelity, out, exc)
        raise
    return RunResult(out=out, summary=summary, interrupted=status == "interrupted")


def _simulate(
    run: _Run,
    controller: RunController | None,
    progress: Callable[[str, float, float], None] | None,
) -> None:
    """Drive the simulation to its end; Ctrl-C (or SIGTERM, which the CLI turns into it)
    stops it where it is and keeps what was simulated."""
    sim = run.sim
    end = sim.n_ticks * sim.dt
    if controller is None:
        with contextlib.suppress(KeyboardInterrupt):  # sim.interrupted says so
            sim.run(progress=(lambda t: progress("simulate", t, end)) if progress else None)
        return
    try:
        controller.drive(sim)
    except KeyboardInterrupt:
        sim.interrupted = True
    sim.finish()


def _status_only(scenario: Scenario, fidelity: str, status: str, **extra: Any) -> dict:
    """The summary a run has before it has figures: what it is and how far it got."""
    return {
        "scenario": scenario.name,
        "seed": scenario.seed,
        "fidelity": fidelity,
        "status": status,
        **extra,
    }


def _abandon(run: _Run, scenario: Scenario, fidelity: str, out: Path, exc: BaseException) -> None:
    """A run that failed part way: close every writer (what was flushed stays readable) and
    say so in summary.json. Never raises: the original error is what the caller needs."""
    with contextlib.suppress(BaseException):
        run.sim.finish()  # hands the sinks what was simulated, then closes them
    for closer in [*run.sim.sinks, run.streams]:  # whatever finish() could not close
        with contextlib.suppress(BaseException):
            closer.close()
    sim = run.sim
    status = "interrupted" if isinstance(exc, KeyboardInterrupt) else "failed"
    error = "interrupted" if status == "interrupted" else f"{type(exc).__name__}: {exc}"
    with contextlib.suppress(OSError):
        write_json(
            out / "summary.json",
            _status_only(
                scenario,
                fidelity,
                status,
                error=error,
                sim_seconds=sim.tick_index * sim.dt,
            ),
        )


@dataclass
class _Run:
    """A run in progress: the simulation and every sink that records it."""

    sim: Any
    streams: _Streams
    slo: SloTracker
    means: WindowedMeans
    signals: SignalRecorder | None
    trace_rate: float


def _start(
    scenario: Scenario,
    out: Path,
    fidelity: str,
    actions: Sequence[tuple[float, Action]],
    controller: RunController | None,
    labels: bool,
    on_tick: Sequence[Callable[[Simulation], None]] = (),
) -> _Run:
    """The simulation in the chosen fidelity with its run-directory writer and sinks."""
    tel = scenario.telemetry
    rate = tel.trace_rate if tel.trace_rate is not None else DEFAULT_TRACE_RATE[fidelity]
    if fidelity == "flow":
        sim = Simulation(scenario, actions=actions)
        sim.on_tick.extend(on_tick)
    elif actions or controller is not None:
        raise ActionError("actions: scheduled actions and operators need flow fidelity")
    else:
        sim = RequestSimulation(scenario, trace_rate=rate if tel.traces else 0.0)
    names, edges = sim.topo.names, sim.topo.edges
    nodes = sim.node_names if fidelity == "flow" else ()  # request fidelity: no node metrics
    writer = open_writer(scenario, out, names, edges, nodes)
    try:
        streams = _trace_and_log_sinks(scenario, sim, out, rate)
        slo = SloTracker(scenario, names)
        means = WindowedMeans(scenario.duration, sim.dt, len(names), N_SERVICE_METRICS)
        signals = None
        if labels and scenario.faults and fidelity == "flow":
            signals = SignalRecorder(sim.n_ticks, len(names))
    except BaseException:
        writer.close()  # nothing left open behind an error
        raise
    sim.sinks.extend([writer, slo, means, *streams.sinks] + ([signals] if signals else []))
    return _Run(sim, streams, slo, means, signals, rate)


def _label(
    scenario: Scenario,
    run: _Run,
    labels: bool,
    closed_loop: bool,
    sim_seconds: float,
    progress: Callable[[str, float, float], None] | None,
) -> dict:
    """Causal ground truth by but-for replays; what is known when labelling is off or the
    run was interrupted (the faults that had started, their ends and effects unknown)."""
    sim = run.sim
    names = sim.topo.names
    if labels and scenario.faults and not sim.interrupted:
        signals = run.signals
        faulted = (
            signals.data if signals is not None and not closed_loop else record_signals(scenario)
        )
        return ground_truth(
            scenario,
            faulted[: sim.tick_index],
            names,
            sim_seconds,
            progress=(lambda i, n: progress("label", i, n)) if progress else None,
        )
    if sim.interrupted:
        return _unlabelled(scenario, sim_seconds, "run interrupted")
    return {
        "scenario": scenario.name,
        "seed": scenario.seed,
        "faults": [],
        "method": "none: no faults or disabled",
    }


def _unlabelled(scenario: Scenario, sim_seconds: float, why: str) -> dict:
    """What is known without the but-for replays: the faults that had started, their ends
    and effects unknown."""
    return {
        "scenario": scenario.name,
        "seed": scenario.seed,
        "method": f"none: {why}",
        "faults": [
            {
                "id": f.name or f"{f.kind}-{i}",
                "kind": f.kind,
                "target": f.target,
                "start": f.start,
                "end": None,
                "affected": None,
            }
            for i, f in enumerate(scenario.faults)
            if f.start < sim_seconds
        ],
    }


def _summarise(
    scenario: Scenario, run: _Run, fidelity: str, sim_seconds: float, wall0: float, sim_wall: float
) -> dict[str, Any]:
    """The figures summary.json carries: speed, SLOs, requests, cost, events, traces."""
    sim = run.sim
    names, edges = sim.topo.names, sim.topo.edges
    tel = scenario.telemetry
    cons = sim.conservation()
    entries = sorted({sim.topo.service_index(c.entry) for c in scenario.workload.classes})
    slo_report = run.slo.report()
    standby_hours = sim.pods.standby_replica_seconds(sim_seconds) / 3600.0  # failovers
    replica_hours = round(_replica_hours(run.means) + standby_hours, 3)
    return {
        "scenario": scenario.name,
        "seed": scenario.seed,
        "fidelity": fidelity,
        "tick_s": sim.dt,
        "sim_seconds": sim_seconds,
        "wall_seconds": round(time.perf_counter() - wall0, 3),
        "simulate_wall_seconds": round(sim_wall, 3),
        "speed_x_realtime": round(sim_seconds / sim_wall, 1) if sim_wall > 0 else None,
        "interrupted": sim.interrupted,
        "services": len(names),
        "edges": len(edges),
        "slo_adherence": slo_report["slo_adherence"],
        "slos": slo_report["slos"],
        "requests": {
            key: float(np.sum(cons[key][entries]))
            for key in ("arrived", "completed", "failed", "shed", "in_flight")
        },
        "replica_hours": replica_hours,
        "standby_replica_hours": round(standby_hours, 3),
        "features_lost": len(sim.pods.features_lost),
        "feature_loss_hours": round(sim.pods.feature_loss_hours(sim_seconds), 3),
        "events": dict(sorted(sim.events.counts.items())),
        "traces": {"rate": run.trace_rate if tel.traces else 0.0, "spans": run.streams.spans()},
        "faults": len(scenario.faults),
        "stacks": {
            "none": {
                "alerts": 0,
                "incidents": 0,
                "mttd_s": None,
                "mtti_s": None,
                "mttr_s": None,
                "replica_hours": replica_hours,
            },
        },
    }


def _plot(scenario: Scenario, run: _Run, truth: dict, out: Path, sim_seconds: float) -> None:
    """overview.png: load, p99, errors and replicas per service with the faults shaded."""
    times, series = run.means.series()
    fault_spans = [
        {
            "kind": f["kind"],
            "target": f["target"],
            "start": f["start"],
            "end": f["end"] if f.get("end") is not None else sim_seconds,
        }
        for f in truth["faults"]
    ]
    overview_plot(
        out / "overview.png",
        f"{scenario.name} (seed {scenario.seed})",
        times,
        series,
        run.sim.topo.names,
        fault_spans,
    )
