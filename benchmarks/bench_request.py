"""Request-fidelity speed against a bare SimPy per-request chain, measured in the same run.

The bare chain is the least a per-request simulation of the same system must do: each
external request is a SimPy process that walks Online Boutique's call graph inline, taking
a worker of each service's SimPy Resource for a lognormal own time, with the same call
counts. It has no timeouts, retries, breakers, faults, control plane, telemetry or spans.
Targets (issue T2): the request fidelity reaches at least half the bare chain's requests
per CPU-second, and Online Boutique at 100 rps runs at least 20x faster than real time.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import numpy as np
import simpy

from twin.request.engine import RequestSimulation
from twin.request.walk import RandomBuffer, lognormal_shape
from twin.rng import stream
from twin.scenario.loader import load_scenario

ROOT = Path(__file__).resolve().parents[1]
STEADY = ROOT / "scenarios" / "steady-state.yaml"


def bare_chain(scenario, requests: int, rate: float) -> dict:
    """Requests per CPU-second of the bare per-request chain over the scenario's topology."""
    topo = scenario.topology
    names = list(topo.services)
    index = {n: i for i, n in enumerate(names)}
    env = simpy.Environment()
    pools = [simpy.Resource(env, s.replicas * s.workers) for s in topo.services.values()]
    means = [s.service_time.mean_ms / 1000.0 for s in topo.services.values()]
    shapes = [lognormal_shape(s.service_time.effective_cv) for s in topo.services.values()]
    calls: list[list[tuple[int, float]]] = [[] for _ in names]
    for c in topo.calls:
        calls[index[c.source]].append((index[c.target], c.per_request * c.probability))
    rand = RandomBuffer(stream(scenario.seed, "bare-chain"))
    entry = index[scenario.workload.classes[0].entry]

    def visit(s: int):
        with pools[s].request() as req:
            yield req
            sigma, shift = shapes[s]
            yield env.timeout(means[s] * math.exp(sigma * rand.normal() + shift))
            for target, k in calls[s]:
                n = int(k) + (1 if rand.uniform() < k - int(k) else 0)
                for _ in range(n):
                    yield from visit(target)

    def source():
        for _ in range(requests):
            yield env.timeout(-math.log(1.0 - rand.uniform()) / rate)
            env.process(visit(entry))

    env.process(source())
    cpu0 = time.process_time()
    env.run()
    cpu = time.process_time() - cpu0
    return {"requests": requests, "cpu_s": round(cpu, 3), "requests_per_cpu_s": requests / cpu}


def request_fidelity(scenario) -> dict:
    """Requests per CPU-second and speed against real time of the full request fidelity."""
    sim = RequestSimulation(scenario, trace_rate=0.01)
    spans = []
    sim.span_sinks.append(spans.extend)
    cpu0, wall0 = time.process_time(), time.perf_counter()
    sim.run()
    cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    entries = sorted({sim.topo.service_index(c.entry) for c in scenario.workload.classes})
    requests = float(np.sum(sim.conservation()["arrived"][entries]))
    return {
        "requests": int(requests),
        "cpu_s": round(cpu, 3),
        "requests_per_cpu_s": requests / cpu,
        "speed_x_realtime": scenario.duration / wall,
        "spans": len(spans),
    }


def measure(duration_s: float = 600.0) -> dict:
    scenario = load_scenario(STEADY, duration=duration_s)
    scenario = scenario.model_copy(
        update={
            "workload": scenario.workload.model_copy(
                update={"daily_amplitude": 0.0, "weekly_amplitude": 0.0}
            )
        }
    )
    rate = sum(c.rate for c in scenario.workload.classes)
    full = request_fidelity(scenario)
    bare = bare_chain(scenario, requests=full["requests"], rate=rate)
    return {
        "scenario": f"{scenario.name}, {rate:g} rps, {duration_s:g} s",
        "bare_chain": bare,
        "request_fidelity": full,
        "ratio_to_bare": full["requests_per_cpu_s"] / bare["requests_per_cpu_s"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=600.0, help="simulated seconds")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    result = measure(args.duration)
    if args.json:
        print(json.dumps(result, indent=2))
        return
    b, r = result["bare_chain"], result["request_fidelity"]
    print(f"request fidelity on {result['scenario']}")
    print(f"  bare SimPy chain   {b['requests_per_cpu_s']:9,.0f} requests/CPU-s")
    print(
        f"  request fidelity   {r['requests_per_cpu_s']:9,.0f} requests/CPU-s "
        f"({result['ratio_to_bare']:.2f}x the bare chain; target >= 0.5), "
        f"{r['speed_x_realtime']:.1f}x real time (target >= 20), {r['spans']:,} spans kept"
    )


if __name__ == "__main__":
    main()
