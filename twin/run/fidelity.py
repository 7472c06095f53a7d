"""Flow against request: the same scenario in both fidelities, compared service by service.

The request fidelity is the reference. Throughput and error ratio come from each run's
telemetry over the same window; the mean latency is the served-weighted mean of the tick
means; the p99 is exact for the request fidelity (every residence kept) and, for the flow
fidelity, the 99th percentile of the mixture of its per-tick residence distributions
weighted by the requests each tick served.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

import numpy as np
from scipy import optimize, stats

from twin.fields import M
from twin.flow.engine import Simulation
from twin.request.engine import RequestSimulation
from twin.scenario.schema import LatencyFault, Scenario
from twin.telemetry.frame import Chunk

COMPARED = ("throughput", "error_ratio", "latency_mean_ms", "latency_p99_ms")
TARGETS = {"throughput": 0.02, "latency_mean_ms": 0.10, "latency_p99_ms": 0.20}
ERROR_RATIO_TARGET = 0.02  # absolute: the share of failed requests, flow against request
# a storm (or any collapse): some service fails more than half its requests over 10 s
STORM_ERROR_RATIO, STORM_WINDOW_S = 0.5, 10.0
# a service is "affected" by a fault when its window average moves this much (both fidelities)
AFFECTED_LATENCY_REL, AFFECTED_LATENCY_ABS_MS = 0.25, 2.0
AFFECTED_ERROR_ABS = 0.02
AFFECTED_LOAD_REL = 0.10


class _Keep:
    """Keeps every chunk (comparisons run minutes to hours, not days)."""

    def __init__(self) -> None:
        self.chunks: list[Chunk] = []

    def on_chunk(self, chunk: Chunk) -> None:
        self.chunks.append(chunk)

    def close(self) -> None:
        pass

    def arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        times = np.concatenate([c.times for c in self.chunks])
        values = np.concatenate([c.values for c in self.chunks])
        dist = np.concatenate([c.dist for c in self.chunks])
        return times, values, dist


def mixture_quantile(dist: np.ndarray, weights: np.ndarray, q: float) -> float:
    """q-quantile (seconds) of a mixture of shift + lognormal(mu, sigma) components."""
    keep = weights > 0
    if not keep.any():
        return float("nan")
    mu, sigma, shift = dist[keep, 0], np.maximum(dist[keep, 1], 1e-9), dist[keep, 2]
    w = weights[keep] / weights[keep].sum()

    def cdf(x: float) -> float:
        z = (np.log(np.maximum(x - shift, 1e-300)) - mu) / sigma
        return float(np.sum(w * np.where(x > shift, stats.norm.cdf(z), 0.0)))

    hi = float(np.max(shift + np.exp(mu + 6.0 * sigma)))
    return float(optimize.brentq(lambda x: cdf(x) - q, 0.0, hi, xtol=1e-9))


@dataclass
class ServiceFigures:
    throughput: float
    error_ratio: float
    latency_mean_ms: float
    latency_p99_ms: float
    # standard error (batch means) of the request run's throughput minus the flow run's, per
    # tick: both see the same arrivals, so this is the request run's own sampling noise
    throughput_se: float = 0.0
    # 95% interval of the request run's exact p99: order statistics, widened to the
    # sections' spread where requests come in correlated bursts
    p99_ci: tuple[float, float] = (float("nan"), float("nan"))
    arrival_rate: float = 0.0
    # standard error (batch means) of the paired difference of the window's mean latencies
    latency_mean_se: float = 0.0


@dataclass
class FidelityReport:
    scenario: str
    seed: int
    window: tuple[float, float]
    services: tuple[str, ...]
    flow: list[ServiceFigures]
    request: list[ServiceFigures]
    wall_seconds: dict[str, float] = field(default_factory=dict)
    # when each fidelity first fell into a storm (seconds), None if it never did
    storm_onset: dict[str, float | None] = field(default_factory=dict)

    def relative_difference(self, metric: str) -> np.ndarray:
        """(flow − request) / request per service (NaN where the request figure is 0)."""
        f = np.array([getattr(x, metric) for x in self.flow])
        r = np.array([getattr(x, metric) for x in self.request])
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(r != 0, (f - r) / r, np.where(f == 0, 0.0, np.nan))

    def compared(self, min_rate: float = 0.0) -> np.ndarray:
        """Which services are judged: those the request run sees above `min_rate` req/s."""
        return np.array([r.arrival_rate > min_rate or min_rate <= 0.0 for r in self.request])

    def misses(
        self, targets: dict[str, float] | None = None, min_rate: float = 0.0
    ) -> dict[str, list[str]]:
        """Per metric, the judged services outside its target and outside the request run's
        own uncertainty: throughput and mean latency within two standard errors of their
        paired difference, p99 inside its 95% order-statistic interval (a low-rate
        service's p99 rests on a few dozen requests), the error ratio within 0.02."""
        targets = TARGETS if targets is None else targets
        judged = self.compared(min_rate)
        out: dict[str, list[str]] = {}
        for metric, tol in targets.items():
            rel = np.abs(np.nan_to_num(self.relative_difference(metric), nan=1.0))
            if metric == "throughput":
                noise = np.array(
                    [2.0 * r.throughput_se / max(r.throughput, 1e-12) for r in self.request]
                )
                rel = np.where(rel <= np.nan_to_num(noise, nan=0.0), 0.0, rel)
            if metric == "latency_mean_ms":
                noise = np.array(
                    [2.0 * r.latency_mean_se / max(r.latency_mean_ms, 1e-12) for r in self.request]
                )
                rel = np.where(rel <= np.nan_to_num(noise, nan=0.0), 0.0, rel)
            if metric == "latency_p99_ms":
                inside = np.array(
                    [
                        r.p99_ci[0] <= f.latency_p99_ms <= r.p99_ci[1]
                        for f, r in zip(self.flow, self.request, strict=True)
                    ]
                )
                rel = np.where(inside, 0.0, rel)
            out[metric] = [n for n, m in zip(self.services, judged & (rel > tol), strict=True) if m]
        gap = np.array([abs(f.error_ratio - r.error_ratio) for f, r in self.pairs()])
        bad = judged & (gap > ERROR_RATIO_TARGET)
        out["error_ratio"] = [n for n, m in zip(self.services, bad, strict=True) if m]
        return out

    def within_targets(
        self, targets: dict[str, float] | None = None, min_rate: float = 0.0
    ) -> dict[str, bool]:
        """Per metric (and the error ratio), whether every judged service is inside its target
        or the request run's own uncertainty (see `misses`)."""
        return {metric: not bad for metric, bad in self.misses(targets, min_rate).items()}

    def pairs(self) -> list[tuple[ServiceFigures, ServiceFigures]]:
        """(flow, request) figures per service."""
        return list(zip(self.flow, self.request, strict=True))

    def storms_agree(self, max_gap_s: float = 30.0) -> bool:
        """Both fidelities fall into a storm, or neither; if both, within `max_gap_s`."""
        flow, request = self.storm_onset.get("flow"), self.storm_onset.get("request")
        if flow is None or request is None:
            return flow is None and request is None
        return abs(flow - request) <= max_gap_s

    def table(self) -> str:
        """A plain-text table: each metric for flow and request, and the relative difference."""
        head = (
            f"{'service':24s} {'thr flow':>9s} {'request':>9s} {'±2se':>6s} {'diff':>7s}  "
            f"{'mean ms f':>9s} {'request':>8s} {'diff':>7s}  {'p99 ms f':>9s} {'request':>8s} "
            f"{'95% CI':>15s} {'diff':>7s}  {'err flow':>8s} {'request':>8s}"
        )
        rows = [head, "-" * len(head)]
        rel = {m: self.relative_difference(m) for m in COMPARED}
        for i, name in enumerate(self.services):
            f, r = self.flow[i], self.request[i]
            noise = 2 * r.throughput_se / max(r.throughput, 1e-12)
            ci = f"{r.p99_ci[0]:.1f}-{r.p99_ci[1]:.1f}"
            rows.append(
                f"{name[:24]:24s} {f.throughput:9.2f} {r.throughput:9.2f} {noise:6.1%} "
                f"{rel['throughput'][i]:+7.1%}  {f.latency_mean_ms:9.2f} {r.latency_mean_ms:8.2f} "
                f"{rel['latency_mean_ms'][i]:+7.1%}  {f.latency_p99_ms:9.2f} "
                f"{r.latency_p99_ms:8.2f} {ci:>15s} {rel['latency_p99_ms'][i]:+7.1%}  "
                f"{f.error_ratio:8.4f} {r.error_ratio:8.4f}"
            )
        return "\n".join(rows)


def quantile_ci(sorted_values: np.ndarray, q: float, z: float = 1.96) -> tuple[float, float]:
    """95% confidence interval of a quantile from order statistics (binomial ranks)."""
    n = len(sorted_values)
    if n < 2:
        return float("nan"), float("nan")
    half = z * np.sqrt(n * q * (1.0 - q))
    lo = int(max(np.floor(n * q - half), 0))
    hi = int(min(np.ceil(n * q + half), n - 1))
    return float(sorted_values[lo]), float(sorted_values[hi])


def sectioned_p99_ci(visits: np.ndarray, start: float, scenario: Scenario, sections: int = 10):
    """95% interval of the p99 from the p99s of consecutive sections of the window (Student
    t on their spread). Order statistics assume independent requests; a CPU quota's bursts
    or a queue's excursions make neighbours alike, and sections see that."""
    edges = np.linspace(start, scenario.duration, sections + 1)
    values = []
    for lo, hi in itertools.pairwise(edges):
        part = visits[(visits[:, 3] >= lo) & (visits[:, 3] < hi)]
        if len(part) >= 20:
            values.append(np.percentile(part[:, 3] - part[:, 1], 99.0) * 1000.0)
    if len(values) < 4:
        return float("nan"), float("nan")
    half = stats.t.ppf(0.975, len(values) - 1) * np.std(values, ddof=1) / np.sqrt(len(values))
    mid = float(np.mean(values))
    return mid - half, mid + half


def _widest(a: tuple[float, float], b: tuple[float, float]) -> tuple[float, float]:
    """The union of two intervals (either may be NaN: the other stands)."""
    lo = np.nanmin([a[0], b[0]])
    hi = np.nanmax([a[1], b[1]])
    return float(lo), float(hi)


def _batch_means_se(series: np.ndarray, batches: int = 10) -> float:
    """Standard error of a time average from the means of consecutive batches."""
    usable = len(series) - len(series) % batches
    if usable < batches * 2:
        return float("nan")
    means = series[:usable].reshape(batches, -1).mean(axis=1)
    return float(means.std(ddof=1) / np.sqrt(batches))


def _window_figures(
    times: np.ndarray, values: np.ndarray, dist: np.ndarray, start: float, exact_p99=None
) -> list[ServiceFigures]:
    sel = times >= start
    v, d = values[sel], dist[sel]
    served = v[:, :, M["throughput"]] + v[:, :, M["error_rate"]]
    finished = served + v[:, :, M["shed_rate"]]
    out = []
    for s in range(v.shape[1]):
        w = served[:, s]
        total = w.sum()
        mean = float((v[:, s, M["latency_mean_ms"]] * w).sum() / total) if total else 0.0
        if exact_p99 is not None:
            p99 = exact_p99[s]
        else:
            p99 = mixture_quantile(d[:, s], w, 0.99) * 1000.0 if total else 0.0
        fin = finished[:, s].sum()
        bad = (v[:, s, M["error_rate"]] + v[:, s, M["shed_rate"]]).sum()
        out.append(
            ServiceFigures(
                throughput=float(v[:, s, M["throughput"]].mean()),
                error_ratio=float(bad / fin) if fin else 0.0,
                latency_mean_ms=mean,
                latency_p99_ms=float(p99),
                arrival_rate=float(v[:, s, M["arrival_rate"]].mean()),
            )
        )
    return out


def _batch_latency_means(values: np.ndarray, batches: int = 10) -> np.ndarray:
    """Served-weighted mean latency per consecutive batch of ticks (batches × services)."""
    usable = len(values) - len(values) % batches
    v = values[:usable].reshape(batches, -1, *values.shape[1:])
    w = v[..., M["throughput"]] + v[..., M["error_rate"]]
    total = w.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total > 0, (v[..., M["latency_mean_ms"]] * w).sum(axis=1) / total, 0.0)


def storm_onset(times: np.ndarray, values: np.ndarray) -> float | None:
    """When some service first failed more than STORM_ERROR_RATIO of what it finished over
    STORM_WINDOW_S (the window's start), or None: a storm, or any collapse."""
    failed = values[:, :, M["error_rate"]] + values[:, :, M["shed_rate"]]
    finished = failed + values[:, :, M["throughput"]]
    width = max(int(round(STORM_WINDOW_S / max(times[1] - times[0], 1e-9))), 1)
    if len(times) < width:
        return None
    kernel = np.ones(width)
    for_each = [
        (np.convolve(failed[:, s], kernel, "valid"), np.convolve(finished[:, s], kernel, "valid"))
        for s in range(values.shape[1])
    ]
    first = None
    for bad, total in for_each:
        hit = np.nonzero((total > 0) & (bad > STORM_ERROR_RATIO * total))[0]
        if hit.size and (first is None or hit[0] < first):
            first = int(hit[0])
    return None if first is None else float(times[first])


def run_both(scenario: Scenario, warmup_s: float = 60.0) -> FidelityReport:
    """Run the scenario in each fidelity (same seed, same arrivals) and compare."""
    import time

    if warmup_s >= scenario.duration:
        raise ValueError(f"warm-up {warmup_s:g}s is not shorter than the run")
    walls = {}
    keep_f = _Keep()
    t0 = time.perf_counter()
    flow = Simulation(scenario, sinks=[keep_f])
    flow.run()
    walls["flow"] = time.perf_counter() - t0
    keep_r = _Keep()
    t0 = time.perf_counter()
    req = RequestSimulation(scenario, sinks=[keep_r], trace_rate=0.0, record_visits=True)
    req.run()
    walls["request"] = time.perf_counter() - t0
    visits = np.asarray(req.visits) if req.visits else np.zeros((0, 4))
    done = visits[visits[:, 3] >= warmup_s]
    exact, p99_ci = [], []
    for s in range(req.topo.n_services):
        mine = done[done[:, 0] == s]
        residences = np.sort(mine[:, 3] - mine[:, 1]) * 1000.0
        exact.append(float(np.percentile(residences, 99.0)) if len(residences) else 0.0)
        p99_ci.append(
            _widest(quantile_ci(residences, 0.99), sectioned_p99_ci(mine, warmup_s, scenario))
        )
    flow_arrays, request_arrays = keep_f.arrays(), keep_r.arrays()
    request_figures = _window_figures(*request_arrays, warmup_s, exact_p99=exact)
    sel = flow_arrays[0] >= warmup_s
    thr = M["throughput"]
    diff = request_arrays[1][sel][:, :, thr] - flow_arrays[1][sel][:, :, thr]
    lat_diff = _batch_latency_means(request_arrays[1][sel]) - _batch_latency_means(
        flow_arrays[1][sel]
    )
    for s, fig in enumerate(request_figures):
        fig.throughput_se = _batch_means_se(diff[:, s])
        fig.latency_mean_se = float(lat_diff[:, s].std(ddof=1) / np.sqrt(len(lat_diff)))
        fig.p99_ci = p99_ci[s]
    return FidelityReport(
        scenario=scenario.name,
        seed=scenario.seed,
        window=(warmup_s, scenario.duration),
        services=flow.topo.names,
        flow=_window_figures(*flow_arrays, warmup_s),
        request=request_figures,
        wall_seconds={k: round(v, 3) for k, v in walls.items()},
        storm_onset={
            "flow": storm_onset(*flow_arrays[:2]),
            "request": storm_onset(*request_arrays[:2]),
        },
    )


def _window_means(sim_cls, scenario: Scenario, exclude: tuple[int, ...], start: float, end: float):
    keep = _Keep()
    kwargs = {"trace_rate": 0.0} if sim_cls is RequestSimulation else {}
    sim = sim_cls(scenario, sinks=[keep], exclude_faults=exclude, **kwargs)
    sim.run()
    times, values, _ = keep.arrays()
    sel = (times >= start) & (times < end)
    return values[sel].mean(axis=0)


def affected_services(scenario: Scenario, fault_index: int, fidelity: str) -> list[str]:
    """Services whose window averages move under the fault, against a run without it.

    The same rule in both fidelities: mean latency up by more than 25% and 2 ms, error
    ratio up by more than 0.02, or arrival rate changed by more than 10%.
    """
    fault = scenario.faults[fault_index]
    end = fault.start + fault.duration if fault.duration is not None else scenario.duration
    start = fault.start + min(30.0, 0.2 * (end - fault.start))  # past the first transient
    sim_cls = Simulation if fidelity == "flow" else RequestSimulation
    with_fault = _window_means(sim_cls, scenario, (), start, end)
    without = _window_means(sim_cls, scenario, (fault_index,), start, end)
    names = list(scenario.topology.services)
    out = []
    for s, name in enumerate(names):
        lat_f, lat_b = with_fault[s, M["latency_mean_ms"]], without[s, M["latency_mean_ms"]]
        err = with_fault[s, M["error_ratio"]] - without[s, M["error_ratio"]]
        load_f, load_b = with_fault[s, M["arrival_rate"]], without[s, M["arrival_rate"]]
        slower = lat_f - lat_b > max(AFFECTED_LATENCY_REL * lat_b, AFFECTED_LATENCY_ABS_MS)
        load = abs(load_f - load_b) > AFFECTED_LOAD_REL * max(load_b, 1e-9)
        if slower or err > AFFECTED_ERROR_ABS or load:
            out.append(name)
    return out


def latency_fault_indices(scenario: Scenario) -> list[int]:
    return [i for i, f in enumerate(scenario.faults) if isinstance(f, LatencyFault)]
