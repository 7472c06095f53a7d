"""Logs read inside their spans: which log lines an operation stopped or started writing.

Raw rates of log templates follow the workload mix; inside one operation they do not. Every
log line carries its trace and span ids, so each (service, operation) gets, per span, the
set of templates it logged. For every template the model compares P(template | condition)
in the incident window with the baseline, the condition being the span itself or another
template in the same span (pairs catch "line 366 still logged, line 372 no longer follows
it": an exception thrown between them).

A shift counts when it is significant (binomial test, p < `p_max`) and points to worse:
ERROR/WARN templates when they appear or rise, INFO templates when they vanish; an ERROR
that stops and an INFO that starts are a recovery or a new code path and weigh
`new_info_weight` (0: ignored). Its size is the smoothed |log-odds ratio|; a service scores
its largest shift over its operations.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats

SPAN = "<span>"


@dataclass(frozen=True)
class EventSettings:
    prior: float = 0.5  # pseudo-count of the probabilities
    p_max: float = 1e-3
    min_spans: int = 3  # spans a condition needs in baseline and window
    new_info_weight: float = 0.0
    pairs: bool = True


def span_events(spans: pd.DataFrame, logs: pd.DataFrame | None) -> pd.DataFrame:
    """One row per (span, event): the span itself and each template it logged."""
    key = spans[["trace", "span", "service", "op"]].astype(str)
    events = [key.assign(event=SPAN)]
    if logs is not None and len(logs):
        lines = logs[["trace", "span", "template"]].astype(str).drop_duplicates()
        joined = lines.merge(key, on=["trace", "span"])
        events.append(joined.rename(columns={"template": "event"})[[*key.columns, "event"]])
    return pd.concat(events, ignore_index=True)


def _counts(events: pd.DataFrame, pairs: bool) -> tuple[pd.DataFrame, pd.DataFrame]:
    """k: spans with condition and event; n: spans with the condition; per (service, op)."""
    if pairs:
        conds = events[["trace", "span", "event"]].rename(columns={"event": "cond"})
        joint = events.merge(conds, on=["trace", "span"])
        joint = joint[(joint["event"] != joint["cond"]) & (joint["event"] != SPAN)]
    else:
        joint = events[events["event"] != SPAN].assign(cond=SPAN)
    k = joint.groupby(["service", "op", "cond", "event"]).size().rename("k").reset_index()
    n = events.groupby(["service", "op", "event"]).size().rename("n").reset_index()
    return k, n.rename(columns={"event": "cond"})


def shifts(window: pd.DataFrame, baseline: pd.DataFrame, s: EventSettings) -> pd.DataFrame:
    """Every (service, op, condition, event) with its counts and its weighted shift `score`."""
    bk, bn = _counts(baseline, s.pairs)
    wk, wn = _counts(window, s.pairs)
    keys = ["service", "op", "cond", "event"]
    d = bk.rename(columns={"k": "kb"}).merge(wk.rename(columns={"k": "kw"}), on=keys, how="outer")
    d = d.merge(bn.rename(columns={"n": "nb"}), on=keys[:3], how="left")
    d = d.merge(wn.rename(columns={"n": "nw"}), on=keys[:3], how="left")
    d = d[(d["nb"] >= s.min_spans) & (d["nw"] >= s.min_spans)].fillna({"kb": 0, "kw": 0})
    if d.empty:
        return d.assign(score=pd.Series(dtype=float))
    pb = (d["kb"] + s.prior) / (d["nb"] + 2 * s.prior)
    pw = (d["kw"] + s.prior) / (d["nw"] + 2 * s.prior)
    up = (pw > pb).to_numpy()
    p_up = stats.binom.sf(d["kw"] - 1, d["nw"], pb)
    p_down = stats.binom.cdf(d["kw"], d["nw"], pb)
    p = np.where(up, p_up, p_down)
    size = np.abs(np.log(pw / (1 - pw)) - np.log(pb / (1 - pb)))
    bad_level = d["event"].str.startswith(("ERROR", "WARN", "FATAL")).to_numpy()
    weight = np.where(up & ~bad_level, s.new_info_weight, 1.0) * np.where(~up & bad_level, 0.0, 1.0)
    d["direction"] = np.where(up, "+", "-")
    d["score"] = np.where(p < s.p_max, size, 0.0) * weight
    return d


def event_scores(
    window_spans: pd.DataFrame,
    window_logs: pd.DataFrame | None,
    base_spans: pd.DataFrame,
    base_logs: pd.DataFrame | None,
    s: EventSettings | None = None,
) -> pd.Series:
    """Per service: its largest log-event shift over its operations."""
    s = s or EventSettings()
    d = shifts(span_events(window_spans, window_logs), span_events(base_spans, base_logs), s)
    if d.empty:
        return pd.Series(dtype=float)
    return d.groupby("service")["score"].max()


def top_shifts(d: pd.DataFrame, service: str, limit: int = 3) -> list[str]:
    """The service's largest shifts, as evidence a human can read."""
    mine = d[(d["service"] == service) & (d["score"] > 0)].nlargest(limit, "score")
    return [
        f"{r.op}: {r.event} {'appears' if r.direction == '+' else 'vanishes'}"
        + ("" if r.cond == SPAN else f" after {r.cond}")
        for r in mine.itertuples()
    ]
