"""Signature sig-3's resource and failing-share features, and the few-shot classifier's
handling of kinds with several modes (shrunk nearest examples, the tree vote)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from memory_fakes import AT, incident

from detectors.memory.fewshot import FewShotKinds
from detectors.memory.signature import FEATURES, Signature, signature


def _table(cols: dict[str, tuple[float, float]], seed: int = 0) -> pd.DataFrame:
    """60 s rows over 2 h; each column's (before, after AT) level with 1% noise."""
    rng = np.random.default_rng(seed)
    time = np.arange(0.0, 7200.0, 60.0)
    out: dict[str, np.ndarray] = {"time": time}
    for name, (before, after) in cols.items():
        level = np.where(time >= AT, after, before)
        out[name] = level * (1 + rng.normal(0, 0.01, time.size))
    return pd.DataFrame(out)


def test_cpu_beyond_the_work_served_marks_a_hog_not_a_busier_service() -> None:
    hog = signature(*incident("cpu", "a", 0)[:1], AT)
    delay = signature(*incident("delay", "a", 0)[:1], AT)
    assert hog.features["m_excess_cpu"] > 1.0
    assert delay.features["m_excess_cpu"] < 0.2
    busier = _table({"s_CpuUsage(m)": (100, 200), "s_PodWorkload(Ops)": (20, 40)})
    hogged = _table({"s_CpuUsage(m)": (100, 200), "s_PodWorkload(Ops)": (20, 20)})
    assert signature(busier, AT).features["m_excess_cpu"] < 0.1
    assert signature(hogged, AT).features["m_excess_cpu"] == pytest.approx(np.log(2), abs=0.05)


def test_failing_share_rises_with_errors_per_request_and_ignores_idle_pods() -> None:
    half = _table({"s_ErrorCount": (0.0, 10.0), "s_PodWorkload(Ops)": (20, 20)})
    assert signature(half, AT).features["m_error_share"] == pytest.approx(0.5, abs=0.05)
    idle = _table({"s_PodSuccessRate(%)": (0.0, 0.0), "s_PodWorkload(Ops)": (0.0, 0.0)})
    assert signature(idle, AT).features["m_error_share"] == 0.0
    failing = _table({"s_PodSuccessRate(%)": (100.0, 40.0), "s_PodWorkload(Ops)": (20, 20)})
    assert signature(failing, AT).features["m_error_share"] == pytest.approx(0.6, abs=0.05)


def _sig(**features: float) -> Signature:
    return Signature(dict(features), ("metrics",))


def test_a_kind_with_two_modes_is_recognised_by_its_nearest_shrunk_example() -> None:
    # "hog" shows either its CPU or its callers' errors; "mixed" sits at hog's mean
    sigs = [
        _sig(m_up_cpu=6.0, m_up_errors=0.0),
        _sig(m_up_cpu=0.0, m_up_errors=6.0),
        _sig(m_up_cpu=3.0, m_up_errors=2.5),
        _sig(m_up_cpu=3.0, m_up_errors=2.7),
    ]
    kinds = ["hog", "hog", "mixed", "mixed"]
    query = [_sig(m_up_cpu=5.5, m_up_errors=0.3)]
    prototype_only = FewShotKinds(shrink=0.0, trees=0.0).fit(sigs, kinds)
    assert prototype_only.predict(query) == ["mixed"]  # the mean blurs hog's modes
    assert FewShotKinds(shrink=0.5, trees=0.0).fit(sigs, kinds).predict(query) == ["hog"]


def test_the_tree_vote_finds_the_one_telling_feature_among_noise() -> None:
    rng = np.random.default_rng(3)
    noisy = [f for f in FEATURES if f.startswith("m_")][:30]

    def sig(kind: str) -> Signature:
        feats = {f: float(rng.normal(0, 3)) for f in noisy[1:]}
        feats[noisy[0]] = 1.0 if kind == "x" else 0.0
        return _sig(**feats)

    kinds = ["x", "y"] * 5
    sigs = [sig(k) for k in kinds]
    queries = [sig(k) for k in ["x", "y"] * 10]
    truth = ["x", "y"] * 10

    def accuracy(model: FewShotKinds) -> float:
        return float(np.mean([p == t for p, t in zip(model.predict(queries), truth, strict=True)]))

    distances_only = accuracy(FewShotKinds(trees=0.0).fit(sigs, kinds))
    with_trees = FewShotKinds(trees=1.0).fit(sigs, kinds)
    assert accuracy(with_trees) >= 0.9 > distances_only
    again = FewShotKinds(trees=1.0).fit(sigs, kinds)
    assert again.predict(queries) == with_trees.predict(queries)  # seeded trees
    assert np.allclose(again.votes(queries).sum(axis=1), 1.0)


def test_unknown_still_comes_from_the_distances_and_bad_settings_are_refused() -> None:
    sigs = [_sig(m_up_cpu=6.0), _sig(m_up_cpu=5.0), _sig(m_up_errors=6.0), _sig(m_up_errors=5.0)]
    kinds = ["cpu", "cpu", "err", "err"]
    model = FewShotKinds(unknown_distance=1.0).fit(sigs, kinds)
    assert model.predict([_sig(m_up_memory=9.0), _sig(m_up_cpu=5.5)]) == ["unknown", "cpu"]
    with pytest.raises(ValueError, match="shrink and trees"):
        FewShotKinds(shrink=1.5).fit(sigs, kinds)
