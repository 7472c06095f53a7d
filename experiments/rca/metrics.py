"""Service-level RCA metrics, as in RCAEval and the RCA literature.

For one case with a single root service, a method's ranking gives the root's rank r
(1-based; None when the root is absent from the ranking):

- AC@k = 1 if r ≤ k else 0; averaged over cases it is the share found in the top k.
- Avg@5 = (AC@1 + … + AC@5) / 5, which rewards a root ranked high without demanding first.
- MRR = mean of 1/r (0 when absent).
- MTTI (mean time to identify): from the fault's true start to the moment a correct top-1
  is in hand. The twin's telemetry is complete at every instant, so the time an analysis
  takes is its compute: MTTI = detection delay (inferred start − true start; 0 when the
  true start is given) + the method's wall time, counted only for cases whose top-1 is
  right (a wrong top-1 never identifies the incident; their share is 1 − AC@1).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
import pandas as pd

K_MAX = 5


def dedupe_services(ranking: Iterable[str]) -> list[str]:
    """First occurrence of each service, order kept (metric-level rankings fold to this)."""
    return list(dict.fromkeys(ranking))


def rank_of(ranking: Sequence[str], root: str | Sequence[str]) -> int | None:
    """1-based rank of the root among distinct services (of the best-ranked one when a
    case has several acceptable roots, e.g. the two ends of a broken link), None if absent."""
    services = dedupe_services(ranking)
    roots = (root,) if isinstance(root, str) else tuple(root)
    ranks = [services.index(r) + 1 for r in roots if r in services]
    return min(ranks) if ranks else None


def ac_at(rank: int | None, k: int) -> float:
    return 1.0 if rank is not None and rank <= k else 0.0


def avg_at(rank: int | None, k: int = K_MAX) -> float:
    return float(np.mean([ac_at(rank, j) for j in range(1, k + 1)]))


def reciprocal_rank(rank: int | None) -> float:
    return 0.0 if rank is None else 1.0 / rank


def case_metrics(rank: int | None) -> dict[str, float]:
    """AC@1..AC@5, Avg@5 and the reciprocal rank of one case."""
    out = {f"ac{k}": ac_at(rank, k) for k in range(1, K_MAX + 1)}
    out["avg5"] = avg_at(rank)
    out["rr"] = reciprocal_rank(rank)
    return out


def mtti(delay_s: float | None, wall_s: float, rank: int | None) -> float | None:
    """Time to identify for one case: None when undetected or the top-1 is wrong."""
    if delay_s is None or rank != 1:
        return None
    return float(delay_s) + float(wall_s)


def summarise(rows: pd.DataFrame, by: Sequence[str] = ("method", "start")) -> pd.DataFrame:
    """Mean AC@1, AC@3, Avg@5, MRR and MTTI (over identified cases) per group."""
    grouped = rows.groupby(list(by), sort=False)
    out = grouped.agg(
        cases=("case", "count"),
        ac1=("ac1", "mean"),
        ac3=("ac3", "mean"),
        avg5=("avg5", "mean"),
        mrr=("rr", "mean"),
        mtti_s=("mtti_s", "mean"),
    )
    return out.reset_index()
