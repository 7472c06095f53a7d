"""Running a scenario with the trace sampler and the log sink, for the trace, log and
import tests."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from twin.fields import M
from twin.flow.engine import Simulation
from twin.scenario.schema import Scenario
from twin.telemetry.logs import LogSink
from twin.telemetry.otlp import OtlpTraceWriter
from twin.telemetry.spans import Span
from twin.telemetry.trace_sampler import TraceSampler

HEX32 = re.compile(r"^[0-9a-f]{32}$")
HEX16 = re.compile(r"^[0-9a-f]{16}$")
EVENT_TEMPLATES = ("pod.", "deploy.", "breaker.")


# -- running a scenario with the trace and log sinks -----------------------------------------------
@dataclass
class Run:
    scenario: Scenario
    out: Path
    names: tuple[str, ...]
    times: np.ndarray
    values: np.ndarray
    events: list[dict]
    spans: list[Span] = field(default_factory=list)

    def logs(self) -> list[dict[str, Any]]:
        path = self.out / "logs.jsonl"
        return [json.loads(line) for line in path.read_text().splitlines()]

    def traces(self) -> dict[str, Any]:
        return json.loads((self.out / "traces.json").read_text())

    def metric(self, service: str, metric: str) -> np.ndarray:
        return self.values[:, self.names.index(service), M[metric]]


class _Collect:
    def __init__(self) -> None:
        self.chunks: list = []
        self.spans: list[Span] = []

    def on_chunk(self, chunk) -> None:
        self.chunks.append(chunk)

    def on_spans(self, spans) -> None:
        self.spans.extend(spans)

    def close(self) -> None:
        pass


def run_with(
    scenario: Scenario,
    out: Path,
    *,
    rate: float = 0.0,
    seed: int = 7,
    logs: bool = True,
    **log_options: Any,
) -> Run:
    """Simulate with a trace sampler (writing traces.json) and a log sink (logs.jsonl)."""
    out.mkdir(parents=True, exist_ok=True)
    sim = Simulation(scenario)
    names, edges = sim.topo.names, sim.topo.edges
    keep = _Collect()
    listeners: list = [keep]
    sinks: list = [keep]
    if logs:
        log_options.setdefault("traced_share", rate)
        log_sink = LogSink(out / "logs.jsonl", scenario, names, edges, seed=seed, **log_options)
        listeners.append(log_sink)
        sinks.append(log_sink)
    if rate > 0:
        writer = OtlpTraceWriter(out / "traces.json", names)
        sampler = TraceSampler(
            scenario, names, edges, rate=rate, seed=seed, writer=writer, listeners=listeners
        )
        sinks.insert(1, sampler)  # before the log sink: its spans come first, logs cope
    sim.sinks.extend(sinks)
    sim.run()
    return Run(
        scenario=scenario,
        out=out,
        names=names,
        times=np.concatenate([c.times for c in keep.chunks]),
        values=np.concatenate([c.values for c in keep.chunks]),
        events=[e for c in keep.chunks for e in c.events],
        spans=keep.spans,
    )


def otlp_spans(doc: dict) -> list[dict]:
    out = []
    for rs in doc["resourceSpans"]:
        attrs = {a["key"]: a["value"] for a in rs["resource"]["attributes"]}
        service = attrs["service.name"]["stringValue"]
        for scope in rs["scopeSpans"]:
            for span in scope["spans"]:
                out.append({**span, "service": service})
    return out


def span_attr(span: dict, key: str) -> Any:
    for item in span["attributes"]:
        if item["key"] == key:
            return next(iter(item["value"].values()))
    return None
