"""`firebreak calibrate --check` on a day of incidents (Nezha's `rca_data/<day>` layout):
only the fault-free parts count. Hand-made telemetry in temporary folders."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from test_calibrate import NS, _telemetry

from experiments.calibration import fault_free
from experiments.calibration.check import observed, observed_period
from experiments.calibration.fit import CalibrationError
from firebreak.cli import main

T0 = 1_674_982_159  # the first trace of `_telemetry`, unix seconds
FAULTS = (150, 250)  # injections, seconds after T0
SLOW_S = 2.0  # added to every span of a trace that starts during a fault or its settling,
# or in the second before it (so that it is still running when the fault begins)


def _day(root: Path, faults: tuple[int, ...] = FAULTS) -> Path:
    """A day of 600 traces, one a second, with faults at T0 + `faults` that make the traces
    reach 2 s slower, and its fault list."""
    day = _telemetry(root / "2023-01-29", traces=600, every_s=1.0)
    path = day / "trace" / "10_00_trace.csv"
    spans = pd.read_csv(path)
    start = spans["StartTimeUnixNano"] // NS - T0
    hit = pd.Series(False, index=spans.index)
    for f in faults:
        hit |= (start >= f - 1) & (start < f + fault_free.FAULT_S + fault_free.SETTLE_S)
    spans.loc[hit, "EndTimeUnixNano"] += int(SLOW_S * NS)
    spans.to_csv(path, index=False)
    listed = [
        {"inject_time": str(pd.Timestamp(T0 + f, unit="s")), "inject_pod": "api-1-a"}
        for f in faults
    ]
    fault_free.fault_list_path(day).write_text(json.dumps({"10": listed}))
    return day


def test_only_traces_between_faults_count(tmp_path: Path) -> None:
    day = _day(tmp_path)
    real, rate, note = observed_period(day)
    # kept: T0..T0+148 (before the first fault; T0+149 still runs at T0+150) and
    # T0+550..T0+599 (after the second fault's settling, no fault after it)
    assert note is not None and "199 traces in 2 windows" in note
    assert real["api"]["mean_ms"] < 30 and real["api"]["p90_ms"] < 30
    assert real["api"]["rate"] == pytest.approx(199 / 197)
    assert rate == pytest.approx(1.0)
    assert list(real["api"]["mean_ms_by_hour"]) == [8]  # T0 is 08:49:19 UTC
    fault_free.fault_list_path(day).unlink()  # the same folder read whole: the faults show
    assert observed(day)[0]["api"]["mean_ms"] > 100


def test_metric_minutes_near_an_injection_are_left_out() -> None:
    frame = pd.DataFrame({"time": [0.0, 930.0, 950.0, 1000.0, 1300.0, 1301.0]})
    kept = fault_free.normal_minutes(frame, [1000.0])
    assert kept["time"].tolist() == [0.0, 930.0, 1301.0]  # from inject - 60 to inject + 300


def test_a_metric_minute_without_a_time_is_refused_not_dropped(tmp_path: Path) -> None:
    nan = float("nan")
    frame = pd.DataFrame(
        {
            "file": ["a-1_metric.csv", "b-1_metric.csv.gz", "b-1_metric.csv.gz", "c_metric.csv"],
            "time": [0.0, nan, 60.0, nan],
        }
    )
    with pytest.raises(CalibrationError) as caught:
        fault_free.normal_minutes(frame, [1000.0], tmp_path / "metric")
    assert str(caught.value).startswith(
        f"{tmp_path / 'metric'}/b-1_metric.csv.gz: TimeStamp: 1 of its 2 rows have no time "
        "(and 1 in other files)"
    )


def test_check_against_a_day_of_incidents_from_the_cli(tmp_path: Path, capsys) -> None:
    fit, day = _telemetry(tmp_path / "construct"), _day(tmp_path)
    out = tmp_path / "c.yaml"
    assert main(["calibrate", str(fit), "-o", str(out), "--check", str(day)]) == 0
    text = capsys.readouterr().out
    assert "fault-free parts of" in text and "199 traces in 2 windows" in text
    assert "by hour of the fault-free windows" in text and "api" in text


def test_a_day_with_no_fault_free_traces_is_refused(tmp_path: Path, capsys) -> None:
    # every trace (T0..T0+599) starts within 300 s after one of the injections
    fit, day = _telemetry(tmp_path / "construct"), _day(tmp_path, faults=(0, 250, 500))
    code = main(["calibrate", str(fit), "-o", str(tmp_path / "c.yaml"), "--check", str(day)])
    assert code == 2
    assert "no fault-free traces between its 3 faults" in capsys.readouterr().err


@pytest.mark.parametrize(
    "text, field",
    [
        ("{", "cannot read as JSON"),
        ("[1]", "expected an object"),
        ('{"10": [{"inject_time": "soon"}]}', "10[0].inject_time: 'soon' is not a time"),
        ('{"10": [{"inject_pod": "a"}]}', "10[0].inject_time: None is not a time"),
    ],
)
def test_a_bad_fault_list_names_the_file_and_field(
    tmp_path: Path, capsys, text: str, field: str
) -> None:
    fit, day = _telemetry(tmp_path / "construct"), _day(tmp_path)
    fault_free.fault_list_path(day).write_text(text)
    code = main(["calibrate", str(fit), "-o", str(tmp_path / "c.yaml"), "--check", str(day)])
    err = capsys.readouterr().err
    assert code == 2 and "2023-01-29-fault_list.json" in err and field in err
    assert "Traceback" not in err


def test_a_day_with_an_untimed_metric_minute_names_the_file(tmp_path: Path, capsys) -> None:
    fit, day = _telemetry(tmp_path / "construct"), _day(tmp_path)
    path = next((day / "metric").glob("gateway-*_metric.csv"))
    frame = pd.read_csv(path)
    frame["TimeStamp"] = frame["TimeStamp"].astype(object)
    frame.loc[1, "TimeStamp"] = "soon"
    frame.to_csv(path, index=False)
    code = main(["calibrate", str(fit), "-o", str(tmp_path / "c.yaml"), "--check", str(day)])
    err = capsys.readouterr().err
    assert code == 2 and f"{path.name}: TimeStamp: 1 of its {len(frame)} rows have no time;" in err
    assert "Traceback" not in err
