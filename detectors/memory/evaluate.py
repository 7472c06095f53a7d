"""How well a library recognises incidents: few-shot episodes and nearest-incident retrieval.

An episode draws k examples per kind from the support incidents (seeded), fits the
prototypes and classifies the queries. When the queries are the support incidents
themselves (one library), an episode's queries are those not drawn. Scoring is open-set
aware: a query whose kind the support never showed is right only when called `unknown`;
closed-set scoring (no `unknown_distance`) counts it wrong, as nothing else could be right.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np

from detectors.memory.fewshot import UNKNOWN, FewShotKinds, draw_support, nearest
from detectors.memory.signature import Signature


@dataclass(frozen=True)
class EpisodeScore:
    k: int
    accuracy: float  # mean over episodes
    sd: float
    episodes: int
    queries: int  # per episode (mean)
    unseen: int  # queries whose kind the support lacks (mean per episode)


def is_right(predicted: str, truth: str, known: set[str]) -> bool:
    """Right: the true kind, or `unknown` for a kind the support never showed."""
    return predicted == (truth if truth in known else UNKNOWN)


def episodes(
    support: Sequence[Signature],
    support_kinds: Sequence[str],
    queries: Sequence[Signature] | None,
    query_kinds: Sequence[str] | None,
    k: int,
    n: int = 20,
    seed: int = 0,
    model: FewShotKinds | None = None,
) -> EpisodeScore:
    """Mean accuracy over `n` seeded draws of k examples per kind (see the module doc)."""
    base = model or FewShotKinds()
    accs, sizes, unseen = [], [], []
    for e in range(n):
        rng = np.random.default_rng(np.random.SeedSequence([seed, k, e]))
        drawn = draw_support(support_kinds, k, rng)
        sup = [support[i] for i in drawn]
        kinds = [support_kinds[i] for i in drawn]
        if queries is None:
            rest = [i for i in range(len(support)) if i not in set(drawn)]
            q, qk = [support[i] for i in rest], [support_kinds[i] for i in rest]
        else:
            q, qk = list(queries), list(query_kinds or ())
        if not q:
            continue
        m = replace(base)
        predicted = m.fit(sup, kinds).predict(q)
        known = set(kinds)
        accs.append(np.mean([is_right(p, t, known) for p, t in zip(predicted, qk, strict=True)]))
        sizes.append(len(q))
        unseen.append(sum(t not in known for t in qk))
    if not accs:
        return EpisodeScore(k, float("nan"), float("nan"), 0, 0, 0)
    return EpisodeScore(
        k,
        float(np.mean(accs)),
        float(np.std(accs)),
        len(accs),
        round(float(np.mean(sizes))),
        round(float(np.mean(unseen))),
    )


def retrieval(
    library: Sequence[Signature],
    library_kinds: Sequence[str],
    queries: Sequence[Signature] | None = None,
    query_kinds: Sequence[str] | None = None,
    floor: float = 0.5,
) -> tuple[float, int]:
    """(share of queries whose nearest past incident has their kind, queries scored).

    Distances use the library's pooled within-kind spread. With no queries, each library
    incident is a query against the others (leave one out)."""
    scale = FewShotKinds(floor=floor).fit(library, library_kinds).scale_
    loo = queries is None
    q = list(library if loo else queries)
    qk = list(library_kinds if loo else (query_kinds or ()))
    hits = []
    for i, sig in enumerate(q):
        pool = [j for j in range(len(library)) if not (loo and j == i)]
        if not pool:
            continue
        best = nearest(sig, [library[j] for j in pool], scale=scale, top=1)
        hits.append(library_kinds[pool[best[0][0]]] == qk[i])
    return (float(np.mean(hits)) if hits else float("nan")), len(hits)


def open_set_threshold(
    signatures: Sequence[Signature],
    kinds: Sequence[str],
    k: int,
    seed: int = 0,
    n: int = 20,
    model: FewShotKinds | None = None,
) -> float:
    """The unknown-distance that best separates, on labelled incidents, the queries of a
    kind held out of the support (should be `unknown`) from those of kinds in it: every
    kind is held out in turn, k examples per remaining kind drawn `n` times; the threshold
    is the midpoint that maximises the balanced accuracy of the two groups."""
    base = model or FewShotKinds()
    inside, outside = [], []
    labels = list(kinds)
    for held in sorted(set(labels)):
        keep = [i for i, t in enumerate(labels) if t != held]
        for e in range(n):
            rng = np.random.default_rng(np.random.SeedSequence([seed, k, e]))
            drawn = [keep[i] for i in draw_support([labels[j] for j in keep], k, rng)]
            m = replace(base, unknown_distance=None)
            m.fit([signatures[i] for i in drawn], [labels[i] for i in drawn])
            rest = [i for i in range(len(labels)) if i not in set(drawn)]
            d = m.distances([signatures[i] for i in rest]).min(axis=1)
            for i, dist in zip(rest, d, strict=True):
                (outside if labels[i] == held else inside).append(float(dist))
    cands = np.unique(np.concatenate([inside, outside]))
    if cands.size < 2:
        return float(cands[0]) if cands.size else 1.0
    mids = (cands[1:] + cands[:-1]) / 2
    ins, outs = np.array(inside), np.array(outside)
    groups = [(g, sign) for g, sign in ((ins, 1), (outs, -1)) if g.size]
    score = [
        np.mean([np.mean(g <= t) if sign > 0 else np.mean(g > t) for g, sign in groups])
        for t in mids
    ]
    return float(mids[int(np.argmax(score))])
