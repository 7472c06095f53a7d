"""How the multimodal method's settings were chosen: on Nezha's 2023-01-29 only.

`python -m experiments.realbench.tune_nezha DATA_DIR` (DATA_DIR: the nezha-trainticket
folder) never reads 2023-01-30. It prints:

1. each modality's noise level τ: the largest score it gave a service that was not the
   cause, over the day's 28 faults (the fusion rule of `detectors.rca.multimodal`), for
   both edge rules of the latency modality;
2. AC@1 and AC@3 of the fused method on the day with those τ, and when one τ is scaled
   (how flat the choice is);
3. the semi-synthetic network-delay check (`delay_check`): a delay added to the calls into
   one pod of a real 01-29 fault window, under both ways a netem delay can be scoped, and
   which edge rule finds the pod.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from detectors.rca.multimodal import MultimodalRca
from experiments.realbench.cases import RealCase
from experiments.realbench.nezha import DEV_DAY, cases


def rank_of(order: list[str], root: str) -> int:
    return order.index(root) + 1 if root in order else len(order) + 1


def score_tables(dev: list[RealCase], method: MultimodalRca) -> list[tuple[str, pd.DataFrame]]:
    """(root, services × modalities raw scores) per case: computed once, fused many times."""
    out = []
    for case in dev:
        scores, _ = method.scores(
            case.inputs.table, case.inputs.anomaly_time, case.inputs.telemetry
        )
        out.append((case.answer.root, scores))
    return out


def noise_levels(tables: list[tuple[str, pd.DataFrame]]) -> dict[str, float]:
    """τ per modality: the largest score given to a service that was not the cause."""
    taus: dict[str, float] = {}
    for root, scores in tables:
        others = scores.drop(index=root, errors="ignore")
        for m in scores.columns:
            taus[m] = max(taus.get(m, 0.0), float(others[m].max()) if len(others) else 0.0)
    return taus


def accuracy(tables: list[tuple[str, pd.DataFrame]], taus: dict[str, float]) -> tuple[float, float]:
    """AC@1 and AC@3 of the fusion with these τ (ties counted against the root)."""
    method = MultimodalRca(
        tau_metrics=taus["metrics"], tau_latency=taus["latency"], tau_logs=taus["logs"]
    )
    ranks = []
    for root, scores in tables:
        fused = method.fuse(scores)
        mine = fused.get(root, 0.0)
        ranks.append(int((fused >= mine).sum()) if mine > 0 else len(fused) + 1)
    r = np.array(ranks)
    return float((r <= 1).mean()), float((r <= 3).mean())


def main(argv: list[str] | None = None) -> int:
    from experiments.realbench.delay_check import RULES, delay_check, print_delay_check

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("data", type=Path, help="the nezha-trainticket folder")
    p.add_argument("--no-delay-check", action="store_true")
    args = p.parse_args(argv)
    dev = cases(args.data, (DEV_DAY,))
    print(f"{len(dev)} faults of {DEV_DAY} (development day); 2023-01-30 is never read")
    for rule, settings in RULES.items():
        tables = score_tables(dev, MultimodalRca(latency=settings))
        taus = noise_levels(tables)
        ac1, ac3 = accuracy(tables, taus)
        shown = ", ".join(f"tau_{k} {v:.1f}" for k, v in taus.items())
        print(f"\nedge rule {rule}: {shown}; fused AC@1 {ac1:.3f} AC@3 {ac3:.3f}")
        for m in taus:
            row = []
            for k in (0.25, 0.5, 1.0, 2.0, 4.0):
                row.append(f"x{k:g} {accuracy(tables, {**taus, m: taus[m] * k})[0]:.2f}")
            print(f"  AC@1 with tau_{m} scaled: " + "  ".join(row))
    if not args.no_delay_check:
        print_delay_check(delay_check(dev))
    return 0


if __name__ == "__main__":
    sys.exit(main())
