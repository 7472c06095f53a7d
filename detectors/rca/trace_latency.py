"""Where traces say time was lost: per service, how far its spans' exclusive time moved.

Every span is keyed by what it measures. A call edge (a client span whose callee runs in
another service) is keyed `caller>callee`: its exclusive time is the network between them.
Any other span is the service's own operation `service|op`, database calls (SQL verbs,
commits) apart. Per key, the incident window's median exclusive time is compared with the
baseline's median in robust units: MAD, floored at 10% of the median and at 0.3 ms. A call
edge the baseline never saw (a short fault-free period misses rare calls) is judged
against all baseline edges pooled, since a call's own time is network and client
framework time, much alike between edges; an operation with no baseline is not judged.

A service gets three family scores, each a median over its keys (a median, so one erratic
operation cannot carry a service):

- `own`: its operations (a CPU-starved pod slows all of them);
- `db`: its database calls;
- `edge`: the calls into it as its callers see them, plus `out_weight` × its own calls
  out (`edges="in"`). Network delay injected on a pod (netem on its interface) holds back
  what the pod *sends*. Its responses: every caller's call into it slows, however the
  delay was scoped. Its own requests out (and to its database): only when the delay
  covers all its egress, not when it is scoped to the service's port. So the calls into a
  delayed pod always move, and its calls out move in the second case, where they also
  make its callees' calls-in move: the out-edges, counted at a weight below one, lift the
  delayed pod above its callees, while a caller of the pod (one slow call out, none in)
  stays below it. `edges="incident"` (median over in- and out-edges together) is the rule
  first registered on 2023-01-29, kept to report it: it misses a pod whose outgoing calls
  are many and unaffected, as a port-scoped delay leaves them.

The service's latency score is the largest family score, never below zero.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
import pandas as pd

MAD_TO_SD = 1.4826
SQL = re.compile(r"^(?:SELECT|INSERT|UPDATE|DELETE|Transaction\.commit)", re.IGNORECASE)
EDGE_MODES = ("in", "incident")


@dataclass(frozen=True)
class LatencySettings:
    """How span latencies become service scores (see the module doc)."""

    edges: str = "in"
    out_weight: float = 0.5  # edges="in": weight of the median out-edge z (see the module doc)
    quantile: float = 0.5  # the window's quantile compared with the baseline median
    rel_floor: float = 0.1  # spread floor, share of the baseline median
    abs_floor_ms: float = 0.3
    min_spans: int = 1  # spans a key needs in both baseline and window
    pool_edges: bool = True  # judge a call edge the baseline never saw against all edges

    def __post_init__(self) -> None:
        if self.edges not in EDGE_MODES:
            raise ValueError(f"edges must be one of {', '.join(EDGE_MODES)}, got {self.edges!r}")


def keyed(spans: pd.DataFrame) -> pd.DataFrame:
    """key, family (edge/own/db), caller, callee and exclusive time of every span."""
    service = spans["service"].astype(str).to_numpy()
    callee = spans["callee"].astype(str).to_numpy()
    op = spans["op"].astype(str)
    edge = callee != ""
    db = op.str.match(SQL).to_numpy()
    return pd.DataFrame(
        {
            "key": np.where(
                edge,
                pd.Series(service) + ">" + pd.Series(callee),
                pd.Series(service) + "|" + op.to_numpy(),
            ),
            "family": np.where(edge, "edge", np.where(db, "db", "own")),
            "service": service,
            "callee": callee,
            "ms": spans["self_ms"].to_numpy(float),
        }
    )


def key_scores(window: pd.DataFrame, baseline: pd.DataFrame, s: LatencySettings) -> pd.DataFrame:
    """Per key seen in both: baseline median, window quantile and the robust z between."""
    kb, kw = keyed(baseline), keyed(window)
    group = ["key", "family", "service", "callee"]
    gb = kb.groupby(group)["ms"]
    median = gb.transform("median")
    base = pd.DataFrame({"median": gb.median(), "n": gb.size()})
    base["mad"] = (kb["ms"] - median).abs().groupby([kb[g] for g in group]).median()
    gw = kw.groupby(group)["ms"]
    win = pd.DataFrame({"q": gw.quantile(s.quantile), "wn": gw.size()})
    both = base.join(win, how="inner").reset_index()
    if s.pool_edges:
        both = pd.concat([both, _unseen_edges(kb, win, base)], ignore_index=True)
    both = both[(both["n"] >= s.min_spans) & (both["wn"] >= s.min_spans)]
    scale = np.maximum(
        MAD_TO_SD * both["mad"], np.maximum(s.rel_floor * both["median"], s.abs_floor_ms)
    )
    both["z"] = (both["q"] - both["median"]) / scale
    return both


def _unseen_edges(kb: pd.DataFrame, win: pd.DataFrame, base: pd.DataFrame) -> pd.DataFrame:
    """Window call edges with no baseline, judged against every baseline call edge pooled:
    a call's exclusive time is network and client framework time, alike across edges."""
    edges = kb.loc[kb["family"] == "edge", "ms"].to_numpy()
    unseen = win[~win.index.isin(base.index)].reset_index()
    unseen = unseen[unseen["family"] == "edge"]
    if edges.size == 0 or unseen.empty:
        return unseen.iloc[:0]
    median = float(np.median(edges))
    return unseen.assign(median=median, n=edges.size, mad=float(np.median(np.abs(edges - median))))


def family_scores(
    window: pd.DataFrame, baseline: pd.DataFrame, s: LatencySettings | None = None
) -> pd.DataFrame:
    """Services × families (own, db, edge): the median z of each family's keys."""
    s = s or LatencySettings()
    keys = key_scores(window, baseline, s)
    local = keys[keys["family"] != "edge"]
    out = local.groupby(["service", "family"])["z"].median().unstack()
    edges = keys[keys["family"] == "edge"]
    if len(edges):
        into = edges[["callee", "z"]].rename(columns={"callee": "service"})
        if s.edges == "incident":
            both = pd.concat([into, edges[["service", "z"]]])
            edge = both.groupby("service")["z"].median()
        else:
            z_in = into.groupby("service")["z"].median().clip(lower=0.0)
            z_out = edges.groupby("service")["z"].median().clip(lower=0.0)
            edge = z_in.add(s.out_weight * z_out, fill_value=0.0)
        out = out.join(edge.rename("edge"), how="outer")
    for family in ("own", "db", "edge"):
        if family not in out.columns:
            out[family] = np.nan
    return out[["own", "db", "edge"]].fillna(0.0)


def latency_scores(
    window: pd.DataFrame, baseline: pd.DataFrame, s: LatencySettings | None = None
) -> pd.Series:
    """Per service: its largest family score, floored at zero."""
    families = family_scores(window, baseline, s)
    return families.max(axis=1).clip(lower=0.0)
