"""`python -m benchmarks.flow_theory`: the flow fidelity against Erlang C.

A lone M/M/c station (exponential 40 ms, Poisson arrivals, a deep queue) at 50%, 80% and
95% load with 1, 4 and 16 workers: the flow run's mean residence, p99 (the mixture of its
per-tick residence distributions) and mean number in flight, against the exact M/M/c
sojourn law (no wait with probability 1 - C, else an exponential wait; plus the service)
and Little's law. Targets (issue T13): mean within 5%, p99 within 10%.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import numpy as np
from scipy import optimize

from twin.fields import M
from twin.flow.engine import Simulation
from twin.run.fidelity import mixture_quantile
from twin.scenario.schema import Scenario

MEAN_S = 0.04
WARMUP_S = 60.0


def mmc_sojourn(c: int, mean_s: float, lam: float) -> tuple[float, float, float]:
    """(mean, p99, mean number in system) of the M/M/c sojourn, from Erlang C's textbook
    sum and the exact law of wait + service (independent of the flow kernel's code)."""
    a = lam * mean_s
    top = a**c / math.factorial(c) * c / (c - a)
    pc = top / (sum(a**k / math.factorial(k) for k in range(c)) + top)
    theta, mu = c / mean_s - lam, 1.0 / mean_s

    def survival(x: float) -> float:
        conv = (mu * math.exp(-theta * x) - theta * math.exp(-mu * x)) / (mu - theta)
        return (1.0 - pc) * math.exp(-mu * x) + pc * conv

    mean = pc / theta + mean_s
    return mean, optimize.brentq(lambda x: survival(x) - 0.01, 1e-9, 1e3), lam * mean


def station(workers: int, rate: float, duration: float = 900.0, noise: float = 0.0) -> Scenario:
    """A lone exponential station with no CPU or memory pressure and a deep queue."""
    return Scenario.model_validate(
        {
            "name": "mmc",
            "topology": {
                "name": "mmc",
                "services": {
                    "q": {
                        "replicas": 1,
                        "workers": workers,
                        "queue_limit": 100_000,
                        "service_time": {"dist": "exponential", "mean_ms": MEAN_S * 1000},
                        "cpu_per_request_ms": 0.0,
                        "memory_limit_mb": 100_000,
                    }
                },
            },
            "duration": duration,
            "seed": 1,
            "workload": {"classes": [{"name": "all", "entry": "q", "rate": rate}], "noise": noise},
        }
    )


class _Keep:
    def __init__(self) -> None:
        self.chunks: list = []

    def on_chunk(self, chunk) -> None:
        self.chunks.append(chunk)

    def close(self) -> None:
        pass


def flow_figures(scenario: Scenario) -> dict[str, np.ndarray | float]:
    """Mean residence (s), p99 (s), mean in flight and the share of ticks with a queue."""
    keep = _Keep()
    Simulation(scenario, sinks=[keep]).run()
    values = np.concatenate([c.values for c in keep.chunks])[int(WARMUP_S) :, 0]
    dist = np.concatenate([c.dist for c in keep.chunks])[int(WARMUP_S) :, 0]
    served = values[:, M["throughput"]] + values[:, M["error_rate"]]
    return {
        "mean": float((values[:, M["latency_mean_ms"]] * served).sum() / served.sum()) / 1000,
        "p99": mixture_quantile(dist, served, 0.99),
        "in_flight": float(values[:, M["in_flight"]].mean()),
        "queued_share": float((values[:, M["queue"]] > 0.5).mean()),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--json", help="also write the rows to this file")
    args = parser.parse_args()
    head = (
        f"{'workers':>7s} {'load':>5s} {'mean ms':>8s} {'Erlang C':>9s} {'diff':>6s} "
        f"{'p99 ms':>8s} {'exact':>8s} {'diff':>6s} {'in flight':>9s} {'L=λW':>7s} "
        f"{'queued':>6s}"
    )
    print(head)
    print("-" * len(head))
    rows = []
    for workers in (1, 4, 16):
        for rho in (0.5, 0.8, 0.95):
            lam = rho * workers / MEAN_S
            got = flow_figures(station(workers, lam))
            mean, p99, in_flight = mmc_sojourn(workers, MEAN_S, lam)
            row = {
                "workers": workers,
                "load": rho,
                "mean_ms": got["mean"] * 1000,
                "erlang_c_mean_ms": mean * 1000,
                "p99_ms": got["p99"] * 1000,
                "exact_p99_ms": p99 * 1000,
                "in_flight": got["in_flight"],
                "littles_l": in_flight,
                "queued_share": got["queued_share"],
            }
            rows.append(row)
            print(
                f"{workers:7d} {rho:5.0%} {row['mean_ms']:8.1f} {row['erlang_c_mean_ms']:9.1f} "
                f"{got['mean'] / mean - 1:+6.1%} {row['p99_ms']:8.1f} {row['exact_p99_ms']:8.1f} "
                f"{got['p99'] / p99 - 1:+6.1%} {got['in_flight']:9.2f} {in_flight:7.2f} "
                f"{got['queued_share']:6.1%}"
            )
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
