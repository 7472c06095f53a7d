"""The verdict of `validate-change` as Markdown and self-contained HTML, with its plots.

The Markdown links the PNGs written beside it; the HTML embeds the same PNGs as base64, so
it can be attached to a pull request or a pipeline run as one file. Tables and figures come
straight from `validate_change`'s result; nothing is recomputed here.
"""

from __future__ import annotations

import base64
import html
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, is_dataclass
from pathlib import Path
from typing import Any

import pandas as pd

EXIT_CODES = (
    ("0", "safe (and risky, unless --strict)"),
    ("2", "bad input: a base scenario or change file error (path and value named)"),
    ("3", "unsafe: the change breaks the steady-state hypothesis the base keeps"),
    ("4", "risky, with --strict"),
    ("130", "interrupted"),
)
STATUS_ORDER = {"unsafe": 0, "risky": 1, "improved": 2, "same": 3}
MAX_DECIDING = 8
MAX_TIMELINES = 4


def _fmt_ci(m: float, lo: float, hi: float, fmt: str, n: int = 2) -> str:
    """`m [lo, hi]`; one seed has no interval, only its difference."""
    if any(math.isnan(v) for v in (m, lo, hi)):
        return "n/a"
    if n < 2:
        return f"{m:{fmt}}"
    return f"{m:{fmt}} [{lo:{fmt}}, {hi:{fmt}}]"


def comparison_table(result: Mapping[str, Any]) -> pd.DataFrame:
    """One row per scenario, worst first: the figures the verdict rests on."""
    rows = sorted(result["comparison"], key=lambda r: (STATUS_ORDER[r["status"]], r["case"]))
    out = []
    for r in rows:
        n = r["seeds"]
        out.append(
            {
                "scenario": r["case"],
                "status": r["status"],
                "held base": f"{r['held_base']}/{n}",
                "held change": f"{r['held_change']}/{n}",
                "Δ adherence": _fmt_ci(
                    r["d_adherence"], r["d_adherence_lo"], r["d_adherence_hi"], "+.1%", n
                ),
                "p99 ms base→change": f"{r['p99_ms_base']:.0f}→{r['p99_ms_change']:.0f}",
                "Δ p99 ms": _fmt_ci(r["d_p99_ms"], r["d_p99_ms_lo"], r["d_p99_ms_hi"], "+.0f", n),
                "burn base→change": f"{r['burn_base']:.2f}→{r['burn_change']:.2f}",
                "Δ burn": _fmt_ci(r["d_burn"], r["d_burn_lo"], r["d_burn_hi"], "+.2f", n),
                "Δ replica-h": _fmt_ci(
                    r["d_replica_hours"],
                    r["d_replica_hours_lo"],
                    r["d_replica_hours_hi"],
                    "+.2f",
                    n,
                ),
            }
        )
    return pd.DataFrame(out)


def _md_table(df: pd.DataFrame) -> str:
    if df.empty:
        return "_(none)_\n"
    head = "| " + " | ".join(df.columns) + " |"
    sep = "|" + "|".join("---" for _ in df.columns) + "|"
    body = ["| " + " | ".join(str(v) for v in row) + " |" for row in df.itertuples(index=False)]
    return "\n".join([head, sep, *body]) + "\n"


def _deciding_lines(result: Mapping[str, Any]) -> list[str]:
    lines = list(result["deciding"][:MAX_DECIDING])
    more = len(result["deciding"]) - MAX_DECIDING
    if more > 0:
        lines.append(f"... and {more} more (see the table)")
    return lines


def canary_table(result: Mapping[str, Any]) -> pd.DataFrame:
    rows = []
    for c in result["canary"]:
        t = c["mean_time_to_rollback_s"]
        w = c["max_rollback_weight"]
        rows.append(
            {
                "rehearsed version": c["label"],
                "caught before 100%": f"{c['caught_before_full']}/{c['seeds']}",
                "rolled back": f"{c['rolled_back']}/{c['seeds']}",
                "time to rollback": "n/a" if t is None else f"{t:.0f} s",
                "weight at rollback": "n/a" if w is None else f"{w:.0%}",
                "30-day budget burned": f"{c['budget_30d']:.4%}",
                "big-bang deploy would burn": f"{c['big_bang_budget_30d']:.4%}",
            }
        )
    return pd.DataFrame(rows)


def search_table(search: Mapping[str, Any], top: int = 10) -> pd.DataFrame:
    rows = []
    shown = list(search["ranked"][:top])
    for extra in (search["current"], search.get("base_setting")):
        if extra is not None and extra not in shown:
            shown.append(extra)
    for r in shown:
        tag = " (current)" if r["current"] else " (base)" if r.get("base") else ""
        rows.append(
            {
                "rank": search["ranked"].index(r) + 1,
                "setting": r["label"] + tag,
                "metastable runs": f"{r['metastable']}/{r['runs']}",
                "hypothesis failed": f"{r['failed']}/{r['runs']}",
                "mean burn": f"{r['burn']:.2f}",
                "mean entry p99 ms": f"{r['p99_ms']:.0f}",
                "failing scenarios": ", ".join(r["failing_cases"]) or "-",
            }
        )
    return pd.DataFrame(rows)


# -- plots --------------------------------------------------------------------------------
def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_differences(result: Mapping[str, Any], path: Path) -> bool:
    """Paired differences (change − base) with 95% CIs for every scenario that moved."""
    rows = [r for r in result["comparison"] if r["status"] != "same"]
    if not rows:
        return False
    rows.sort(key=lambda r: (STATUS_ORDER[r["status"]], r["case"]))
    rows = rows[:30]
    plt = _plt()
    colors = {"unsafe": "#c0392b", "risky": "#e67e22", "improved": "#27ae60", "same": "#7f8c8d"}
    fig, axes = plt.subplots(1, 2, figsize=(11, 0.32 * len(rows) + 1.6), sharey=True)
    y = list(range(len(rows)))[::-1]
    for ax, metric, title in (
        (axes[0], "burn", "Δ error-budget burn (budgets)"),
        (axes[1], "p99_ms", "Δ entry p99 (ms)"),
    ):
        for yi, r in zip(y, rows, strict=True):
            m, lo, hi = r[f"d_{metric}"], r[f"d_{metric}_lo"], r[f"d_{metric}_hi"]
            ax.errorbar(m, yi, xerr=[[m - lo], [hi - m]], fmt="o", color=colors[r["status"]])
        ax.axvline(0, color="black", lw=0.8)
        ax.set_title(title, fontsize=10)
        if metric == "burn" and max(abs(r["d_burn"]) for r in rows) > 10:
            ax.set_xscale("symlog", linthresh=1.0)
    axes[0].set_yticks(y, [f"{r['case']} ({r['status']})" for r in rows], fontsize=8)
    fig.suptitle(f"{result['change']} vs {result['base']}: paired differences, 95% CI", fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def plot_timelines(result: Mapping[str, Any], path: Path) -> bool:
    """Entry p99 and error ratio per minute, base vs change (first seed), for the scenarios
    that decide the verdict (else steady state), the trigger shaded."""
    order = [r for r in result["comparison"] if r["status"] in ("unsafe", "risky")]
    order.sort(key=lambda r: (STATUS_ORDER[r["status"]], -r["d_burn"]))
    names = [r["case"] for r in order[:MAX_TIMELINES]] or ["steady-state"]
    runs = result["runs"]
    if not runs:
        return False
    seed = min(r["seed"] for r in runs)
    timing = result["timing"]
    plt = _plt()
    fig, axes = plt.subplots(2, len(names), figsize=(4.2 * len(names), 5.2), squeeze=False)
    for j, name in enumerate(names):
        for system, color in (("base", "#2c3e50"), ("change", "#c0392b")):
            run = next(
                (
                    r
                    for r in runs
                    if r["case"] == name and r["system"] == system and r["seed"] == seed
                ),
                None,
            )
            if run is None:
                continue
            minutes = range(len(run["p99_by_minute"]))
            axes[0, j].plot(minutes, run["p99_by_minute"], color=color, label=system)
            axes[1, j].plot(minutes, run["err_by_minute"], color=color, label=system)
        for ax in axes[:, j]:
            if name != "steady-state":
                ax.axvspan(
                    timing.trigger_at / 60, timing.trigger_end / 60, color="#f1c40f", alpha=0.25
                )
            ax.axvline(timing.warmup_s / 60, color="grey", lw=0.6, ls=":")
        axes[0, j].set_title(name, fontsize=9)
        axes[0, j].set_yscale("log")
        axes[1, j].set_xlabel("minute")
    axes[0, 0].set_ylabel("entry p99 (ms)")
    axes[1, 0].set_ylabel("entry error ratio")
    axes[0, 0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def plot_canary(result: Mapping[str, Any], path: Path) -> bool:
    """The service's p99 per minute through each rehearsal (first seed), with the weight."""
    if not result["canary"]:
        return False
    plt = _plt()
    n = len(result["canary"])
    fig, axes = plt.subplots(1, n, figsize=(5.2 * n, 3.6), squeeze=False)
    for ax, c in zip(axes[0], result["canary"], strict=True):
        run = c["runs"][0]
        minutes = range(len(run["p99_by_minute"]))
        lines = ax.step(
            minutes, run["p99_by_minute"], where="post", color="#2c3e50", label="service p99"
        )
        if run.get("threshold_p99_ms") is not None:
            lines.append(
                ax.axhline(run["threshold_p99_ms"], color="#7f8c8d", ls=":", label="criterion")
            )
        ax.set_ylabel("p99 per minute (ms)")
        ax.set_xlabel("minute")
        twin = ax.twinx()
        lines += twin.step(
            minutes, run["weight_by_minute"], where="post", color="#e67e22", label="weight"
        )
        twin.set_ylim(0, 1.05)
        twin.set_ylabel("canary weight")
        if run["rollback_at_s"] is not None:
            lines.append(
                ax.axvline(run["rollback_at_s"] / 60, color="#c0392b", ls="--", label="rollback")
            )
        ax.set_title(c["label"], fontsize=9)
        ax.legend(handles=lines, loc="upper right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def plot_search(search: Mapping[str, Any] | None, path: Path) -> bool:
    """Every candidate: mean burn against metastable runs; the recommendation marked."""
    if not search:
        return False
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6.5, 4))
    rows = search["ranked"]
    ax.scatter(
        [r["burn"] for r in rows],
        [r["metastable"] for r in rows],
        c=["#27ae60" if r["metastable"] == 0 else "#c0392b" for r in rows],
        alpha=0.7,
    )
    best, cur = search["best"], search["current"]
    ax.scatter(
        [best["burn"]],
        [best["metastable"]],
        marker="*",
        s=250,
        color="gold",
        edgecolor="k",
        label="recommended",
    )
    ax.scatter([cur["burn"]], [cur["metastable"]], marker="X", s=120, color="k", label="current")
    ax.set_xscale("symlog", linthresh=1.0)
    ax.set_xlabel("mean error-budget burn (budgets)")
    ax.set_ylabel("metastable runs")
    ax.set_title(f"settings for calls to {search['service']}", fontsize=10)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


# -- documents ----------------------------------------------------------------------------
def _sections(result: Mapping[str, Any], wall_s: float | None) -> list[tuple[str, str, Any]]:
    """(kind, title, payload) blocks both renderers walk: 'text', 'list', 'table', 'figure'."""
    t = result["timing"]
    verdict = result["verdict"].upper()
    blocks: list[tuple[str, str, Any]] = []
    blocks.append(("verdict", verdict, _deciding_lines(result)))
    ran = (
        f"Suite **{result['suite']}**: {len(result['cases'])} scenarios (steady state, a "
        f"{t.flash_multiplier:g}x flash crowd, and fault kinds on "
        f"{', '.join(result['critical']) or 'no service'}), {result['seeds']} paired seeds each, "
        f"base and change on identical traffic, flow fidelity, {t.duration / 60:.0f} min per run "
        f"(warm-up {t.warmup_s / 60:.0f} min not scored; trigger at {t.trigger_at / 60:.0f} min "
        f"for {t.trigger_s / 60:.0f} min; the hypothesis is every SLO window good in the "
        f"{t.before_s / 60:.0f} min before the trigger and the last {t.after_s / 60:.0f} min)."
    )
    if wall_s is not None:
        ran += f" Wall time {wall_s:.0f} s."
    if not result["comparison"]:
        ran = "The change is a deploy plan only: nothing for the suite to compare."
    blocks.append(("text", "What ran", ran))
    if result["comparison"]:
        blocks.append(
            ("table", "Scenarios (change − base, mean [95% CI])", comparison_table(result))
        )
        blocks.append(("figure", "Paired differences", "differences.png"))
        blocks.append(("figure", "Deciding scenarios over time (first seed)", "timelines.png"))
    if result["findings"]:
        df = pd.DataFrame(
            [
                {
                    "call": f["edge"],
                    "timeout ms": f"{f['timeout_ms']:g}",
                    "callee p99 ms (steady)": f"{f['p99_ms']:.2f}",
                    "introduced by the change": "yes" if f["new"] else "no (already in base)",
                }
                for f in result["findings"]
            ]
        )
        blocks.append(("table", "Timeouts below their callee's p99", df))
    if result["canary"]:
        blocks.append(("table", "Canary rehearsal", canary_table(result)))
        blocks.append(("figure", "Canary rehearsal (first seed)", "canary.png"))
    search = result.get("search")
    if search:
        best = search["best"]
        text = (
            f"Calls to **{search['service']}** (steady p99 {search['service_p99_ms']:.1f} ms), "
            f"{len(search['ranked'])} settings × {len(search['cases'])} scenarios "
            f"({', '.join(search['cases'])}) × {search['seeds']} seeds. Recommended: "
            f"**{best['label']}**: {best['metastable']}/{best['runs']} metastable runs, "
            f"{best['failed']}/{best['runs']} with the hypothesis failing, mean burn "
            f"{best['burn']:.2f}; the current setting ({search['current']['label']}): "
            f"{search['current']['metastable']}/{search['current']['runs']} metastable."
        )
        blocks.append(("text", "Resilience settings search", text))
        blocks.append(("table", "Best settings", search_table(search)))
        blocks.append(("figure", "Search", "search.png"))
    codes = pd.DataFrame([{"exit code": c, "meaning": m} for c, m in EXIT_CODES])
    blocks.append(("table", "Exit codes", codes))
    return blocks


def _markdown(result: Mapping[str, Any], blocks, figures: set[str]) -> str:
    out = [f"# Change validation: {result['change']} on {result['base']}\n"]
    if result.get("description"):
        out.append(result["description"].strip() + "\n")
    for kind, title, payload in blocks:
        if kind == "verdict":
            out.append(f"## Verdict: **{title}**\n")
            out += [f"- {line}" for line in payload] + [""]
        elif kind == "text":
            out.append(f"## {title}\n\n{payload}\n")
        elif kind == "table":
            out.append(f"## {title}\n\n{_md_table(payload)}")
        elif kind == "figure" and payload in figures:
            out.append(f"![{title}]({payload})\n")
    return "\n".join(out)


def _html(result: Mapping[str, Any], blocks, out_dir: Path, figures: set[str]) -> str:
    esc = html.escape
    colors = {"SAFE": "#27ae60", "RISKY": "#e67e22", "UNSAFE": "#c0392b"}
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'>",
        f"<title>{esc(result['change'])}: {esc(result['verdict'])}</title><style>",
        "body{font-family:system-ui,sans-serif;max-width:1200px;margin:2em auto;color:#222}",
        "table{border-collapse:collapse;font-size:12px;margin:.5em 0 1.5em}",
        "td,th{border:1px solid #ccc;padding:3px 6px;text-align:left}th{background:#f4f4f4}",
        ".verdict{font-size:1.6em;color:#fff;padding:.2em .6em;border-radius:4px}",
        "img{max-width:100%}</style></head><body>",
        f"<h1>Change validation: {esc(result['change'])} on {esc(result['base'])}</h1>",
    ]
    if result.get("description"):
        parts.append(f"<p>{esc(result['description'])}</p>")
    for kind, title, payload in blocks:
        if kind == "verdict":
            color = colors.get(title, "#555")
            parts.append(
                f"<p><span class='verdict' style='background:{color}'>{esc(title)}</span></p>"
            )
            parts.append("<ul>" + "".join(f"<li>{esc(line)}</li>" for line in payload) + "</ul>")
        elif kind == "text":
            text = esc(payload).replace("**", "")
            parts.append(f"<h2>{esc(title)}</h2><p>{text}</p>")
        elif kind == "table":
            parts.append(f"<h2>{esc(title)}</h2>" + payload.to_html(index=False, border=0))
        elif kind == "figure" and payload in figures:
            data = base64.b64encode((out_dir / payload).read_bytes()).decode("ascii")
            parts.append(
                f"<h3>{esc(title)}</h3><img alt='{esc(title)}' src='data:image/png;base64,{data}'>"
            )
    parts.append("</body></html>")
    return "\n".join(parts)


def _jsonable(value: Any) -> Any:
    if is_dataclass(value) and not isinstance(value, type):
        return asdict(value)
    if isinstance(value, float) and not math.isfinite(value):
        return None
    raise TypeError(f"not serialisable: {type(value).__name__}")


def write_report(
    result: Mapping[str, Any], out: Path, wall_s: float | None = None
) -> dict[str, Path]:
    """verdict.md, verdict.html (self-contained), the PNGs, validation.json and CSVs."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    figures = set()
    for name, fn in (
        ("differences.png", lambda p: plot_differences(result, p)),
        ("timelines.png", lambda p: plot_timelines(result, p)),
        ("canary.png", lambda p: plot_canary(result, p)),
        ("search.png", lambda p: plot_search(result.get("search"), p)),
    ):
        if fn(out / name):
            figures.add(name)
    blocks = _sections(result, wall_s)
    paths = {"markdown": out / "verdict.md", "html": out / "verdict.html"}
    paths["markdown"].write_text(_markdown(result, blocks, figures), encoding="utf-8")
    paths["html"].write_text(_html(result, blocks, out, figures), encoding="utf-8")
    paths["json"] = out / "validation.json"
    slim = {k: v for k, v in result.items() if k != "runs"}
    paths["json"].write_text(json.dumps(slim, indent=1, default=_jsonable), encoding="utf-8")
    if result["runs"]:
        runs = pd.DataFrame(
            [
                {
                    k: v
                    for k, v in r.items()
                    if not k.endswith("_by_minute") and k != "service_p99_ms"
                }
                for r in result["runs"]
            ]
        )
        paths["runs"] = out / "runs.csv"
        runs.to_csv(paths["runs"], index=False)
        comp = pd.DataFrame(result["comparison"])
        comp["reasons"] = comp["reasons"].map("; ".join)
        paths["comparison"] = out / "comparison.csv"
        comp.to_csv(paths["comparison"], index=False)
    return paths


def summary_lines(result: Mapping[str, Any], rows: Sequence[str] = ()) -> list[str]:
    """What the command prints: the verdict, what decides it, the canary and the search."""
    lines = [f"verdict: {result['verdict'].upper()}"]
    lines += [f"  {line}" for line in _deciding_lines(result)]
    counts: dict[str, int] = {}
    for r in result["comparison"]:
        counts[r["status"]] = counts.get(r["status"], 0) + 1
    if counts:
        lines.append(
            "scenarios: " + ", ".join(f"{counts[s]} {s}" for s in STATUS_ORDER if s in counts)
        )
    for c in result["canary"]:
        t = c["mean_time_to_rollback_s"]
        lines.append(
            f"canary ({c['label']}): caught before 100% in {c['caught_before_full']}/{c['seeds']} "
            f"seeds"
            + (
                ""
                if t is None
                else f", rollback after {t:.0f} s at weight {c['max_rollback_weight']:.0%}"
            )
            + f"; {c['budget_30d']:.4%} of a 30-day error budget (big bang: "
            f"{c['big_bang_budget_30d']:.4%})"
        )
    search = result.get("search")
    if search:
        best = search["best"]
        lines.append(
            f"recommended for calls to {search['service']}: {best['label']} "
            f"({best['metastable']}/{best['runs']} metastable, mean burn {best['burn']:.2f}; "
            f"current: {search['current']['metastable']}/{search['current']['runs']} metastable)"
        )
    lines += list(rows)
    return lines
