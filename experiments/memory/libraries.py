"""Incident libraries for the memory study: Nezha Train Ticket's real faults (one library
per day) and seeded twin incidents over the five topologies.

Signatures read telemetry only: for Nezha the day's pod metrics, spans and logs with the
fault-free period's spans and logs as baseline, at the label's inject time (the anomaly
time the RCA benchmark uses too); for the twin the run's wide table (metrics plus the
WARN/ERROR log rates) and the declared call graph, at the fault's start. The diagnosis
(kind, root) is the label. The twin's action record is the remedy its mitigation oracle
says ends the fault (Nezha's data set records none).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from detectors.memory.library import Action, Incident, IncidentLibrary
from detectors.memory.signature import prepare_spans, signature
from experiments.rca.cases import TOPOLOGIES, generate_cases, scenario_for
from experiments.realbench.nezha import cases as nezha_cases
from twin.telemetry.spans import EPOCH_UNIX_S

TWIN_PER_PAIR = 3  # incidents per (topology, kind)


def nezha_incidents(root: Path, day: str) -> list[Incident]:
    """Every fault of one Nezha day as an incident."""
    out = []
    for case in nezha_cases(root, (day,)):
        i = case.inputs
        tel = i.telemetry
        tel.spans, tel.normal_spans = prepare_spans(tel.spans), prepare_spans(tel.normal_spans)
        sig = signature(i.table, i.anomaly_time, tel, i.graph)
        out.append(
            Incident(
                f"nezha {case.name}",
                "nezha-trainticket",
                f"{root.name}/{day}",
                i.anomaly_time,
                case.answer.kind,
                case.answer.root,
                sig,
            )
        )
    return out


def twin_incidents(
    per_pair: int = TWIN_PER_PAIR, seed: int = 0, progress: Callable[[str], None] | None = None
) -> list[Incident]:
    """Seeded twin incidents: every fault kind on every topology, `per_pair` of each."""
    from experiments.rca.cases import KINDS
    from experiments.rca.suite import simulate_case
    from twin.run.labels import mitigation_oracle

    out = []
    for spec in generate_cases(len(TOPOLOGIES) * len(KINDS) * per_pair, seed):
        run = simulate_case(spec)
        at = EPOCH_UNIX_S + spec.start
        sig = signature(run.table, at, graph=run.graph)
        scenario = scenario_for(spec)
        ends = mitigation_oracle(scenario, scenario.faults[0]).get("ends", [])
        actions = (Action(str(ends[0]["action"]), True),) if ends else ()
        out.append(
            Incident(
                f"twin {spec.case}",
                spec.topology,
                f"rca-case seed {seed}",
                at,
                spec.kind,
                run.root,
                sig,
                actions,
            )
        )
        if progress is not None:
            progress(spec.case)
    return out


def write_library(path: Path, incidents: list[Incident]) -> Path:
    """A new library file holding the incidents (replaces an old one at `path`)."""
    path.unlink(missing_ok=True)
    with IncidentLibrary.open(path, create=True) as lib:
        lib.add(incidents)
    return path


def read_library(path: Path) -> list[Incident]:
    with IncidentLibrary.open(path) as lib:
        return lib.incidents()
