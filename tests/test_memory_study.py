"""The memory study's scoring on synthetic incidents: cross-library few-shot, the open set,
the growing library, leave-one-topology-out, and the tables."""

from __future__ import annotations

import numpy as np
import pytest
from memory_fakes import AT, incident

from detectors.memory.evaluate import episodes, is_right, open_set_threshold, retrieval
from detectors.memory.fewshot import UNKNOWN, FewShotKinds, pooled_spread
from detectors.memory.library import Incident
from detectors.memory.signature import FEATURES, signature
from experiments.memory.study import cross_day, sequential, twin_loto
from experiments.rca.cases import TOPOLOGIES


@pytest.fixture(autouse=True)
def _small_study(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fewer trees and episodes than the study runs: the scoring is what is under test, and
    300 trees × 20 episodes spend minutes in the forest library's per-tree set-up."""
    monkeypatch.setattr("detectors.memory.fewshot.TREES", 15)
    monkeypatch.setattr("experiments.memory.study.EPISODES", 4)


def _inc(kind: str, seed: int, system: str = "fake") -> Incident:
    table, tel = incident(kind, "a" if seed % 2 else "b", seed)
    return Incident(
        f"{kind}-{seed}", system, "fake", AT + seed, kind, "a", signature(table, AT, tel)
    )


def test_open_set_names_a_new_kind_unknown_and_closed_set_cannot() -> None:
    train = [_inc(k, s) for k in ("cpu", "error_log") for s in range(4)]
    test = [_inc(k, 10 + s) for k in ("cpu", "delay") for s in range(2)]
    rows = {r["k"]: r for r in cross_day(train, test)}
    assert rows[3]["unseen_kind"] == 2
    assert rows[3]["closed"] == 0.5  # the delay queries cannot be right in a closed set
    assert rows[3]["open"] == 1.0 and rows[3]["closed_on_seen_kinds"] == 1.0
    assert is_right(UNKNOWN, "delay", {"cpu"}) and not is_right("cpu", "delay", {"cpu"})


def test_growing_library_learns_a_new_kind_after_its_first_incident() -> None:
    past = [_inc(k, s) for k in ("cpu", "error_log") for s in range(3)]
    day = [_inc("delay", 20 + 2 * s) for s in range(3)]  # all on the same service
    s, k = [i.signature for i in past], [i.kind for i in past]
    threshold = open_set_threshold(s, k, 3, n=3)
    res = sequential(past, day, threshold)
    assert res["n"] == 3 and res["n_seen"] == 2  # the first delay had no precedent
    assert res["retrieval_seen_kinds"] == 1.0
    assert res["open_accuracy"] >= 1 / 3  # the first, unprecedented one is called unknown


def test_leave_one_topology_out_and_retrieval() -> None:
    twin = [
        _inc(k, 30 + 7 * t + s, system=topo)
        for t, topo in enumerate(TOPOLOGIES)
        for k in ("cpu", "delay", "error_log")
        for s in range(2)
    ]
    rows = twin_loto(twin)
    assert [r["held_out"] for r in rows] == list(TOPOLOGIES)
    assert all(r["n"] == 6 and r["k5"] == 1.0 and r["retrieval"] == 1.0 for r in rows)
    sigs, kinds = [i.signature for i in twin], [i.kind for i in twin]
    assert retrieval(sigs, kinds) == (1.0, len(twin))
    prior = pooled_spread(sigs, kinds)
    assert prior.shape == (len(FEATURES),) and np.isfinite(prior).any()
    score = episodes(sigs, kinds, None, None, 1, n=4, model=FewShotKinds(prior_scale=prior))
    assert score.accuracy == 1.0 and score.episodes == 4


def test_tables_show_every_part_of_the_results() -> None:
    from experiments.memory.tables import markdown

    train = [_inc(k, s) for k in ("cpu", "error_log") for s in range(3)]
    test = [_inc(k, 40 + s) for k in ("cpu", "delay") for s in range(2)]
    rows = cross_day(train, test)
    twin = [
        _inc(k, 50 + 3 * t + s, system=topo)
        for t, topo in enumerate(TOPOLOGIES)
        for k in ("cpu", "delay")
        for s in range(2)
    ]
    res = {
        "counts": {"nezha": {"d1": {"cpu": 3}}, "twin": {"cpu": 10}},
        "nezha_29_to_30": rows,
        "nezha_29_to_30_twin_prior": rows,
        "nezha_30_to_29": rows,
        "nezha_30_to_29_twin_prior": rows,
        "dev_loo_2023-01-29": {
            "scratch": {"k1": 0.5, "k3": 0.6, "k5": 0.7},
            "twin_prior": {"k1": 0.4, "k3": 0.6, "k5": float("nan")},
        },
        "retrieval_29_to_30": {"all": 0.5, "n": 4, "seen_kinds": 1.0, "n_seen": 2},
        "retrieval_30_to_29": {"all": 0.5, "n": 4, "seen_kinds": 1.0, "n_seen": 2},
        "retrieval_pooled_loo": {"all": 0.75, "n": 8},
        "sequential_30_after_29": sequential(train, test, 1.0),
        "twin_loto": twin_loto(twin),
    }
    text = markdown(res)
    assert text.count("| 5 |") == 2 and "| all (weighted) | 20 |" in text
    assert "| twin prior | 0.400 | 0.600 | n/a |" in text
    assert all(topo in text for topo in TOPOLOGIES)
