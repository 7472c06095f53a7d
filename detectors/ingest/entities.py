"""Series per entity (a pod, an instance, a service) onto one time grid, one signal each.

Scrapers stamp each target on its own clock (Nezha's pods drift ±1 s around a 60 s step),
so when the entities do not share timestamps each sample is snapped to the nearest step of
a common grid and the largest shift is reported. A service with one pod gets plain
`<service>_<metric>` signals; with several, each pod keeps its own signal (a single bad pod
must not be averaged away) and the wide name carries the pod after `@`.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import pandas as pd

from detectors.ingest.names import match_service, service_of_pod
from detectors.ingest.table import SignalTable, assemble, make_signal


def snap_to_grid(times: np.ndarray, entities: np.ndarray) -> tuple[np.ndarray, str | None]:
    """Times snapped to a shared grid when entities sample on their own clocks."""
    frame = pd.DataFrame({"t": times, "e": entities})
    per_entity = frame.groupby("e")["t"].nunique()
    shared = frame["t"].nunique()
    if len(per_entity) < 2 or shared <= per_entity.max():
        return times, None
    steps = frame.sort_values("t").groupby("e")["t"].diff().dropna()
    step = float(np.median(steps[steps > 0])) if (steps > 0).any() else 0.0
    if step <= 0:
        return times, None
    phase = float(np.median(np.mod(times, step)))
    snapped = np.round((times - phase) / step) * step + phase
    shift = float(np.max(np.abs(snapped - times)))
    note = (
        f"entities sample on their own clocks: snapped to a shared {step:g} s grid "
        f"(max shift {shift:.3g} s)"
    )
    return snapped, note


def entity_service(entity: str, known: Iterable[str] | None) -> str:
    if known:
        hit = match_service(entity, known)
        if hit is not None:
            return hit
    return service_of_pod(entity)


def entity_table(
    source: str,
    times: np.ndarray,
    entities: np.ndarray,
    metrics: np.ndarray,
    values: np.ndarray,
    *,
    known: Iterable[str] | None = None,
    notes: list[str] | None = None,
    excluded: list[str] | None = None,
) -> SignalTable:
    """A SignalTable from long rows (time, entity, metric, value)."""
    notes = list(notes or [])
    entities = np.asarray(entities).astype(str)
    metrics = np.asarray(metrics).astype(str)
    times, snap_note = snap_to_grid(np.asarray(times, dtype=float), entities)
    if snap_note:
        notes.append(snap_note)
    long = pd.DataFrame({"t": times, "e": entities, "m": metrics, "v": values})
    dup = long.duplicated(["t", "e", "m"])
    if dup.any():
        notes.append(
            f"{int(dup.sum())} repeated (time, entity, metric) sample(s) merged into their mean"
        )
    wide = long.pivot_table(index="t", columns=["e", "m"], values="v", aggfunc="mean", sort=False)
    wide = wide.sort_index()
    known = list(known) if known else None
    service_of = {e: entity_service(e, known) for e in long["e"].unique()}
    pods: dict[str, set[str]] = {}
    for e, s in service_of.items():
        pods.setdefault(s, set()).add(e)
    signals = []
    for entity, metric in wide.columns:
        service = service_of[entity]
        signal = make_signal(f"{entity}:{metric}", service, metric)
        if len(pods[service]) > 1:
            signal = type(signal)(signal.column, service, f"{metric}@{entity}", signal.kind)
        signals.append(signal)
    return assemble(
        source,
        wide.index.to_numpy(dtype=float),
        wide.to_numpy(dtype=float),
        signals,
        notes,
        excluded,
    )
