"""The architecture picture: layers as bands, rooms as boxes, the real imports between rooms,
and the path one telemetry frame takes to become an action, with where each contract lives."""

from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib
import numpy as np

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import networkx as nx
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch

from firebreak.import_graph import (
    LAYERS,
    ROOT,
    import_cycles,
    import_graph,
    layering_violations,
    room_graph,
)

LAYER_TEXT = {
    "firebreak": "firebreak: the command line, the only place wiring every layer",
    "experiments": "experiments: studies that produce tables and plots",
    "agents": "agents: decide and act",
    "detectors": "detectors: understand (telemetry only)",
    "twin": "twin: the simulated system",
}
LAYER_COLOUR = {
    "firebreak": "#eeeeee",
    "experiments": "#e8f0fb",
    "agents": "#fdf0e2",
    "detectors": "#e9f6ec",
    "twin": "#f3ebf8",
}
# the path of one frame, engine to action: (from room, to room, what passes)
FRAME_PATH = (
    ("twin.flow", "twin.telemetry", "1 Frame: time × services × metrics"),
    ("twin.telemetry", "agents.loop", "2 the operator reads the stream"),
    ("agents.loop", "detectors.anomaly", "3 tier 1 → tier 2 → Alert"),
    ("detectors.anomaly", "detectors", "4 correlation: alerts → incident"),
    ("detectors", "detectors.rca", "5 RCA: ranked services + evidence"),
    ("detectors.rca", "agents.deciding", "6 runbook, selection, automation level"),
    ("agents.deciding", "agents.safety", "7 guardrails, audit"),
    ("agents.safety", "twin.control", "8 Simulation.act(Action)"),
)
CONTRACTS = (
    ("telemetry frame", "twin/telemetry/frame.py (Frame, Chunk, Sink)"),
    ("run directory", "twin/run/runner.py, twin/run/directory.py"),
    ("ground truth", "twin/run/labels.py → labels.json (scoring only)"),
    ("action API", "twin/control/actions.py (Action, delay, cost, risk)"),
    ("detector protocol", "detectors/base.py (learn_one, score_one, Alert)"),
    ("RCA contract", "detectors/rca/base.py (incident in, ranking out)"),
    ("policy protocol", "agents/contracts.py, agents/rl/policies.py (predict)"),
    ("gymnasium envs", "twin/envs/ (Remediation-v0, Autoscale-v0)"),
)


# left to right within a layer, so the frame's path reads without crossing itself
ORDER = (
    "twin.scenario", "twin.flow", "twin.telemetry", "twin.run", "twin.request", "twin.envs",
    "twin.control", "twin",
    "detectors.anomaly", "detectors", "detectors.rca", "detectors.forecast", "detectors.nab",
    "detectors.safety",
    "agents.loop", "agents.deciding", "agents.safety", "agents", "agents.scaling", "agents.rl",
)  # fmt: skip


def _rank(room: str) -> tuple[int, str]:
    return (ORDER.index(room) if room in ORDER else len(ORDER), room)


def _layout(sizes: dict[str, int]) -> dict[str, tuple[float, float, float, float]]:
    """(x, y, width, height) of each room: one band per layer, rooms side by side."""
    boxes = {}
    band_h = 1.0
    for row, layer in enumerate(LAYERS):
        rooms = sorted((r for r in sizes if r.split(".")[0] == layer), key=_rank)
        y = (len(LAYERS) - 1 - row) * (band_h + 0.35)
        total = sum(max(sizes[r], 4) for r in rooms)
        x = 0.0
        width = 14.0
        gap = 0.15
        usable = width - gap * (len(rooms) - 1)
        for r in rooms:
            w = usable * max(sizes[r], 4) / total
            boxes[r] = (x, y + 0.12, w, band_h - 0.24)
            x += w + gap
    return boxes


def _centre(box: tuple[float, float, float, float]) -> tuple[float, float]:
    x, y, w, h = box
    return x + w / 2, y + h / 2


def draw(graph: nx.DiGraph, out: Path) -> None:
    """Write the picture to `out` (PNG)."""
    sizes, edges = room_graph(graph)
    boxes = _layout(dict(sizes))
    fig, ax = plt.subplots(figsize=(17, 10.5))
    ax.set_xlim(-1.0, 21.8)
    ax.set_ylim(-0.2, 6.7)
    for row, layer in enumerate(LAYERS):
        y = (len(LAYERS) - 1 - row) * 1.35
        ax.add_patch(
            FancyBboxPatch(
                (-0.2, y - 0.02), 14.4, 1.04, boxstyle="round,pad=0.02",
                fc=LAYER_COLOUR[layer], ec="none", zorder=0,
            )
        )  # fmt: skip
        ax.text(-0.1, y + 1.06, LAYER_TEXT[layer], ha="left", va="bottom", fontsize=8.5,
                color="#333", style="italic")  # fmt: skip
    # real imports between rooms, faint: the reader sees that they only point down
    biggest = max(edges.values()) if edges else 1
    for (a, b), n in edges.items():
        (xa, ya), (xb, yb) = _centre(boxes[a]), _centre(boxes[b])
        ax.add_patch(
            FancyArrowPatch(
                (xa, ya), (xb, yb), arrowstyle="-|>", mutation_scale=7,
                lw=0.4 + 1.6 * n / biggest, color="#9a9a9a", alpha=0.35, zorder=1,
                connectionstyle="arc3,rad=0.08", shrinkA=14, shrinkB=14,
            )
        )  # fmt: skip
    for room, (x, y, w, h) in boxes.items():
        ax.add_patch(
            FancyBboxPatch(
                (x, y), w, h, boxstyle="round,pad=0.02", fc="white", ec="#555", lw=0.9, zorder=2
            )
        )
        label = room if "." not in room else room.split(".", 1)[1] + "/"
        ax.text(x + w / 2, y + h * 0.62, label, ha="center", va="center", fontsize=8.5,
                weight="bold", zorder=3)  # fmt: skip
        ax.text(x + w / 2, y + h * 0.28, f"{sizes[room]} modules", ha="center", va="center",
                fontsize=7, color="#666", zorder=3)  # fmt: skip
    # the frame's path, bold and numbered
    for a, b, text in FRAME_PATH:
        if a not in boxes or b not in boxes:
            continue
        (xa, ya), (xb, yb) = _centre(boxes[a]), _centre(boxes[b])
        ax.add_patch(
            FancyArrowPatch(
                (xa, ya), (xb, yb), arrowstyle="-|>", mutation_scale=16, lw=2.2,
                color="#c0392b", zorder=4, connectionstyle="arc3,rad=0.18",
                shrinkA=16, shrinkB=16,
            )
        )  # fmt: skip
        # the label sits on the arc (matplotlib's arc3 bends in display space)
        (pa, pb) = ax.transData.transform([(xa, ya), (xb, yb)])
        dx, dy = pb - pa
        mid = (pa + pb) / 2 + 0.5 * 0.18 * np.array([dy, -dx])
        lx, ly = ax.transData.inverted().transform(mid)
        ax.text(lx, ly, text.split(" ", 1)[0], fontsize=9, color="white",
                weight="bold", ha="center", va="center", zorder=6,
                bbox={"boxstyle": "circle,pad=0.25", "fc": "#c0392b", "ec": "none"})  # fmt: skip
    steps = "\n".join(text for _, _, text in FRAME_PATH)
    ax.text(14.35, 3.9, "One frame, engine to action\n" + steps, fontsize=8, va="top",
            ha="left", color="#c0392b",
            bbox={"fc": "white", "ec": "#c0392b", "pad": 6})  # fmt: skip
    lines = [f"{name}: {where}" for name, where in CONTRACTS]
    ax.text(14.35, 6.55, "Where each contract lives\n" + "\n".join(lines), fontsize=7.5, va="top",
            ha="left", family="monospace",
            bbox={"fc": "#fffdf5", "ec": "#bbb", "pad": 6})  # fmt: skip
    ax.text(14.35, 0.95, "grey: real imports between rooms (width: module pairs)\n"
            "red: one telemetry frame, engine to action", fontsize=7.5, va="top",
            color="#444")  # fmt: skip
    ax.set_xlim(-1.0, 21.8)
    ax.set_ylim(-0.2, 6.7)
    ax.axis("off")
    ax.set_title(
        f"Firebreak: {graph.number_of_nodes()} modules, {graph.number_of_edges()} imports, "
        "every one pointing down (generated by python -m firebreak.architecture)",
        fontsize=11,
    )
    fig.tight_layout()
    fig.savefig(out, dpi=110, metadata={"Software": None})
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "architecture.png")
    args = parser.parse_args(argv)
    graph = import_graph()
    bad = layering_violations(graph)
    cycles = import_cycles(graph)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    draw(graph, args.out)
    print(
        f"{graph.number_of_nodes()} modules, {graph.number_of_edges()} imports, "
        f"{len(bad)} upward imports, {len(cycles)} import cycles; picture: {args.out}"
    )
    return 0 if not bad and not cycles else 1


if __name__ == "__main__":
    raise SystemExit(main())
