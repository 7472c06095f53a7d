"""The impact study's files: the tidy table, the claims table, plots and a Markdown summary.

Written for a reader who was not there: the summary says what was run (families, seeds,
durations), how each figure is aggregated and its interval computed, the claims table with
verdicts, the context figures, a per-family breakdown and every run that failed.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from experiments.impact.claim_defs import CLAIM_KEYS, CLAIMS
from experiments.impact.explain import observations
from experiments.impact.study import suite_parts

TABLE = "impact_runs"
CLAIMS_FILE = "impact_claims"
SUMMARY = "impact_summary.md"
CLAIMS_PLOT = "impact_claims.png"
FAMILY_PLOT = "impact_by_scenario.png"


def write_tables(table: pd.DataFrame, claims: pd.DataFrame, fam: pd.DataFrame, out: Path):
    """Tidy runs and claims as Parquet and CSV; the per-family breakdown as CSV."""
    out.mkdir(parents=True, exist_ok=True)
    table.to_parquet(out / f"{TABLE}.parquet", index=False)
    table.to_csv(out / f"{TABLE}.csv", index=False)
    claims.to_parquet(out / f"{CLAIMS_FILE}.parquet", index=False)
    claims.to_csv(out / f"{CLAIMS_FILE}.csv", index=False)
    fam.to_csv(out / "impact_by_scenario.csv", index=False)


def _ranges(key: str) -> tuple[float, float] | None:
    claim = next(c for c in CLAIMS if c.key == key)
    return None if claim.lo is None else (claim.lo, claim.hi)


def plot_claims(claims: pd.DataFrame, path: Path) -> None:
    """Per claim: the paired estimate with its 95% CI beside the claimed range (shaded)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = claims[claims["role"] == "claim"].reset_index(drop=True)
    fig, axes = plt.subplots(len(rows), 1, figsize=(8.0, 1.25 * len(rows) + 0.8))
    for ax, (_, r) in zip(np.atleast_1d(axes), rows.iterrows(), strict=True):
        scale = 100.0
        lo, hi = _ranges(r["key"])
        ax.axvspan(
            min(lo, hi) * scale - 0.4,
            max(lo, hi) * scale + 0.4,
            color="tab:green",
            alpha=0.25,
            label="claimed",
        )
        level = next(c.kind for c in CLAIMS if c.key == r["key"]) == "level"
        if not level:
            ax.axvline(0.0, color="grey", lw=0.8)
        est, clo, chi = (r[c] * scale for c in ("estimate", "ci_low", "ci_high"))
        if np.isfinite(est):
            ax.errorbar(
                [est], [0], xerr=[[est - clo], [chi - est]], fmt="o", color="tab:blue", capsize=4
            )
        unit = "% (AI level)" if level else "% change, AI vs traditional"
        ax.set_yticks([])
        ax.set_title(f"{r['claim']}: {r['verdict']}", fontsize=9, loc="left")
        ax.set_xlabel(unit, fontsize=8)
        ax.tick_params(labelsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_families(fam: pd.DataFrame, path: Path) -> None:
    """Per claim, each family's estimate with its 95% CI (seeds resampled within it)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    families = list(dict.fromkeys(fam["family"]))
    keys = [k for k in CLAIM_KEYS if k in set(fam["key"])]
    fig, axes = plt.subplots(
        1, len(keys), figsize=(3.1 * len(keys), 0.32 * len(families) + 1.6), sharey=True
    )
    y = np.arange(len(families))
    for ax, key in zip(np.atleast_1d(axes), keys, strict=True):
        sel = fam[fam["key"] == key].set_index("family").reindex(families)
        est = sel["estimate"].to_numpy(float) * 100
        lo = sel["ci_low"].to_numpy(float) * 100
        hi = sel["ci_high"].to_numpy(float) * 100
        ok = np.isfinite(est)
        err = np.vstack([np.clip(est - lo, 0, None), np.clip(hi - est, 0, None)])
        ax.errorbar(est[ok], y[ok], xerr=err[:, ok], fmt="o", ms=3, capsize=2)
        rng = _ranges(key)
        if rng is not None:
            ax.axvspan(min(rng) * 100 - 0.4, max(rng) * 100 + 0.4, color="tab:green", alpha=0.2)
        if key != "slo_adherence":
            ax.axvline(0.0, color="grey", lw=0.8)
        label = next(c.label for c in CLAIMS if c.key == key)
        ax.set_title(label + (" (AI, %)" if key == "slo_adherence" else " (%)"), fontsize=8)
        ax.tick_params(labelsize=7)
        lim = np.nanmax(np.abs(np.r_[est[ok], lo[ok], hi[ok]])) if ok.any() else 100
        if key != "slo_adherence" and np.isfinite(lim) and lim > 300:
            ax.set_xscale("symlog", linthresh=100)  # several-fold changes beside small ones
        elif key != "slo_adherence" and np.isfinite(lim) and lim > 0:
            ax.set_xlim(-lim * 1.05, lim * 1.05)
    first = np.atleast_1d(axes)[0]
    first.set_yticks(y, families)
    first.invert_yaxis()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _fmt(key: str, kind: str, x: float) -> str:
    if not np.isfinite(x):
        return "n/a"
    if kind == "change":
        return f"{x:+.1%}"
    if kind == "diff":
        return f"{x * 100:+.1f} pt"
    return f"{x:.1%}"


def _level(key: str, x: float) -> str:
    if not np.isfinite(x):
        return "n/a"
    if key in ("slo_adherence", "slo_adherence_diff", "right_remedy_first", "right_remedy_ever"):
        return f"{x:.1%}"
    if key in ("mttr", "mttr_stack", "mttd", "mtti", "time_to_right_remedy"):
        return f"{x / 60:.1f} min"
    if key == "operating_cost":
        return f"${x:,.0f}"
    if key == "efficiency":
        return f"{x:,.0f}"
    return f"{x:,.2f}"


def summary_markdown(
    table: pd.DataFrame,
    claims: pd.DataFrame,
    fam: pd.DataFrame,
    *,
    seeds: int,
    time_scale: float,
    wall_s: float | None,
    command: str,
    suite: str = "classic",
    controls: pd.DataFrame | None = None,
) -> str:
    """The study in one page: setup, method, claims with verdicts, context, families
    (and, for the remediable suite, the controls no action ends, apart)."""
    FAMILIES = suite_parts(suite)[0]
    kinds = {c.key: c.kind for c in CLAIMS}
    fams = list(dict.fromkeys(table["family"]))
    errors = table[table["error"].notna()] if "error" in table else table.iloc[0:0]
    lines = [
        "# Impact study: traditional vs AI-driven operations in the twin",
        "",
        f"`{command}`: {len(fams)} scenario families x {seeds} seeds x 2 modes = "
        f"{len(table)} rehearsals (flow fidelity, time scale {time_scale:g}"
        + (f", wall {wall_s / 60:.1f} min" if wall_s is not None else "")
        + f"); {int(claims['pairs'].iloc[0])} complete pairs.",
        "",
        "Each pair runs the same scenario and seed under both modes: the same traffic, faults",
        "and on-call engineer. Figures are ratios of pooled sums over the pairs (levels for SLO",
        "adherence); 95% CIs come from a bootstrap resampling whole pairs within each family",
        "(2,000 resamples). A verdict compares the CI with the claimed range: *exceed* (all of",
        "it better), *fall short* (all of it worse), *match* (overlap). See",
        "`experiments/impact_claims.py` for why, and `impact_suite.py` for the families.",
        "",
        "## Claims",
        "",
        "| claim | claimed | traditional | AI | estimate [95% CI] | verdict |",
        "|---|---|---|---|---|---|",
    ]
    for _, r in claims[claims["role"] == "claim"].iterrows():
        k = kinds[r["key"]]
        lines.append(
            f"| {r['claim']} | {r['claimed']} | {_level(r['key'], r['traditional'])} | "
            f"{_level(r['key'], r['ai'])} | {_fmt(r['key'], k, r['estimate'])} "
            f"[{_fmt(r['key'], k, r['ci_low'])}, {_fmt(r['key'], k, r['ci_high'])}] | "
            f"**{r['verdict']}** |"
        )
    lines += ["", "### Why", ""]
    for _, r in claims[claims["role"] == "claim"].iterrows():
        lines.append(f"- **{r['claim']}** ({r['definition']}): {r['statement']}")
    lines += [
        "",
        "## Context (other readings, no verdict)",
        "",
        "| figure | definition | traditional | AI | estimate [95% CI] |",
        "|---|---|---|---|---|",
    ]
    for _, r in claims[claims["role"] == "context"].iterrows():
        k = kinds[r["key"]]
        lines.append(
            f"| {r['claim']} | {r['definition']} | {_level(r['key'], r['traditional'])} | "
            f"{_level(r['key'], r['ai'])} | {_fmt(r['key'], k, r['estimate'])} "
            f"[{_fmt(r['key'], k, r['ci_low'])}, {_fmt(r['key'], k, r['ci_high'])}] |"
        )
    lines += ["", "## Per scenario family (estimate, 95% CI over its seeds)", ""]
    keys = [k for k in CLAIM_KEYS if k in set(fam["key"])]
    labels = {c.key: c.label for c in CLAIMS}
    lines.append("| family | topology | exercises | " + " | ".join(labels[k] for k in keys) + " |")
    lines.append("|---|---|---|" + "---|" * len(keys))
    for f in fams:
        cells = []
        for k in keys:
            sel = fam[(fam["family"] == f) & (fam["key"] == k)]
            if sel.empty:
                cells.append("n/a")
                continue
            r = sel.iloc[0]
            cells.append(
                f"{_fmt(k, kinds[k], r['estimate'])} "
                f"[{_fmt(k, kinds[k], r['ci_low'])}, {_fmt(k, kinds[k], r['ci_high'])}]"
            )
        spec = FAMILIES.get(f)
        topos = ", ".join(sorted(set(table.loc[table["family"] == f, "topology"].astype(str))))
        lines.append(
            f"| {f} | {topos} | {spec.covers if spec else ''} | " + " | ".join(cells) + " |"
        )
    if controls is not None and len(controls):
        lines += [
            "",
            "## Controls: faults no action ends (reported apart, not in the claims above)",
            "",
            "| figure | traditional | AI | estimate [95% CI] |",
            "|---|---|---|---|",
        ]
        for _, r in controls.iterrows():
            if r["key"] not in ("mttr", "pages_per_incident", "slo_adherence", "cost"):
                continue
            k = kinds[r["key"]]
            lines.append(
                f"| {r['claim']} | {_level(r['key'], r['traditional'])} | "
                f"{_level(r['key'], r['ai'])} | {_fmt(r['key'], k, r['estimate'])} "
                f"[{_fmt(r['key'], k, r['ci_low'])}, {_fmt(r['key'], k, r['ci_high'])}] |"
            )
    lines += ["", "## Observations", ""]
    lines += [f"- {line}" for line in observations(table)] or ["None."]
    lines += ["", "## Runs that failed", ""]
    if errors.empty:
        lines.append("None.")
    else:
        lines.append(
            f"{len(errors)} rehearsals raised an error; their pairs are left out of every figure:"
        )
        lines.append("")
        for _, r in errors.iterrows():
            lines.append(f"- {r['family']} seed {r['seed']} {r['mode']}: `{r['error']}`")
    lines += [
        "",
        "## Files",
        "",
        f"`{TABLE}.parquet`/`.csv` (one row per family x seed x mode, every stack figure), "
        f"`{CLAIMS_FILE}.parquet`/`.csv`, `impact_by_scenario.csv`, `{CLAIMS_PLOT}` (paired "
        f"estimates with CIs beside the claims), `{FAMILY_PLOT}` (per family).",
        "",
    ]
    return "\n".join(lines)


def write_all(
    table: pd.DataFrame,
    claims: pd.DataFrame,
    fam: pd.DataFrame,
    out: Path,
    *,
    seeds: int,
    time_scale: float,
    wall_s: float | None,
    command: str,
    suite: str = "classic",
    controls: pd.DataFrame | None = None,
) -> list[Path]:
    """Every file of the study; returns their paths."""
    write_tables(table, claims, fam, out)
    plot_claims(claims, out / CLAIMS_PLOT)
    plot_families(fam, out / FAMILY_PLOT)
    text = summary_markdown(
        table,
        claims,
        fam,
        seeds=seeds,
        time_scale=time_scale,
        wall_s=wall_s,
        command=command,
        suite=suite,
        controls=controls,
    )
    (out / SUMMARY).write_text(text)
    names = [
        f"{TABLE}.parquet",
        f"{TABLE}.csv",
        f"{CLAIMS_FILE}.parquet",
        f"{CLAIMS_FILE}.csv",
        "impact_by_scenario.csv",
        CLAIMS_PLOT,
        FAMILY_PLOT,
        SUMMARY,
    ]
    return [out / n for n in names]
