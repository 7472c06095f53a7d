"""Real beside twin: AC@1 per method on each side, their difference, and whether the
methods come in the same order (Kendall's τ-b over the methods' AC@1, ties allowed).

The bar (issue 17): at least `MIN_METHODS` methods, each with twin AC@1 within `TOLERANCE`
of its real AC@1, and τ ≥ `TAU_MIN`. τ is undefined when either side gives every method
the same AC@1 (no order to compare); the bar is then not met and the reason says so.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd
from scipy.stats import kendalltau

TOLERANCE = 0.10
TAU_MIN = 0.6
MIN_METHODS = 4


def side_by_side(real: pd.DataFrame, twin: pd.DataFrame) -> pd.DataFrame:
    """One row per method (in the real rows' order): n, AC@1 real, AC@1 twin, twin − real,
    and AC@3 of both, over the cases both sides have."""
    both = set(real["case"]) & set(twin["case"])
    r = real[real["case"].isin(both)].groupby("method", sort=False)
    t = twin[twin["case"].isin(both)].groupby("method", sort=False)
    out = pd.DataFrame(
        {
            "n": r["case"].count(),
            "ac1_real": r["ac1"].mean(),
            "ac1_twin": t["ac1"].mean(),
            "ac3_real": r["ac3"].mean(),
            "ac3_twin": t["ac3"].mean(),
        }
    )
    out["diff"] = out["ac1_twin"] - out["ac1_real"]
    return out.reset_index()


def kendall(a: np.ndarray, b: np.ndarray) -> float | None:
    """Kendall's τ-b of two score vectors; None when it is undefined."""
    if len(a) < 2:
        return None
    tau = kendalltau(a, b).statistic
    return None if tau is None or math.isnan(tau) else float(tau)


def verdict(table: pd.DataFrame) -> dict[str, Any]:
    """Whether the bar is met, with τ, the methods within tolerance and why not."""
    ok = table.dropna(subset=["ac1_real", "ac1_twin"])
    within = ok[(ok["diff"].abs() <= TOLERANCE + 1e-12)]
    tau = kendall(ok["ac1_real"].to_numpy(), ok["ac1_twin"].to_numpy())
    why = []
    if len(ok) < MIN_METHODS:
        why.append(f"{len(ok)} methods compared, the bar needs {MIN_METHODS}")
    far = ok[ok["diff"].abs() > TOLERANCE + 1e-12]
    if len(far):
        off = ", ".join(f"{m} ({d:+.3f})" for m, d in zip(far["method"], far["diff"], strict=True))
        why.append(f"AC@1 off by more than ±{TOLERANCE:.2f}: {off}")
    if tau is None:
        why.append("Kendall τ undefined: one side gives every method the same AC@1")
    elif tau < TAU_MIN:
        why.append(f"Kendall τ {tau:.2f} < {TAU_MIN}")
    return {
        "met": not why,
        "kendall_tau": tau,
        "methods": len(ok),
        "within_tolerance": int(len(within)),
        "tolerance": TOLERANCE,
        "tau_min": TAU_MIN,
        "why_not": why,
    }


def by_kind(real: pd.DataFrame, twin: pd.DataFrame) -> pd.DataFrame:
    """AC@1 per (fault kind, method) on both sides: where the gap comes from."""
    r = real.groupby(["kind", "method"], sort=False)["ac1"].agg(["mean", "count"])
    t = twin.groupby(["kind", "method"], sort=False)["ac1"].mean()
    out = r.rename(columns={"mean": "ac1_real", "count": "n"})
    out["ac1_twin"] = t
    return out.reset_index()


def format_table(table: pd.DataFrame, v: dict[str, Any]) -> list[str]:
    """The printed side-by-side table and the verdict line."""
    head = f"{'AC@1 real':>10s} {'AC@1 twin':>10s} {'twin-real':>10s}"
    lines = [f"   {'method':24s} {'n':>3s} {head}"]
    for _, r in table.iterrows():
        mark = "" if abs(r["diff"]) <= TOLERANCE + 1e-12 else "  *"
        lines.append(
            f"   {r['method']:24s} {int(r['n']):3d} {r['ac1_real']:10.3f} {r['ac1_twin']:10.3f} "
            f"{r['diff']:+10.3f}{mark}"
        )
    tau = "undefined" if v["kendall_tau"] is None else f"{v['kendall_tau']:.2f}"
    lines.append(
        f"   Kendall τ of the methods' order: {tau} (bar ≥ {TAU_MIN}); within ±{TOLERANCE:.2f}: "
        f"{v['within_tolerance']}/{v['methods']}; bar {'MET' if v['met'] else 'NOT met'}"
    )
    lines += [f"   not met: {w}" for w in v["why_not"]]
    return lines
