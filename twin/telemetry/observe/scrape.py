"""Scraping the twin's pods: per-tick telemetry in, Prometheus samples out.

Each tick the twin says how many requests each service served, failed and refused, how
their latencies were distributed (a shifted lognormal) and how much CPU they took. Here
those expectations are accumulated per service, split between its pods and, at each pod's
scrape (every interval, at the pod's own phase, with jitter), turned into the counters a
real exporter would hold: Poisson counts of requests by status, histogram buckets drawn
binomially from the latency distribution (the counts, not the distribution, are what a
histogram keeps), the sum of latencies, CPU seconds with the runtime's idle share, and GC
pauses that push a share of an interval's requests into slower buckets. Gauges (in-flight,
queue, memory, replicas) are read at the scrape. Counters start from zero when a pod is
new or its container restarted; some scrapes go missing.
"""

from __future__ import annotations

import numpy as np
from scipy.special import ndtr

from twin.fields import M
from twin.scenario.schema import Scenario
from twin.telemetry.frame import Chunk
from twin.telemetry.observe.confounders import Effects
from twin.telemetry.observe.pods import PodSet

# counter series per pod: requests by status, latency sum, CPU seconds, then the buckets
OK, ERR, SHED, LAT_SUM, CPU = range(5)
N_FIXED = 5
# gauges per pod
IN_FLIGHT, QUEUE, MEMORY, WORKERS, READY, DESIRED = range(6)
N_GAUGES = 6


def bucket_cdf(dist: np.ndarray, lat: np.ndarray, upper: np.ndarray) -> np.ndarray:
    """P(latency ≤ le) per tick, service and bucket for shift + lognormal(mu, sigma)
    residence times, every latency multiplied by `lat`: T × S × B."""
    mu = dist[..., 0] + np.log(lat)
    sigma = np.maximum(dist[..., 1], 1e-6)
    shift = dist[..., 2] * lat
    above = np.maximum(upper[None, None, :] - shift[..., None], 1e-300)
    z = (np.log(above) - mu[..., None]) / sigma[..., None]
    return np.where(upper[None, None, :] > shift[..., None], ndtr(z), 0.0)


def _binomial(rng: np.random.Generator, n: np.ndarray, p: np.ndarray) -> np.ndarray:
    """Binomial draws; where n·p·(1-p) > 50 the normal approximation (far cheaper, and
    indistinguishable at those counts)."""
    var = n * p * (1.0 - p)
    big = var > 50.0
    out = np.empty(n.shape, dtype=np.int64)
    if big.any():
        z = rng.standard_normal(int(big.sum()))
        approx = np.rint(n[big] * p[big] + np.sqrt(var[big]) * z)
        out[big] = np.clip(approx, 0, n[big])
    small = ~big
    out[small] = rng.binomial(n[small], p[small])
    return out


class Scraper:
    """Turns chunks of ticks into scrape rounds (one row per round, one column per pod)."""

    def __init__(
        self,
        scenario: Scenario,
        names: tuple[str, ...],
        pods: PodSet,
        effects: Effects,
        rng: np.random.Generator,
    ):
        self.cfg = scenario.telemetry.production
        self.pods = pods
        self.effects = effects
        self.rng = rng
        self.upper = np.asarray(self.cfg.buckets_s, dtype=float)
        self.n_series = N_FIXED + len(self.upper)
        self.dt = scenario.tick
        n_s, n_p = len(names), len(pods)
        self.tail_times = np.zeros(0)
        self.tail_cum = np.zeros((0, n_s, self.n_series))
        self.tail_gauges = np.zeros((0, n_s, N_GAUGES))
        self.cum_end = np.zeros((n_s, self.n_series))  # expected counts so far, per service
        self.at_last = np.zeros((n_p, self.n_series))  # cum_end at each pod's last scrape
        self.t_last = np.zeros(n_p)
        self.counters = np.zeros((n_p, self.n_series))
        self.next_round = 0
        self.restarts: list[tuple[float, int, object]] = []  # (time, service, key)
        self.rollouts: list[tuple[float, int]] = []

    def _per_tick(self, chunk: Chunk) -> tuple[np.ndarray, np.ndarray]:
        """Expected counts per tick (T × S × series) and gauges (T × S × gauges)."""
        v, dt = chunk.values, self.dt
        lat, cpu_f, cores, mem = self.effects.at(chunk.times)
        ok = v[:, :, M["throughput"]] * dt
        err = v[:, :, M["error_rate"]] * dt
        served = ok + err
        inc = np.empty((*ok.shape, self.n_series))
        inc[..., OK], inc[..., ERR] = ok, err
        inc[..., SHED] = v[:, :, M["shed_rate"]] * dt
        inc[..., LAT_SUM] = served * v[:, :, M["latency_mean_ms"]] / 1000.0 * lat
        inc[..., CPU] = (v[:, :, M["cpu_cores"]] * cpu_f + cores) * dt
        # the latency distribution moves slowly: its CDF once per block of ticks is enough
        block = max(1, int(self.cfg.scrape_interval_s / 3 / dt))
        mid = np.minimum(np.arange(len(ok)) // block * block + block // 2, len(ok) - 1)
        picks = np.unique(mid)
        cdf = bucket_cdf(chunk.dist[picks], lat[picks], self.upper)
        inc[..., N_FIXED:] = served[..., None] * cdf[np.searchsorted(picks, mid)]
        gauges = np.empty((*ok.shape, N_GAUGES))
        gauges[..., IN_FLIGHT] = v[:, :, M["in_flight"]]
        gauges[..., QUEUE] = v[:, :, M["queue"]]
        gauges[..., MEMORY] = v[:, :, M["memory_mb"]] * mem
        gauges[..., WORKERS] = v[:, :, M["worker_utilization"]]
        gauges[..., READY] = v[:, :, M["ready_replicas"]]
        gauges[..., DESIRED] = v[:, :, M["desired_replicas"]]
        return inc, gauges

    def feed(self, chunk: Chunk, index: dict[str, int], final: bool = False) -> dict | None:
        """Take a chunk; return the scrape rounds it completes (None when none)."""
        for e in chunk.events:
            kind, svc = e.get("kind"), index.get(e.get("service", ""), -1)
            if svc < 0:
                continue
            if kind in ("deploy", "rollback"):
                self.rollouts.append((e["time"], svc))
            elif kind in ("pod_crash", "pod_restart") and e.get("reason") != "rollout":
                self.restarts.append((e["time"], svc, (e.get("pod"), e["time"])))
        self.rollouts += self.effects.rollouts(float(chunk.times[0]), float(chunk.times[-1]) + 1)
        inc, gauges = self._per_tick(chunk)
        cum = self.cum_end[None] + np.cumsum(inc, axis=0)
        self.cum_end = cum[-1]
        times = np.concatenate([self.tail_times, chunk.times])
        cum = np.concatenate([self.tail_cum, cum])
        gauges = np.concatenate([self.tail_gauges, gauges])
        rounds = self._rounds(times, cum, gauges, final)
        keep = times >= self.next_round * self.cfg.scrape_interval_s - 2 * self.dt - 1.0
        keep[-1] = True
        self.tail_times, self.tail_cum, self.tail_gauges = times[keep], cum[keep], gauges[keep]
        return rounds

    def flush(self) -> dict | None:
        """The rounds left at the end of the run (those whose scrapes fall inside it)."""
        if not len(self.tail_times):
            return None
        return self._rounds(self.tail_times, self.tail_cum, self.tail_gauges, final=True)

    def _rounds(self, times, cum, gauges, final: bool) -> dict | None:
        cfg, interval = self.cfg, self.cfg.scrape_interval_s
        end = float(times[-1])
        last = int(np.floor((end - interval - cfg.scrape_jitter_s) / interval))
        if final:
            last = int(np.floor(end / interval))
        ks = np.arange(self.next_round, last + 1)
        if len(ks) == 0:
            return None
        self.next_round = int(ks[-1]) + 1
        n_k, n_p = len(ks), len(self.pods)
        jitter = self.rng.uniform(-cfg.scrape_jitter_s, cfg.scrape_jitter_s, (n_k, n_p))
        tau = ks[:, None] * interval + self.pods.phase[None, :] + jitter
        row = np.clip(np.searchsorted(times, tau, side="right") - 1, 0, len(times) - 1)
        svc = self.pods.service[None, :]
        g = gauges[row, svc]  # K × P × gauges
        reset, generation, incarnation, weights = self._lifecycle(tau, g[..., READY])
        present = (self.rng.random((n_k, n_p)) >= cfg.missing_scrapes) & (weights > 0)
        present &= (tau <= end) & (tau >= 0)
        counters = self._draw(tau, cum[row, svc], weights, reset)
        names = np.stack([generation, incarnation], axis=-1)
        return {"times": tau, "present": present, "counters": counters,
                "gauges": self._gauges(g, weights), "names": names}  # fmt: skip

    def _lifecycle(self, tau: np.ndarray, ready: np.ndarray):
        """Per round and pod: counter resets, ReplicaSet generation, pod incarnation and
        load share, from the replicas ready and the rollouts and restarts before it."""
        pods = self.pods
        n_k, n_p = tau.shape
        active = (pods.slot[None, :] < np.round(ready)) | ((pods.slot == 0) & (ready > 0))
        before = np.vstack([pods.active[None, :], active[:-1]])
        reset = active & ~before
        new_rs = np.zeros((n_k, len(pods.names)), dtype=np.int64)
        round_end = tau.max(axis=1)
        for t, s in self.rollouts:
            k = int(np.searchsorted(round_end, t, side="left"))
            if k < n_k:
                new_rs[k, s] += 1
        self.rollouts = [r for r in self.rollouts if r[0] > round_end[-1]]
        reset |= new_rs[:, pods.service] > 0
        for t, s, key in self.restarts:  # a container restarted in place: same name
            k = int(np.searchsorted(round_end, t, side="left"))
            mine = np.flatnonzero((pods.service == s) & active[min(k, n_k - 1)])
            if k < n_k and len(mine):
                reset[k, mine[pods.pick(key, len(mine))]] = True
        self.restarts = [r for r in self.restarts if r[0] > round_end[-1]]
        fresh = (reset & ~before) | (new_rs[:, pods.service] > 0)
        incarnation = pods.incarnation[None, :] + np.cumsum(fresh, axis=0)
        generation = pods.generation[None, :] + np.cumsum(new_rs, axis=0)
        reset[0] |= pods.restarted
        pods.restarted = np.zeros(n_p, dtype=bool)
        pods.active, pods.incarnation = active[-1].copy(), incarnation[-1].copy()
        pods.generation = generation[-1].copy()
        f = np.where(active, pods.factor[None, :], 0.0)
        total = np.add.reduceat(f, pods.first, axis=1)  # a service's pods are contiguous
        weights = np.where(active, f / np.maximum(total[:, pods.service], 1e-12), 0.0)
        return reset, generation[:, pods.service], incarnation, weights

    def _draw(self, tau, cum_at, weights, reset) -> np.ndarray:
        """Each pod's counters at each scrape: Poisson and binomial draws of what it served
        since its previous scrape, from zero again after a reset."""
        cfg, rng = self.cfg, self.rng
        prev_cum = np.concatenate([self.at_last[None], cum_at[:-1]])
        expected = np.maximum((cum_at - prev_cum) * weights[..., None], 0.0)
        self.at_last = cum_at[-1].copy()
        prev_t = np.concatenate([self.t_last[None], tau[:-1]])
        span = np.maximum(tau - prev_t, 0.0)
        self.t_last = tau[-1].copy()
        on = weights > 0
        shape = tau.shape
        n_ok = rng.poisson(expected[..., OK])
        n_err = rng.poisson(expected[..., ERR])
        # benign errors are per service (as declared), shared by its pods like its load:
        # per pod, a service's budget of them grew with its replicas
        n_bg = rng.poisson(cfg.background_errors_per_s * span * weights)
        n_req = n_ok + n_err
        served = np.maximum(expected[..., OK] + expected[..., ERR], 1e-12)
        cdf = np.maximum.accumulate(np.clip(expected[..., N_FIXED:] / served[..., None], 0, 1), -1)
        paused = rng.random(shape) < 1.0 - np.exp(-cfg.gc_pauses_per_minute * span / 60.0)
        pause_s = cfg.gc_pause_ms / 1000.0 * rng.lognormal(0.0, 0.5, shape) * paused
        share = np.minimum(pause_s / np.maximum(span, 1e-9), 0.5)
        mean_s = expected[..., LAT_SUM] / served
        slow = self.upper >= (mean_s + pause_s)[..., None]
        cdf = (1.0 - share[..., None]) * cdf + share[..., None] * slow
        inc = np.empty_like(expected)
        above = n_req
        for b in range(len(self.upper) - 1, -1, -1):  # cumulative bucket counts, top down
            top = cdf[..., b + 1] if b + 1 < cdf.shape[-1] else 1.0
            above = _binomial(rng, above, np.clip(cdf[..., b] / np.maximum(top, 1e-12), 0, 1))
            inc[..., N_FIXED + b] = above + n_bg
        inc[..., OK], inc[..., ERR] = n_ok, n_err + n_bg
        inc[..., SHED] = rng.poisson(expected[..., SHED])
        noise = np.exp(0.02 * rng.standard_normal(shape))
        inc[..., LAT_SUM] = n_req * mean_s * noise + n_req * share * pause_s
        idle = cfg.idle_cpu_cores * span * on * np.exp(0.3 * rng.standard_normal(shape))
        inc[..., CPU] = expected[..., CPU] * noise + idle + 0.5 * pause_s
        total = self.counters[None] + np.cumsum(inc, axis=0)
        before = np.concatenate([self.counters[None], total[:-1]])
        base = np.maximum.accumulate(np.where(reset[..., None], before, 0.0), axis=0)
        counters = total - base
        self.counters = counters[-1].copy()
        return counters

    def _gauges(self, g: np.ndarray, weights: np.ndarray) -> np.ndarray:
        """Gauges read at the scrape: counts drawn around the pod's share, memory per pod."""
        rng = self.rng
        out = np.empty_like(g)
        out[..., IN_FLIGHT] = rng.poisson(np.maximum(g[..., IN_FLIGHT] * weights, 0.0))
        out[..., QUEUE] = rng.poisson(np.maximum(g[..., QUEUE] * weights, 0.0))
        jitter = np.exp(0.01 * rng.standard_normal(weights.shape))
        out[..., MEMORY] = g[..., MEMORY] * self.pods.memory_factor * jitter
        busy = g[..., WORKERS] * np.exp(0.05 * rng.standard_normal(weights.shape))
        out[..., WORKERS] = np.clip(busy, 0.0, 1.0)
        out[..., READY], out[..., DESIRED] = g[..., READY], g[..., DESIRED]
        return out
