"""The incident-memory study: few-shot kind recognition and retrieval on Nezha (learn on one
day, test on the other), twin leave-one-topology-out, and twin-pretrained against
from-scratch on the real data.

Settings: the signature's windows and features, the spread floor and equal weights were
chosen on Nezha 2023-01-29 (the development day) only. The open-set distance is fitted on
the library one learns from (every kind held out in turn): on 2023-01-29 when testing
2023-01-30, on 2023-01-30 for the reverse, so no test day chooses its own settings.

    python -m experiments.memory.study --out results/memory [--libraries DIR]

writes the libraries (SQLite) unless given, `results.json` and `tables.md`.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from detectors.memory import evaluate as ev
from detectors.memory.fewshot import FewShotKinds, pooled_spread
from detectors.memory.library import Incident
from experiments.memory.libraries import (
    nezha_incidents,
    read_library,
    twin_incidents,
    write_library,
)
from experiments.rca.cases import TOPOLOGIES

DAYS = ("2023-01-29", "2023-01-30")
KS = (1, 3, 5)
EPISODES = 20


def _sk(incs: Sequence[Incident]) -> tuple[list, list[str]]:
    return [i.signature for i in incs], [i.kind for i in incs]


def cross_day(
    train: Sequence[Incident], test: Sequence[Incident], prior: np.ndarray | None = None
) -> list[dict]:
    """Few-shot accuracy learning on `train`, testing on `test`, closed and open set."""
    s, sk = _sk(train)
    q, qk = _sk(test)
    rows = []
    for k in KS:
        base = FewShotKinds(prior_scale=prior)
        closed = ev.episodes(s, sk, q, qk, k, EPISODES, 0, base)
        threshold = ev.open_set_threshold(s, sk, k, 0, EPISODES, base)
        open_model = FewShotKinds(unknown_distance=threshold, prior_scale=prior)
        opened = ev.episodes(s, sk, q, qk, k, EPISODES, 0, open_model)
        seen = [i for i, t in enumerate(qk) if t in set(sk)]
        on_seen = ev.episodes(
            s, sk, [q[i] for i in seen], [qk[i] for i in seen], k, EPISODES, 0, base
        )
        rows.append(
            {
                "k": k,
                "closed": closed.accuracy,
                "closed_sd": closed.sd,
                "open": opened.accuracy,
                "open_sd": opened.sd,
                "threshold": threshold,
                "closed_on_seen_kinds": on_seen.accuracy,
                "queries": closed.queries,
                "unseen_kind": closed.unseen,
            }
        )
    return rows


def retrieval_rows(train: Sequence[Incident], test: Sequence[Incident]) -> dict:
    s, sk = _sk(train)
    q, qk = _sk(test)
    share, n = ev.retrieval(s, sk, q, qk)
    seen = [i for i, t in enumerate(qk) if t in set(sk)]
    share_seen, n_seen = ev.retrieval(s, sk, [q[i] for i in seen], [qk[i] for i in seen])
    return {"all": share, "n": n, "seen_kinds": share_seen, "n_seen": n_seen}


def sequential(past: Sequence[Incident], day: Sequence[Incident], threshold: float) -> dict:
    """The library as an operator grows it: each incident of `day`, in time order, is
    recognised from `past` plus the day's earlier incidents, then added."""
    right, hits, hit_n = [], [], 0
    library = list(past)
    for inc in sorted(day, key=lambda i: i.at):
        s, sk = _sk(library)
        model = FewShotKinds(unknown_distance=threshold).fit(s, sk)
        guess = model.predict([inc.signature])[0]
        right.append(ev.is_right(guess, inc.kind, set(sk)))
        if inc.kind in set(sk):
            share, _ = ev.retrieval(s, sk, [inc.signature], [inc.kind])
            hits.append(share)
            hit_n += 1
        library.append(inc)
    return {
        "open_accuracy": float(np.mean(right)),
        "retrieval_seen_kinds": float(np.mean(hits)) if hits else float("nan"),
        "n": len(right),
        "n_seen": hit_n,
    }


def twin_loto(twin: Sequence[Incident]) -> list[dict]:
    """Learn k per kind on four topologies, test on the fifth (closed set)."""
    rows = []
    for topo in TOPOLOGIES:
        train = [i for i in twin if i.system != topo]
        test = [i for i in twin if i.system == topo]
        s, sk = _sk(train)
        q, qk = _sk(test)
        row = {"held_out": topo, "n": len(test)}
        for k in KS:
            row[f"k{k}"] = ev.episodes(s, sk, q, qk, k, EPISODES, 0).accuracy
        row["retrieval"] = ev.retrieval(s, sk, q, qk)[0]
        rows.append(row)
    return rows


def run(out: Path, libraries: Path | None, nezha_root: Path) -> dict:
    """Build (or read) the libraries and compute every table; returns the results."""
    lib_dir = libraries or out / "libraries"
    lib_dir.mkdir(parents=True, exist_ok=True)
    days = {}
    for day in DAYS:
        path = lib_dir / f"nezha-{day}.sqlite"
        if not path.exists():
            write_library(path, nezha_incidents(nezha_root, day))
        days[day] = read_library(path)
    twin_path = lib_dir / "twin.sqlite"
    if not twin_path.exists():
        write_library(twin_path, twin_incidents())
    twin = read_library(twin_path)
    prior = pooled_spread(*_sk(twin))
    a, b = days[DAYS[0]], days[DAYS[1]]
    dev_s, dev_k = _sk(a)
    dev = {f"k{k}": ev.episodes(dev_s, dev_k, None, None, k, EPISODES, 0).accuracy for k in KS}
    dev_prior = {
        f"k{k}": ev.episodes(
            dev_s, dev_k, None, None, k, EPISODES, 0, FewShotKinds(prior_scale=prior)
        ).accuracy
        for k in KS
    }
    threshold5 = ev.open_set_threshold(dev_s, dev_k, 5, 0, EPISODES)
    results = {
        "dev_loo_2023-01-29": {"scratch": dev, "twin_prior": dev_prior},
        "nezha_29_to_30": cross_day(a, b),
        "nezha_30_to_29": cross_day(b, a),
        "nezha_29_to_30_twin_prior": cross_day(a, b, prior),
        "nezha_30_to_29_twin_prior": cross_day(b, a, prior),
        "retrieval_29_to_30": retrieval_rows(a, b),
        "retrieval_30_to_29": retrieval_rows(b, a),
        "retrieval_pooled_loo": dict(zip(("all", "n"), ev.retrieval(*_sk([*a, *b])), strict=True)),
        "sequential_30_after_29": sequential(a, b, threshold5),
        "twin_loto": twin_loto(twin),
        "counts": {
            "nezha": {d: _counts(days[d]) for d in DAYS},
            "twin": _counts(twin),
        },
    }
    return results


def _counts(incs: Sequence[Incident]) -> dict[str, int]:
    out: dict[str, int] = {}
    for i in incs:
        out[i.kind] = out.get(i.kind, 0) + 1
    return dict(sorted(out.items()))


def main(argv: Sequence[str] | None = None) -> int:
    from experiments.memory.tables import markdown

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", required=True)
    p.add_argument("--libraries", default=None, help="read/write the libraries here")
    p.add_argument("--nezha", required=True, help="e.g. ../shared/data/nezha-trainticket")
    args = p.parse_args(argv)
    if not (Path(args.nezha) / "rca_data").is_dir():
        p.error(f"--nezha {args.nezha}: not the Nezha Train Ticket folder (no rca_data in it)")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    libs = Path(args.libraries) if args.libraries else None
    results = run(out, libs, Path(args.nezha))
    (out / "results.json").write_text(json.dumps(results, indent=2, default=float) + "\n")
    text = markdown(results)
    (out / "tables.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
