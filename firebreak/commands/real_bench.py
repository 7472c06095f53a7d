"""`firebreak real-bench DATASET_DIR --out DIR`: every RCA method on real incidents
(Nezha Train Ticket, PetShop), development parts reported apart from held-out ones."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path


def cmd_real_bench(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from detectors.rca.registry import METHODS
    from experiments.realbench.bench import DATASETS, EXTERNAL, FIRST_RULE, find_datasets, run_bench
    from experiments.realbench.harness import summarise
    from experiments.realbench.report import write_outputs
    from twin.errors import FirebreakError

    root = Path(args.dataset_dir)
    if not root.is_dir():
        raise FirebreakError(f"{root}: not a directory")
    known = [*METHODS, FIRST_RULE, *EXTERNAL]
    unknown = [m for m in args.methods or () if m not in known]
    if unknown:
        raise FirebreakError(
            f"--methods: unknown method {unknown[0]!r} (known: {', '.join(known)})"
        )
    found = find_datasets(root)
    if not found:
        raise FirebreakError(
            f"{root}: no known dataset here ({', '.join(DATASETS)}: a nezha-trainticket "
            "folder with rca_data/ and construct_data/, or a petshop folder with dataset/)"
        )
    bars = []

    def progress(name: str, total: int):
        bar = tqdm(
            total=total, desc=name, unit="case", file=sys.stderr, disable=not sys.stderr.isatty()
        )
        bars.append(bar)
        return bar.update

    began = time.perf_counter()
    try:
        result = run_bench(
            root, datasets=args.datasets, methods=args.methods, limit=args.limit, progress=progress
        )
    except KeyError as exc:
        raise FirebreakError(str(exc.args[0])) from None
    finally:
        for bar in bars:
            bar.close()
    rows = result.rows
    if rows.empty:
        raise FirebreakError(f"{root}: no cases found in {', '.join(found)}")
    written = write_outputs(Path(args.out), rows, result.notes)
    wall = time.perf_counter() - began
    for dataset, sub in rows.groupby("dataset", sort=False):
        print(f"\n== {dataset} ({sub['case'].nunique()} cases)")
        for note in result.notes.get(dataset, []):
            print(f"note: {note}")
        table = summarise(sub, ["part", "method"])
        for part, g in table.groupby("part", sort=False):
            dev = bool(sub[sub["part"] == part]["dev"].iloc[0])
            print(f"-- {part} ({'development: settings chosen here' if dev else 'held out'})")
            for _, r in g.iterrows():
                print(
                    f"   {r['method']:24s} AC@1 {r['ac1']:.3f}  AC@3 {r['ac3']:.3f}  "
                    f"Avg@5 {r['avg5']:.3f}  n={int(r['n'])}  {r['seconds_per_case']:.3f} s/case"
                )
        failures = int((sub["error"] != "").sum())
        if failures:
            print(f"note: {failures} method runs failed (see the error column of cases.csv)")
    print(f"\nwrote {', '.join(str(p) for p in written)} in {wall:.0f} s")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "real-bench",
        help="every RCA method on real incident data (Nezha Train Ticket, PetShop)",
        description=(
            "Recognise the real datasets under DATASET_DIR (a dataset folder or one holding "
            "both), run every RCA method (and RCAEval's BARO and NSigma when installed) on "
            "the same cases, and write results.json, results.md and cases.csv."
        ),
    )
    p.add_argument("dataset_dir", help="e.g. ../shared/data or ../shared/data/petshop")
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("--datasets", nargs="+", choices=("nezha-trainticket", "petshop"), default=None)
    p.add_argument("--methods", nargs="+", default=None, help="default: all")
    from firebreak.argtypes import positive_int

    p.add_argument(
        "--limit", type=positive_int, default=None, help="first N cases per part (smoke runs)"
    )
    p.set_defaults(func=cmd_real_bench)
