"""The compiled node-metrics kernel against the plain numpy formulas it replaced, on node
states that exercise every branch (down, NotReady, cordoned, pressure, steal, loss)."""

from __future__ import annotations

import numpy as np
import pytest

from twin.fields import NODE_METRICS, M
from twin.infra.node_metrics import fill_node_metrics


def _numpy_reference(values, share, counts, st, daemons):
    """The per-tick formulas as numpy array calls (the pre-kernel `Cluster.record`)."""
    up = ~st["not_ready"]
    alive = np.isnan(st["down_since"])
    sched = ~(st["cordoned"] | st["not_ready"] | ~alive | st["mem_pressure"] | st["disk"])
    other_cpu = st["steal"] * st["cpu_alloc"] + np.maximum(0.1 + 0.03 * daemons[0], 0.0)
    other_mem = np.where(st["mem_pressure"], 0.9 * st["mem_alloc"], 0.0)
    other_mem = other_mem + 1200.0 + 15.0 * daemons[1]
    cpu = np.where(up, values[:, M["cpu_cores"]] @ share + other_cpu, 0.0)
    mem = np.where(up, values[:, M["memory_mb"]] @ counts + other_mem, 0.0)
    out = np.zeros((len(up), len(NODE_METRICS)))
    out[:, 0], out[:, 1], out[:, 2] = alive, up, sched
    out[:, 3] = np.where(alive, cpu, 0.0)
    out[:, 4] = np.where(alive & up, other_cpu, 0.0)
    out[:, 5] = out[:, 3] / st["cpu_alloc"]
    out[:, 6] = np.where(alive, mem, 0.0)
    out[:, 7] = np.where(alive & up, other_mem, 0.0)
    out[:, 8] = out[:, 6] / st["mem_alloc"]
    out[:, 9] = st["bound"]
    out[:, 10] = st["io_s"] * 1000.0 + 0.3 * np.abs(daemons[2])
    out[:, 11] = st["loss"] + 1e-4 * np.abs(daemons[3])
    out[:, 12] = st["oom"]
    return out


@pytest.mark.parametrize("seed", range(5))
def test_kernel_matches_the_numpy_formulas(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n_svc, n_nodes = 7, 6
    values = rng.uniform(0.0, 900.0, size=(n_svc, len(M)))
    counts = rng.integers(0, 3, size=(n_svc, n_nodes)).astype(float)
    ready = counts.sum(axis=1, keepdims=True)
    share = np.divide(counts, ready, out=np.zeros_like(counts), where=ready > 0)
    st = {
        "down_since": np.where(rng.random(n_nodes) < 0.3, 12.0, np.nan),
        "not_ready": rng.random(n_nodes) < 0.3,
        "cordoned": rng.random(n_nodes) < 0.3,
        "mem_pressure": rng.random(n_nodes) < 0.3,
        "disk": rng.random(n_nodes) < 0.3,
        "steal": rng.uniform(0, 0.5, n_nodes) * (rng.random(n_nodes) < 0.5),
        "cpu_alloc": rng.uniform(2, 8, n_nodes),
        "mem_alloc": rng.uniform(4000, 16000, n_nodes),
        "bound": rng.integers(0, 9, n_nodes).astype(float),
        "io_s": rng.uniform(0, 0.05, n_nodes),
        "loss": rng.uniform(0, 0.2, n_nodes),
        "oom": rng.integers(0, 4, n_nodes).astype(float),
    }
    daemons = rng.normal(size=(4, n_nodes))
    daemons[0, 0] = -10.0  # the daemons' CPU floor at zero
    out = np.full((n_nodes, len(NODE_METRICS)), np.nan)
    fill_node_metrics(
        values[None], M["cpu_cores"], M["memory_mb"], share, counts, st["down_since"],
        st["not_ready"], st["cordoned"], st["disk"], st["steal"], st["cpu_alloc"],
        st["mem_pressure"], st["mem_alloc"], st["bound"], st["io_s"], st["loss"], st["oom"],
        daemons[None], out[None],
    )  # fmt: skip
    np.testing.assert_allclose(out, _numpy_reference(values, share, counts, st, daemons),
                               rtol=1e-12, atol=1e-12)  # fmt: skip


def test_the_schedulable_column_is_what_the_cluster_says() -> None:
    """The kernel spells out `Cluster.schedulable`'s rule; on a real cluster with a node
    cordoned, one NotReady, one down and one under each pressure, both agree."""
    from conftest import chain_topology, make_scenario

    from twin.flow.engine import Simulation

    infra = {"zones": 3, "nodes_per_zone": 2, "node_cpu": 4.0}
    sim = Simulation(make_scenario(chain_topology(), duration=60, infrastructure=infra))
    cluster = sim.cluster
    cluster.cordoned[0] = True
    cluster.not_ready[1] = True
    cluster.down_since[2] = 0.0
    cluster.mem_pressure[3] = True
    cluster.disk_pressure[4] = True
    values = np.zeros((len(sim.topo.names), len(M)))
    out = np.zeros((len(cluster.names), len(NODE_METRICS)))
    cluster.record(values, out)
    np.testing.assert_array_equal(out[:, 2] > 0, cluster.schedulable())
    assert list(cluster.schedulable()) == [False] * 5 + [True]


def test_a_burst_recorded_at_once_is_the_ticks_recorded_one_by_one() -> None:
    """The engine records a flow burst's ticks in one call: the same rows, and the same
    daemon-noise draws in the same order, as one call per tick."""
    from conftest import chain_topology, make_scenario

    from twin.flow.engine import Simulation

    infra = {"zones": 2, "nodes_per_zone": 2, "node_cpu": 4.0}

    def cluster():
        sim = Simulation(make_scenario(chain_topology(), duration=60, infrastructure=infra))
        sim.cluster.steal[1] = 0.3
        sim.cluster.not_ready[2] = True
        return sim.cluster

    one_by_one, at_once = cluster(), cluster()
    n_services = len(one_by_one.sim.topo.names)
    values = np.random.default_rng(0).uniform(0.0, 50.0, size=(5, n_services, len(M)))
    rows = np.zeros((5, len(one_by_one.names), len(NODE_METRICS)))
    for t in range(5):
        one_by_one.record(values[t], rows[t])
    burst = np.zeros_like(rows)
    at_once.record(values, burst)
    np.testing.assert_array_equal(burst, rows)
    assert len(np.unique(burst[:, 0, 3])) == 5  # each tick its own values and draws
