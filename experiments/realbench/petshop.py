"""PetShop (amazon-science/petshop-root-cause-analysis): 68 issues on a real AWS deployment.

Per traffic regime: a call graph (`graph.csv`, row calls column), a normal period
(`noissue/metrics.csv`, about 49 h recorded months after the issues; the temporal regimes
have none, so the low- and high-traffic normal periods stand in, stacked) and the issues,
split train/test. An issue is five 5-minute rows and a `target.json`: the symptom
(`target`: node, metric, timestamp) is input, `root_cause` is the answer, and the
reproduction command (which names the fault) is never read. Train is the development split;
all 20 of its issues share one root cause (PetSearch), so it cannot tell apart settings
that differ only on other causes: a limitation to keep in mind reading any test figure.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path

import pandas as pd

from detectors.ingest.petshop_csv import read_petshop_csv
from detectors.rca.base import IncidentTelemetry
from detectors.rca.table import read_adjacency
from experiments.realbench.cases import Answer, CaseInputs, RealCase

REGIMES = ("low_traffic", "high_traffic", "temporal_traffic1", "temporal_traffic2")
SPLITS = ("train", "test")
DEV_SPLIT = "train"
SYMPTOM = {"latency": "latency", "availability": "errors"}


def dataset_dir(root: Path) -> Path:
    return root / "dataset" if (root / "dataset").is_dir() else root


def is_petshop(root: Path) -> bool:
    return bool(regimes_of(root))


def regimes_of(root: Path) -> tuple[str, ...]:
    """The traffic regimes a copy of the dataset holds."""
    base = dataset_dir(root)
    return tuple(r for r in REGIMES if (base / r / "graph.csv").is_file())


@cache
def _normal(base: Path, regime: str) -> pd.DataFrame | None:
    path = base / regime / "noissue" / "metrics.csv"
    if path.is_file():
        return read_petshop_csv(path).wide()
    if regime.startswith("temporal"):
        frames = [_normal(base, r) for r in ("low_traffic", "high_traffic")]
        frames = [f for f in frames if f is not None]
        return pd.concat(frames, ignore_index=True) if frames else None
    return None


def cases(root: Path, splits: tuple[str, ...] = SPLITS, limit: int | None = None) -> list[RealCase]:
    """Every issue of the given splits (the first `limit` per regime and split when given)."""
    base = dataset_dir(root)
    out = []
    for regime in regimes_of(root):
        graph = read_adjacency(base / regime / "graph.csv")
        normal = _normal(base, regime)
        for split in splits:
            folder = base / regime / split
            if not folder.is_dir():
                continue
            issues = sorted(
                (p for p in folder.iterdir() if p.is_dir()),
                key=lambda p: int(p.name.split("_")[-1]),
            )
            for issue in issues[:limit]:
                target = json.loads((issue / "target.json").read_text())
                symptom = target["target"]
                table = read_petshop_csv(issue / "metrics.csv").wide()
                telemetry = IncidentTelemetry(
                    normal=normal,
                    target=str(symptom["node"]),
                    target_kind=SYMPTOM.get(str(symptom["metric"])),
                )
                out.append(
                    RealCase(
                        dataset="petshop",
                        part=split,
                        dev=split == DEV_SPLIT,
                        name=f"{regime}/{split}/{issue.name}",
                        inputs=CaseInputs(table, float(symptom["timestamp"]), graph, telemetry),
                        answer=Answer(str(target["root_cause"]["node"]), str(symptom["metric"])),
                        meta={"regime": regime, "target_metric": str(symptom["metric"])},
                    )
                )
    return out
