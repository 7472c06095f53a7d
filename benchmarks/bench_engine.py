"""`make bench`: simulated seconds per wall second of the flow engine, against a bare SimPy
loop of the same ticks measured in the same run, and the peak memory of a 7-day run.

Targets (issue T1): Online Boutique 24 h in ≤ 5 s wall (≥ 17,000x real time); a
1,000-service topology ≥ 500x real time; a 7-day Online Boutique run under 1 GiB peak RSS.
Issue T11: Online Boutique 24 h with production-like telemetry stays ≥ 17,000x real time
(measured beside the ideal run, in the same process).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import simpy
import yaml

from twin.flow.engine import Simulation
from twin.run.runner import run_scenario
from twin.scenario.generate import generate_topology, suggest_classes, suggested_total_rps
from twin.scenario.loader import load_scenario

ROOT = Path(__file__).resolve().parents[1]
SCENARIOS = ROOT / "scenarios"


def bare_simpy(n_ticks: int, dt: float) -> float:
    """Wall seconds for SimPy alone to step through the same ticks."""
    env = simpy.Environment()

    def loop():
        timeout = env.timeout
        for _ in range(n_ticks):
            yield timeout(dt)

    env.process(loop())
    start = time.perf_counter()
    env.run()
    return time.perf_counter() - start


def engine_wall(scenario) -> tuple[float, int]:
    sim = Simulation(scenario)
    start = time.perf_counter()
    sim.run()
    return time.perf_counter() - start, sim.n_ticks


def generated_scenario(n: int, seed: int, duration: float, tmp: Path):
    topo = generate_topology(n, seed)
    path = tmp / f"generated-{n}.yaml"
    scenario = {
        "name": f"generated-{n}",
        "topology": topo,
        "duration": duration,
        "seed": seed,
        "workload": {"classes": suggest_classes(topo, suggested_total_rps(topo)), "noise": 0.05},
    }
    path.write_text(yaml.safe_dump(scenario, sort_keys=False))
    return load_scenario(path)


def peak_rss_of_7_day_run(out: Path) -> dict:
    """Runs `firebreak run` for 7 days in a child process and reads its peak RSS."""
    cmd = [
        sys.executable,
        "-m",
        "firebreak.cli",
        "run",
        str(SCENARIOS / "steady-state.yaml"),
        "--duration",
        "7d",
        "--out",
        str(out),
        "--quiet",
    ]
    start = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    wall = time.perf_counter() - start
    peak_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return {
        "peak_rss_mib": round(peak_kib / 1024, 1),
        "wall_s": round(wall, 2),
        "metrics_parquet_mib": round(
            sum(f.stat().st_size for f in (out / "metrics.parquet").glob("*.parquet")) / 2**20, 1
        ),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--skip-memory", action="store_true", help="skip the 7-day RSS run")
    parser.add_argument("--json", help="also write the results to this file")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        cases = [
            ("online-boutique 24h", load_scenario(SCENARIOS / "steady-state.yaml", duration=86400)),
            ("train-ticket 24h", load_scenario(SCENARIOS / "train-ticket-cascade.yaml")),
            ("generated-1000 1h", generated_scenario(1000, 7, 3600, tmp)),
        ]
        warm = time.perf_counter()
        engine_wall(load_scenario(SCENARIOS / "steady-state.yaml", duration=60))
        print(f"warm-up (imports, compiled-kernel cache): {time.perf_counter() - warm:.2f} s")
        results = []
        header = (
            f"{'case':22s} {'services':>8s} {'ticks':>7s} {'engine s':>9s} {'x real':>9s} "
            f"{'bare simpy s':>12s} {'overhead':>9s}"
        )
        print(header)
        for label, scenario in cases:
            wall, ticks = engine_wall(scenario)
            bare = bare_simpy(ticks, scenario.tick)
            row = {
                "case": label,
                "services": len(scenario.topology.services),
                "ticks": ticks,
                "engine_wall_s": round(wall, 3),
                "x_realtime": round(ticks * scenario.tick / wall, 1),
                "bare_simpy_wall_s": round(bare, 3),
                "overhead_x": round(wall / bare, 1),
            }
            results.append(row)
            print(
                f"{label:22s} {row['services']:8d} {ticks:7d} {wall:9.2f} "
                f"{row['x_realtime']:9,.0f} {bare:12.3f} {row['overhead_x']:8.1f}x"
            )
        full = load_scenario(SCENARIOS / "steady-state.yaml", duration=86400)
        report = {"engine": results}
        for mode in ("ideal", "production"):  # the same run, so the two compare
            telemetry = full.telemetry.model_copy(update={"mode": mode})
            scenario = full.model_copy(update={"telemetry": telemetry})
            start = time.perf_counter()
            run_scenario(scenario, tmp / f"ob24-{mode}", labels=False)
            with_dir = time.perf_counter() - start
            print(
                f"online-boutique 24h writing its run directory, {mode} telemetry: "
                f"{with_dir:.2f} s ({86400 / with_dir:,.0f}x real time)"
            )
            key = "" if mode == "ideal" else "_production"
            report[f"ob24_with_run_directory{key}_s"] = round(with_dir, 2)
        if not args.skip_memory:
            mem = peak_rss_of_7_day_run(tmp / "ob7d")
            report["seven_day"] = mem
            print(
                f"online-boutique 7 days via `firebreak run`: peak RSS {mem['peak_rss_mib']} MiB, "
                f"{mem['wall_s']} s wall, metrics.parquet {mem['metrics_parquet_mib']} MiB"
            )
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
