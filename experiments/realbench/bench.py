"""`firebreak real-bench`: every method on the real datasets found under a folder.

Datasets are recognised by their layout (`nezha.is_nezha`, `petshop.is_petshop`): the
folder may be one dataset or hold both (`../shared/data`). Methods: the project's (the
registry's, plus the multimodal method's first registered edge rule, labelled, so its
held-out figure stays on record) and, when importable, RCAEval's BARO and NSigma, all on
the same cases with the dataset's window framing.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from detectors.rca.base import RcaMethod
from detectors.rca.multimodal import MultimodalRca
from detectors.rca.registry import METHODS, make_method
from detectors.rca.trace_latency import LatencySettings
from experiments.rca.methods import EXTERNAL, load_method, rcaeval_available
from experiments.realbench import nezha, petshop
from experiments.realbench.cases import RealCase
from experiments.realbench.harness import FRAMING, run_cases

FIRST_RULE = "multimodal-first-rule"
DATASETS = ("nezha-trainticket", "petshop")


def first_rule() -> MultimodalRca:
    """The multimodal method as registered on 2023-01-29 before 2023-01-30 was first run:
    incident-edge median, no pooled baseline for unseen edges, its own τ."""
    return MultimodalRca(
        latency=LatencySettings(edges="incident", pool_edges=False), tau_latency=67.9
    )


def find_datasets(root: Path) -> dict[str, Path]:
    """Dataset name → folder, for the folder itself or its direct subfolders."""
    found: dict[str, Path] = {}
    for folder in [root, *sorted(p for p in root.iterdir() if p.is_dir())]:
        if nezha.is_nezha(folder):
            found.setdefault("nezha-trainticket", folder)
        elif petshop.is_petshop(folder):
            found.setdefault("petshop", folder)
    return found


def load_cases(name: str, folder: Path, limit: int | None = None) -> list[RealCase]:
    if name == "nezha-trainticket":
        return nezha.cases(folder, limit=limit)
    return petshop.cases(folder, limit=limit)


def methods_for(
    dataset: str, names: Sequence[str] | None = None
) -> tuple[dict[str, RcaMethod], list[str]]:
    """The methods to run on a dataset (with its framing), and notes on any left out."""
    wanted = list(names) if names else [*METHODS, FIRST_RULE, *EXTERNAL]
    framing = FRAMING[dataset]
    methods: dict[str, RcaMethod] = {}
    notes: list[str] = []
    ok, why = rcaeval_available()
    for name in wanted:
        if name in METHODS:
            methods[name] = make_method(name, **framing)
        elif name == FIRST_RULE:
            methods[name] = first_rule()
        elif name in EXTERNAL:
            if ok:
                methods[name] = load_method(name)
            else:
                note = f"RCAEval's BARO and NSigma not run: {why}"
                notes += [] if note in notes else [note]
        else:
            known = ", ".join([*METHODS, FIRST_RULE, *EXTERNAL])
            raise KeyError(f"unknown method {name!r} (known: {known})")
    return methods, notes


@dataclass
class BenchResult:
    rows: pd.DataFrame
    notes: dict[str, list[str]] = field(default_factory=dict)


def run_bench(
    root: Path,
    *,
    datasets: Sequence[str] | None = None,
    methods: Sequence[str] | None = None,
    limit: int | None = None,
    progress: Callable[[str, int], Callable[[], None]] | None = None,
) -> BenchResult:
    """Every method on every case of the datasets found (the first `limit` cases per part)."""
    found = find_datasets(root)
    chosen = [d for d in (datasets or DATASETS) if d in found]
    frames, notes = [], {}
    for name in chosen:
        cases = load_cases(name, found[name], limit)
        chosen_methods, method_notes = methods_for(name, methods)
        notes[name] = method_notes
        tick = progress(name, len(cases)) if progress else None
        frames.append(run_cases(cases, chosen_methods, tick))
    rows = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    return BenchResult(rows, notes)
