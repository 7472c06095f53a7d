"""Twin cases that mirror real ones: the same fault kind on the same service, observed
through the same windows, with production-like telemetry.

Per real case the calibrated scenario is run once (flow fidelity, `telemetry: {mode:
production}`): a warm-up, the real framing's normal window, then the fault for the length
of the incident window. The twin is observed as Nezha observed Train Ticket: every request
traced and logged (`trace_rate` and `log_info_rate` 1), metrics read at the real table's
step (60 s for Nezha's pod metrics). A method gets what it gets on the real case: the wide
table, the anomaly time (the fault's start), the call graph the spans have shown, and the
spans and logs with a normal period recorded apart (one fault-free run of the same twin,
as Nezha's `construct_data` is a fault-free phase of the same day). The answer (target and
kind) is kept out of the inputs, as in `experiments.realbench.cases`.

Seeds come from one seed and the case's index, so the same seed gives the same cases.
"""

from __future__ import annotations

import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import networkx as nx
import numpy as np
import pandas as pd
from pydantic import ValidationError

from detectors.ingest.errors import IngestError
from detectors.ingest.read import read_log_files, read_traces
from detectors.rca.base import IncidentTelemetry
from detectors.rca.span_graph import call_graph, call_tree
from experiments.realbench.cases import Answer, CaseInputs, RealCase
from experiments.sim2real.exporters import ExporterModels
from experiments.sim2real.faults import Sim2RealError, twin_fault
from experiments.sim2real.nezha_layout import nezha_table
from twin.run.runner import run_scenario
from twin.scenario.schema import Scenario
from twin.telemetry.spans import EPOCH_UNIX_S
from twin.telemetry.widecsv import wide_table

WARMUP_S = 300.0  # queues fill and the first rate() windows close before the normal window
NORMAL_KEY = 1_000_003  # the normal run's seed key (no case index reaches it)
OBSERVED = {"mode": "production", "plot": False, "traces": True, "logs": True,
            "trace_rate": 1.0, "log_info_rate": 1.0}  # fmt: skip


@dataclass(frozen=True)
class Framing:
    """The observation: seconds of normal data before the anomaly, of incident after, and
    the metric table's step."""

    before_s: float
    after_s: float
    step_s: float

    @property
    def fault_at(self) -> float:
        return WARMUP_S + self.before_s

    @property
    def run_s(self) -> float:
        return self.fault_at + self.after_s + self.step_s


def case_seed(seed: int, index: int) -> int:
    """A run seed from the check's seed and a case index (stable across machines)."""
    return int(np.random.SeedSequence([seed, index]).generate_state(1)[0] & 0x7FFFFFFF)


def observed_scenario(scenario: Scenario) -> dict[str, Any]:
    """The calibrated scenario as plain data, recorded as the real system was: production
    telemetry with its settings kept, every request traced and logged, no plot, no faults."""
    doc = scenario.model_dump(mode="json")
    doc["telemetry"] = {**doc.get("telemetry", {}), **OBSERVED}
    doc["faults"] = []
    return doc


def _scenario(doc: Mapping[str, Any], source: str) -> Scenario:
    try:
        return Scenario.model_validate(doc)
    except ValidationError as exc:
        err = exc.errors(include_url=False)[0]
        where = ".".join(str(p) for p in err["loc"])
        raise Sim2RealError(f"{source}: {where}: {err['msg']}") from None


@dataclass
class Observation:
    """What one twin run offers a method."""

    table: pd.DataFrame
    spans: pd.DataFrame | None
    logs: pd.DataFrame | None


def _read(kind: str, path: Path) -> pd.DataFrame | None:
    """A run's spans or logs through detectors.ingest (None when the run wrote none)."""
    if not path.is_file() or path.stat().st_size == 0:
        return None
    try:
        if kind == "spans":
            frame, _ = read_traces(path)
            return call_tree(frame) if len(frame) else None
        frame, _ = read_log_files(path)
        return frame if len(frame) else None
    except IngestError:
        return None


def observe(
    scenario: Scenario, step_s: float, exporters: ExporterModels | None = None
) -> Observation:
    """Run a scenario into a temporary folder and read it back as a real system's data: the
    metric table in Nezha's layout when `exporters` are given, else RCAEval's six kinds."""
    with tempfile.TemporaryDirectory(prefix="sim2real-") as tmp:
        out = Path(tmp) / "run"
        run_scenario(scenario, out, labels=False)
        if exporters is not None:
            table = nezha_table(out, scenario, exporters, step_s, scenario.seed)
        else:
            table = wide_table(out, step=step_s)
        return Observation(
            table,
            _read("spans", out / "traces.json"),
            _read("logs", out / "logs.jsonl"),
        )


def _after_warmup(frame: pd.DataFrame | None, column: str) -> pd.DataFrame | None:
    if frame is None:
        return None
    return frame[frame[column] >= EPOCH_UNIX_S + WARMUP_S].reset_index(drop=True)


class TwinCases:
    """Builds the twin counterpart of real cases from one calibrated scenario."""

    def __init__(
        self,
        scenario: Scenario,
        framing: Framing,
        seed: int,
        source: str,
        exporters: ExporterModels | None = None,
    ) -> None:
        self.scenario = scenario
        self.exporters = exporters
        self.base = observed_scenario(scenario)
        self.framing = framing
        self.seed = seed
        self.source = source
        self._normal: Observation | None = None

    @property
    def services(self) -> Mapping[str, Any]:
        return self.base["topology"]["services"]

    def normal(self) -> Observation:
        """One fault-free run (the twin's construct_data), made once and shared."""
        if self._normal is None:
            doc = dict(self.base, name=f"{self.base['name']}-normal",
                       duration=WARMUP_S + self.framing.before_s,
                       seed=case_seed(self.seed, NORMAL_KEY))  # fmt: skip
            self._normal = observe(_scenario(doc, self.source), self.framing.step_s, self.exporters)
        return self._normal

    def scenario_for(self, index: int, kind: str, target: str) -> Scenario:
        """The twin run of case `index`: the fault of `kind` on `target` at the framing's
        anomaly time, lasting the incident window."""
        f = self.framing
        fault = twin_fault(kind, target, f.fault_at, f.after_s, self.services)
        doc = dict(self.base, name=f"{self.base['name']}-case{index}", duration=f.run_s,
                   seed=case_seed(self.seed, index), faults=[fault])  # fmt: skip
        return _scenario(doc, self.source)

    def case(self, index: int, real: RealCase) -> RealCase:
        """The twin case mirroring `real` (its kind, its root, its windows)."""
        kind, target = real.answer.kind, real.answer.root
        scenario = self.scenario_for(index, kind, target)
        run = observe(scenario, self.framing.step_s, self.exporters)
        normal = self.normal()
        at = EPOCH_UNIX_S + self.framing.fault_at
        telemetry = IncidentTelemetry(
            spans=run.spans,
            logs=run.logs,
            normal_spans=_after_warmup(normal.spans, "start"),
            normal_logs=_after_warmup(normal.logs, "time"),
        )
        graph = traced_graph(telemetry, at + self.framing.after_s)
        fault = scenario.faults[0]
        return RealCase(
            dataset="twin",
            part=real.part,
            dev=real.dev,
            name=real.name,
            inputs=CaseInputs(run.table, at, graph, telemetry),
            answer=Answer(target, kind),
            meta={**real.meta, "twin_fault": fault.kind, "seed": scenario.seed},
        )


def traced_graph(t: IncidentTelemetry, until: float) -> nx.DiGraph:
    """The calls the normal spans and the spans started before `until` show (the real
    benchmark's graph, `experiments.realbench.nezha.traced_graph`, for the twin)."""
    graph = nx.DiGraph()
    if t.normal_spans is not None:
        graph.add_edges_from(call_graph(t.normal_spans))
    if t.spans is not None:
        graph.add_edges_from(call_graph(t.spans[t.spans["start"] < until]))
    return graph
