"""`firebreak remedy-prior learn|compare`: the remedy that worked before as a prior.

`learn` rehearses the remediable suite's training seeds with incident memory on and stores
every decided case, signed at decision time, with its actions' verdicts (the operator's own
judge), in an incident library's `decision_incidents` table; the prior's threshold is chosen
on those cases. `compare` rehearses held-out seeds with the AI stack without and with the
prior and writes the paired comparison (experiments.impact.prior_study).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time

from firebreak.argtypes import int_at_least, positive_int
from twin.errors import FirebreakError


def _threshold(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"must be a finite number >= 0: {text!r}")
    return value


def _seeds(args: argparse.Namespace) -> list[int]:
    return list(range(args.first_seed, args.first_seed + args.seeds))


def _families(args: argparse.Namespace) -> list[str]:
    from experiments.impact.prior_study import remediable_families

    return remediable_families(args.scenarios)


def cmd_learn(args: argparse.Namespace) -> int:
    from pathlib import Path

    from experiments.impact.prior_study import learn

    library = Path(args.library)
    if library.exists() and not args.append:
        raise FirebreakError(
            f"--library: {library} exists; choose a new file or pass --append to add to it"
        )
    start = time.monotonic()
    rows, n, threshold = learn(
        library, _families(args), _seeds(args), jobs_n=args.jobs, progress=sys.stderr.isatty()
    )
    failed = int(rows["error"].notna().sum()) if "error" in rows else 0
    print(
        f"{library}: {n} decision-time incidents from {len(rows)} rehearsals "
        f"(seeds {args.first_seed}..{args.first_seed + args.seeds - 1}, {failed} failed); "
        f"prior threshold {threshold:.3f}; {time.monotonic() - start:.0f} s"
    )
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    from experiments.impact.prior_study import compare, load_prior
    from firebreak.outdir import prepare_output_dir

    load_prior(args.library, args.threshold)  # a bad library fails before --out is made
    out = prepare_output_dir(args.out, args.force, "--out")
    start = time.monotonic()
    table, cmp = compare(
        args.library,
        _families(args),
        _seeds(args),
        jobs_n=args.jobs,
        threshold=args.threshold,
        unseen=args.unseen_topology,
        progress=sys.stderr.isatty(),
    )
    table.to_csv(out / "rows.csv", index=False)
    cmp.to_csv(out / "comparison.csv", index=False)
    fired = 0
    if "memory_records" in table:
        for rec in table.loc[table["arm"] == "prior", "memory_records"].dropna():
            fired += sum(r["prior"] is not None for r in json.loads(rec))
    summary = {
        "library": str(args.library),
        "seeds": _seeds(args),
        "unseen_topology": args.unseen_topology,
        "threshold": args.threshold,
        "rehearsals": len(table),
        "failed": int(table["error"].notna().sum()) if "error" in table else 0,
        "prior_changed_first_choice": fired,
        "wall_s": round(time.monotonic() - start, 1),
        "comparison": cmp.to_dict(orient="records"),
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2, default=float) + "\n")
    for r in cmp.itertuples():
        unit = "%" if r.kind == "relative change" else " points"
        print(
            f"{r.figure}: {r.no_prior:.3g} -> {r.prior:.3g}; {r.kind} "
            f"{100 * r.estimate:+.1f}{unit} [{100 * r.ci_low:+.1f}, {100 * r.ci_high:+.1f}]"
        )
    print(f"the prior changed the first choice {fired} times; wrote {out}")
    return 0


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--seeds", type=positive_int, default=2, help="seeds per family (default 2)")
    p.add_argument("--first-seed", type=int_at_least(0), default=0, help="first seed index")
    p.add_argument("--scenarios", nargs="+", default=None, help="families (default: remediable)")
    p.add_argument("--jobs", type=positive_int, default=1, help="workers (default 1)")
    p.add_argument("--library", required=True, help="incident library file (SQLite)")


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "remedy-prior",
        help="the remedy that worked for similar past incidents, as the AI's prior: learn, compare",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = p.add_subparsers(dest="remedy_prior_command", required=True, metavar="learn|compare")
    learn = sub.add_parser("learn", help="rehearse training seeds and store their cases")
    _common(learn)
    learn.add_argument("--append", action="store_true", help="add to an existing library")
    # training seeds start at 100 by default: disjoint from compare's held-out 0, 1, ...
    learn.set_defaults(func=cmd_learn, first_seed=100)
    cmp = sub.add_parser("compare", help="AI without and with the prior on held-out seeds")
    _common(cmp)
    cmp.add_argument("--out", default="runs/remedy-prior", help="output directory")
    cmp.add_argument("--force", action="store_true", help="clear a non-empty --out first")
    cmp.add_argument(
        "--threshold",
        type=_threshold,
        default=None,
        help="distance threshold (default: the one learnt with the library)",
    )
    cmp.add_argument(
        "--unseen-topology",
        action="store_true",
        help="leave the scenario's own topology's cases out of the prior (transfer)",
    )
    cmp.set_defaults(func=cmd_compare)
