"""The memory study's results as Markdown tables (the README's incident-memory section)."""

from __future__ import annotations

import math


def _f(x: float) -> str:
    return "n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.3f}"


def _cross(title: str, rows: list[dict], prior_rows: list[dict] | None) -> list[str]:
    out = [
        f"**{title}**",
        "",
        "| k | closed set | open set (unknown past τ) | τ (fit on the learning day) "
        "| closed, kinds the library holds | open set, twin prior | queries (unseen kind) |",
        "|---|---|---|---|---|---|---|",
    ]
    for i, r in enumerate(rows):
        p = prior_rows[i]["open"] if prior_rows else float("nan")
        out.append(
            f"| {r['k']} | {_f(r['closed'])} | {_f(r['open'])} ± {_f(r['open_sd'])} "
            f"| {r['threshold']:.3g} | {_f(r['closed_on_seen_kinds'])} | {_f(p)} "
            f"| {r['queries']} ({r['unseen_kind']}) |"
        )
    return [*out, ""]


def markdown(res: dict) -> str:
    """Every table of the study."""
    c = res["counts"]
    lines = [
        "Kinds per library: "
        + "; ".join(f"Nezha {d}: {v}" for d, v in c["nezha"].items())
        + f"; twin: {c['twin']}.",
        "",
    ]
    lines += _cross(
        "Nezha: learn 2023-01-29, test 2023-01-30",
        res["nezha_29_to_30"],
        res["nezha_29_to_30_twin_prior"],
    )
    lines += _cross(
        "Nezha: learn 2023-01-30, test 2023-01-29 (the reverse)",
        res["nezha_30_to_29"],
        res["nezha_30_to_29_twin_prior"],
    )
    dev = res["dev_loo_2023-01-29"]
    lines += [
        "**Nezha 2023-01-29 alone (development day; k per kind drawn, the rest queried; "
        "closed set): from scratch vs twin prior**",
        "",
        "| | k=1 | k=3 | k=5 |",
        "|---|---|---|---|",
        "| from scratch | " + " | ".join(_f(dev["scratch"][f"k{k}"]) for k in (1, 3, 5)) + " |",
        "| twin prior | " + " | ".join(_f(dev["twin_prior"][f"k{k}"]) for k in (1, 3, 5)) + " |",
        "",
        "**Retrieval: the nearest past incident has the query's kind**",
        "",
        "| library → queries | all queries | queries whose kind the library holds |",
        "|---|---|---|",
    ]
    for key, name in (("retrieval_29_to_30", "29 → 30"), ("retrieval_30_to_29", "30 → 29")):
        r = res[key]
        lines.append(
            f"| Nezha {name} | {_f(r['all'])} (n={r['n']}) "
            f"| {_f(r['seen_kinds'])} (n={r['n_seen']}) |"
        )
    pooled = res["retrieval_pooled_loo"]
    lines.append(f"| Nezha both days, leave one out | {_f(pooled['all'])} (n={pooled['n']}) | — |")
    seq = res["sequential_30_after_29"]
    lines.append(
        f"| Nezha 30 in time order, library = 29 + earlier 30 | — "
        f"| {_f(seq['retrieval_seen_kinds'])} (n={seq['n_seen']}) |"
    )
    lines += [
        "",
        f"Growing library (each 2023-01-30 incident recognised from 2023-01-29 plus the day's "
        f"earlier incidents, then added; open set): accuracy {_f(seq['open_accuracy'])} "
        f"(n={seq['n']}).",
        "",
        "**Twin: leave one topology out (learn k per kind on four, test on the fifth; "
        "closed set)**",
        "",
        "| held out | incidents | k=1 | k=3 | k=5 | retrieval |",
        "|---|---|---|---|---|---|",
    ]
    loto = res["twin_loto"]
    for r in loto:
        lines.append(
            f"| {r['held_out']} | {r['n']} | {_f(r['k1'])} | {_f(r['k3'])} | {_f(r['k5'])} "
            f"| {_f(r['retrieval'])} |"
        )
    n = sum(r["n"] for r in loto)
    mean = {key: sum(r[key] * r["n"] for r in loto) / n for key in ("k1", "k3", "k5", "retrieval")}
    lines.append(
        f"| all (weighted) | {n} | {_f(mean['k1'])} | {_f(mean['k3'])} | {_f(mean['k5'])} "
        f"| {_f(mean['retrieval'])} |"
    )
    return "\n".join(lines) + "\n"
