"""A semi-synthetic network-delay check, on the development day only.

Nezha's 2023-01-29 holds no network fault, so the latency modality's edge rule cannot be
checked against a real one there. It can be checked against physics: take a real fault
window of that day, pick a pod X that is not the fault's root, and add a delay d to what a
netem delay on X's interface holds back:

- `port`: delay scoped to X's service port: X's responses, i.e. every call *into* X, as
  its callers' client spans see it;
- `egress`: all of X's egress: the calls into X as above, plus X's own outgoing calls and
  database calls (their requests leave X late).

The check asks, for each edge rule, whether the latency modality ranks X first (and in the
top 3) among the window's services. The true root of the real fault is left out of the
ranking (its own symptoms are a different fault). Exclusive times are what the modality
reads; a delayed call's client span grows by d while the server span under it does not,
so adding d to those client spans' exclusive time is exact.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from detectors.rca.trace_latency import SQL, LatencySettings, latency_scores
from experiments.realbench.cases import RealCase

DELAYS_MS = (5.0, 20.0, 100.0, 500.0, 2000.0)
MODELS = ("port", "egress")
PODS_PER_WINDOW = 6
RULES = {
    "in + out/2": LatencySettings(edges="in", out_weight=0.5),
    "in only": LatencySettings(edges="in", out_weight=0.0),
    "incident (first rule)": LatencySettings(edges="incident"),
}


def delayed(window: pd.DataFrame, pod_service: str, d_ms: float, model: str) -> pd.DataFrame:
    """The window's spans with a delay of d_ms on `pod_service` under the given model."""
    out = window.copy()
    hit = out["callee"] == pod_service
    if model == "egress":
        own = out["service"] == pod_service
        hit |= own & ((out["callee"] != "") | out["op"].astype(str).str.match(SQL))
    out.loc[hit, "self_ms"] += d_ms
    return out


def delay_check(dev: list[RealCase], seed: int = 0, window_s: float = 180.0) -> pd.DataFrame:
    """One row per (window, pod, delay, model, edge rule): the pod's rank."""
    rng = np.random.default_rng(seed)
    rows = []
    for case in dev:
        t = case.inputs.telemetry
        at = case.inputs.anomaly_time
        spans = t.spans
        window = spans[(spans["start"] >= at) & (spans["start"] < at + window_s)]
        called = sorted(set(window["callee"]) - {"", case.answer.root})
        if not called:
            continue
        picks = rng.choice(called, size=min(PODS_PER_WINDOW, len(called)), replace=False)
        for pod in picks:
            for d in DELAYS_MS:
                for model in MODELS:
                    w = delayed(window, str(pod), d, model)
                    for edges, settings in RULES.items():
                        s = latency_scores(w, t.normal_spans, settings)
                        s = s.drop(index=case.answer.root, errors="ignore")
                        rank = int((s > s.get(pod, 0.0)).sum()) + 1 if s.get(pod, 0) > 0 else 99
                        rows.append(
                            {"case": case.name, "pod": pod, "delay_ms": d, "model": model,
                             "edges": edges, "rank": rank}
                        )  # fmt: skip
    return pd.DataFrame(rows)


def summary(rows: pd.DataFrame) -> pd.DataFrame:
    """AC@1 and AC@3 per edge rule, model and delay."""
    g = rows.groupby(["edges", "model", "delay_ms"])["rank"]
    return pd.DataFrame(
        {
            "ac1": g.apply(lambda r: (r <= 1).mean()),
            "ac3": g.apply(lambda r: (r <= 3).mean()),
            "n": g.size(),
        }
    ).reset_index()


def print_delay_check(rows: pd.DataFrame) -> None:
    print("\nsemi-synthetic network delay on 2023-01-29 windows (latency modality alone):")
    print(summary(rows).to_string(index=False, float_format=lambda x: f"{x:.3f}"))
