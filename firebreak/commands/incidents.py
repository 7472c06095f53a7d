"""`firebreak incidents add|similar|list|eval`: the incident library ("have we seen this
before, and what fixed it?").

`add` stores an incident's signature (from telemetry only) with its diagnosis and the
actions taken; `similar` lists the nearest past incidents with what fixed them and the
kind few-shot recognition gives; `list` shows the library; `eval` scores few-shot kind
recognition and retrieval, within one library (leave-one-out) or against a test library.
"""

from __future__ import annotations

import argparse
import math

from firebreak.argtypes import positive_float, positive_int
from firebreak.commands.incident_sources import add_source_args, labelled_fault, load_source
from twin.errors import FirebreakError

WORKED = {"worked": True, "yes": True, "ok": True, "failed": False, "no": False}


def _action(text: str):
    """`restart` (it worked) or `restart=worked|failed`."""
    from detectors.memory.library import Action

    name, sep, outcome = text.partition("=")
    if not name.strip():
        raise argparse.ArgumentTypeError(f"no action name: {text!r}")
    if sep and outcome.lower() not in WORKED:
        raise argparse.ArgumentTypeError(
            f"{text!r}: outcome {outcome!r} is not one of {', '.join(WORKED)}"
        )
    return Action(name.strip(), WORKED[outcome.lower()] if sep else True)


def _label(text: str) -> str:
    if not text.strip() or any(ord(c) < 32 for c in text):
        raise argparse.ArgumentTypeError(f"must be a non-empty printable name: {text!r}")
    return text.strip()


def _signature(args: argparse.Namespace, at):
    from detectors.memory.signature import signature

    src = load_source(args, at)
    sig = signature(src.table, src.at, src.telemetry, src.graph)
    for note in dict.fromkeys([*src.notes, *sig.notes]):
        print(f"note: {note}")
    if not sig.blocks:
        raise FirebreakError(
            f"{args.source}: --at {at}: no modality has data either side of the anomaly time"
        )
    return src, sig


def cmd_add(args: argparse.Namespace) -> int:
    from pathlib import Path

    from detectors.memory.library import Incident, IncidentLibrary

    at, kind, root = args.at, args.kind, args.root
    if args.from_labels:
        fault = labelled_fault(Path(args.source), args.fault)
        at = at if at is not None else fault["at"]
        kind, root = kind or fault["kind"], root or fault["root"]
    if kind is None or root is None:
        raise FirebreakError("--kind and --root are required (or --from-labels)")
    src, sig = _signature(args, at)
    name = args.name or f"{src.name}@{src.at:.10g}"
    incident = Incident(
        name, args.system, str(args.source), src.at, kind, root, sig, tuple(args.action)
    )
    with IncidentLibrary.open(args.library, create=True) as lib:
        lib.add([incident])
        total = len(lib.incidents())
    print(
        f"added {name!r} ({kind} at {root}; signature {sig.version}, {', '.join(sig.blocks)}) "
        f"to {args.library} ({total} incidents)"
    )
    return 0


def _fixed(inc) -> str:
    worked = inc.fixed_by()
    failed = [a.action for a in inc.actions if not a.worked]
    out = f"fixed by {', '.join(worked)}" if worked else "nothing recorded worked"
    return out + (f" (tried: {', '.join(failed)})" if failed else "")


def cmd_similar(args: argparse.Namespace) -> int:
    from detectors.memory.fewshot import FewShotKinds, nearest
    from detectors.memory.library import IncidentLibrary

    with IncidentLibrary.open(args.library) as lib:
        past = lib.incidents()
    if not past:
        raise FirebreakError(f"{args.library}: the library holds no incident")
    _, sig = _signature(args, args.at)
    sigs, kinds = [p.signature for p in past], [p.kind for p in past]
    model = FewShotKinds(unknown_distance=args.unknown_distance).fit(sigs, kinds)
    guess = model.predict([sig])[0]
    print(f"{args.source}: focus {sig.focus or '-'}; recognised kind: {guess}")
    for rank, (i, d) in enumerate(nearest(sig, sigs, model.scale_, top=args.top), 1):
        p = past[i]
        print(f"{rank:>3}  {d:7.3f}  {p.name}  {p.kind} at {p.root}  {_fixed(p)}")
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    from detectors.memory.library import IncidentLibrary
    from detectors.memory.signature import SIGNATURE_VERSION

    with IncidentLibrary.open(args.library) as lib:
        past = lib.incidents()
    print(f"{args.library}: {len(past)} incidents, signature {SIGNATURE_VERSION}")
    for p in past:
        print(f"  {p.name}  [{p.system}]  {p.kind} at {p.root}  {_fixed(p)}")
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    from detectors.memory import evaluate as ev
    from detectors.memory.fewshot import FewShotKinds
    from detectors.memory.library import IncidentLibrary

    if args.open_set == "fit" and args.unknown_distance is not None:
        raise FirebreakError("--unknown-distance and --open-set fit: give one, not both")
    with IncidentLibrary.open(args.library) as lib:
        train = lib.incidents()
    test = None
    if args.test:
        with IncidentLibrary.open(args.test) as lib:
            test = lib.incidents()
        if not test:
            raise FirebreakError(f"{args.test}: the test library holds no incident")
    if len(train) < 2:
        raise FirebreakError(f"{args.library}: eval needs at least 2 incidents, has {len(train)}")
    sigs, kinds = [p.signature for p in train], [p.kind for p in train]
    q = [p.signature for p in test] if test else None
    qk = [p.kind for p in test] if test else None
    what = f"{args.library} → {args.test}" if test else f"{args.library} (leave-one-out)"
    print(f"few-shot kind recognition, {what}, {args.episodes} draws per k (seed {args.seed})")
    for k in args.k:
        threshold = args.unknown_distance
        if args.open_set == "fit":
            threshold = ev.open_set_threshold(sigs, kinds, k, args.seed, args.episodes)
        model = FewShotKinds(unknown_distance=threshold)
        s = ev.episodes(sigs, kinds, q, qk, k, args.episodes, args.seed, model)
        shown = "closed set" if threshold is None else f"unknown past {threshold:.3g}"
        acc = "n/a" if math.isnan(s.accuracy) else f"{s.accuracy:.3f} ± {s.sd:.3f}"
        print(f"  k={k}: accuracy {acc} ({shown}; {s.queries} queries, {s.unseen} unseen kind)")
    share, n = ev.retrieval(sigs, kinds, q, qk)
    print(f"retrieval: nearest past incident has the same kind in {share:.3f} of {n} queries")
    return 0


def _nonneg_int(text: str) -> int:
    from firebreak.argtypes import int_at_least

    return int_at_least(0)(text)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("incidents", help="incident library: add, similar, list, eval")
    inner = p.add_subparsers(dest="incidents_command", required=True)
    a = inner.add_parser("add", help="store an incident with its diagnosis and actions")
    add_source_args(a)
    a.add_argument("--kind", type=_label, default=None, help="diagnosed fault kind")
    a.add_argument("--root", type=_label, default=None, help="diagnosed root-cause service")
    a.add_argument(
        "--action",
        type=_action,
        action="append",
        default=[],
        help="action taken: NAME or NAME=worked|failed (repeatable)",
    )
    a.add_argument("--name", type=_label, default=None, help="default: SOURCE@time")
    a.add_argument("--system", type=_label, default="unknown", help="the system's name")
    a.add_argument(
        "--from-labels",
        action="store_true",
        help="take --at, --kind and --root from a run directory's labels.json",
    )
    a.add_argument("--fault", type=_nonneg_int, default=0, help="with --from-labels: fault index")
    a.set_defaults(func=cmd_add)
    s = inner.add_parser("similar", help="the nearest past incidents and what fixed them")
    add_source_args(s)
    s.add_argument("--top", type=positive_int, default=5, help="incidents to list")
    s.add_argument(
        "--unknown-distance",
        type=positive_float,
        default=None,
        help="call the kind unknown past this distance (default: closed set)",
    )
    s.set_defaults(func=cmd_similar)
    li = inner.add_parser("list", help="the incidents in a library")
    li.add_argument("--library", required=True, help="the incident library (SQLite file)")
    li.set_defaults(func=cmd_list)
    e = inner.add_parser("eval", help="few-shot kind accuracy and retrieval of a library")
    e.add_argument("--library", required=True, help="the library to learn from")
    e.add_argument("--test", default=None, help="a library to test on (default: leave-one-out)")
    e.add_argument("--k", type=positive_int, nargs="+", default=[1, 3, 5], help="shots per kind")
    e.add_argument("--episodes", type=positive_int, default=20, help="draws per k")
    e.add_argument("--seed", type=_nonneg_int, default=0)
    e.add_argument(
        "--open-set",
        choices=("none", "fit"),
        default="none",
        help="fit: choose the unknown distance on --library (each kind held out in turn)",
    )
    e.add_argument("--unknown-distance", type=positive_float, default=None)
    e.set_defaults(func=cmd_eval)
