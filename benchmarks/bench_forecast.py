"""`python -m benchmarks.bench_forecast`: every forecaster in a rolling-origin backtest.

Next-day (48 × 30 min) forecasts from each midnight, on NAB's NYC taxi series (ordinary
weeks only: a labelled anomaly in the forecast week or the week it copies skips the origin)
and on a seeded twin workload with declared weekly campaigns. Prints median and mean sMAPE,
MASE, 90% interval coverage and width per model, each sMAPE also as a ratio to the weekly
seasonal naive measured in the same run (the issue's baseline: about 5.9% on taxi).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import pandas as pd

from detectors.forecast.backtest import nyc_taxi_backtest, summarize, twin_backtest
from detectors.forecast.registry import MODELS

ROOT = Path(__file__).resolve().parents[1]
NAB = ROOT.parent / "shared" / "data" / "nab"


def _table(results: pd.DataFrame, wall: float) -> pd.DataFrame:
    table = summarize(results)
    base = table.loc["seasonal-naive", "smape_median"]
    table["vs_naive"] = (table["smape_median"] / base).round(3)
    table["width"] = results.groupby("forecaster", sort=False)["width"].mean().round(2)
    table.attrs["wall_s"] = wall
    return table


def run(models: list[str], nab: Path, out: Path | None) -> dict[str, pd.DataFrame]:
    factories = {name: MODELS[name] for name in models}
    tables = {}
    if nab.is_dir():
        start = time.perf_counter()
        taxi = nyc_taxi_backtest(nab, factories)
        tables["nyc-taxi"] = _table(taxi, time.perf_counter() - start)
    else:
        print(f"NAB corpus not found at {nab}: skipping the taxi backtest")
    start = time.perf_counter()
    twin = twin_backtest(factories)
    tables["twin"] = _table(twin, time.perf_counter() - start)
    for name, table in tables.items():
        print(f"\n{name} (wall {table.attrs['wall_s']:.1f} s)")
        print(table.to_string())
        if out is not None:
            out.mkdir(parents=True, exist_ok=True)
            table.to_csv(out / f"forecast_{name}.csv")
    return tables


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    p.add_argument("--nab", type=Path, default=NAB)
    p.add_argument("--out", type=Path, default=None, help="write one CSV per series here")
    args = p.parse_args(argv)
    if "seasonal-naive" not in args.models:
        args.models.insert(0, "seasonal-naive")
    run(args.models, args.nab, args.out)


if __name__ == "__main__":
    main()
