"""Causal RCA: a PC skeleton restricted by the call graph, a linear structural model fitted
on it, and a do()-style score that tells a cause from the symptoms it drags along.

Why causal and not only "which signal moved most": a symptom can move more than its cause
(a caller's latency sums the slowed callee's and its own queueing), and services that move
together because they share a cause look alike to any per-signal score. Here each service
is judged by how much of the incident's anomaly would disappear if its own exogenous part
were set back to its pre-incident distribution and the change propagated through the
fitted model (a counterfactual on the SEM). A symptom whose anomaly its parents explain has
no exogenous shift of its own, so removing it explains nothing.

Variables are one signal per (service, kind): workload, memory, CPU, latency, errors,
standardised by the pre-incident median and a robust spread. Background knowledge from the
topology fixes which pairs may be adjacent and in which direction effects flow: within a
service, load → memory → CPU → latency → errors; across a call, a callee's latency and
errors reach its caller, and a caller's load reaches its callee. PC removes the allowed
edges the data show to be conditionally independent (Fisher z).
"""

from __future__ import annotations

from collections.abc import Sequence

import networkx as nx
import numpy as np
import pandas as pd

from detectors.ingest.kinds import kind_of as signal_kind
from detectors.ingest.kinds import words
from detectors.rca.base import Cause, RcaError, services_of
from detectors.rca.pc import correlation, pc_skeleton

KIND_ORDER = ("workload", "mem", "cpu", "latency", "error")
UPSTREAM_KINDS = ("latency", "error")  # what a callee's trouble does to its callers
CALLER_KINDS = ("mem", "cpu", "latency", "error")  # the caller signals it can reach
# ingested signal kinds (`detectors.ingest.kinds`) → the variables of the model
KIND_NAMES = {
    "load": "workload",
    "memory": "mem",
    "cpu": "cpu",
    "latency": "latency",
    "errors": "error",
}
# which latency column stands for a service: a tail quantile near p90 first, the median last
LATENCY_PREFERENCE = ("p90", "90", "p95", "95", "p99", "99", "average", "avg", "mean", "p50", "50")


def kind_of(metric: str) -> str | None:
    """The model variable a metric feeds (`lat_90`, `PodClientLatencyP90(s)` → latency;
    `requests-Sum` → workload), None for other signals and a node's shared ones."""
    kind = signal_kind(metric)
    if kind.host:
        return None
    return KIND_NAMES.get(kind.kind)


def select_signals(table: pd.DataFrame, kinds: Sequence[str]) -> list[tuple[str, str, str]]:
    """(service, kind, column) for one column per service and kind, in table order."""
    chosen: dict[tuple[str, str], str] = {}
    for col in table.columns:
        service, sep, metric = str(col).rpartition("_")
        kind = kind_of(metric) if sep and service else None
        if kind is None or kind not in kinds:
            continue
        key = (service, kind)
        if key not in chosen or _prefer(metric, chosen[key].rpartition("_")[2]):
            chosen[key] = str(col)
    return [(s, k, c) for (s, k), c in chosen.items()]


def _latency_rank(metric: str) -> float:
    found = words(metric)
    unnamed = LATENCY_PREFERENCE.index("p50") - 0.5  # a plain `latency`: above the median
    return next((i for i, w in enumerate(LATENCY_PREFERENCE) if w in found), unnamed)


def _prefer(metric: str, current: str) -> bool:
    """Whether `metric` is a better latency column than `current` (p90 over mean over p50)."""
    return _latency_rank(metric) < _latency_rank(current)


class CausalRca:
    """Topology-restricted PC + linear SEM + do()-style counterfactual scoring."""

    name = "causal"

    def __init__(
        self,
        before_s: float = 1200.0,
        after_s: float = 600.0,
        kinds: Sequence[str] = KIND_ORDER,
        alpha: float = 0.01,
        max_depth: int = 2,
        ridge: float = 1e-3,
        scale_floor: float = 0.1,
        smooth: int = 5,
    ) -> None:
        self.before_s = before_s
        self.after_s = after_s
        self.kinds = tuple(kinds)
        self.alpha = alpha
        self.max_depth = max_depth
        self.ridge = ridge
        self.scale_floor = scale_floor
        self.smooth = smooth

    def rank(
        self, table: pd.DataFrame, anomaly_time: float, graph: nx.DiGraph | None = None
    ) -> list[Cause]:
        return self.fit(table, anomaly_time, graph).causes(services_of(table))

    def fit(
        self, table: pd.DataFrame, anomaly_time: float, graph: nx.DiGraph | None = None
    ) -> CausalModel:
        """The fitted model of one incident (its graph and counterfactual effects)."""
        if "time" not in table.columns:
            raise RcaError("the table has no 'time' column")
        signals = select_signals(table, self.kinds)
        time = table["time"].to_numpy(dtype=float)
        keep = (time >= anomaly_time - self.before_s) & (time < anomaly_time + self.after_s)
        pre, post = keep & (time < anomaly_time), keep & (time >= anomaly_time)
        if not pre.any():
            raise RcaError(f"no rows before the anomaly time {anomaly_time:g}")
        if not post.any():
            raise RcaError(f"no rows at or after the anomaly time {anomaly_time:g}")
        raw = table.loc[keep, [c for _, _, c in signals]].to_numpy(dtype=float)
        frame = pd.DataFrame(raw).ffill().bfill().fillna(0.0)
        if self.smooth > 1:  # trailing, so no post-incident value leaks into the baseline
            frame = frame.rolling(self.smooth, min_periods=1).mean()
        raw = frame.to_numpy()
        varies = raw.std(axis=0) > 0.0
        signals = [s for s, v in zip(signals, varies, strict=True) if v]
        z = self._standardise(raw[:, varies], pre[keep])
        return fit_model(z, pre[keep], signals, graph, self.alpha, self.max_depth, self.ridge)

    def _standardise(self, raw: np.ndarray, pre: np.ndarray) -> np.ndarray:
        """Pre-incident median and robust spread; the spread is floored at a share of the
        window's own spread, so a signal flat before the incident (errors at zero) cannot
        reach an unbounded z."""
        base = raw[pre]
        med = np.median(base, axis=0)
        mad = 1.4826 * np.median(np.abs(base - med), axis=0)
        spread = np.maximum(mad, base.std(axis=0))
        floor = self.scale_floor * raw.std(axis=0)
        scale = np.maximum(np.maximum(spread, floor), 1e-12)
        return (raw - med) / scale


def allowed_edges(signals: list[tuple[str, str, str]], graph: nx.DiGraph | None) -> np.ndarray:
    """Directed mask: [u, v] is True when u may cause v (the topology's background knowledge).

    Without a graph every pair of services counts as calling each other both ways.
    """
    p = len(signals)
    allowed = np.zeros((p, p), dtype=bool)
    by_service: dict[str, list[int]] = {}
    for i, (svc, _, _) in enumerate(signals):
        by_service.setdefault(svc, []).append(i)
    order = {k: i for i, k in enumerate(KIND_ORDER)}
    for idx in by_service.values():
        for u in idx:
            for v in idx:
                allowed[u, v] = order[signals[u][1]] < order[signals[v][1]]
    for caller, callee in _calls(graph, list(by_service)):
        for u in by_service[callee]:
            for v in by_service[caller]:
                if signals[u][1] in UPSTREAM_KINDS and signals[v][1] in CALLER_KINDS:
                    allowed[u, v] = True
                if signals[u][1] == "workload" and signals[v][1] == "workload":
                    allowed[v, u] = True
    return allowed


def _calls(graph: nx.DiGraph | None, services: list[str]) -> list[tuple[str, str]]:
    """(caller, callee) pairs between services in the table; graph names may use `_`."""
    if graph is None:
        return [(a, b) for a in services for b in services if a != b]
    known = set(services)

    def name(node: object) -> str | None:
        text = str(node)
        for candidate in (text, text.replace("_", "-")):
            if candidate in known:
                return candidate
        return None

    pairs = []
    for a, b in graph.edges():
        caller, callee = name(a), name(b)
        if caller and callee and caller != callee:
            pairs.append((caller, callee))
    return pairs


def onset(z: np.ndarray, pre: np.ndarray, threshold: float = 3.0) -> np.ndarray:
    """Index of each signal's first post-anomaly row beyond `threshold` (len when never)."""
    post = np.abs(z[~pre]) > threshold
    first = np.argmax(post, axis=0)
    return np.where(post.any(axis=0), first, len(post))


def fit_model(
    z: np.ndarray,
    pre: np.ndarray,
    signals: list[tuple[str, str, str]],
    graph: nx.DiGraph | None,
    alpha: float,
    max_depth: int,
    ridge: float,
) -> CausalModel:
    """Skeleton, orientation and linear SEM of the standardised window `z` (rows × signals)."""
    p = len(signals)
    allowed = allowed_edges(signals, graph)
    skeleton = pc_skeleton(
        correlation(z), len(z), allowed | allowed.T, alpha=alpha, max_depth=max_depth
    )
    shift = z[~pre].mean(axis=0) - z[pre].mean(axis=0)
    first = onset(z, pre)
    parents = np.zeros((p, p), dtype=bool)  # parents[v, u]: u → v
    for u, v in zip(*np.nonzero(np.triu(skeleton.adjacent)), strict=True):
        fwd, back = allowed[u, v], allowed[v, u]
        if fwd and back:  # a call cycle: the earlier (then the larger) change leads
            fwd = (first[u], -abs(shift[u]), u) < (first[v], -abs(shift[v]), v)
            back = not fwd
        if fwd:
            parents[v, u] = True
        if back:
            parents[u, v] = True
    coef = np.zeros((p, p))
    resid_shift = shift.copy()
    for v in range(p):
        pa = np.flatnonzero(parents[v])
        if pa.size:
            coef[v, pa], resid = _ridge(z[:, pa], z[:, v], ridge)
            resid_shift[v] = resid[~pre].mean() - resid[pre].mean()
    return CausalModel(signals, coef, shift, resid_shift, skeleton.tests)


def _ridge(x: np.ndarray, y: np.ndarray, ridge: float) -> tuple[np.ndarray, np.ndarray]:
    """Coefficients and residuals of y on x with an intercept and a relative ridge penalty,
    which keeps collinear parents (all stepping together) from exploding."""
    xc, yc = x - x.mean(axis=0), y - y.mean()
    gram = xc.T @ xc
    penalty = ridge * max(float(np.trace(gram)) / len(gram), 1e-12)
    beta = np.linalg.solve(gram + penalty * np.eye(len(gram)), xc.T @ yc)
    return beta, yc - xc @ beta


def _topological(coef: np.ndarray) -> list[int] | None:
    """Signals parents-first for the graph coef[v, u] != 0 (u → v), None if it has a cycle."""
    graph = nx.DiGraph()
    graph.add_nodes_from(range(len(coef)))
    graph.add_edges_from((int(u), int(v)) for v, u in zip(*np.nonzero(coef), strict=True))
    try:
        return list(nx.topological_sort(graph))
    except nx.NetworkXUnfeasible:
        return None


class CausalModel:
    """A fitted SEM over the signals, and the counterfactual scores it implies."""

    def __init__(
        self,
        signals: list[tuple[str, str, str]],
        coef: np.ndarray,
        shift: np.ndarray,
        resid_shift: np.ndarray,
        tests: int,
    ) -> None:
        self.signals = signals
        self.coef = coef
        self.shift = shift
        self.resid_shift = resid_shift
        self.tests = tests
        self._v, self._u = np.nonzero(coef)  # effect, cause of every edge

    def edges(self) -> list[tuple[str, str, float]]:
        """The discovered, oriented edges as (cause column, effect column, coefficient)."""
        return [
            (self.signals[u][2], self.signals[v][2], float(self.coef[v, u]))
            for v, u in zip(self._v, self._u, strict=True)
        ]

    def effects(self, members: np.ndarray) -> np.ndarray:
        """Signals × groups: the part of each signal's shift caused by the exogenous shifts of
        each group's signals (`members` is groups × signals, boolean), i.e. what do(group =
        pre-incident) would remove, propagated through x = Bx + e."""
        exogenous = (members * self.resid_shift).T
        order = _topological(self.coef)
        if order is not None:  # a DAG: substitute forward along the sparse parents
            out = exogenous.copy()
            for v in order:
                pa = np.flatnonzero(self.coef[v])
                if pa.size:
                    out[v] += self.coef[v, pa] @ out[pa]
            return out
        system = np.eye(len(self.coef)) - self.coef  # call cycles oriented into a loop
        try:
            return np.linalg.solve(system, exogenous)
        except np.linalg.LinAlgError:  # a feedback loop with unit gain
            return np.linalg.pinv(system) @ exogenous

    def causes(self, services: list[str]) -> list[Cause]:
        """Every service ranked by the share of the anomaly removed by do(own = normal)."""
        names = list(dict.fromkeys([*services, *(s for s, _, _ in self.signals)]))
        index = {s: i for i, s in enumerate(names)}
        members = np.zeros((len(names), len(self.signals)), dtype=bool)
        for i, (svc, _, _) in enumerate(self.signals):
            members[index[svc], i] = True
        size = np.abs(self.shift)
        effect = self.effects(members)  # signals × services
        removed = size[:, None] - np.abs(self.shift[:, None] - effect)
        score = removed.sum(axis=0) / max(float(size.sum()), 1e-12)
        by_target = members.astype(float) @ removed  # target service × cause service
        target_size = members.astype(float) @ size
        own = np.where(members, size, 0.0).max(axis=1, initial=0.0)
        ranked = sorted(range(len(names)), key=lambda k: (-score[k], -own[k], names[k]))
        out = []
        for k in ranked:
            evidence = self._evidence(k, names, members, effect[:, k], by_target[:, k], target_size)
            out.append(Cause(names[k], float(score[k]), evidence))
        return out

    def _evidence(
        self,
        k: int,
        names: list[str],
        members: np.ndarray,
        effect: np.ndarray,
        removed_by_target: np.ndarray,
        target_size: np.ndarray,
    ) -> dict:
        """What a human needs to check cause k: its moved signals, the symptoms it explains
        and the discovered edges its effect travelled along."""
        others = np.arange(len(names)) != k
        symptoms_total = float(target_size[others].sum())
        with np.errstate(divide="ignore", invalid="ignore"):
            share = np.where(target_size > 0, removed_by_target / target_size, 0.0)
        symptoms = [j for j in np.argsort(-share, kind="stable") if others[j] and share[j] >= 0.1]
        idx = np.flatnonzero(members[k])
        explained = float(removed_by_target.sum()) / max(float(target_size.sum()), 1e-12)
        return {
            "method": "pc-topology + linear SEM, do(service = pre-incident)",
            "explained_share": round(explained, 4),
            "symptom_share": round(
                float(removed_by_target[others].sum()) / symptoms_total
                if symptoms_total > 0
                else 0.0,
                4,
            ),
            "signals": {
                self.signals[i][2]: {
                    "shift_z": round(float(self.shift[i]), 3),
                    "unexplained_z": round(float(self.resid_shift[i]), 3),
                }
                for i in sorted(idx, key=lambda i: -abs(self.resid_shift[i]))
            },
            "symptoms": {names[j]: round(float(share[j]), 4) for j in symptoms[:8]},
            "path": self._path(effect),
            "edges": len(self._v),
            "ci_tests": self.tests,
        }

    def _path(self, effect: np.ndarray, limit: int = 15) -> list[str]:
        """Discovered edges the cause's effect flows along, the strongest first."""
        v, u = self._v, self._u
        flow = self.coef[v, u] * effect[u]
        keep = (flow * self.shift[v] > 0) & (np.abs(flow) >= 0.1 * np.abs(self.shift[v]))
        picked = sorted(
            zip(-np.abs(flow[keep]), u[keep], v[keep], strict=True),
            key=lambda t: (t[0], self.signals[t[1]][2], self.signals[t[2]][2]),
        )[:limit]
        return [f"{self.signals[a][2]} -> {self.signals[b][2]}" for _, a, b in picked]
