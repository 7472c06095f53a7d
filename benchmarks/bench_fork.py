"""`python -m benchmarks.bench_fork`: what a what-if fork costs, beside simulating from scratch.

Target (issue T2): forking Online Boutique (steady-state) at t = 1 h in flow fidelity costs
≤ 0.3 s. A fork replays the run to t without telemetry and shares the parent's topology
arrays and drawn traffic, so it costs less than the same hour simulated from scratch.
Medians over repetitions after a warm-up (the numba kernel is cached on disk).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable
from pathlib import Path

from twin.flow.engine import Simulation
from twin.flow.inputs import prepare_inputs
from twin.scenario.loader import load_scenario

ROOT = Path(__file__).resolve().parents[1]
STEADY_STATE = ROOT / "scenarios" / "steady-state.yaml"
TARGET_S = 0.3


def _median_wall(fn: Callable[[], object], repeats: int) -> float:
    walls = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        walls.append(time.perf_counter() - start)
    return statistics.median(walls)


def fork_cost(
    path: Path = STEADY_STATE,
    at: float = 3600.0,
    repeats: int = 7,
    duration: float | None = None,
) -> dict:
    """Median wall seconds: fork at `at`; simulate to `at` from scratch; build the inputs."""
    scenario = load_scenario(path, duration=duration)
    parent = Simulation(scenario)
    parent.advance(at)
    parent.fork()  # warm-up: kernel loaded, allocations made once

    def scratch() -> None:
        Simulation(scenario).advance(at)

    fork_s = _median_wall(parent.fork, repeats)
    scratch_s = _median_wall(scratch, repeats)
    inputs_s = _median_wall(lambda: prepare_inputs(scenario), repeats)
    return {
        "scenario": scenario.name,
        "duration_s": scenario.duration,
        "at_s": at,
        "repeats": repeats,
        "fork_s": round(fork_s, 4),
        "scratch_s": round(scratch_s, 4),
        "inputs_s": round(inputs_s, 4),
        "target_s": TARGET_S,
        "meets_target": fork_s <= TARGET_S,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenario", type=Path, default=STEADY_STATE)
    parser.add_argument("--at", type=float, default=3600.0, help="fork time, seconds")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--duration", type=float, default=None, help="shorten the scenario")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args(argv)
    result = fork_cost(args.scenario, args.at, args.repeats, args.duration)
    if args.json:
        print(json.dumps(result))
        return 0
    print(
        f"{result['scenario']} ({result['duration_s']:g} s), fork at t = {result['at_s']:g} s, "
        f"median of {result['repeats']}:\n"
        f"  fork (replay, shared inputs)       {result['fork_s']:.4f} s"
        f"   target <= {TARGET_S} s: {'ok' if result['meets_target'] else 'MISSED'}\n"
        f"  same span from scratch             {result['scratch_s']:.4f} s\n"
        f"    of which building inputs         {result['inputs_s']:.4f} s"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
