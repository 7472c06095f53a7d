"""The rehearsal report's figures, as PNG bytes ready to be inlined.

One timeline shares its time axis across every panel: the SLIs of all modes overlaid (the
same seed draws the same traffic, so the curves differ only by what each stack did), the
ground-truth faults in a lane of their own, then one lane per mode with its alerts,
incidents, identifications and actions. Zoomed copies cover each cluster of faults, where
a day-long axis would squeeze the operations into a few pixels. The service graph is
coloured, per mode, by the minutes each service spent degraded.
"""

from __future__ import annotations

import io
import warnings
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import networkx as nx
import numpy as np
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.ticker import FuncFormatter, LogLocator, MultipleLocator, NullLocator

from detectors.anomaly.evaluation import FaultLabel
from experiments.report.data import RunData
from experiments.report.story import describe_action

MODE_COLORS = {"traditional": "#d9822b", "ai": "#2b6cb0", "none": "#666666"}
FAULT_COLOR = "#d62728"
WHO_STYLE = {
    "auto": ("^", "#2ca02c", "automated"),
    "approved": ("s", "#17becf", "approved"),
    "human": ("v", "#8c564b", "by the engineer"),
    "undo": ("X", "#d62728", "undo"),
}
DEGRADED_ERROR_RATIO = 0.01
DEGRADED_P99_FACTOR = 3.0
MAX_ZOOMS = 4
MAX_NAMED = 6  # services named in a graph too wide to name them all
DPI = 90


def mode_color(mode: str, k: int) -> str:
    """A stable colour per operations mode (orange traditional, blue AI)."""
    return MODE_COLORS.get(mode, plt.get_cmap("tab10")(k % 10))


def png(fig: Figure) -> bytes:
    """The figure as PNG bytes; the figure is closed (a report makes several)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI)
    plt.close(fig)
    return buf.getvalue()


def _hhmm(x: float, _pos: Any = None) -> str:
    total = int(round(x * 60))
    day, rest = divmod(total, 24 * 60)
    return (f"d{day} " if day else "") + f"{rest // 60:02d}:{rest % 60:02d}"


def _window_mask(times: np.ndarray, window: tuple[float, float]) -> np.ndarray:
    return (times >= window[0] - 60.0) & (times <= window[1])


def _shade_faults(ax: Any, faults: Sequence[FaultLabel]) -> None:
    for f in faults:
        ax.axvspan(f.start / 3600.0, f.end / 3600.0, color=FAULT_COLOR, alpha=0.08, lw=0)


def _metric_panels(
    axes: Sequence[Any],
    runs: Mapping[str, RunData],
    entries: Sequence[str],
    slo_lines: Sequence[tuple[str, float]],
    availability: float | None,
    window: tuple[float, float],
) -> None:
    for k, (mode, run) in enumerate(runs.items()):
        idx = [run.services.index(s) for s in entries if s in run.services]
        mask = _window_mask(run.times, window)
        hours = run.times[mask] / 3600.0
        color = mode_color(mode, k)
        load = np.nansum(run.series("arrival_rate")[mask][:, idx], axis=1)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # a minute with no request: NaN
            p99 = np.nanmax(run.series("latency_p99_ms")[mask][:, idx], axis=1)
            err = np.nanmax(run.series("error_ratio")[mask][:, idx], axis=1)
        replicas = np.nansum(run.series("ready_replicas")[mask], axis=1)
        axes[0].plot(hours, load, color=color, lw=1.0, label=mode)
        axes[1].plot(hours, np.where(p99 > 0, p99, np.nan), color=color, lw=1.0)
        axes[2].plot(hours, np.clip(err, 1e-5, None), color=color, lw=1.0)
        axes[3].plot(hours, replicas, color=color, lw=1.0)
    for name, ms in slo_lines:
        axes[1].axhline(ms, color="#555555", ls="--", lw=0.8)
        axes[1].annotate(
            f"SLO {name}: {ms:g} ms",
            (0.005, ms),
            xycoords=("axes fraction", "data"),
            fontsize=7,
            va="bottom",
            color="#333333",
        )
    if availability is not None:
        axes[2].axhline(1.0 - availability, color="#555555", ls="--", lw=0.8)
        axes[2].annotate(
            f"error budget {1.0 - availability:g}",
            (0.005, 1.0 - availability),
            xycoords=("axes fraction", "data"),
            fontsize=7,
            va="bottom",
            color="#333333",
        )
    who = " + ".join(entries)
    axes[0].set_ylabel(f"load (req/s)\n{who}", fontsize=8)
    axes[1].set_ylabel("entry p99 (ms)", fontsize=8)
    axes[1].set_yscale("log")
    axes[2].set_ylabel("entry error ratio", fontsize=8)
    axes[2].set_yscale("log")
    axes[2].set_ylim(1e-5, 1.5)
    # 1-2-5 ticks read even when the p99 stays within a decade; no minor ticks (many
    # artists, little information)
    axes[1].yaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0), numticks=10))
    axes[1].yaxis.set_major_formatter(FuncFormatter(lambda v, _pos: f"{v:g}"))
    axes[2].yaxis.set_major_locator(LogLocator(numticks=6))
    for ax in axes[1:3]:
        ax.yaxis.set_minor_locator(NullLocator())
    axes[3].set_ylabel("ready replicas\n(all services)", fontsize=8)
    axes[0].legend(loc="upper left", fontsize=8, ncol=len(runs))


def _fault_lane(ax: Any, faults: Sequence[FaultLabel], window: tuple[float, float]) -> None:
    shown = [f for f in faults if f.end >= window[0] and f.start <= window[1]]
    for row, f in enumerate(shown):
        ax.broken_barh(
            [(f.start / 3600.0, (f.end - f.start) / 3600.0)],
            (row - 0.35, 0.7),
            color=FAULT_COLOR,
            alpha=0.55,
        )
        where = f.target + (f"↔{f.peer}" if f.peer else "")
        x = max(f.start, window[0]) / 3600.0
        ax.annotate(
            f" {f.kind} @ {where}", (x, row), fontsize=7, va="center", ha="left", clip_on=True
        )
    ax.set_ylim(-0.6, max(len(shown), 1) - 0.4)
    ax.set_yticks([])
    ax.set_ylabel("faults\n(ground\ntruth)", fontsize=8, rotation=0, ha="right", va="center")


def _label_points(
    ax: Any, points: Sequence[tuple[float, float, str]], width_h: float, axis_px: float
) -> None:
    """Text right of each marker, on one of two levels, only where it does not overlap the
    previous label on that level (dense stretches keep their markers, lose some words);
    a label equal to the previous one on its row is left out."""
    hours_per_char = width_h * 4.2 / axis_px  # 6 pt text at DPI: about 4 px a character
    free = [-np.inf, -np.inf]
    previous = None
    for x, y, text in sorted(points):
        if text == previous:
            continue
        for level, offset in enumerate((3, -9)):
            if x > free[level]:
                ax.annotate(
                    text,
                    (x, y),
                    xytext=(4, offset),
                    textcoords="offset points",
                    fontsize=6,
                    va="bottom",
                    clip_on=True,
                )
                free[level] = x + (len(text) + 3) * hours_per_char
                previous = text
                break


def _ops_lane(ax: Any, run: RunData, window: tuple[float, float]) -> None:
    lo, hi = window
    width_h = (hi - lo) / 3600.0
    axis_px = ax.get_position().width * ax.figure.get_figwidth() * DPI
    alerts = [a["time"] / 3600.0 for a in run.alerts if lo <= a["time"] <= hi]
    ax.vlines(alerts, 3.7, 4.3, color="#444444", lw=0.7)
    spans = []
    for inc in run.operations.get("incidents", []):
        start = inc.get("opened")
        end = inc.get("closed") or inc.get("updated") or start
        if start is None or end < lo or start > hi:
            continue
        spans.append((start / 3600.0, max(end - start, 30.0) / 3600.0))
    ax.broken_barh(spans, (2.75, 0.5), color="#9467bd", alpha=0.6)
    idents = [i for i in run.operations.get("identifications", []) if lo <= i["time"] <= hi]
    for by, marker, color in (("rca", "D", "#6a3d9a"), ("human", "o", "#555555")):
        xs = [i["time"] / 3600.0 for i in idents if i.get("by") == by]
        ax.scatter(xs, [1.8] * len(xs), marker=marker, s=16, color=color, zorder=3)
    acts = [a for a in run.operations.get("actions", []) if lo <= a["time"] <= hi]
    for by, (marker, color, _) in WHO_STYLE.items():
        xs = [a["time"] / 3600.0 for a in acts if a.get("by") == by]
        ax.scatter(xs, [0.5] * len(xs), marker=marker, s=30, color=color, zorder=3)
    _label_points(
        ax, [(i["time"] / 3600.0, 1.8, str(i.get("service"))) for i in idents], width_h, axis_px
    )
    _label_points(
        ax,
        [(a["time"] / 3600.0, 0.5, describe_action(a.get("action", {}))) for a in acts],
        width_h,
        axis_px,
    )
    ax.set_ylim(-0.4, 4.6)
    ax.set_yticks([0.5, 1.8, 3.0, 4.0], ["actions", "identified", "incidents", "alerts"])
    ax.set_ylabel(run.mode, fontsize=9, color=mode_color(run.mode, 0), fontweight="bold")


def _legend_handles() -> list[Any]:
    handles: list[Any] = [
        Patch(color=FAULT_COLOR, alpha=0.3, label="fault (ground truth)"),
        Line2D([], [], color="#444444", marker="|", ls="", label="alert"),
        Patch(color="#9467bd", alpha=0.6, label="incident"),
        Line2D([], [], color="#6a3d9a", marker="D", ls="", label="RCA verdict"),
        Line2D([], [], color="#555555", marker="o", ls="", label="engineer's diagnosis"),
    ]
    for marker, color, label in WHO_STYLE.values():
        handles.append(Line2D([], [], color=color, marker=marker, ls="", label=f"action {label}"))
    return handles


def _tick_hours(width_h: float) -> float:
    """A round tick spacing giving at most a dozen ticks."""
    for step in (1 / 12, 1 / 6, 0.25, 0.5, 1, 2, 3, 6, 12, 24, 48, 168):
        if width_h / step <= 12:
            return step
    return width_h / 12


def timeline_png(
    runs: Mapping[str, RunData],
    faults: Sequence[FaultLabel],
    entries: Sequence[str],
    slo_lines: Sequence[tuple[str, float]],
    availability: float | None,
    window: tuple[float, float],
    title: str,
) -> bytes:
    """Load, SLIs, replicas, faults and one operations lane per mode on one time axis."""
    n_faults = sum(1 for f in faults if f.end >= window[0] and f.start <= window[1])
    heights = [1.5, 1.5, 1.5, 1.1, 0.45 + 0.28 * max(n_faults, 1)] + [1.7] * len(runs)
    gaps, top_in, bottom_in = 0.18, 0.45, 1.0  # inches: between panels, title, axis+legend
    height = sum(heights) + gaps * (len(heights) - 1) + top_in + bottom_in
    fig, axes = plt.subplots(
        len(heights),
        1,
        figsize=(13, height),
        sharex=True,
        gridspec_kw={"height_ratios": heights},
    )
    # fixed margins: tight_layout measures every label and costs a second per figure
    fig.subplots_adjust(
        left=0.1,
        right=0.985,
        top=1 - top_in / height,
        bottom=bottom_in / height,
        hspace=gaps / (sum(heights) / len(heights)),
    )
    _metric_panels(axes[:4], runs, entries, slo_lines, availability, window)
    _fault_lane(axes[4], faults, window)
    for ax, run in zip(axes[5:], runs.values(), strict=True):
        _ops_lane(ax, run, window)
    for ax in axes:
        _shade_faults(ax, faults)
        ax.grid(alpha=0.25)
        ax.tick_params(labelsize=7)
    width_h = (window[1] - window[0]) / 3600.0
    axes[-1].set_xlim(window[0] / 3600.0, window[1] / 3600.0)
    axes[-1].xaxis.set_major_locator(MultipleLocator(_tick_hours(width_h)))
    axes[-1].xaxis.set_major_formatter(FuncFormatter(_hhmm))
    axes[-1].set_xlabel("scenario time (hh:mm), 1-minute means", fontsize=8)
    fig.legend(handles=_legend_handles(), loc="lower center", ncol=5, fontsize=7, frameon=False)
    fig.suptitle(title, fontsize=10, y=1 - 0.12 / height)
    return png(fig)


def zoom_windows(
    faults: Sequence[FaultLabel], runs: Mapping[str, RunData], duration: float
) -> list[tuple[float, float]]:
    """Clusters of overlapping faults (with their restore), when they are narrow enough to
    be worth a closer look than the whole run gives."""
    spans = []
    for f in faults:
        end = f.end
        for run in runs.values():
            for r in run.stack.get("per_fault", {}).get("mttr", []):
                if r["fault"] == f.id and r.get("mttr_s") is not None:
                    end = max(end, f.start + r["mttr_s"])
        spans.append((max(0.0, f.start - 600.0), min(duration, end + 1200.0)))
    merged: list[list[float]] = []
    for lo, hi in sorted(spans):
        if merged and lo <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], hi)
        else:
            merged.append([lo, hi])
    out = [(lo, hi) for lo, hi in merged if hi - lo <= 0.5 * duration]
    return out[:MAX_ZOOMS]


def degraded_minutes(run: RunData) -> np.ndarray:
    """Per service, minutes with error ratio ≥ 1% or p99 ≥ 3× its usual (25th percentile):
    how much each service hurt, in the mode that ran."""
    err = run.series("error_ratio")
    p99 = run.series("latency_p99_ms")
    with np.errstate(invalid="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a service that never served
        base = np.nanpercentile(np.where(p99 > 0, p99, np.nan), 25, axis=0)
        bad = (err >= DEGRADED_ERROR_RATIO) | (p99 >= DEGRADED_P99_FACTOR * base)
    step_min = (run.times[1] - run.times[0]) / 60.0 if len(run.times) > 1 else 1.0
    return bad.sum(axis=0) * step_min


def _layered_layout(graph: nx.DiGraph) -> dict[str, np.ndarray]:
    """Callers above callees: each service one layer below its deepest caller (longest
    path over the graph of strongly connected components, so cycles share a layer)."""
    dag = nx.condensation(graph)
    depth: dict[int, int] = {}
    for c in nx.topological_sort(dag):
        depth[c] = max((depth[p] + 1 for p in dag.predecessors(c)), default=0)
    members: dict[int, list[str]] = {}
    for node in graph:  # the topology's order within a layer: the same picture every run
        layer = depth[dag.graph["mapping"][node]]
        graph.nodes[node]["layer"] = layer
        members.setdefault(layer, []).append(node)
    # networkx's multipartite layout orders a layer by set iteration, which follows Python's
    # per-process string hashing; placing nodes here keeps report.html byte-identical
    pos = {}
    for layer, nodes in members.items():
        xs = np.linspace(-1.0, 1.0, len(nodes)) if len(nodes) > 1 else np.zeros(1)
        for node, x in zip(nodes, xs, strict=True):
            pos[node] = np.array([float(x), -float(layer)])
    return pos


def graph_png(runs: Mapping[str, RunData], faults: Sequence[FaultLabel]) -> bytes:
    """The call graph per mode, nodes coloured by degraded minutes, fault roots outlined."""
    first = next(iter(runs.values()))
    graph = nx.DiGraph()
    graph.add_nodes_from(first.services)
    graph.add_edges_from(first.edges)
    pos = _layered_layout(graph)
    impact = {
        mode: dict(zip(run.services, degraded_minutes(run), strict=True))
        for mode, run in runs.items()
    }
    vmax = max([1.0] + [v for m in impact.values() for v in m.values()])
    roots = {f.target for f in faults} | {f.peer for f in faults if f.peer}
    links = {(f.target, f.peer) for f in faults if f.peer} | {
        (f.peer, f.target) for f in faults if f.peer
    }
    widest = max(Counter(nx.get_node_attributes(graph, "layer").values()).values())
    size = float(np.clip(700 * 8 / max(widest, 1), 40, 700))
    labels = widest <= 12
    cmap = plt.get_cmap("Reds")
    layers = len(set(nx.get_node_attributes(graph, "layer").values()))
    fig, axes = plt.subplots(
        len(runs), 1, figsize=(13, (0.85 * layers + 0.6) * len(runs)), squeeze=False
    )
    nodes = list(graph)
    edge_colors = [FAULT_COLOR if e in links else "#999999" for e in graph.edges]
    for ax, (mode, minutes) in zip(axes[:, 0], impact.items(), strict=True):
        nx.draw_networkx_edges(
            graph,
            pos,
            ax=ax,
            edge_color=edge_colors,
            arrows=True,
            arrowsize=9,
            node_size=size,
            width=1.0,
        )
        nx.draw_networkx_nodes(
            graph,
            pos,
            ax=ax,
            nodelist=nodes,
            node_color=[cmap(0.08 + 0.9 * minutes.get(n, 0.0) / vmax) for n in nodes],
            node_size=size,
            edgecolors=[FAULT_COLOR if n in roots else "#333333" for n in nodes],
            linewidths=[3.0 if n in roots else 0.8 for n in nodes],
        )
        # a crowded graph names only the fault roots and the services hurt most
        worst = sorted((n for n in nodes if minutes.get(n, 0.0) > 0), key=lambda n: -minutes[n])
        named = set(nodes) if labels else roots | set(worst[:MAX_NAMED])
        for n in nodes:
            if n in named:
                ax.annotate(
                    f"{n}\n{minutes.get(n, 0.0):.0f} min",
                    tuple(pos[n]),
                    xytext=(0, -0.6 * np.sqrt(size) - 2),
                    textcoords="offset points",
                    ha="center",
                    va="top",
                    fontsize=7,
                )
        ax.set_title(f"{mode}: minutes degraded per service", fontsize=9, loc="left")
        ax.margins(0.06, 0.22)
        ax.axis("off")
    sm = plt.cm.ScalarMappable(cmap=cmap, norm=plt.Normalize(0, vmax))
    fig.colorbar(sm, ax=axes[:, 0].tolist(), fraction=0.02, pad=0.01, label="minutes degraded")
    fig.legend(
        handles=[
            Line2D(
                [],
                [],
                marker="o",
                ls="",
                markerfacecolor="white",
                markeredgecolor=FAULT_COLOR,
                markeredgewidth=2.5,
                markersize=10,
                label="fault root (ground truth)",
            ),
            Line2D([], [], color=FAULT_COLOR, label="faulty link (ground truth)"),
        ],
        loc="upper left",
        fontsize=8,
        frameon=False,
    )
    return png(fig)
