"""The run directory as a production monitoring stack would have recorded the run.

`metrics.parquet` keeps its shape (time, service, metric, value; the same metric names, so
every detector and export reads it unchanged) but each value is what a dashboard's PromQL
query returns on a `step_s` grid from the scraped pods:
- rates: `sum by (service) (rate(x_total[1m]))` of requests by status (arrival, throughput,
  error and shed rates, the error ratio) and of container CPU seconds (cpu_cores);
- latency: the mean from `rate(..._sum) / rate(..._count)`, p50/p95/p99 from
  `histogram_quantile` over the summed bucket rates (so they sit on bucket bounds' lines);
- gauges at the last scrape within five minutes: memory (mean over pods), in-flight and
  queue (summed), worker utilisation (mean), ready and desired replicas (kube-state-metrics);
- a step whose window holds no scrape carries the last value (as a dashboard draws it).
`pod_metrics.parquet` holds per-pod series (time, pod, metric, value) named as Kubernetes
names pods; `edge_metrics.parquet` and `node_metrics.parquet` are averaged to the same
grid. `telemetry.json` records the mode, its settings, every pod's service and the drawn
confounders (for studying false alarms; detectors never read it).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from twin.errors import ScenarioError
from twin.fields import N_SERVICE_METRICS, M
from twin.rng import stream
from twin.run.directory import PART, RunDirectoryWriter, write_json
from twin.scenario.schema import Scenario
from twin.telemetry.files import write_all
from twin.telemetry.frame import Chunk
from twin.telemetry.observe import promql
from twin.telemetry.observe import scrape as sc
from twin.telemetry.observe.confounders import Effects, draw
from twin.telemetry.observe.pods import PodSet

GAUGE_LOOKBACK_S = 300.0  # Prometheus's staleness window for instant queries
# what a service's own pods export: with no pod ready these series are gone (Prometheus
# marks a vanished target's series stale at once), so they read 0; latency quantiles keep
# their last values (no requests to measure) and the replica counts come from
# kube-state-metrics, which reports them whatever the pods do
GONE_WITH_PODS = np.isin(
    np.arange(N_SERVICE_METRICS),
    [M[m] for m in (
        "arrival_rate", "throughput", "error_rate", "shed_rate", "error_ratio", "cpu_cores",
        "cpu_utilization", "memory_mb", "queue", "in_flight", "worker_utilization",
    )],
)  # fmt: skip
POD_METRICS = ("request_rate", "error_rate", "cpu_cores", "memory_mb")


class StepMeans:
    """Means of per-tick rows over each step (t - step, t], emitted once complete."""

    def __init__(self, step: float):
        self.step = step
        self.index: int | None = None
        self.sum: np.ndarray | None = None
        self.count = 0

    def feed(self, times: np.ndarray, block: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        idx = np.ceil(times / self.step - 1e-9).astype(np.int64)
        out_t, out_v = [], []
        for i in np.unique(idx):
            rows = block[idx == i]
            if self.index is not None and i != self.index:
                out_t.append(self.index * self.step)
                out_v.append(self.sum / self.count)
                self.sum, self.count = None, 0
            self.index = int(i)
            self.sum = rows.sum(axis=0) if self.sum is None else self.sum + rows.sum(axis=0)
            self.count += len(rows)
        return self._stack(out_t, out_v, block.shape[1:])

    def flush(self, shape: tuple) -> tuple[np.ndarray, np.ndarray]:
        if self.index is None or not self.count:
            return self._stack([], [], shape)
        out = ([self.index * self.step], [self.sum / self.count])
        self.index, self.sum, self.count = None, None, 0
        return self._stack(*out, shape)

    @staticmethod
    def _stack(t: list, v: list, shape: tuple) -> tuple[np.ndarray, np.ndarray]:
        return np.asarray(t, dtype=float), (np.stack(v) if v else np.zeros((0, *shape)))


class ProductionWriter(RunDirectoryWriter):
    """A run-directory sink writing production-like telemetry (see the module docstring)."""

    def __init__(self, out: Path, scenario: Scenario, services, edges, nodes=()):
        cfg = scenario.telemetry.production
        shortest = cfg.rate_window_s + cfg.scrape_interval_s
        if scenario.duration < shortest:  # not one rate() window: nothing to write
            raise ScenarioError(
                f"duration: {scenario.duration:g}s is too short for production telemetry "
                f"(at least rate_window_s + scrape_interval_s = {shortest:g}s)"
            )
        super().__init__(out, services, edges, nodes)
        self.scenario = scenario
        self.cfg = cfg
        seed = scenario.seed
        self.services = tuple(services)
        self.index = {n: i for i, n in enumerate(self.services)}
        self.pods = PodSet(scenario, self.services, stream(seed, "observe.pods"))
        self.confounders = draw(scenario, self.services, stream(seed, "observe.confounders"))
        effects = Effects(scenario, self.services, self.confounders, stream(seed, "observe.drift"))
        self.scraper = sc.Scraper(
            scenario, self.services, self.pods, effects, stream(seed, "observe.scrape")
        )
        self.upper = np.asarray(cfg.buckets_s, dtype=float)
        self.store: dict[str, np.ndarray] | None = None
        self.next_step = np.ceil(cfg.rate_window_s / cfg.step_s) * cfg.step_s
        self.first_step = float(self.next_step)
        self.end = 0.0
        self.carry = np.full((len(self.services), N_SERVICE_METRICS), np.nan)
        onehot = np.zeros((len(self.pods), len(self.services)))
        onehot[np.arange(len(self.pods)), self.pods.service] = 1.0
        self.onehot = onehot
        self.request = np.array(
            [scenario.topology.services[n].cpu_request for n in self.services], dtype=float
        )
        self.edge_steps, self.node_steps = StepMeans(cfg.step_s), StepMeans(cfg.step_s)
        self.pod_names: dict[tuple[int, int, int], str] = {}
        self.pod_parts = 0
        # who else reads the rows as they are written ("service", "edge" or "node", times,
        # block): the closed loop's view (agents.loop.observed_feed) sees exactly these
        self.listeners: list[Callable[[str, np.ndarray, np.ndarray], None]] = []
        (out / "pod_metrics.parquet").mkdir(parents=True, exist_ok=True)

    def on_chunk(self, chunk: Chunk) -> None:
        if chunk.events:
            text = "".join(_json(r) for r in chunk.events)
            write_all(self._events, text.encode("utf-8"))
        self.ticks += len(chunk.times)
        self.end = float(chunk.times[-1])
        if chunk.edge_values.shape[1]:
            edge_out = self.edge_steps.feed(chunk.times, chunk.edge_values)
            self._put_means(self.edge_metrics, edge_out, "edge")
        if self.node_metrics is not None and chunk.node_values is not None:
            node_out = self.node_steps.feed(chunk.times, chunk.node_values)
            self._put_means(self.node_metrics, node_out, "node")
        rounds = self.scraper.feed(chunk, self.index)
        if rounds is not None:
            self._append(rounds)
            ready = self.scraper.next_round * self.cfg.scrape_interval_s - self.cfg.scrape_jitter_s
            self._evaluate(ready - 1e-6)

    def close(self) -> None:
        if getattr(self, "_finished", False):
            return super().close()
        self._finished = True
        try:
            rounds = self.scraper.flush()
            if rounds is not None:
                self._append(rounds)
            self._evaluate(self.end)
            edge_shape = (len(self.edge_metrics.entities), len(self.edge_metrics.metrics))
            if edge_shape[0]:
                self._put_means(self.edge_metrics, self.edge_steps.flush(edge_shape), "edge")
            if self.node_metrics is not None:
                shape = (len(self.node_metrics.entities), len(self.node_metrics.metrics))
                self._put_means(self.node_metrics, self.node_steps.flush(shape), "node")
            self._write_summary()
        finally:
            super().close()

    def _put_means(self, writer, out: tuple[np.ndarray, np.ndarray], kind: str) -> None:
        """Edge and node means on the metrics' own steps (none before the first rate window,
        none past the run's last tick)."""
        times, block = out
        keep = (times >= self.first_step - 1e-9) & (times <= self.end + 1e-9)
        if keep.any():
            writer.put(times[keep], block[keep])
            self._publish(kind, times[keep], block[keep])

    def _publish(self, kind: str, times: np.ndarray, block: np.ndarray) -> None:
        for listener in self.listeners:
            listener(kind, times, block)

    def _append(self, rounds: dict) -> None:
        if self.store is None:
            self.store = rounds
            return
        self.store = {k: np.concatenate([self.store[k], rounds[k]]) for k in rounds}

    def _evaluate(self, upto: float) -> None:
        """Every step up to `upto` from the scrapes kept, then forget the scrapes no later
        step needs."""
        if self.store is None or upto < self.next_step:
            return
        steps = np.arange(self.next_step, upto + 1e-9, self.cfg.step_s)
        if not len(steps):
            return
        self.next_step = float(steps[-1] + self.cfg.step_s)
        st = self.store
        corrected = promql.reset_corrected(st["counters"], st["present"])
        window = self.cfg.rate_window_s
        rates = promql.rate(st["times"], st["counters"], corrected, st["present"], steps, window)
        _, last, _, seen = promql.window_bounds(st["times"], st["present"], steps, GAUGE_LOOKBACK_S)
        gauges = st["gauges"][last, np.arange(len(self.pods))[None, :]]
        block = self._service_block(rates, gauges, seen, self._kube_state(st, steps))
        self.metrics.put(steps, block)
        self._publish("service", steps, block)
        self._write_pods(steps, rates, gauges, seen, st["names"][last, np.arange(len(self.pods))])
        keep_from = steps[-1] - max(window, GAUGE_LOOKBACK_S) - 2 * self.cfg.scrape_interval_s
        keep = st["times"].max(axis=1) >= keep_from
        keep[-1] = True
        self.store = {k: v[keep] for k, v in st.items()}

    def _kube_state(self, st: dict[str, np.ndarray], steps: np.ndarray) -> np.ndarray:
        """steps × services × (ready, desired): what kube-state-metrics reports from the API
        server, whether or not any pod answers its own scrape (NaN before the first round).

        Every pod's row of a round carries its service's counts at that moment, so the
        latest round at or before a step gives them, present or not."""
        rounds = np.ones_like(st["present"], dtype=bool)
        _, latest, _, any_round = promql.window_bounds(st["times"], rounds, steps, GAUGE_LOOKBACK_S)
        both = st["gauges"][latest, np.arange(len(self.pods))[None, :]][..., [sc.READY, sc.DESIRED]]
        weight = any_round.astype(float)
        total = np.einsum("jpg,ps->jsg", np.where(any_round[..., None], both, 0.0), self.onehot)
        with np.errstate(invalid="ignore", divide="ignore"):
            return total / (weight @ self.onehot)[..., None]

    def _service_block(
        self, rates: np.ndarray, gauges: np.ndarray, seen: np.ndarray, kube: np.ndarray
    ):
        """steps × services × SERVICE_METRICS from the pods' rates and gauges, and the
        replica counts kube-state-metrics reports (`kube`, steps × services × 2).

        A step with nothing to say repeats the last value (a missed scrape, a window too
        short for rate()), except where no pod of the service is ready: then its pods'
        series are gone (GONE_WITH_PODS reads 0), as a dashboard shows a service whose pods
        all crash-loop, rather than its last healthy minute frozen."""
        have = ~np.isnan(rates[..., sc.OK])
        summed = np.einsum("jpc,ps->jsc", np.nan_to_num(rates), self.onehot)
        pods_in = have.astype(float) @ self.onehot
        summed[pods_in == 0] = np.nan
        g_seen = seen.astype(float) @ self.onehot
        g_sum = np.einsum("jpg,ps->jsg", np.where(seen[..., None], gauges, 0.0), self.onehot)
        with np.errstate(invalid="ignore", divide="ignore"):
            g_mean = g_sum / g_seen[..., None]
            out = np.full((len(rates), len(self.services), N_SERVICE_METRICS), np.nan)
            ok, err, shed = (summed[..., i] for i in (sc.OK, sc.ERR, sc.SHED))
            served = ok + err
            out[..., M["arrival_rate"]] = served + shed
            out[..., M["throughput"]] = ok
            out[..., M["error_rate"]] = err
            out[..., M["shed_rate"]] = shed
            out[..., M["error_ratio"]] = np.where(
                served + shed > 0, (err + shed) / (served + shed), 0
            )
            out[..., M["latency_mean_ms"]] = 1000.0 * summed[..., sc.LAT_SUM] / served
            buckets = np.concatenate([summed[..., sc.N_FIXED :], served[..., None]], axis=-1)
            for q, name in (
                (0.5, "latency_p50_ms"),
                (0.95, "latency_p95_ms"),
                (0.99, "latency_p99_ms"),
            ):
                out[..., M[name]] = 1000.0 * promql.histogram_quantile(q, buckets, self.upper)
            ready = kube[..., 0]
            out[..., M["cpu_cores"]] = summed[..., sc.CPU]
            out[..., M["cpu_utilization"]] = summed[..., sc.CPU] / (ready * self.request)
        out[..., M["memory_mb"]] = g_mean[..., sc.MEMORY]
        out[..., M["queue"]] = g_sum[..., sc.QUEUE]
        out[..., M["in_flight"]] = g_sum[..., sc.IN_FLIGHT]
        out[..., M["worker_utilization"]] = g_mean[..., sc.WORKERS]
        out[..., M["ready_replicas"]] = ready
        out[..., M["desired_replicas"]] = kube[..., 1]
        out[~np.isfinite(out)] = np.nan
        out[(ready < 0.5)[..., None] & GONE_WITH_PODS[None, None, :]] = 0.0
        for j in range(len(out)):  # a step with nothing to say repeats the last value
            gap = np.isnan(out[j])
            out[j][gap] = self.carry[gap]
            self.carry = out[j].copy()
        return np.nan_to_num(out, nan=0.0)

    def _write_pods(self, steps, rates, gauges, seen, names) -> None:
        """pod_metrics.parquet: one part per evaluation, rows where the pod was scraped."""
        j, p = np.nonzero(seen)
        if not len(j):
            return
        gen, inc = names[j, p, 0], names[j, p, 1]
        keys, codes = np.unique(np.stack([p, gen, inc], axis=1), axis=0, return_inverse=True)
        labels = [self._pod_name(int(a), int(b), int(c)) for a, b, c in keys]
        r = rates[j, p]
        values = np.stack(
            [r[:, sc.OK] + r[:, sc.ERR] + r[:, sc.SHED], r[:, sc.ERR] + r[:, sc.SHED],
             r[:, sc.CPU], gauges[j, p, sc.MEMORY]], axis=1)  # fmt: skip
        n_m = len(POD_METRICS)
        pod = pa.DictionaryArray.from_arrays(
            pa.array(np.repeat(codes.reshape(-1), n_m).astype(np.int32)), pa.array(labels)
        )
        metric = pa.DictionaryArray.from_arrays(
            pa.array(np.tile(np.arange(n_m, dtype=np.int32), len(j))), pa.array(POD_METRICS)
        )
        table = pa.table(
            {"time": np.repeat(steps[j], n_m), "pod": pod, "metric": metric,
             "value": values.reshape(-1)}
        )  # fmt: skip
        folder = self.out / "pod_metrics.parquet"
        name = PART.format(self.pod_parts)
        tmp = folder / f".{name}.tmp"
        pq.write_table(table, tmp, compression="zstd")
        os.replace(tmp, folder / name)
        self.pod_parts += 1

    def _pod_name(self, p: int, generation: int, incarnation: int) -> str:
        key = (p, int(generation), int(incarnation))
        name = self.pod_names.get(key)
        if name is None:
            name = self.pod_names[key] = self.pods.pod_name(*key)
        return name

    def _write_summary(self) -> None:
        services = {name: self.services[int(self.pods.service[k[0]])] for k, name in
                    sorted(self.pod_names.items(), key=lambda kv: kv[1])}  # fmt: skip
        write_json(
            self.out / "telemetry.json",
            {
                "mode": "production",
                "settings": self.cfg.model_dump(mode="json"),
                "pods": services,
                "confounders": [c.as_dict() for c in self.confounders],
            },
        )


def _json(record: dict) -> str:
    import json

    return json.dumps(record, sort_keys=True) + "\n"


def open_writer(scenario: Scenario, out: Path, services, edges, nodes=()) -> RunDirectoryWriter:
    """The run directory's writer for the scenario's telemetry mode."""
    if scenario.telemetry.mode == "production":
        return ProductionWriter(out, scenario, services, edges, nodes)
    return RunDirectoryWriter(out, services, edges, nodes)
