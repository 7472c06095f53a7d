"""A latency fault's added milliseconds in the sampled spans: a constant every request pays,
as in the kernel's shift + lognormal, not a multiplier whose median depends on the spread."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from conftest import chain_topology, make_scenario
from trace_runs import run_with

ADD_MS = 200.0
START, END = 1200.0, 2400.0


def test_an_added_delay_moves_the_median_span_by_the_delay(tmp_path: Path) -> None:
    """leaf's own time has a coefficient of variation of 2 (sigma about 1.3): a multiplier
    would raise its median span by about 200·exp(-sigma²/2) ≈ 90 ms."""
    topology = chain_topology()
    for svc in topology["services"].values():
        svc["service_time"] = {"mean_ms": 5, "cv": 2.0}
    fault = {"kind": "latency", "target": "leaf", "start": START, "duration": END - START,
             "factor": 1.0, "add_ms": ADD_MS}  # fmt: skip
    run = run_with(make_scenario(topology, faults=[fault]), tmp_path, rate=0.02, logs=False)
    leaf = [s for s in run.spans if s.service == "leaf" and s.kind == "server"]
    before = np.array([s.duration for s in leaf if 60.0 <= s.start < START - 60.0])
    during = np.array([s.duration for s in leaf if START + 60.0 <= s.start < END - 60.0])
    assert len(before) > 300 and len(during) > 300
    kernel = run.metric("leaf", "latency_p50_ms")
    rise_kernel = (
        kernel[int(START) + 60 : int(END) - 60].mean() - kernel[60 : int(START) - 60].mean()
    )
    rise_spans = 1000.0 * (np.median(during) - np.median(before))
    assert abs(rise_kernel - ADD_MS) < 0.05 * ADD_MS  # the model adds all of it
    assert abs(rise_spans - ADD_MS) < 0.1 * ADD_MS  # and so do the spans


def test_a_network_delay_waits_on_the_wire_in_the_callers_client_spans(tmp_path: Path) -> None:
    """netem on leaf: its answers wait ADD_MS on the wire. leaf's own latency and server
    spans do not move; mid's calls to it (edge latency, client spans) grow by ADD_MS, outside
    leaf's server span; mid's own work stays."""
    fault = {"kind": "latency", "target": "leaf", "start": START, "duration": END - START,
             "factor": 1.0, "add_ms": ADD_MS, "network": True}  # fmt: skip
    run = run_with(make_scenario(chain_topology(), faults=[fault]), tmp_path, rate=0.02, logs=False)

    def window(values: np.ndarray, during: bool) -> float:
        lo, hi = (int(START) + 60, int(END) - 60) if during else (60, int(START) - 60)
        return float(values[lo:hi].mean())

    leaf_p50 = run.metric("leaf", "latency_p50_ms")
    assert abs(window(leaf_p50, True) - window(leaf_p50, False)) < 0.5  # ms: untouched
    by_id = {s.span_id: s for s in run.spans}
    gaps = {True: [], False: []}
    for s in run.spans:
        if s.service == "leaf" and s.kind == "server" and s.parent_id in by_id:
            client = by_id[s.parent_id]
            on = START + 60.0 <= client.start < END - 60.0
            if on or 60.0 <= client.start < START - 60.0:
                assert client.start <= s.start and s.end <= client.end  # the wire is outside
                gaps[on].append(1000.0 * (client.duration - s.duration))
    assert len(gaps[True]) > 200 and len(gaps[False]) > 200
    assert max(gaps[False]) < 1e-6  # no wire time without the fault
    assert np.allclose(gaps[True], ADD_MS)
