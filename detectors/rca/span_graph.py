"""Spans joined into their call trees: who called whom, and each span's own (exclusive) time.

A span's duration holds its children's: a slow callee makes every caller above it slow. Its
exclusive time (duration less the union of the intervals its children cover within it)
is what the span itself spent, so a fault shows where it is and not on every ancestor.
Two things real tracers do shape the rule:

- a CLIENT span whose child is a SERVER span in another service is a call edge: its
  exclusive time is the network and client framework time between the two services;
- a sibling that starts while a span runs is that span's work too (Spring Cloud Gateway
  records its `FilteringWebHandler.handle` next to, not above, the `HTTP POST` it drives),
  so overlapping later siblings count as covered time.

The union is computed without a Python loop per span: with a span's covering intervals
sorted by start, each adds only what lies beyond the furthest end before it.
"""

from __future__ import annotations

import numpy as np
import pandas as pd


def _covered(owner: np.ndarray, start: np.ndarray, end: np.ndarray, n: int) -> np.ndarray:
    """Per owner row: the length of the union of its intervals."""
    if owner.size == 0:
        return np.zeros(n)
    frame = pd.DataFrame({"o": owner, "s": start, "e": end}).sort_values(["o", "s"], kind="stable")
    prev_end = frame.groupby("o")["e"].cummax().groupby(frame["o"]).shift(1)
    begin = np.maximum(frame["s"].to_numpy(), prev_end.fillna(-np.inf).to_numpy())
    part = np.maximum(frame["e"].to_numpy() - begin, 0.0)
    return np.bincount(frame["o"].to_numpy(), weights=part, minlength=n)


def call_tree(spans: pd.DataFrame) -> pd.DataFrame:
    """The span frame plus `parent_service`, `parent_op`, `callee` (the service a span calls,
    "" for none), `children` and `self_ms` (exclusive time)."""
    sp = spans.reset_index(drop=True).copy()
    n = len(sp)
    key = sp["trace"].astype(str) + ":" + sp["span"].astype(str)
    row_of = pd.Series(np.arange(n), index=key.to_numpy())
    row_of = row_of[~row_of.index.duplicated()]
    parent_key = sp["trace"].astype(str) + ":" + sp["parent"].astype(str)
    prow = parent_key.map(row_of).fillna(-1).astype(int).to_numpy()
    has = prow >= 0
    safe = np.maximum(prow, 0)
    service = sp["service"].astype(str).to_numpy()
    sp["parent_service"] = np.where(has, service[safe], "")
    sp["parent_op"] = np.where(has, sp["op"].astype(str).to_numpy()[safe], "")
    start, end = sp["start"].to_numpy(float), sp["end"].to_numpy(float)
    kids = np.flatnonzero(has)
    p = prow[kids]
    child_s = np.maximum(start[kids], start[p])
    child_e = np.minimum(end[kids], end[p])
    ok = child_e > child_s
    owners, s_parts, e_parts = [p[ok]], [child_s[ok]], [child_e[ok]]
    sib = pd.DataFrame({"row": kids, "p": p, "s": start[kids], "e": end[kids]})
    pairs = sib.merge(sib, on="p", suffixes=("", "_o"))
    pairs = pairs[
        (pairs["row"] != pairs["row_o"]) & (pairs["s_o"] > pairs["s"]) & (pairs["s_o"] < pairs["e"])
    ]
    owners.append(pairs["row"].to_numpy())
    s_parts.append(pairs["s_o"].to_numpy())
    e_parts.append(np.minimum(pairs["e_o"].to_numpy(), pairs["e"].to_numpy()))
    covered = _covered(np.concatenate(owners), np.concatenate(s_parts), np.concatenate(e_parts), n)
    sp["children"] = np.bincount(p, minlength=n)
    sp["self_ms"] = np.maximum(sp["dur_ms"].to_numpy(float) - covered * 1e3, 0.0)
    other = kids[service[kids] != service[p]]
    callee = np.full(n, "", dtype=object)
    first = pd.Series(other, index=prow[other]).groupby(level=0).first()
    callee[first.index.to_numpy()] = service[first.to_numpy()]
    if "peer" in sp.columns:  # a client span to an uninstrumented store names its peer
        peer = sp["peer"].fillna("").astype(str).to_numpy()
        callee = np.where((callee == "") & (peer != "") & (peer != service), peer, callee)
    sp["callee"] = callee
    return sp


def call_graph(spans: pd.DataFrame) -> list[tuple[str, str]]:
    """(caller, callee) service pairs seen in an enriched span frame."""
    edges = spans.loc[spans["callee"] != "", ["service", "callee"]].drop_duplicates()
    return list(edges.itertuples(index=False, name=None))
