"""The benchmark's outputs: `results.json`, `results.md` and `cases.csv`.

Figures are grouped the way they may be read: development parts (Nezha 2023-01-29,
PetShop train, where settings were chosen) apart from held-out ones, then per part
(day or split) and per fault kind within each part.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pandas as pd

from experiments.realbench.harness import summarise

METRICS = ("ac1", "ac3", "avg5", "n", "seconds_per_case")


def _records(frame: pd.DataFrame, keys: list[str]) -> dict[str, Any]:
    """Nested {key1: {key2: {metric: value}}} from a summary frame."""
    out: dict[str, Any] = {}
    for _, row in frame.iterrows():
        node = out
        for k in keys[:-1]:
            node = node.setdefault(str(row[k]), {})
        node[str(row[keys[-1]])] = {
            m: (int(row[m]) if m == "n" else round(float(row[m]), 4)) for m in METRICS
        }
    return out


def results_document(rows: pd.DataFrame, notes: dict[str, list[str]]) -> dict[str, Any]:
    """The results.json document."""
    doc: dict[str, Any] = {"datasets": {}}
    for dataset, sub in rows.groupby("dataset", sort=False):
        sub = sub.assign(split=sub["dev"].map({True: "dev", False: "held-out"}))
        entry = {
            "parts": {
                str(p): {"dev": bool(g["dev"].iloc[0]), "cases": int(g["case"].nunique())}
                for p, g in sub.groupby("part", sort=False)
            },
            "methods": {},
            "notes": notes.get(dataset, []),
            "failures": int((sub["error"] != "").sum()),
        }
        by_method = {
            "overall": _records(summarise(sub, ["method"]).assign(all="all"), ["method", "all"]),
            "dev_vs_held_out": _records(summarise(sub, ["method", "split"]), ["method", "split"]),
            "by_part": _records(summarise(sub, ["method", "part"]), ["method", "part"]),
            "by_kind": _records(summarise(sub, ["method", "kind"]), ["method", "kind"]),
            "by_part_and_kind": _records(
                summarise(sub, ["method", "part", "kind"]), ["method", "part", "kind"]
            ),
        }
        for method in sub["method"].unique():
            entry["methods"][method] = {
                "overall": by_method["overall"][method]["all"],
                **{k: by_method[k][method] for k in by_method if k != "overall"},
            }
        doc["datasets"][dataset] = entry
    return doc


def _fmt(x: float) -> str:
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.3f}"


def markdown(rows: pd.DataFrame, notes: dict[str, list[str]]) -> str:
    """A Markdown report: per dataset, dev and held-out parts, per part and per kind."""
    lines = ["# Real-data RCA benchmark", ""]
    for dataset, sub in rows.groupby("dataset", sort=False):
        lines += [f"## {dataset}", ""]
        for note in notes.get(dataset, []):
            lines.append(f"- note: {note}")
        parts = list(dict.fromkeys(sub["part"]))
        dev = {p: bool(sub[sub["part"] == p]["dev"].iloc[0]) for p in parts}
        head = "| method | " + " | ".join(
            f"{p} ({'dev' if dev[p] else 'held out'}) AC@1 / AC@3 / Avg@5" for p in parts
        )
        lines += ["", head + " | s/case |", "|---" * (len(parts) + 2) + "|"]
        per = summarise(sub, ["method", "part"])
        for method in sub["method"].unique():
            cells = []
            for p in parts:
                r = per[(per["method"] == method) & (per["part"] == p)].iloc[0]
                cells.append(f"{_fmt(r.ac1)} / {_fmt(r.ac3)} / {_fmt(r.avg5)} (n={int(r.n)})")
            secs = sub[sub["method"] == method]["seconds"].mean()
            lines.append(f"| {method} | " + " | ".join(cells) + f" | {secs:.3f} |")
        lines += ["", "Per fault kind and part (AC@1 / AC@3, n):", ""]
        kinds = summarise(sub, ["method", "part", "kind"])
        cols = list(dict.fromkeys(zip(kinds["part"], kinds["kind"], strict=True)))
        lines.append("| method | " + " | ".join(f"{k} ({p})" for p, k in cols) + " |")
        lines.append("|---" * (len(cols) + 1) + "|")
        for method in sub["method"].unique():
            cells = []
            for p, k in cols:
                r = kinds[(kinds["method"] == method) & (kinds["part"] == p) & (kinds["kind"] == k)]
                r = r.iloc[0]
                cells.append(f"{_fmt(r.ac1)} / {_fmt(r.ac3)} ({int(r.n)})")
            lines.append(f"| {method} | " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines) + "\n"


def write_outputs(out: Path, rows: pd.DataFrame, notes: dict[str, list[str]]) -> list[Path]:
    """Write the three files atomically (each to a temporary name, then renamed)."""
    out.mkdir(parents=True, exist_ok=True)
    files = {
        out / "results.json": json.dumps(results_document(rows, notes), indent=2) + "\n",
        out / "results.md": markdown(rows, notes),
        out / "cases.csv": rows.to_csv(index=False),
    }
    for path, text in files.items():
        tmp = path.with_suffix(path.suffix + ".tmp")
        tmp.write_text(text)
        tmp.replace(path)
    return list(files)
