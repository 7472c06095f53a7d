"""Run methods on real cases and score them: one row per (case, method).

A method that reads an `IncidentTelemetry` gets it whole; any other gets the incident's
separate normal period (when there is one) joined in front of its table, re-timed to end
one step before the incident's first row, which is how a table-only method can use it.
Window settings are the dataset's (`FRAMING`), the same for every method. A method that
fails on a case scores a miss for it and the failure is recorded, never hidden.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import pandas as pd

from detectors.rca.base import RcaMethod, join_normal
from detectors.rca.registry import takes_telemetry
from experiments.rca.metrics import case_metrics, rank_of
from experiments.realbench.cases import RealCase

# per dataset: the normal window before, and the incident window after, the anomaly time
FRAMING: dict[str, dict[str, float]] = {
    # pod metrics every 60 s; a fault lasts ~3 min and the next follows 7-9 min later
    "nezha-trainticket": {"before_s": 600.0, "after_s": 180.0},
    # five 5-minute rows per issue: all of its rows after the symptom, all normal rows before
    "petshop": {"before_s": math.inf, "after_s": math.inf},
}


def rank_case(method: RcaMethod, case: RealCase) -> list[str]:
    """The method's ranking of one case's services (inputs only; the answer is not passed)."""
    i = case.inputs
    if takes_telemetry(method):
        causes = method.rank(i.table, i.anomaly_time, i.graph, telemetry=i.telemetry)
    else:
        table = i.table if i.telemetry.normal is None else join_normal(i.telemetry.normal, i.table)
        causes = method.rank(table, i.anomaly_time, i.graph)
    return [c.service for c in causes]


def run_cases(
    cases: Sequence[RealCase],
    methods: Mapping[str, RcaMethod],
    progress: Callable[[], None] | None = None,
) -> pd.DataFrame:
    """The tidy table: case, part, dev, kind, root, method, rank, AC@1..5, Avg@5, seconds."""
    rows: list[dict[str, Any]] = []
    for case in cases:
        for name, method in methods.items():
            began = time.perf_counter()
            error = ""
            try:
                ranking = rank_case(method, case)
            except Exception as exc:  # one method failing must not sink the benchmark
                ranking, error = [], f"{type(exc).__name__}: {exc}"
            seconds = time.perf_counter() - began
            rank = rank_of(ranking, case.answer.root)
            rows.append(
                {
                    "dataset": case.dataset,
                    "part": case.part,
                    "dev": case.dev,
                    "case": case.name,
                    "kind": case.answer.kind,
                    "root": case.answer.root,
                    "method": name,
                    "rank": rank,
                    **case_metrics(rank),
                    "seconds": seconds,
                    "top3": " | ".join(ranking[:3]),
                    "error": error,
                    **case.meta,
                }
            )
        if progress is not None:
            progress()
    return pd.DataFrame(rows)


def summarise(rows: pd.DataFrame, by: Sequence[str]) -> pd.DataFrame:
    """AC@1, AC@3, Avg@5, n and seconds per case for each group."""
    g = rows.groupby(list(by), sort=False)
    return g.agg(
        ac1=("ac1", "mean"),
        ac3=("ac3", "mean"),
        avg5=("avg5", "mean"),
        n=("case", "count"),
        seconds_per_case=("seconds", "mean"),
    ).reset_index()
