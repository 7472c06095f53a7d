"""RCA methods for the suite, by name: ours (imported lazily, as they land) and RCAEval's.

RCAEval (`pip install rcaeval`, an optional extra) ranks metric columns; its BARO and
NSigma return `{"ranks": [column, ...], ...}` best first. The table's columns are
`<service>_<metric>` with no `_` in the metric part (ingestion makes them so), so the
adapter folds a column to the text before its last underscore (service names may hold `_`,
as PetShop's do) and keeps each service's first (best) place. The table is cleaned as
RCAEval's own reader does (±inf to NaN, forward fill, then 0). Missing methods are skipped
with a note, never an error: the suite must run with whatever exists.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import networkx as nx
import numpy as np
import pandas as pd

from detectors.rca.base import Cause, RcaMethod
from detectors.rca.registry import METHODS

OURS = dict(METHODS)
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
        clean = table.replace([np.inf, -np.inf], np.nan).ffill().fillna(0.0)
        result = self.func(clean, anomaly_time, dataset=RCAEVAL_DATASET)
        columns = list(result.get("ranks", []))
        causes: dict[str, Cause] = {}
        for place, column in enumerate(columns):
            service = str(column).rpartition("_")[0] or str(column)
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


def load_method(name: str, **params) -> RcaMethod:
    """One method by suite name (ours take window settings as `params`);
    ImportError/AttributeError if it does not exist (yet)."""
    if name in OURS:
        module, cls = OURS[name]
        method = getattr(importlib.import_module(module), cls)(**params)
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
