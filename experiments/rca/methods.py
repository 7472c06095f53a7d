"""RCA methods for the suite, by name: ours (imported lazily, as they land) and RCAEval's.

RCAEval (`pip install rcaeval`, an optional extra) ranks metric columns; its BARO and
NSigma return `{"ranks": [column, ...], ...}` best first. Its evaluation takes a column's
service as the text before the first underscore, which is why the twin's wide table turns
`_` in service names into `-`; the adapter folds columns to services the same way and
keeps each service's first (best) place. Missing methods are skipped with a note, never
an error: the suite must run with whatever exists.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import networkx as nx
import pandas as pd

from detectors.rca.base import Cause, RcaMethod

OURS = {
    "robust": ("detectors.rca.robust", "RobustScoreRca"),
    "randomwalk": ("detectors.rca.randomwalk", "RandomWalkRca"),
    "causal": ("detectors.rca.causal", "CausalRca"),
}
EXTERNAL = {
    "baro": ("RCAEval.e2e.baro", "baro"),
    "nsigma": ("RCAEval.e2e", "nsigma"),
}
DEFAULT_METHODS = (*OURS, *EXTERNAL)
RCAEVAL_DATASET = "firebreak-twin"  # any non-None name: RCAEval then drops constant columns


@dataclass
class RcaevalMethod:
    """An RCAEval end-to-end function behind the suite's RCA contract."""

    name: str
    func: Callable[..., dict]

    def rank(
        self, table: pd.DataFrame, anomaly_time: float, graph: nx.DiGraph | None = None
    ) -> list[Cause]:
        result = self.func(table, anomaly_time, dataset=RCAEVAL_DATASET)
        columns = list(result.get("ranks", []))
        causes: dict[str, Cause] = {}
        for place, column in enumerate(columns):
            service = str(column).split("_")[0]
            if service not in causes:
                causes[service] = Cause(
                    service, float(len(columns) - place), {"top_column": str(column)}
                )
        return list(causes.values())


def rcaeval_available() -> tuple[bool, str]:
    """Whether RCAEval's BARO imports here, and why not."""
    try:
        importlib.import_module("RCAEval.e2e.baro")
    except Exception as exc:  # ImportError or a dependency failing at import time
        return False, f"rcaeval not importable ({type(exc).__name__}: {exc})"
    return True, "rcaeval available"


def load_method(name: str) -> RcaMethod:
    """One method by suite name; ImportError/AttributeError if it does not exist (yet)."""
    if name in OURS:
        module, cls = OURS[name]
        method = getattr(importlib.import_module(module), cls)()
        return method
    if name in EXTERNAL:
        module, func = EXTERNAL[name]
        return RcaevalMethod(name, getattr(importlib.import_module(module), func))
    raise KeyError(f"unknown RCA method {name!r}; known: {', '.join(DEFAULT_METHODS)}")


def load_methods(names: Sequence[str] = DEFAULT_METHODS) -> tuple[dict[str, RcaMethod], list[str]]:
    """The methods that load, by name, and one note per method that does not."""
    methods: dict[str, RcaMethod] = {}
    notes: list[str] = []
    for name in names:
        try:
            methods[name] = load_method(name)
        except KeyError:
            raise
        except Exception as exc:
            notes.append(f"skipped {name}: {type(exc).__name__}: {exc}")
    return methods, notes
