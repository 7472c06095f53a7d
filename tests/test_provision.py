"""Provisioning a topology for a replayed day's peak (experiments.impact.provision)."""

from __future__ import annotations

import copy
import math

import numpy as np
import pandas as pd
import pytest

from experiments.impact.no_fault_day import day_scenario
from experiments.impact.provision import provision_for_peak, replay_peak
from experiments.impact.suite import _topology
from twin.errors import FirebreakError
from twin.scenario.generate import expected_load
from twin.scenario.topology import Topology


def _series(path, values, step_s=300):
    stamps = pd.date_range("2015-01-01", periods=len(values), freq=f"{step_s}s")
    frame = pd.DataFrame({"timestamp": stamps.strftime("%Y-%m-%d %H:%M:%S"), "value": values})
    frame.to_csv(path, index=False)
    return path


def service_rates(raw: dict, external: dict[str, float]) -> dict[str, float]:
    classes = [{"entry": e, "rate": r} for e, r in external.items()]
    names, rates, _ = expected_load(raw, classes)
    return dict(zip(names, rates.tolist(), strict=True))


def holding_seconds(raw: dict) -> dict[str, float]:
    names, _, hold_ms = expected_load(raw, [])
    return {n: h / 1000.0 for n, h in zip(names, hold_ms.tolist(), strict=True)}


def test_service_rates_follow_the_expected_calls_of_the_call_graph():
    raw = copy.deepcopy(_topology("online-boutique"))
    topology = Topology.model_validate(raw)
    rates = service_rates(raw, {"frontend": 100.0})
    assert rates["frontend"] == pytest.approx(100.0)
    for name in topology.services:
        # conservation: what a service receives is what its callers send it
        sent = sum(
            rates[c.source] * c.per_request * c.probability
            for c in topology.calls
            if c.target == name
        )
        external = 100.0 if name == "frontend" else 0.0
        assert rates[name] == pytest.approx(sent + external, rel=1e-9)
    hold = holding_seconds(raw)
    own = topology.services["frontend"].service_time.mean_ms / 1000.0
    assert hold["frontend"] > own  # it waits on its synchronous callees


def test_the_base_rate_needs_nothing_added_and_a_peak_raises_ceilings():
    raw = copy.deepcopy(_topology("online-boutique"))
    same, changes = provision_for_peak(raw, {"frontend": 100.0}, 1.0)
    assert changes == {} and same["services"] == raw["services"]
    bigger, changes = provision_for_peak(raw, {"frontend": 100.0}, 6.0)
    shipped = Topology.model_validate(raw)
    sized = Topology.model_validate(bigger)
    assert changes, "a 6x peak must need more than the shipped sizing"
    for name in changes:
        before, after = shipped.services[name], sized.services[name]
        assert after.hpa is not None
        assert after.replicas == before.replicas  # nothing paid for all day
        if before.hpa is None:  # a new autoscaler, floored at the shipped count
            assert after.hpa.min_replicas == max(1, before.replicas)
            assert after.hpa.max_replicas > before.replicas
        else:
            assert after.hpa.max_replicas > before.hpa.max_replicas
            assert after.hpa.min_replicas == before.hpa.min_replicas
    # the ceiling carries the peak at the target: CPU of the limit at most 0.7 per replica
    rates = service_rates(bigger, {"frontend": 600.0})
    for name in changes:
        svc = sized.services[name]
        cpu = rates[name] * svc.cpu_per_request_ms / 1000.0 / (svc.hpa.max_replicas * svc.cpu_limit)
        assert cpu <= 0.7 + 1e-9
    assert raw == _topology("online-boutique"), "the input is not modified"


def test_the_peak_is_the_highest_five_minute_mean_of_the_replayed_window(tmp_path):
    values = np.ones(24 * 12 * 2)  # two days of 5-minute steps
    values[100] = 5.0  # a spike inside the first day
    values[24 * 12 + 50] = 50.0  # a bigger one the first day never replays
    path = _series(tmp_path / "rates.csv", values)
    mean = values.mean()
    assert replay_peak(path, 24.0, 1.0) == pytest.approx(5.0 / mean)
    assert replay_peak(path, 24.0, 2.0) == pytest.approx(2 * 5.0 / mean)
    assert replay_peak(path, 48.0, 1.0) == pytest.approx(50.0 / mean)
    # one-minute samples: one spike sample is averaged over its 5 minutes
    fine = np.ones(24 * 60)
    fine[600] = 11.0
    path = _series(tmp_path / "fine.csv", fine, step_s=60)
    assert replay_peak(path, 24.0, 1.0) == pytest.approx((4 + 11.0) / 5 / fine.mean())


def test_the_no_fault_day_is_provisioned_for_its_peak_unless_asked_not_to(tmp_path):
    values = np.ones(24 * 12)
    values[120:132] = 8.0  # an hour at 8x
    path = _series(tmp_path / "rates.csv", values)
    shipped = day_scenario(path, hours=24.0, provision="as-shipped")
    sized = day_scenario(path, hours=24.0)
    assert shipped.topology == Topology.model_validate(_topology("online-boutique"))
    ceiling = sized.topology.services["frontend"].hpa.max_replicas
    assert ceiling > shipped.topology.services["frontend"].hpa.max_replicas
    peak_rate = 100.0 * replay_peak(path, 24.0, 1.0)
    frontend = sized.topology.services["frontend"]
    need = (
        peak_rate
        * frontend.cpu_per_request_ms
        / 1000.0
        / (frontend.cpu_request * frontend.hpa.target_cpu - frontend.cpu_idle_cores)
    )
    assert ceiling >= math.ceil(need - 1e-9)
    with pytest.raises(FirebreakError, match="--provision: one of peak, as-shipped, got 'max'"):
        day_scenario(path, provision="max")
