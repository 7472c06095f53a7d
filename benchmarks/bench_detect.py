"""`python -m benchmarks.bench_detect`: detector speed per frame.

Targets (issue T3): tier 1 scores a frame of 1,000 signals in <= 1 ms; the full pipeline
keeps up with Online Boutique in flow fidelity at <= 2 ms per tick.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from detectors.anomaly.pipeline import TieredPipeline
from detectors.anomaly.tier1 import Ewma, RobustZ, Seasonal
from experiments.detection.suite import fit_tier2, normal_run
from twin.flow.engine import Simulation
from twin.scenario.loader import load_scenario

ROOT = Path(__file__).resolve().parents[1]


def tier1_frame_ms(n_signals: int = 1000, frames: int = 3000, window: int = 1800) -> float:
    """Median-free mean ms per frame for the three tier-1 banks: score then learn."""
    rng = np.random.default_rng(0)
    X = rng.normal(size=(frames, n_signals))
    robust = RobustZ(n_signals, window=window)
    ewma = Ewma(n_signals)
    seasonal = Seasonal(n_signals)
    for x in X[:window]:  # fill the window first: the steady state is what matters
        robust.learn_one(x)
        ewma.learn_one(x)
        seasonal.learn_one(x, 0.0)
    t0 = time.perf_counter()
    for i, x in enumerate(X):
        t = float(i)
        robust.score_one(x)
        ewma.score_one(x)
        seasonal.score_one(x, t, noise=robust.spread)
        robust.learn_one(x)
        ewma.learn_one(x)
        seasonal.learn_one(x, t)
    return (time.perf_counter() - t0) / frames * 1000.0


def pipeline_tick_ms() -> dict:
    """ms per tick of the tiered pipeline (with its tier-2 model) on Online Boutique."""
    scenario = load_scenario(ROOT / "scenarios" / "black-friday.yaml")
    tier2 = fit_tier2([normal_run(scenario, duration=3 * 3600)])
    sim = Simulation(scenario)
    frames = list(sim.frames())
    pipe = TieredPipeline(sim.topo.names, tier2=tier2)
    t0 = time.perf_counter()
    for fr in frames:
        pipe.process(fr.time, fr.values)
    wall = time.perf_counter() - t0
    return {"ticks": len(frames), "ms_per_tick": wall / len(frames) * 1000.0}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    result = {"tier1_1000_signals_ms": tier1_frame_ms(), "pipeline": pipeline_tick_ms()}
    if args.json:
        print(json.dumps(result, indent=2))
        return
    print(
        f"tier 1, 1,000 signals: {result['tier1_1000_signals_ms']:.3f} ms per frame (target <= 1)"
    )
    p = result["pipeline"]
    print(
        f"tiered pipeline on Online Boutique (black-friday 24 h, {p['ticks']} ticks): "
        f"{p['ms_per_tick']:.3f} ms per tick (target <= 2)"
    )


if __name__ == "__main__":
    main()
