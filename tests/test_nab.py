"""NAB scorer: the rules on small hand-made series, and the published scoreboard reproduced."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from detectors.nab.detector import RobustLikelihood
from detectors.nab.scorer import (
    PROFILES,
    CostMatrix,
    NABError,
    Series,
    load_corpus,
    probation_rows,
    published_scores,
    run_detector,
    scaled_sigmoid,
    score_corpus,
    score_results,
)
from twin.errors import FirebreakError

NAB_ROOT = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "nab"
STANDARD = {"standard": CostMatrix(tp=1.0, fn=1.0, fp=0.11)}
needs_corpus = pytest.mark.skipif(
    not (NAB_ROOT / "data").is_dir(), reason=f"NAB corpus not found at {NAB_ROOT}"
)


def _series(n: int, windows: tuple[tuple[int, int], ...]) -> Series:
    stamps = np.datetime64("2020-01-01T00:00") + np.arange(n) * np.timedelta64(5, "m")
    return Series("toy/toy.csv", stamps, np.zeros(n), windows)


def _score(series: Series, fired: list[int], cost: dict = STANDARD) -> float:
    anomaly = np.zeros(series.values.size)
    anomaly[fired] = 1.0
    return score_corpus([series], [anomaly], cost, threshold=0.5)["standard"].raw


def test_probation_is_15_percent_capped_at_750_rows() -> None:
    assert probation_rows(1000) == 150
    assert probation_rows(1001) == 150
    assert probation_rows(10_000) == 750


def test_scaled_sigmoid_values() -> None:
    assert float(scaled_sigmoid(0.0)) == 0.0
    assert float(scaled_sigmoid(-1.0)) == pytest.approx(2 / (1 + math.exp(-5)) - 1)
    assert float(scaled_sigmoid(3.5)) == -1.0


def test_detection_in_probation_is_not_scored() -> None:
    series = _series(1000, ((100, 140),))  # window 100..140 lies in the 150-row probation
    assert _score(series, [120]) == 0.0  # nor is the window a miss
    assert _score(series, [10]) == 0.0


def test_window_edges_and_first_detection_only() -> None:
    series = _series(1000, ((500, 599),))
    assert _score(series, []) == pytest.approx(-1.0)  # missed window
    assert _score(series, [500]) == pytest.approx(1.0)  # left edge: full tp weight
    last = float(scaled_sigmoid(-1 / 100) / scaled_sigmoid(-1.0))
    assert _score(series, [599]) == pytest.approx(last)  # right edge: nearly nothing
    assert 0 < last < 0.03
    assert _score(series, [550, 500, 599]) == pytest.approx(1.0)  # only the first counts


def test_false_positive_scaled_by_distance_past_window() -> None:
    series = _series(1000, ((500, 599),))
    assert _score(series, [300]) == pytest.approx(-1.0 - 0.11)  # no window before: full cost
    just_after = float(scaled_sigmoid(1 / 99)) * 0.11
    assert _score(series, [600]) == pytest.approx(-1.0 + just_after)
    assert -0.05 * 0.11 < just_after < 0  # just past a window a false alarm is nearly free
    one_width = float(scaled_sigmoid(1.0)) * 0.11
    assert _score(series, [599 + 99]) == pytest.approx(-1.0 + one_width)
    assert one_width == pytest.approx(-0.98661 * 0.11, abs=1e-5)
    assert _score(series, [999]) == pytest.approx(-1.0 - 0.11)  # > 3 widths past: full cost


def test_never_fires_scores_0_and_perfect_scores_100() -> None:
    series = [_series(1000, ((500, 599),)), _series(2000, ((800, 900), (1500, 1600)))]
    profiles = {"standard": CostMatrix(1.0, 1.0, 0.11), "fn": CostMatrix(1.0, 2.0, 0.11)}
    never = score_corpus(series, [np.zeros(1000), np.zeros(2000)], profiles)
    perfect_scores = []
    for s in series:
        a = np.zeros(s.values.size)
        a[[first for first, _ in s.windows]] = 1.0
        perfect_scores.append(a)
    perfect = score_corpus(series, perfect_scores, profiles)
    for name in profiles:
        assert never[name].normalised == 0.0
        assert perfect[name].normalised == pytest.approx(100.0)


def test_threshold_is_swept_over_the_corpus() -> None:
    series = _series(1000, ((500, 599),))
    anomaly = np.zeros(1000)
    anomaly[[520, 300, 310]] = [0.6, 0.5, 0.7]  # the best threshold keeps only 0.6 and up
    result = score_corpus([series], [anomaly], STANDARD)["standard"]
    assert result.threshold == 0.6
    expected = float(scaled_sigmoid(-80 / 100) / scaled_sigmoid(-1.0)) - 0.11
    assert result.raw == pytest.approx(expected)


def test_bad_paths_raise_firebreak_errors(tmp_path: Path) -> None:
    with pytest.raises(NABError, match="not a NAB corpus"):
        load_corpus(tmp_path)
    assert issubclass(NABError, FirebreakError)
    (tmp_path / "data").mkdir()
    with pytest.raises(NABError, match=r"combined_windows\.json"):
        load_corpus(tmp_path)


@needs_corpus
@pytest.mark.parametrize("detector", ["windowedGaussian", "numenta"])
def test_published_scores_reproduced(detector: str) -> None:
    published = published_scores(NAB_ROOT)[detector]
    ours = score_results(NAB_ROOT, detector)
    for profile in PROFILES:
        assert ours[profile].normalised == pytest.approx(published[profile], abs=0.5), profile
    assert ours["standard"].null == -116.0  # every one of the 116 windows counts
    assert ours["standard"].perfect == 116.0


@needs_corpus
def test_unknown_results_detector_is_a_clear_error() -> None:
    with pytest.raises(NABError, match="no results for detector 'nope'"):
        score_results(NAB_ROOT, "nope")


@needs_corpus
def test_runner_smoke_on_a_few_files() -> None:
    names = ["artificialNoAnomaly/art_flatline.csv", "artificialWithAnomaly/art_daily_jumpsup.csv"]
    corpus = load_corpus(NAB_ROOT, names)
    first = run_detector(RobustLikelihood, corpus)
    again = run_detector(RobustLikelihood, corpus)
    for a, b, s in zip(first, again, corpus, strict=True):
        assert a.shape == s.values.shape
        assert np.all((a >= 0) & (a <= 1))
        np.testing.assert_array_equal(a, b)  # deterministic
    result = score_corpus(corpus, first, STANDARD)["standard"]
    assert result.normalised > 0  # the jump is caught


def test_context_novelty_fires_once_on_a_new_shape() -> None:
    from detectors.nab.context import ContextNovelty

    detector = ContextNovelty(warmup=20, rest=50)
    cycle = [0.0, 1.0, 2.0, 3.0, 2.0, 1.0]
    stream = cycle * 20 + [3.0, 0.0, 3.0, 0.0] + cycle * 5  # a shape the cycle never had
    scores = []
    for x in stream:
        scores.append(detector.score_one(x))
        detector.learn_one(x)
    fired = [i for i, s in enumerate(scores) if s > 0.5]
    assert fired and fired[0] >= 120  # nothing fires on the learnt cycle
    assert len(fired) == 1  # the rest period holds back the repeats


@needs_corpus
def test_robust_context_is_streaming_and_deterministic() -> None:
    from detectors.nab.detector import DETECTORS

    corpus = load_corpus(NAB_ROOT, ["artificialWithAnomaly/art_daily_flatmiddle.csv"])
    first = run_detector(DETECTORS["robust_context"], corpus)
    again = run_detector(DETECTORS["robust_context"], corpus)
    np.testing.assert_array_equal(first[0], again[0])
    assert np.all((first[0] >= 0) & (first[0] <= 1))
    assert score_corpus(corpus, first, STANDARD)["standard"].normalised > 0
