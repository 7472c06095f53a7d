"""Behaviour of the workload: rate-curve shapes, replay, noisy arrivals and replay errors."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from twin.errors import ScenarioError
from twin.scenario.schema import Workload
from twin.scenario.workload import NOISE_CORRELATION_S, ar1, rate_curves, sample_arrivals

DAY = 86_400.0
HOUR = 3_600.0


def make_workload(rates: dict[str, float] | None = None, **kwargs) -> Workload:
    rates = rates or {"browse": 10.0}
    classes = [{"name": n, "entry": "frontend", "rate": r} for n, r in rates.items()]
    return Workload.model_validate({"classes": classes, **kwargs})


# --------------------------------------------------------------------------- seasonality


@pytest.mark.parametrize(("start_hour", "peak_hour"), [(0.0, 20.0), (7.5, 3.0), (23.0, 23.0)])
def test_daily_peak_and_trough(start_hour: float, peak_hour: float) -> None:
    amp, rate, tick = 0.4, 10.0, 60.0
    wl = make_workload({"a": rate}, daily_amplitude=amp, start_hour=start_hour, peak_hour=peak_hour)
    r = rate_curves(wl, int(DAY / tick), tick)[:, 0]
    hour_of_day = (start_hour + np.arange(len(r)) * tick / HOUR) % 24
    peak_at = hour_of_day[np.argmax(r)]
    trough_at = hour_of_day[np.argmin(r)]
    assert math.isclose(peak_at, peak_hour, abs_tol=tick / HOUR)
    assert math.isclose(trough_at, (peak_hour + 12) % 24, abs_tol=tick / HOUR)
    assert r.max() == pytest.approx(rate * (1 + amp), rel=1e-4)
    assert r.min() == pytest.approx(rate * (1 - amp), rel=1e-4)
    assert r.mean() == pytest.approx(rate, rel=1e-9)  # the class rate is the daily mean


def test_weekend_lower_than_weekdays_and_smooth() -> None:
    amp, rate, tick = 0.3, 8.0, 60.0
    wl = make_workload({"a": rate}, weekly_amplitude=amp, start_weekday=0)
    r = rate_curves(wl, int(7 * DAY / tick), tick)[:, 0]
    noon = [int((d * DAY + 12 * HOUR) / tick) for d in range(7)]  # Monday .. Sunday
    assert r[noon[:5]] == pytest.approx([rate] * 5)
    assert r[noon[5:]] == pytest.approx([rate * (1 - amp)] * 2)
    assert r.min() >= rate * (1 - amp) - 1e-9 and r.max() <= rate + 1e-9
    # no jumps: the steps into and out of the weekend take hours, not one tick
    assert np.abs(np.diff(r)).max() < rate * amp * 0.05
    # and no kinks either (a linear ramp would have a second difference ~ amp/360 here)
    assert np.abs(np.diff(r, 2)).max() < rate * amp * 2e-4
    # half-way at midnight Friday→Saturday and Sunday→Monday, done 3 h either side
    at = {h: r[int(h * HOUR / tick)] for h in (4 * 24 + 21, 5 * 24, 5 * 24 + 3, 7 * 24 - 3)}
    assert list(at.values()) == pytest.approx(
        [rate, rate * (1 - amp / 2), rate * (1 - amp), rate * (1 - amp)]
    )


def test_weekend_follows_start_weekday_and_hour() -> None:
    wl = make_workload({"a": 1.0}, weekly_amplitude=0.5, start_weekday=5, start_hour=12.0)
    r = rate_curves(wl, 4, DAY)[:, 0]  # Sat noon, Sun noon, Mon noon, Tue noon
    assert r == pytest.approx([0.5, 0.5, 1.0, 1.0])


def test_trend_compounds_per_day() -> None:
    g = 0.05
    wl = make_workload({"a": 4.0}, trend_per_day=g)
    r = rate_curves(wl, 11, DAY)[:, 0]
    assert r == pytest.approx(4.0 * (1 + g) ** np.arange(11))
    half = rate_curves(wl, 2, DAY / 2)[1, 0]
    assert half == pytest.approx(4.0 * math.sqrt(1 + g))


def test_shapes_multiply_and_scale_with_class_rate() -> None:
    kw = {"daily_amplitude": 0.2, "weekly_amplitude": 0.1, "trend_per_day": 0.01}
    r = rate_curves(make_workload({"a": 2.0, "b": 6.0}, **kw), 2000, 300.0)
    assert r.shape == (2000, 2) and r.dtype == np.float64
    assert r[:, 1] == pytest.approx(3 * r[:, 0])
    daily = rate_curves(make_workload({"a": 1.0}, daily_amplitude=0.2), 2000, 300.0)
    weekly = rate_curves(make_workload({"a": 1.0}, weekly_amplitude=0.1), 2000, 300.0)
    trend = rate_curves(make_workload({"a": 1.0}, trend_per_day=0.01), 2000, 300.0)
    assert r[:, 0] == pytest.approx(2.0 * (daily * weekly * trend)[:, 0])


def test_flat_workload_and_empty_run() -> None:
    wl = make_workload({"a": 3.0, "b": 0.0})
    assert (rate_curves(wl, 100, 1.0) == [3.0, 0.0]).all()
    assert rate_curves(wl, 0, 1.0).shape == (0, 2)


# --------------------------------------------------------------------------- events


def test_flash_crowd_window_classes_and_linear_ramps() -> None:
    start, duration, ramp, mult = 1000.0, 600.0, 100.0, 4.0
    flash = {"start": start, "duration": duration, "multiplier": mult, "ramp_s": ramp,
             "classes": ["checkout"]}  # fmt: skip
    wl = make_workload({"browse": 10.0, "checkout": 2.0}, flash_crowds=[flash])
    r = rate_curves(wl, 3000, 1.0)
    t = np.arange(3000.0)
    assert (r[:, 0] == 10.0).all()  # other classes untouched
    outside = (t < start) | (t >= start + duration)
    assert (r[outside, 1] == 2.0).all()
    plateau = (t >= start + ramp) & (t <= start + duration - ramp)
    assert r[plateau, 1] == pytest.approx(2.0 * mult)
    up = r[int(start) : int(start + ramp) + 1, 1]
    down = r[int(start + duration - ramp) : int(start + duration), 1]
    expected_up = 2.0 * (1 + (mult - 1) * np.arange(len(up)) / ramp)
    assert up == pytest.approx(expected_up)  # linear from 1× at the start to mult× after ramp_s
    assert np.diff(down, 2) == pytest.approx(0.0, abs=1e-9)  # linear on the way down
    assert down[0] == pytest.approx(2.0 * mult) and down[-1] == pytest.approx(2.0 * (1 + 3 / 100))


def test_flash_crowd_without_classes_hits_all_and_short_event_ramps_meet() -> None:
    flash = {"start": 10.0, "duration": 20.0, "multiplier": 3.0, "ramp_s": 60.0}
    r = rate_curves(make_workload({"a": 1.0, "b": 5.0}, flash_crowds=[flash]), 40, 1.0)
    assert r[:, 1] == pytest.approx(5 * r[:, 0])
    assert r[20, 0] == pytest.approx(3.0)  # ramps shortened to half the duration each
    assert r[15, 0] == pytest.approx(2.0)
    assert r[9, 0] == 1.0 and r[30, 0] == 1.0


def test_calendar_lift_and_holiday_dip_stack() -> None:
    launch = {"name": "launch", "kind": "launch", "start": 0, "duration": DAY, "lift": 1.5,
              "ramp_s": 0}  # fmt: skip
    holiday = {"name": "xmas", "kind": "holiday", "start": 12 * HOUR, "duration": DAY,
               "lift": 0.4, "ramp_s": 3600, "classes": ["b"]}  # fmt: skip
    wl = make_workload({"a": 1.0, "b": 1.0}, calendar=[launch, holiday])
    r = rate_curves(wl, 48, HOUR)
    assert r[:12] == pytest.approx(1.5)
    assert r[14:24, 0] == pytest.approx(1.5) and r[14:24, 1] == pytest.approx(0.6)
    assert r[24:36, 0] == pytest.approx(1.0) and r[24:35, 1] == pytest.approx(0.4)
    assert r[13, 1] == pytest.approx(1.5 * 0.4)  # ramp over: full dip on top of the launch
    assert r[36:] == pytest.approx(1.0)


# --------------------------------------------------------------------------- replay


def write_csv(path: Path, text: str) -> str:
    path.write_text(text)
    return str(path)


def nab_csv(tmp_path: Path, values: list[float]) -> str:
    rows = [f"2014-04-01 00:{5 * i:02d}:00,{v}" for i, v in enumerate(values)]
    return write_csv(tmp_path / "nab.csv", "timestamp,value\n" + "\n".join(rows) + "\n")


def test_replay_nab_timestamps_reproduce_shape_and_repeat(tmp_path: Path) -> None:
    values = np.array([10.0, 20.0, 30.0, 20.0, 10.0, 30.0])
    wl = make_workload({"a": 5.0}, replay={"file": nab_csv(tmp_path, list(values))})
    r = rate_curves(wl, 18, 300.0)[:, 0]
    shape = values / values.mean()
    assert r == pytest.approx(5.0 * np.tile(shape, 3))  # repeats from its start
    fine = rate_curves(wl, 12, 150.0)[:, 0]
    assert fine[1::2] == pytest.approx(5.0 * (shape + np.roll(shape, -1)) / 2)  # linear, wraps


def test_replay_numeric_time_column_and_unnormalized(tmp_path: Path) -> None:
    file = write_csv(tmp_path / "s.csv", "t,rps\n0,4\n10,8\n20,2\n30,6\n")
    replay = {"file": file, "time_column": "t", "value_column": "rps", "normalize": False}
    r = rate_curves(make_workload({"a": 2.0}, replay=replay), 12, 5.0)[:, 0]
    expected = 2.0 * np.array([4, 6, 8, 5, 2, 4, 6, 5])  # period 40 s: 6 → 4 joins the loop
    assert r[:8] == pytest.approx(expected)
    assert r[8:] == pytest.approx(r[:4])


@pytest.mark.parametrize(("normalize", "scale"), [("peak", 8.0), ("mean", 5.0), ("none", 1.0)])
def test_replay_normalize_by_peak_mean_or_not(tmp_path: Path, normalize: str, scale: float):
    file = write_csv(tmp_path / "s.csv", "t,rps\n0,4\n10,8\n20,2\n30,6\n")
    replay = {"file": file, "time_column": "t", "value_column": "rps", "normalize": normalize}
    r = rate_curves(make_workload({"a": 3.0}, replay=replay), 8, 5.0)[:, 0]
    assert r[::2] == pytest.approx(3.0 * np.array([4, 8, 2, 6]) / scale)


def test_replay_names_the_stray_entry_of_a_numeric_time_column(tmp_path: Path) -> None:
    file = write_csv(tmp_path / "s.csv", "t,rps\n1400000000,4\n1400000060,8\n1400000120,2\n"
                     "oops,6\n1400000240,5\n")  # fmt: skip
    replay = {"file": file, "time_column": "t", "value_column": "rps"}
    with pytest.raises(ScenarioError, match=r"'oops' at line 5 is not a number"):
        rate_curves(make_workload({"a": 2.0}, replay=replay), 4, 60.0)


def test_replay_normalize_rejects_other_values() -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="normalize"):
        make_workload(replay={"file": "x.csv", "normalize": "median"})


def test_replay_step_spacing_and_events_on_top(tmp_path: Path) -> None:
    file = write_csv(tmp_path / "v.csv", "value\n1\n3\n")
    flash = {"start": 4.0, "duration": 2.0, "multiplier": 10.0, "ramp_s": 0}
    wl = make_workload({"a": 1.0}, replay={"file": file, "step_s": 2.0}, flash_crowds=[flash],
                       daily_amplitude=0.5, trend_per_day=1.0)  # fmt: skip
    r = rate_curves(wl, 8, 1.0)[:, 0]
    assert r == pytest.approx([0.5, 1.0, 1.5, 1.0, 5.0, 10.0, 1.5, 1.0])  # no seasonality/trend


def test_replay_of_shared_nab_series_has_mean_rate() -> None:
    from detectors.forecast.traffic import NAB_ROOT

    nab = NAB_ROOT / "data/realTraffic/speed_6005.csv"
    if not nab.is_file():
        pytest.skip("NAB corpus not available")
    wl = make_workload({"a": 7.0}, replay={"file": str(nab)})
    r = rate_curves(wl, int(2 * DAY / 60), 60.0)
    assert (r >= 0).all() and np.isfinite(r).all()
    assert 3.0 < r.mean() < 14.0


@pytest.mark.parametrize(
    ("text", "replay", "field", "value"),
    [
        (None, {}, "workload.replay.file", "nowhere.csv"),
        ("timestamp,rps\n0,1\n1,2\n", {}, "workload.replay.value_column", "'value'"),
        ("timestamp,value\n0,1\n1,abc\n", {}, "workload.replay.value_column", "'abc'"),
        ("timestamp,value\n0,1\n1,\n", {}, "workload.replay.value_column", "missing value at"),
        ("timestamp,value\n0,1\n1,-4\n", {}, "workload.replay.value_column", "-4"),
        ("timestamp,value\n0,1\n", {}, "workload.replay.file", "1 data row"),
        ("timestamp,value\n", {}, "workload.replay.file", "0 data row"),
        ("", {}, "workload.replay.file", "cannot read"),
        ("value\n1\n2\n", {}, "workload.replay.time_column", "'timestamp'"),
        ("value\n1\n2\n", {"time_column": None}, "workload.replay.time_column", "step_s"),
        ("timestamp,value\nnoon,1\n1,2\n", {}, "workload.replay.time_column", "'noon'"),
        ("timestamp,value\n5,1\n5,2\n", {}, "workload.replay.time_column", "line 3"),
        ("timestamp,value\n0,0\n1,0\n", {}, "workload.replay.value_column", "all zero"),
    ],
)
def test_replay_errors_name_field_and_value(
    tmp_path: Path, text: str | None, replay: dict, field: str, value: str
) -> None:
    file = tmp_path / "nowhere.csv"
    if text is not None:
        file.write_text(text)
    wl = make_workload(replay={"file": str(file), **replay})
    with pytest.raises(ScenarioError) as info:
        rate_curves(wl, 10, 1.0)
    message = str(info.value)
    assert message.startswith(field + ":")
    assert value in message


def test_replay_file_that_is_a_directory(tmp_path: Path) -> None:
    with pytest.raises(ScenarioError, match=r"^workload\.replay\.file: .*"):
        rate_curves(make_workload(replay={"file": str(tmp_path)}), 10, 1.0)


def test_unknown_event_class_is_named() -> None:
    flash = {"start": 0, "duration": 10, "multiplier": 2, "classes": ["nope"]}
    with pytest.raises(ScenarioError, match=r"workload\.flash_crowds\[0\]\.classes: .*'nope'"):
        rate_curves(make_workload(flash_crowds=[flash]), 10, 1.0)


def test_replay_file_edits_are_seen(tmp_path: Path) -> None:
    file = tmp_path / "s.csv"
    file.write_text("t,value\n0,1\n1,3\n")
    wl = make_workload({"a": 1.0}, replay={"file": str(file), "time_column": "t"})
    assert rate_curves(wl, 2, 1.0)[:, 0] == pytest.approx([0.5, 1.5])
    file.write_text("t,value\n0,3.0\n1,1.0\n")  # a different file with a new size
    assert rate_curves(wl, 2, 1.0)[:, 0] == pytest.approx([1.5, 0.5])


# --------------------------------------------------------------------------- arrivals


def mean_sd(lam: float, noise: float, tick: float, n: int) -> float:
    """Standard deviation of the sample mean of n ticks of Poisson(λ·M), M lognormal AR(1).

    Var N = λ + λ² Var M; Cov(N_i, N_j) = λ² (exp(σ² φ^|i−j|) − 1) for the log-AR(1) noise.
    """
    sigma2 = math.log1p(noise**2)
    phi = math.exp(-tick / NOISE_CORRELATION_S)
    k = np.arange(1, n)
    cov = np.expm1(sigma2 * phi**k)
    var_sum = n * (lam + lam**2 * noise**2) + 2 * lam**2 * np.sum((n - k) * cov)
    return math.sqrt(var_sum) / n


@pytest.mark.parametrize(
    ("rate", "noise", "tick"),
    [(5.0, 0.3, 1.0), (0.2, 0.05, 5.0), (40.0, 0.0, 0.5), (3.0, 1.5, 10.0)],
)
def test_mean_arrivals_match_rate_within_confidence(rate: float, noise: float, tick: float) -> None:
    n = 200_000
    rates = np.full((n, 2), rate)
    counts = sample_arrivals(rates, noise, tick, np.random.default_rng(7))
    lam = rate * tick
    sd = mean_sd(lam, noise, tick, n)
    for col in counts.T:
        assert abs(col.mean() - lam) < 5 * sd


def test_arrivals_follow_a_varying_rate() -> None:
    wl = make_workload({"a": 20.0, "b": 0.5}, daily_amplitude=0.8, trend_per_day=0.5)
    rates = rate_curves(wl, 2 * 1440, 60.0)
    counts = sample_arrivals(rates, 0.1, 60.0, np.random.default_rng(3))
    expected = rates.sum(axis=0) * 60.0
    # sd of the total: Poisson + noise variance, inflated by the noise correlation (≤ 1 + 2/(1−φ))
    phi = math.exp(-60.0 / NOISE_CORRELATION_S)
    var = expected + 0.1**2 * (1 + 2 / (1 - phi)) * ((rates * 60.0) ** 2).sum(axis=0)
    assert np.all(np.abs(counts.sum(axis=0) - expected) < 5 * np.sqrt(var))


def test_noise_is_autocorrelated_with_the_documented_time() -> None:
    n, noise = 200_000, 0.2
    counts = sample_arrivals(np.full(n, 1e7), noise, 1.0, np.random.default_rng(11))
    log_mult = np.log(counts / 1e7)  # Poisson noise negligible at this rate
    assert log_mult.std() == pytest.approx(math.sqrt(math.log1p(noise**2)), rel=0.1)

    def autocorr(lag: int) -> float:
        return float(np.corrcoef(log_mult[:-lag], log_mult[lag:])[0, 1])

    lag = int(NOISE_CORRELATION_S)
    assert autocorr(1) == pytest.approx(math.exp(-1 / NOISE_CORRELATION_S), abs=0.02)
    assert autocorr(lag) == pytest.approx(math.exp(-1), abs=0.1)
    assert abs(autocorr(10 * lag)) < 0.1


@pytest.mark.parametrize(
    ("n", "tick"), [(1, 1.0), (7, 1.0), (5000, 1.0), (3001, 0.01), (20_000, 60.0), (300, 3000.0)]
)
def test_blocked_ar1_equals_the_recursion(n: int, tick: float) -> None:
    phi = math.exp(-tick / NOISE_CORRELATION_S)
    shocks = np.random.default_rng(n).standard_normal((n, 2))
    expected = shocks.copy()
    for i in range(1, n):
        expected[i] = phi * expected[i - 1] + math.sqrt(1 - phi * phi) * shocks[i]
    assert np.abs(ar1(shocks, phi) - expected).max() < 1e-10


def test_arrivals_same_seed_identical_different_seed_differs() -> None:
    rates = rate_curves(make_workload({"a": 3.0, "b": 0.7}, daily_amplitude=0.5), 5000, 10.0)
    a = sample_arrivals(rates, 0.2, 10.0, np.random.default_rng(42))
    b = sample_arrivals(rates, 0.2, 10.0, np.random.default_rng(42))
    c = sample_arrivals(rates, 0.2, 10.0, np.random.default_rng(43))
    assert a.tobytes() == b.tobytes()
    assert not np.array_equal(a, c)


def test_arrivals_are_non_negative_whole_float_counts() -> None:
    rates = np.abs(np.random.default_rng(0).normal(0, 5, size=(10_000, 3)))
    rates[::7] = 0.0
    counts = sample_arrivals(rates, 2.0, 1.0, np.random.default_rng(1))
    assert counts.shape == rates.shape and counts.dtype == np.float64
    assert (counts >= 0).all() and (counts == np.round(counts)).all()
    assert (counts[::7] == 0).all()


def test_arrivals_reject_bad_input() -> None:
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match="non-negative"):
        sample_arrivals(np.array([[1.0, -1.0]]), 0.1, 1.0, rng)
    with pytest.raises(ValueError, match="tick"):
        sample_arrivals(np.ones((3, 1)), 0.1, 0.0, rng)
    with pytest.raises(ValueError, match="noise"):
        sample_arrivals(np.ones((3, 1)), -0.1, 1.0, rng)
