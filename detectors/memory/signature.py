"""An incident's multimodal signature: what moved, in which modality, and where, computed
from telemetry only (a normal window before the anomaly time against an incident window
after it).

A signature has to compare incidents across services, systems and the twin, so nothing in
it names a service: every feature is a size (log1p of a robust z, half a log-odds ratio),
aggregated over services, plus the same sizes at the *focus* (the service with the most
evidence, as the multimodal RCA fuses it) and the focus's place in the call graph.

Blocks (each present only when its modality is; distances use the blocks two incidents
share):

- `metrics`: per signal kind (`detectors.ingest.kinds`: latency, errors, load, cpu,
  memory, other), the largest rise and the largest fall over the services' own signals,
  the focus's rises, the node/host CPU and memory rise, and the share of services moved;
  per resource (CPU, memory) its use beyond the work served (largest over services, the
  latency rise where it is largest, and at the focus: a hogged service, whether it or its
  timing-out callers are loudest), and the rise of the share of work failing (largest, and
  at the focus: a partition fails every call, a lossy link's retries hide its losses);
- `logs`: shifts of log templates inside their spans (`detectors.rca.log_events`), split by
  level and direction (ERROR/WARN appearing, INFO vanishing, INFO appearing, ERROR
  stopping), and the number of significant shifts;
- `traces`: per service its own-operation, database and call-edge latency shift
  (`detectors.rca.trace_latency`, edges are caller>callee), largest over services and at
  the focus, and the rise of the spans' error share;
- `topology`: the focus's in- and out-degree and depth from the entry services.

`SIGNATURE_VERSION` names this feature set; a library refuses signatures of another one.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import networkx as nx
import numpy as np
import pandas as pd

from detectors.ingest.kinds import KINDS, kind_of
from detectors.rca.base import IncidentTelemetry
from detectors.rca.log_events import EventSettings, shifts, span_events
from detectors.rca.multimodal import MultimodalRca, robust_baseline, signal_windows
from detectors.rca.span_graph import call_graph, call_tree
from detectors.rca.trace_latency import family_scores

SIGNATURE_VERSION = "sig-3"  # sig-2 was an unmerged feature set; never reuse a name
MOVED_Z = 3.0  # a signal moved when its robust z passes this
LOG_SLACK_S = 60.0  # log lines are stamped by the writer: a minute either side
EXCESS_KINDS = ("cpu", "memory")  # resources whose use should follow the work served

METRIC_FEATURES = (
    *(f"m_up_{k}" for k in KINDS),
    *(f"m_down_{k}" for k in KINDS),
    *(f"m_focus_{k}" for k in KINDS),
    *(f"m_focus_down_{k}" for k in KINDS),
    *(f"m_focus_ratio_{k}" for k in KINDS),
    "m_host_cpu",
    "m_host_memory",
    "m_moved_share",
    *(f"m_excess_{k}" for k in EXCESS_KINDS),
    *(f"m_excess_{k}_latency" for k in EXCESS_KINDS),
    *(f"m_focus_excess_{k}" for k in EXCESS_KINDS),
    "m_error_share",
    "m_focus_error_share",
)
LOG_FEATURES = (
    "l_error_up",
    "l_info_down",
    "l_info_up",
    "l_error_down",
    "l_shifts",
    "l_focus_error_up",
    "l_focus_info_down",
    "l_top_error_up",
    "l_top_info_down",
)
TRACE_FEATURES = (
    "t_own",
    "t_db",
    "t_edge",
    "t_focus_own",
    "t_focus_edge",
    "t_error_up",
    "t_volume",
)
NEIGHBOUR_KINDS = ("latency", "errors")
TOPOLOGY_FEATURES = (
    "g_in",
    "g_out",
    "g_depth",
    *(f"g_{side}_{k}" for side in ("callers", "callees") for k in NEIGHBOUR_KINDS),
)
BLOCKS: dict[str, tuple[str, ...]] = {
    "metrics": METRIC_FEATURES,
    "logs": LOG_FEATURES,
    "traces": TRACE_FEATURES,
    "topology": TOPOLOGY_FEATURES,
}
FEATURES: tuple[str, ...] = tuple(f for names in BLOCKS.values() for f in names)


@dataclass(frozen=True)
class Signature:
    """Named feature sizes, the blocks present, the focus service; versioned."""

    features: dict[str, float]
    blocks: tuple[str, ...]
    focus: str | None = None
    version: str = SIGNATURE_VERSION
    notes: tuple[str, ...] = field(default_factory=tuple)

    def vector(self) -> np.ndarray:
        """All features in `FEATURES` order (absent blocks are 0; see `mask`)."""
        return np.array([self.features.get(f, 0.0) for f in FEATURES], dtype=float)

    def mask(self) -> np.ndarray:
        """True for the features of the blocks present."""
        present = {f for b in self.blocks for f in BLOCKS[b]}
        return np.array([f in present for f in FEATURES], dtype=bool)

    def to_dict(self) -> dict:
        return {
            "version": self.version,
            "blocks": list(self.blocks),
            "focus": self.focus,
            "features": {k: float(v) for k, v in self.features.items()},
            "notes": list(self.notes),
        }

    @classmethod
    def from_dict(cls, doc: dict) -> Signature:
        return cls(
            features={str(k): float(v) for k, v in doc["features"].items()},
            blocks=tuple(str(b) for b in doc["blocks"]),
            focus=doc.get("focus"),
            version=str(doc["version"]),
            notes=tuple(doc.get("notes", ())),
        )


def _size(x: float) -> float:
    """A shift's size on a log scale (z 3 → 1.4, z 100 → 4.6): kinds compare by order."""
    return float(np.log1p(max(float(x), 0.0))) if np.isfinite(x) else 0.0


def metric_shifts(
    table: pd.DataFrame, at: float, before_s: float, after_s: float, rel_floor: float = 0.05
) -> pd.DataFrame:
    """One row per own signal: service, kind, host flag, robust z of its rise and its fall
    (window max/min against the normal median, in IQR units floored at `rel_floor` of it),
    and the log ratio of the window median to the normal median (bad direction up)."""
    rows = []
    for _, service, metric, b, w in signal_windows(table, at, before_s, after_s):
        kind = kind_of(metric)
        med, scale = robust_baseline(b, rel_floor)
        up, down = (w.max() - med) / scale, (med - w.min()) / scale
        if kind.bad < 0:  # a success rate: its fall is the bad direction, count it as a rise
            up, down = down, up
        eps = 1e-3 * max(np.abs(b).max(), np.abs(w).max()) + 1e-12
        ratio = np.log((abs(np.median(w)) + eps) / (abs(med) + eps)) * (-1 if kind.bad < 0 else 1)
        level, base_level = float(np.median(w)), float(med)
        per = SHARE_UNITS.get(str(kind.unit).lower()) if kind.unit else None
        if per is not None:  # a share as it is: the failing share, a success rate's complement
            level, base_level = (
                (1.0 - v / per) if kind.bad < 0 else v / per for v in (level, base_level)
            )
        rows.append(
            (
                service,
                kind.kind,
                kind.host,
                max(up, 0.0),
                max(down, 0.0),
                ratio,
                level,
                base_level,
                per is not None,
            )
        )
    return pd.DataFrame(rows, columns=list(SHIFT_COLUMNS))


SHIFT_COLUMNS = ("service", "kind", "host", "up", "down", "ratio", "level", "base", "share")
SHARE_UNITS = {"%": 100.0, "percent": 100.0, "ratio": 1.0}


def _metric_block(shifts_: pd.DataFrame, focus: str | None) -> dict[str, float]:
    own = shifts_[~shifts_["host"]]
    host = shifts_[shifts_["host"]]
    out: dict[str, float] = {}
    for k in KINDS:
        mine = own[own["kind"] == k]
        out[f"m_up_{k}"] = _size(mine["up"].max()) if len(mine) else 0.0
        out[f"m_down_{k}"] = _size(mine["down"].max()) if len(mine) else 0.0
        at_focus = mine[mine["service"] == focus]
        out[f"m_focus_{k}"] = _size(at_focus["up"].max()) if len(at_focus) else 0.0
        out[f"m_focus_down_{k}"] = _size(at_focus["down"].max()) if len(at_focus) else 0.0
        r = at_focus["ratio"]
        out[f"m_focus_ratio_{k}"] = (
            float(r.iloc[int(np.argmax(r.abs().to_numpy()))]) if len(r) else 0.0
        )
    for k in ("cpu", "memory"):
        mine = host[host["kind"] == k]
        out[f"m_host_{k}"] = _size(mine["up"].max()) if len(mine) else 0.0
    out.update(_excess_block(own, focus))
    rise = _failing_share_rise(own)
    out["m_error_share"] = float(max(rise.max(), 0.0)) if len(rise) else 0.0
    out["m_focus_error_share"] = float(max(rise.get(focus, 0.0), 0.0)) if len(rise) else 0.0
    if len(own):
        moved = own.assign(m=np.maximum(own["up"], own["down"]) > MOVED_Z).groupby("service")["m"]
        out["m_moved_share"] = float(moved.any().mean())
    else:
        out["m_moved_share"] = 0.0
    return out


def _excess_block(own: pd.DataFrame, focus: str | None) -> dict[str, float]:
    """Per resource, its use beyond the work served: the log ratio of the incident window's
    median to the normal one, less the service's rise in load (only a rise excuses more
    use; a cut-off service's idle use is not heavy). The largest over services, the
    latency rise at that service (a hogged service is slow itself even when its callers'
    timeouts are louder), and the excess at the focus."""
    ratio = own.groupby(["service", "kind"])["ratio"].max().unstack()
    load = (
        ratio["load"].clip(lower=0.0).fillna(0.0)
        if "load" in ratio
        else pd.Series(0.0, index=ratio.index)
    )
    lat = ratio["latency"] if "latency" in ratio else pd.Series(dtype=float)
    out: dict[str, float] = {}
    for k in EXCESS_KINDS:
        excess = (ratio[k] - load).dropna() if k in ratio else pd.Series(dtype=float)
        top = (
            str(sorted(excess.index, key=lambda v: (-excess[v], str(v)))[0])
            if len(excess)
            else None
        )
        out[f"m_excess_{k}"] = float(max(excess.max(), 0.0)) if len(excess) else 0.0
        at_top = lat.get(top, np.nan) if top is not None else np.nan
        out[f"m_excess_{k}_latency"] = float(max(at_top, 0.0)) if np.isfinite(at_top) else 0.0
        at_focus = excess.get(focus, np.nan) if len(excess) else np.nan
        out[f"m_focus_excess_{k}"] = float(max(at_focus, 0.0)) if np.isfinite(at_focus) else 0.0
    return out


def _failing_share_rise(own: pd.DataFrame) -> pd.Series:
    """Per service, the rise of the share of its work failing, incident window against the
    normal one, in [-1, 1]: an error signal that is a share (a unit of %, a ratio) as it is,
    an error count or rate over the service's largest load level. A window in which the
    service did no work has no failing share (an idle pod's success rate of 0 is not a
    failure). A partition fails every call across the link; a lossy link's retries hide
    most of its losses."""
    err = own[own["kind"] == "errors"]
    if not len(err):
        return pd.Series(dtype=float)
    loads = own[own["kind"] == "load"].groupby("service")[["level", "base"]].max()
    shares = {}
    for col in ("level", "base"):
        work = err["service"].map(loads[col]) if len(loads) else pd.Series(np.nan, err.index)
        idle = work.notna() & (work <= 0)
        share = err[col].where(err["share"], err[col] / work.where(work > 0))
        shares[col] = share.clip(0.0, 1.0).mask(idle)
    rise = (shares["level"].fillna(0.0) - shares["base"].fillna(0.0)).where(shares["level"].notna())
    rise = rise.dropna()
    return rise.groupby(err.loc[rise.index, "service"]).max()


def _odds(x: float) -> float:
    """A log-template shift's size: its |log-odds ratio| is already a log scale, halved to
    sit beside the metric sizes."""
    return float(max(float(x), 0.0)) / 2.0 if np.isfinite(x) else 0.0


def _log_block(d: pd.DataFrame, focus: str | None) -> dict[str, float]:
    """Log-template shifts by level and direction (scores > 0 are significant): largest
    over services, at the focus, and at the service whose logs shifted most (a thrown
    exception silences INFO lines; a wrong return value makes the code log an ERROR)."""
    if d.empty:
        return dict.fromkeys(LOG_FEATURES, 0.0)
    bad = d["event"].astype(str).str.startswith(("ERROR", "WARN", "FATAL"))
    up = d["direction"] == "+"
    sig = d["score"] > 0

    def top(sel: pd.Series) -> float:
        return _odds(d.loc[sel & sig, "score"].max()) if (sel & sig).any() else 0.0

    by_service = d[sig].groupby(d["service"].astype(str))["score"].max()
    loudest = (
        str(sorted(by_service.index, key=lambda v: (-by_service[v], v))[0])
        if len(by_service)
        else None
    )
    at_focus = d["service"].astype(str) == str(focus)
    at_top = d["service"].astype(str) == str(loudest)
    return {
        "l_error_up": top(bad & up),
        "l_info_down": top(~bad & ~up),
        "l_info_up": top(~bad & up),
        "l_error_down": top(bad & ~up),
        "l_shifts": float(np.log1p(int(sig.sum()))),
        "l_focus_error_up": top(at_focus & bad & up),
        "l_focus_info_down": top(at_focus & ~bad & ~up),
        "l_top_error_up": top(at_top & bad & up),
        "l_top_info_down": top(at_top & ~bad & ~up),
    }


def _error_share(spans: pd.DataFrame) -> pd.Series:
    if "error" not in spans.columns or not len(spans):
        return pd.Series(dtype=float)
    err = spans["error"]
    flag = err.fillna(False).astype(str).str.lower().isin(("true", "1", "error", "2"))
    return flag.groupby(spans["service"].astype(str)).mean()


def _trace_block(fam: pd.DataFrame, win: pd.DataFrame, base: pd.DataFrame, focus: str | None):
    out = {
        f"t_{f}": _size(fam[f].max()) if len(fam) and f in fam else 0.0
        for f in ("own", "db", "edge")
    }
    row = fam.loc[focus] if focus is not None and focus in fam.index else None
    out["t_focus_own"] = _size(row["own"]) if row is not None else 0.0
    out["t_focus_edge"] = _size(row["edge"]) if row is not None else 0.0
    rise = _error_share(win).sub(_error_share(base), fill_value=0.0)
    out["t_error_up"] = float(max(rise.max(), 0.0)) if len(rise) else 0.0
    counts_w = win["service"].astype(str).value_counts()
    counts_b = base["service"].astype(str).value_counts() * (len(win) / max(len(base), 1))
    ratio = np.log((counts_w + 1.0) / (counts_b.reindex(counts_w.index).fillna(0.0) + 1.0))
    out["t_volume"] = float(np.abs(ratio).max()) if len(ratio) else 0.0
    return out


def _topology_block(
    graph: nx.DiGraph, focus: str | None, shifts_: pd.DataFrame | None
) -> dict[str, float]:
    """The focus's place in the call graph, and how its callers' and callees' latency and
    errors rose (a cause and its symptoms sit in a shape: a link fault shows at the
    caller, a slow service in its callers' latency)."""
    if focus is None or focus not in graph:
        return dict.fromkeys(TOPOLOGY_FEATURES, 0.0)
    out: dict[str, float] = {}
    for side, nodes in (
        ("callers", graph.predecessors(focus)),
        ("callees", graph.successors(focus)),
    ):
        near = set(map(str, nodes)) - {focus}
        for k in NEIGHBOUR_KINDS:
            mine = (
                shifts_[~shifts_["host"] & (shifts_["kind"] == k) & shifts_["service"].isin(near)]
                if shifts_ is not None and len(shifts_)
                else None
            )
            out[f"g_{side}_{k}"] = (
                _size(mine["up"].max()) if mine is not None and len(mine) else 0.0
            )
    entries = [n for n in graph if graph.in_degree(n) == 0] or [
        max(graph, key=lambda n: (graph.out_degree(n), str(n)))
    ]
    depth = nx.multi_source_dijkstra_path_length(graph, entries)
    deepest = max(depth.values()) or 1
    return {
        "g_in": float(np.log1p(graph.in_degree(focus))),
        "g_out": float(np.log1p(graph.out_degree(focus))),
        "g_depth": float(depth.get(focus, deepest)) / deepest,
        **out,
    }


@dataclass(frozen=True)
class SignatureSettings:
    """Windows (seconds) either side of the anomaly time."""

    before_s: float = 600.0
    after_s: float = 180.0


def signature(
    table: pd.DataFrame | None,
    at: float,
    telemetry: IncidentTelemetry | None = None,
    graph: nx.DiGraph | None = None,
    settings: SignatureSettings | None = None,
) -> Signature:
    """The incident's signature at anomaly time `at` (see the module doc)."""
    s = settings or SignatureSettings()
    t = telemetry or IncidentTelemetry()
    rca = MultimodalRca(s.before_s, s.after_s, log_slack_s=LOG_SLACK_S)
    evidence: dict[str, pd.Series] = {}
    feats: dict[str, float] = {}
    blocks: list[str] = []
    notes: list[str] = []
    shifts_ = None
    if table is not None and len(table):
        base_table = table if t.normal is None else pd.concat([t.normal, table])
        before = s.before_s if t.normal is None else np.inf
        shifts_ = metric_shifts(base_table, at, before, s.after_s)
        if not len(shifts_):
            notes.append("metrics: no signal with values in both windows")
    win, base = rca._spans(t, at)
    if shifts_ is not None and len(shifts_):
        # with traces, latency and errors are theirs and the metrics speak for saturation
        # (the multimodal RCA's rule); without, every kind of the service's own signals
        kinds = ("cpu", "memory") if win is not None else KINDS
        own = shifts_[~shifts_["host"] & shifts_["kind"].isin(kinds)]
        evidence["metrics"] = own.groupby("service")["up"].max()
    fam = d = None
    if win is not None:
        fam = family_scores(win, base)
        evidence["latency"] = fam.max(axis=1).clip(lower=0.0)
        if t.logs is not None and len(t.logs):
            logs_in, base_logs = rca._logs(t, at)
            d = shifts(
                span_events(win, logs_in),
                span_events(base, base_logs),
                EventSettings(new_info_weight=1.0),
            )
            evidence["logs"] = (
                d.groupby("service")["score"].max() if len(d) else pd.Series(dtype=float)
            )
    elif t.spans is not None:
        notes.append("traces: no spans in the incident window or its baseline")
    focus = _focus(rca, evidence)
    if shifts_ is not None and len(shifts_):
        feats.update(_metric_block(shifts_, focus))
        blocks.append("metrics")
    if d is not None:
        feats.update(_log_block(d, focus))
        blocks.append("logs")
    if fam is not None:
        feats.update(_trace_block(fam, win, base, focus))
        blocks.append("traces")
    g = graph
    if (g is None or not len(g)) and win is not None:
        g = nx.DiGraph(call_graph(pd.concat([base, win])))
    if g is not None and len(g) and focus is not None:
        feats.update(_topology_block(g, focus, shifts_))
        blocks.append("topology")
    if not blocks:
        notes.append("no modality had data around the anomaly time")
    return Signature(feats, tuple(blocks), focus, SIGNATURE_VERSION, tuple(notes))


def _focus(rca: MultimodalRca, evidence: dict[str, pd.Series]) -> str | None:
    """The service with the most fused evidence (the multimodal RCA's noise levels)."""
    if not evidence:
        return None
    frame = pd.concat(evidence, axis=1).fillna(0.0)
    if frame.empty:
        return None
    fused = rca.fuse(frame)
    if fused.max() <= 0:
        return None
    return str(sorted(fused.index, key=lambda s: (-fused[s], str(s)))[0])


def prepare_spans(spans: pd.DataFrame | None) -> pd.DataFrame | None:
    """Spans with their call tree (exclusive times, callees), computed once per source."""
    if spans is None or "self_ms" in spans.columns:
        return spans
    return call_tree(spans)
