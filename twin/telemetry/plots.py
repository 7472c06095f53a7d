"""The run's overview PNG: load, p99 latency, errors and replicas per service, faults shaded."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from twin.fields import M

PANELS = (
    ("arrival_rate", "load (req/s)", "linear"),
    ("latency_p99_ms", "p99 latency (ms)", "log"),
    ("error_ratio", "error ratio", "linear"),
    ("ready_replicas", "ready replicas", "linear"),
)
MAX_LINES = 12


def overview_plot(
    path: Path,
    title: str,
    times: np.ndarray,
    means: np.ndarray,
    services: tuple[str, ...],
    faults: list[dict],
) -> None:
    """One column of four panels sharing a time axis in hours."""
    traffic = means[:, :, M["arrival_rate"]].mean(axis=0)
    shown = list(np.argsort(-traffic, kind="stable")[:MAX_LINES])
    hours = times / 3600.0
    fig, axes = plt.subplots(len(PANELS), 1, figsize=(12, 10), sharex=True)
    colors = plt.get_cmap("tab20")
    for ax, (metric, label, scale) in zip(axes, PANELS, strict=True):
        for k, s in enumerate(shown):
            y = means[:, s, M[metric]]
            if scale == "log":
                y = np.where(y > 0, y, np.nan)
            ax.plot(hours, y, lw=1.0, color=colors(k % 20), label=services[s])
        ax.set_ylabel(label)
        ax.set_yscale(scale)
        ax.grid(alpha=0.3)
        for fault in faults:
            ax.axvspan(fault["start"] / 3600.0, fault["end"] / 3600.0, color="red", alpha=0.12)
    for fault in faults:
        axes[0].annotate(
            f"{fault['kind']} @ {fault['target']}",
            (fault["start"] / 3600.0, 1.0),
            xycoords=("data", "axes fraction"),
            fontsize=7,
            rotation=90,
            va="top",
            ha="right",
            color="darkred",
        )
    axes[-1].set_xlabel("time (h)")
    axes[0].legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8)
    more = len(services) - len(shown)
    fig.suptitle(title + (f"  (busiest {len(shown)} of {len(services)} services)" if more else ""))
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
