"""Logs fused into the RCA table as per-service WARN/ERROR rates."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from detectors.rca.fusion import log_error_columns, with_log_columns
from detectors.rca.robust import RobustScoreRca


def test_log_records_become_rates_on_the_table_grid():
    times = np.arange(0.0, 10.0, 1.0)
    records = [
        {"t": 2.5, "service": "a", "level": "ERROR"},
        {"t": 2.7, "service": "a", "level": "WARN"},
        {"t": 2.9, "service": "a", "level": "INFO"},  # traffic, not trouble
        {"t": 9.5, "service": "b", "level": "ERROR"},
        {"t": 3.0, "service": "zz", "level": "ERROR"},  # not a service of the table
    ]
    cols = log_error_columns(records, times, ["a", "b"])
    assert list(cols.columns) == ["a_logerror", "b_logerror"]
    assert cols["a_logerror"].tolist()[2] == 2.0 and cols["a_logerror"].sum() == 2.0
    assert cols["b_logerror"].tolist()[9] == 1.0


def test_an_error_burst_seen_only_in_logs_points_at_its_service():
    rng = np.random.default_rng(0)
    n = 3600
    times = np.arange(n, dtype=float)
    table = pd.DataFrame({"time": times})
    for svc in ("a", "b", "c"):
        table[f"{svc}_latency-90"] = rng.normal(0.05, 0.002, n)
    records = [{"t": float(t), "service": "b", "level": "ERROR"} for t in range(3000, 3300, 2)]
    records += [{"t": float(t), "service": s, "level": "WARN"} for t in range(0, n, 97)
                for s in ("a", "b", "c")]  # fmt: skip
    fused = with_log_columns(table, log_error_columns(records, times, ["a", "b", "c"]))
    ranking = RobustScoreRca(before_s=1800, after_s=300).rank(fused, 3000.0)
    assert ranking[0].service == "b"
    with pytest.raises(ValueError, match="rows"):
        with_log_columns(table, log_error_columns(records, times[:10], ["a"]))
