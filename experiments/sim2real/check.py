"""The sim-to-real check: the same RCA methods on Nezha's real Train Ticket faults and on
twin cases of the calibrated Train Ticket with the same fault kinds, roots and windows.

The twin is the scenario `firebreak calibrate` fits to one day's fault-free phase
(`construct_data/<calibration day>`, the development day unless told otherwise), or a
scenario given. Real cases are `firebreak real-bench`'s (`experiments.realbench.nezha`),
with its framing and method settings; the twin cases get the same. Days are reported apart:
settings are chosen on the development day only.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from experiments.realbench import nezha
from experiments.realbench.bench import methods_for
from experiments.realbench.cases import RealCase
from experiments.realbench.harness import FRAMING, run_cases
from experiments.sim2real import compare, faults
from experiments.sim2real.exporters import ExporterModels, fit_exporters
from experiments.sim2real.faults import Sim2RealError
from experiments.sim2real.twin_cases import Framing, TwinCases
from twin.scenario.schema import Scenario

DATASET = "nezha-trainticket"
Progress = Callable[[str, int], Callable[[], None]]


def dataset_root(root: Path) -> Path:
    """The Nezha folder: `root` itself or its `nezha-trainticket` subfolder."""
    if not root.is_dir():
        raise Sim2RealError(f"{root}: not a directory")
    for folder in (root, root / DATASET):
        if nezha.is_nezha(folder):
            return folder
    raise Sim2RealError(
        f"{root}: no Nezha Train Ticket data here (expected rca_data/ and construct_data/, "
        f"or a {DATASET}/ folder holding them)"
    )


def check_days(root: Path, days: Sequence[str] | None) -> tuple[str, ...]:
    """The days asked for, each one the data holds (default: every day it holds)."""
    held = nezha.days_of(root)
    for day in days or ():
        if day not in held:
            raise Sim2RealError(
                f"--days: {day!r}: no {root / 'rca_data' / day / f'{day}-fault_list.json'} "
                f"(days here: {', '.join(held) or 'none'})"
            )
    if not held:
        raise Sim2RealError(f"{root / 'rca_data'}: no day with a fault list")
    return tuple(days) if days else held


def calibrated(root: Path, day: str, seed: int) -> tuple[Scenario, str]:
    """The twin fitted to `day`'s fault-free phase, and where it came from."""
    from experiments.calibration.fit import calibrate

    folder = root / "construct_data" / day
    if not folder.is_dir():
        raise Sim2RealError(f"--calibrate-day: {day!r}: no folder {folder}")
    doc, _ = calibrate(folder, name=f"trainticket-{day}", seed=seed)
    return Scenario.model_validate(doc), f"calibrated from {folder}"


def exporter_models(root: Path, day: str) -> ExporterModels:
    """The exporter columns fitted on `day`'s fault-free phase (its metric folder)."""
    folder = root / "construct_data" / day / "metric"
    if not folder.is_dir():
        raise Sim2RealError(f"--calibrate-day: {day!r}: no folder {folder}")
    return fit_exporters(folder)


@dataclass
class DayResult:
    day: str
    dev: bool
    real: pd.DataFrame
    twin: pd.DataFrame
    table: pd.DataFrame
    verdict: dict[str, Any]
    skipped: list[str] = field(default_factory=list)


def run_day(
    root: Path,
    day: str,
    scenario: Scenario,
    source: str,
    seed: int,
    method_names: Sequence[str] | None,
    limit: int | None,
    progress: Progress | None = None,
    whole_table: bool = False,
    exporters: ExporterModels | None = None,
    real_kinds: Sequence[str] | None = None,
) -> DayResult:
    """Real and twin cases of one day, every method on both, compared. Each case's metric
    table is cut to the framing's window on both sides (`windowed`) unless `whole_table`:
    then the real side gets the day's table, as `firebreak real-bench` gives it, and the twin
    its whole run."""
    cases = nezha.cases(root, days=(day,), limit=limit)
    if not cases:
        raise Sim2RealError(f"{day}: no cases in its fault list")
    framing = framing_for(real_step(cases[0].inputs.table))
    twins = TwinCases(scenario, framing, seed, source, exporters)
    real_methods, _ = methods_for(DATASET, method_names)
    twin_methods, _ = methods_for(DATASET, method_names)
    cut = (lambda c: c) if whole_table else (lambda c: windowed(c, twins.framing))
    kept, skipped = [], []
    for case in cases:
        if case.answer.root not in twins.services or case.answer.kind not in faults.TWIN_KIND:
            skipped.append(f"{case.name}: {case.answer.kind} on {case.answer.root} (no twin)")
        else:
            kept.append(only_kinds(cut(case), real_kinds))
    tick = progress(f"{day} real", len(kept)) if progress else None
    real = run_cases(kept, real_methods, tick)
    tick = progress(f"{day} twin", len(kept)) if progress else None
    twin_rows = []
    for i, case in enumerate(kept):
        twin_case = cut(twins.case(i, case))
        twin_rows.append(run_cases([twin_case], twin_methods))
        if tick:
            tick()
    twin = pd.concat(twin_rows, ignore_index=True) if twin_rows else real.iloc[0:0]
    if real.empty:
        raise Sim2RealError(f"{day}: no real case has a twin counterpart ({len(cases)} cases)")
    table = compare.side_by_side(real, twin)
    return DayResult(day, bool(cases[0].dev), real, twin, table, compare.verdict(table), skipped)


def windowed(case: RealCase, framing: Framing) -> RealCase:
    """The case with its metric table cut to [anomaly − before_s, anomaly + after_s): what an
    operator has when the incident window closes, the same length on both sides. (The whole
    day's table hands a table-only method every later hour, later faults included, as the
    incident.)"""
    t = case.inputs.table["time"].to_numpy(float)
    at = case.inputs.anomaly_time
    keep = (t >= at - framing.before_s) & (t < at + framing.after_s)
    table = case.inputs.table[keep].reset_index(drop=True)
    return replace(case, inputs=replace(case.inputs, table=table))


# the real kinds the twin's RCAEval table simulates (cpu, mem, workload, latency, error)
SIMULATED_KINDS = (
    "CpuUsage(m)",
    "MemoryUsage(Mi)",
    "PodWorkload(Ops)",
    "PodServerLatencyP90(s)",
    "PodSuccessRate(%)",
)


def only_kinds(case: RealCase, kinds: Sequence[str] | None) -> RealCase:
    """The case with its metric table cut to these kinds (None: all of them): an ablation
    that shows how much of a method's real result the extra kinds decide."""
    if kinds is None:
        return case
    table = case.inputs.table
    keep = ["time"] + [c for c in table.columns if c != "time" and c.split("_", 1)[-1] in kinds]
    return replace(case, inputs=replace(case.inputs, table=table[keep]))


def real_step(table: pd.DataFrame) -> float:
    """The real metric table's step (its median time difference)."""
    steps = np.diff(table["time"].to_numpy(float))
    return float(np.median(steps)) if steps.size else 60.0


def framing_for(real_step_s: float = 60.0) -> Framing:
    """Real-bench's Nezha windows and the pod metrics' step."""
    f = FRAMING[DATASET]
    return Framing(f["before_s"], f["after_s"], real_step_s)


def method_notes(method_names: Sequence[str] | None) -> list[str]:
    """Why a method asked for is left out (RCAEval missing); KeyError for an unknown name."""
    return methods_for(DATASET, method_names)[1]


def settings() -> dict[str, Any]:
    """The fixed settings, written beside the results."""
    f = framing_for()
    return {
        "framing": {"before_s": f.before_s, "after_s": f.after_s, "step_s": f.step_s},
        "fault_map": dict(faults.TWIN_KIND),
        "cpu_hog_share_of_limit": faults.CPU_HOG_SHARE,
        "defect_share": faults.DEFECT_SHARE,
        "network_delay_ms": faults.NETWORK_DELAY_MS,
        "tolerance": compare.TOLERANCE,
        "tau_min": compare.TAU_MIN,
        "min_methods": compare.MIN_METHODS,
    }


def as_json(results: Sequence[DayResult]) -> dict[str, Any]:
    """Per day: the side-by-side table, the verdict, per-kind AC@1 and per-case ranks."""
    out: dict[str, Any] = {}
    cols = ["case", "kind", "root", "method", "rank", "ac1", "top3", "error"]
    for r in results:
        real = r.real[cols].rename(
            columns={
                "rank": "rank_real",
                "ac1": "ac1_real",
                "top3": "top3_real",
                "error": "error_real",
            }
        )
        twin = r.twin[["case", "method", "rank", "ac1", "top3", "error"]].rename(
            columns={"rank": "rank_twin", "ac1": "ac1_twin", "top3": "top3_twin",
                     "error": "error_twin"})  # fmt: skip
        cases = real.merge(twin, on=["case", "method"], how="left")
        out[r.day] = {
            "dev": r.dev,
            "cases": int(r.real["case"].nunique()),
            "table": r.table.to_dict(orient="records"),
            "verdict": r.verdict,
            "by_kind": compare.by_kind(r.real, r.twin).to_dict(orient="records"),
            "skipped": r.skipped,
            "per_case": cases.astype(object).where(cases.notna(), None).to_dict("records"),
        }
    return out
