"""A corpus of bad inputs across every command: what a demanding user would try.

Each case is a command line built against a folder of materials (a valid short scenario, its
mutations, broken files of every kind) and the fragments its error must name (the file,
the field, the value). Every case must end with exit 2 and one clear message: a traceback,
an exit 0 (a silent accept), a hang or a half-written output fails it.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
TOPOLOGY = ROOT / "scenarios" / "topologies" / "online-boutique.yaml"
CHANGES = ROOT / "scenarios" / "changes"
ENV = "firebreak/Remediation-v0"


@dataclass(frozen=True)
class Case:
    """One bad input: `argv(materials, out)` and the fragments stderr must contain."""

    id: str
    argv: Callable[[Path, Path], list[str]]
    expect: tuple[str, ...] = ()


def valid_scenario() -> dict[str, Any]:
    """Ten minutes of Online Boutique with one fault: loads, runs in a second."""
    return {
        "name": "corpus",
        "topology": str(TOPOLOGY),
        "duration": "10m",
        "seed": 1,
        "workload": {
            "classes": [
                {"name": "browse", "entry": "frontend", "rate": 90},
                {"name": "checkout", "entry": "frontend", "rate": 10},
            ]
        },
        "faults": [{"kind": "crash", "target": "cartservice", "start": "2m", "duration": "3m"}],
        "slos": [{"class": "browse", "availability": 0.999, "latency_ms": 500}],
    }


def _set(doc: Any, path: str, value: Any) -> Any:
    """doc with the field at a dotted path (list indices as numbers) set, or deleted."""
    doc = copy.deepcopy(doc)
    parts = path.split(".")
    node = doc
    for part in parts[:-1]:
        node = node[int(part)] if isinstance(node, list) else node[part]
    last = parts[-1]
    key: Any = int(last) if isinstance(node, list) else last
    if value is _DELETE:
        del node[key]
    else:
        node[key] = value
    return doc


_DELETE = object()

# (id, dotted path, bad value, fragments of the message: field path and value)
SCENARIO_MUTATIONS: list[tuple[str, str, Any, tuple[str, ...]]] = [
    ("duration-negative", "duration", "-5m", ("duration",)),
    ("duration-zero", "duration", 0, ("duration",)),
    ("duration-words", "duration", "ten minutes", ("duration", "ten minutes")),
    ("duration-nan", "duration", float("nan"), ("duration",)),
    ("duration-inf", "duration", float("inf"), ("duration",)),
    ("duration-list", "duration", [1, 2], ("duration",)),
    ("tick-zero", "tick", 0, ("tick",)),
    ("tick-negative", "tick", "-1s", ("tick",)),
    ("seed-text", "seed", "lucky", ("seed", "lucky")),
    ("seed-float", "seed", 1.5, ("seed",)),
    ("seed-negative", "seed", -3, ("seed",)),
    ("name-missing", "name", _DELETE, ("name",)),
    ("topology-missing-file", "topology", "no-such-topology", ("no-such-topology",)),
    ("topology-number", "topology", 42, ("topology",)),
    ("unknown-top-level-key", "colour", "blue", ("colour",)),
    ("classes-empty", "workload.classes", [], ("classes",)),
    ("class-rate-negative", "workload.classes.0.rate", -1, ("workload.classes[0].rate", "-1")),
    ("class-rate-nan", "workload.classes.0.rate", float("nan"), ("workload.classes[0].rate",)),
    ("class-rate-inf", "workload.classes.0.rate", float("inf"), ("workload.classes[0].rate",)),
    ("class-rate-huge", "workload.classes.0.rate", 1e12, ("workload.classes[0].rate",)),
    ("class-rate-text", "workload.classes.0.rate", "fast", ("workload.classes[0].rate", "fast")),
    ("class-entry-unknown", "workload.classes.0.entry", "frontdoor", ("frontdoor",)),
    ("class-name-missing", "workload.classes.0.name", _DELETE, ("workload.classes[0]",)),
    ("noise-negative", "workload.noise", -0.5, ("noise",)),
    ("amplitude-text", "workload.daily_amplitude", "big", ("daily_amplitude",)),
    ("peak-hour-25", "workload.peak_hour", 25, ("peak_hour",)),
    ("fault-kind-unknown", "faults.0.kind", "meteor", ("faults[0]", "meteor")),
    ("fault-target-unknown", "faults.0.target", "cartt", ("faults[0].target", "cartt")),
    ("fault-start-negative", "faults.0.start", "-1m", ("faults[0].start",)),
    ("fault-start-after-end", "faults.0.start", "2h", ("faults[0].start",)),
    ("fault-duration-zero", "faults.0.duration", 0, ("faults[0].duration",)),
    ("fault-share-two", "faults.0.share", 2, ("faults[0].share",)),
    ("fault-extra-field", "faults.0.severity", "high", ("severity",)),
    ("faults-not-a-list", "faults", "crash everything", ("faults",)),
    ("slo-class-unknown", "slos.0.class", "shopping", ("shopping",)),
    ("slo-availability-two", "slos.0.availability", 2, ("slos[0].availability",)),
    ("slo-latency-negative", "slos.0.latency_ms", -10, ("slos[0].latency_ms",)),
    ("slo-percentile-120", "slos.0.percentile", 120, ("slos[0].percentile",)),
    ("patch-unknown-service", "topology_patch", {"services": {"nosuch": {"replicas": 2}}},
     ("nosuch",)),
    ("patch-replicas-negative", "topology_patch",
     {"services": {"cartservice": {"replicas": -2}}}, ("replicas",)),
    ("patch-replicas-billion", "topology_patch",
     {"services": {"cartservice": {"replicas": 10**9}}}, ("replicas",)),
    ("patch-workers-zero", "topology_patch",
     {"services": {"cartservice": {"workers": 0}}}, ("workers",)),
    ("patch-timeout-zero", "topology_patch",
     {"defaults": {"timeout_ms": 0}}, ("timeout_ms",)),
    ("telemetry-trace-rate-two", "telemetry", {"trace_rate": 2}, ("trace_rate",)),
]  # fmt: skip

# raw texts that are not a scenario at all (written as the scenario file)
RAW_SCENARIOS: list[tuple[str, bytes, tuple[str, ...]]] = [
    ("empty-file", b"", ("corpus.yaml",)),
    ("only-comment", b"# nothing here\n", ("corpus.yaml",)),
    ("a-list", b"- one\n- two\n", ("corpus.yaml",)),
    ("a-string", b"just words\n", ("corpus.yaml",)),
    ("malformed-indent", b"name: x\n  duration: 1h\n bad: [\n", ("corpus.yaml", "line")),
    ("tab-indent", b"name: x\n\tduration: 1h\n", ("corpus.yaml",)),
    ("binary", bytes(range(256)) * 4, ("corpus.yaml",)),
    ("latin1", "name: caf\u00e9\n".encode("latin-1"), ("corpus.yaml", "UTF-8")),
    ("python-tag", b"name: !!python/object/apply:os.system ['true']\n", ("corpus.yaml",)),
    ("deep-nesting", b"a: " + b"[" * 5000 + b"]" * 5000 + b"\n", ("corpus.yaml",)),
    ("duplicate-key", None, ("corpus.yaml", "duplicate key", "duration")),
    ("duplicate-service-key", None, ("duplicate key", "cartservice")),
]


def _scenario_file(materials: Path, name: str, doc: Any) -> Path:
    path = materials / "scenarios" / f"{name}.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
    return path


def _raw_file(materials: Path, name: str, data: bytes | None) -> Path:
    folder = materials / "raw" / name
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "corpus.yaml"
    if data is None and name == "duplicate-key":
        text = yaml.safe_dump(valid_scenario(), sort_keys=False) + "duration: 2h\n"
        data = text.encode()
    elif data is None:  # two `cartservice:` under one mapping of an inline patch
        text = yaml.safe_dump(valid_scenario(), sort_keys=False)
        text += "topology_patch:\n  services:\n    cartservice: {replicas: 2}\n"
        text += "    cartservice: {replicas: 3}\n"
        data = text.encode()
    path.write_bytes(data)
    return path


def scenario_cases() -> list[Case]:
    """Every scenario mutation under every command that reads a scenario."""
    cases = []
    commands: dict[str, Callable[[Path, Path], list[str]]] = {
        "validate": lambda s, out: ["validate", str(s)],
        "run": lambda s, out: ["run", str(s), "--out", str(out), "--quiet"],
        "rehearse": lambda s, out: ["rehearse", str(s), "--ops", "ai", "--out", str(out)],
        "fidelity": lambda s, out: ["fidelity", str(s)],
    }
    for cid, path, value, expect in SCENARIO_MUTATIONS:
        for cmd, build in commands.items():

            def argv(m: Path, out: Path, cid=cid, path=path, value=value, build=build) -> list:
                return build(_scenario_file(m, cid, _set(valid_scenario(), path, value)), out)

            cases.append(Case(f"{cmd}:{cid}", argv, expect))
    for cid, data, expect in RAW_SCENARIOS:
        for cmd in ("validate", "run"):
            build = commands[cmd]

            def argv(m: Path, out: Path, cid=cid, data=data, build=build) -> list:
                return build(_raw_file(m, cid, data), out)

            cases.append(Case(f"{cmd}:raw-{cid}", argv, expect))
    return cases


def _good(m: Path) -> Path:
    return _scenario_file(m, "good", valid_scenario())


def _file(m: Path, name: str, data: bytes | str) -> Path:
    path = m / "files" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data.encode() if isinstance(data, str) else data)
    return path


def _run_dir(m: Path) -> Path:
    """A folder that looks like a run directory but holds a broken metrics table."""
    folder = m / "fake-run"
    (folder / "metrics.parquet").mkdir(parents=True, exist_ok=True)
    (folder / "metrics.parquet" / "part-000000.parquet").write_bytes(b"PAR1 not really")
    return folder


def _occupied(out: Path) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    (out / "old-run-file.txt").write_text("from an earlier run")
    return out


JAEGER_SPAN = {"traceID": "t", "spanID": "a", "operationName": "op", "startTime": 1,
               "duration": 1, "processID": "p1", "references": []}  # fmt: skip


def flag_cases() -> list[Case]:
    """Bad flags, paths and files for every command."""
    g = _good
    c: list[tuple[str, Callable[[Path, Path], list[str]], tuple[str, ...]]] = [
        # run
        ("run:missing-scenario", lambda m, o: ["run", str(m / "nope.yaml"), "--out", str(o)],
         ("nope.yaml",)),
        ("run:scenario-is-dir", lambda m, o: ["run", str(m), "--out", str(o)], ("directory",)),
        ("run:flag-duration-zero", lambda m, o: ["run", str(g(m)), "--duration", "0s", "--out",
                                                 str(o)], ("--duration",)),
        ("run:flag-duration-words", lambda m, o: ["run", str(g(m)), "--duration", "soon", "--out",
                                             str(o)], ("--duration", "soon")),
        ("run:duration-cuts-fault", lambda m, o: ["run", str(g(m)), "--duration", "1m", "--out",
                                                  str(o)], ("faults[0].start",)),
        ("run:duration-1000w", lambda m, o: ["run", str(g(m)), "--duration", "1000w", "--out",
                                             str(o)], ("--allow-large",)),
        ("run:flag-seed-text", lambda m, o: ["run", str(g(m)), "--seed", "x", "--out", str(o)],
         ("--seed",)),
        ("run:flag-seed-negative", lambda m, o: ["run", str(g(m)), "--seed", "-1", "--out", str(o)],
         ("seed",)),
        ("run:trace-rate-two", lambda m, o: ["run", str(g(m)), "--trace-rate", "2", "--out",
                                             str(o)], ("--trace-rate",)),
        ("run:trace-rate-nan", lambda m, o: ["run", str(g(m)), "--trace-rate", "nan", "--out",
                                             str(o)], ("--trace-rate",)),
        ("run:fidelity-unknown", lambda m, o: ["run", str(g(m)), "--fidelity", "exact", "--out",
                                               str(o)], ("--fidelity",)),
        ("run:out-empty", lambda m, o: ["run", str(g(m)), "--out", ""], ("--out", "empty")),
        ("run:out-is-file", lambda m, o: ["run", str(g(m)), "--out", str(_file(m, "f", "x"))],
         ("--out", "not a directory")),
        ("run:out-occupied", lambda m, o: ["run", str(g(m)), "--out", str(_occupied(o))],
         ("--out", "--force")),
        ("run:out-dot-force", lambda m, o: ["run", str(g(m)), "--out", ".", "--force"],
         ("refusing to clear",)),
        ("run:missing-out", lambda m, o: ["run", str(g(m))], ("--out",)),
        ("run:unknown-flag", lambda m, o: ["run", str(g(m)), "--out", str(o), "--turbo"],
         ("--turbo",)),
        # validate
        ("validate:missing", lambda m, o: ["validate", str(m / "nope.yaml")], ("nope.yaml",)),
        ("validate:no-files", lambda m, o: ["validate"], ("files",)),
        # generate-topology
        ("generate:one-service", lambda m, o: ["generate-topology", "--services", "1", "-o",
                                               str(m / "t.yaml")], ("--services",)),
        ("generate:services-text", lambda m, o: ["generate-topology", "--services", "many", "-o",
                                                 str(m / "t.yaml")], ("--services",)),
        ("generate:out-is-dir", lambda m, o: ["generate-topology", "--services", "5", "-o",
                                              str(m)], ("-o", "directory")),
        ("generate:out-parent-missing", lambda m, o: ["generate-topology", "--services", "5",
                                                      "-o", str(m / "no" / "t.yaml")],
         ("does not exist",)),
        ("generate:out-empty", lambda m, o: ["generate-topology", "--services", "5", "-o", ""],
         ("-o", "empty")),
        # import-traces
        ("import:missing", lambda m, o: ["import-traces", str(m / "t.json"), "-o",
                                         str(m / "o.yaml")], ("t.json",)),
        ("import:empty", lambda m, o: ["import-traces", str(_file(m, "e.json", "")), "-o",
                                       str(m / "o.yaml")], ("e.json",)),
        ("import:not-json", lambda m, o: ["import-traces", str(_file(m, "n.json", "{oops")),
                                          "-o", str(m / "o.yaml")], ("n.json",)),
        ("import:binary", lambda m, o: ["import-traces", str(_file(m, "b.json", bytes(range(256)))),
                                        "-o", str(m / "o.yaml")], ("b.json",)),
        ("import:deep", lambda m, o: ["import-traces", str(_file(m, "d.json", "[" * 100000)), "-o",
                                      str(m / "o.yaml")], ("d.json",)),
        ("import:a-number", lambda m, o: ["import-traces", str(_file(m, "num.json", "42")), "-o",
                                          str(m / "o.yaml")], ("num.json",)),
        ("import:no-spans", lambda m, o: ["import-traces", str(_file(m, "ns.json",
                                          '{"data": []}')), "-o", str(m / "o.yaml")],
         ("ns.json",)),
        ("import:span-no-process", lambda m, o: [
            "import-traces", str(_file(m, "np.json", json.dumps(
                {"data": [{"traceID": "t", "spans": [JAEGER_SPAN], "processes": {}}]}))),
            "-o", str(m / "o.yaml")], ("np.json",)),
        ("import:out-dir", lambda m, o: ["import-traces", str(_file(m, "x.json", "{}")), "-o",
                                         str(m)], ("-o",)),
        # export
        ("export:no-run-dir", lambda m, o: ["export", str(m / "nope"), "--format", "rcaeval",
                                            "-o", str(m / "x.csv")], ("nope",)),
        ("export:not-a-run", lambda m, o: ["export", str(m), "--format", "rcaeval", "-o",
                                           str(m / "x.csv")], ("run directory",)),
        ("export:broken-parquet", lambda m, o: ["export", str(_run_dir(m)), "--format",
                                                "prometheus", "-o", str(m / "x.prom")],
         ("parquet",)),
        ("export:format-unknown", lambda m, o: ["export", str(m), "--format", "xml", "-o",
                                                str(m / "x")], ("--format",)),
        ("export:step-zero", lambda m, o: ["export", str(m), "--format", "rcaeval", "--step",
                                           "0s", "-o", str(m / "x.csv")], ("--step",)),
        # serve (bad arguments only: a good one would serve)
        ("serve:speed-nan", lambda m, o: ["serve", str(g(m)), "--speed", "nan"], ("--speed",)),
        ("serve:speed-negative", lambda m, o: ["serve", str(g(m)), "--speed", "-2"],
         ("--speed",)),
        ("serve:port-huge", lambda m, o: ["serve", str(g(m)), "--port", "70000"], ("--port",)),
        ("serve:port-text", lambda m, o: ["serve", str(g(m)), "--port", "http"], ("--port",)),
        ("serve:missing", lambda m, o: ["serve", str(m / "nope.yaml")], ("nope.yaml",)),
        # fidelity
        ("fidelity:missing", lambda m, o: ["fidelity", str(m / "nope.yaml")], ("nope.yaml",)),
        ("fidelity:flag-duration-zero", lambda m, o: ["fidelity", str(g(m)), "--duration", "0"],
         ("--duration",)),
        ("fidelity:json-is-dir", lambda m, o: ["fidelity", str(g(m)), "--duration", "6m",
                                               "--json", str(m)], ("directory",)),
        # rehearse
        ("rehearse:ops-unknown", lambda m, o: ["rehearse", str(g(m)), "--ops", "robots",
                                               "--out", str(o)], ("--ops",)),
        ("rehearse:rl-missing-dir", lambda m, o: ["rehearse", str(g(m)), "--ops",
                                                  f"rl:{m / 'nopolicy'}", "--out", str(o)],
         ("nopolicy",)),
        ("rehearse:rl-empty-dir", lambda m, o: ["rehearse", str(g(m)), "--ops",
                                                f"rl:{_folder(m, 'emptypolicy')}", "--out",
                                                str(o)], ("emptypolicy",)),
        ("rehearse:rl-zip", lambda m, o: ["rehearse", str(g(m)), "--ops",
                                          f"rl:{_zip_policy(m)}", "--out", str(o)],
         ("policy.zip", "--trust-pickle")),
        ("rehearse:runbook-missing", lambda m, o: ["rehearse", str(g(m)), "--ops", "ai",
                                                   "--runbook", str(m / "rb.yaml"), "--out",
                                                   str(o)], ("rb.yaml",)),
        ("rehearse:runbook-malformed", lambda m, o: [
            "rehearse", str(g(m)), "--ops", "ai", "--runbook",
            str(_file(m, "rb.yaml", "rules: [\n")), "--out", str(o)], ("rb.yaml",)),
        ("rehearse:runbook-duplicate-key", lambda m, o: [
            "rehearse", str(g(m)), "--ops", "ai", "--runbook",
            str(_file(m, "rbd.yaml", "name: a\nname: b\nrules: []\n")), "--out", str(o)],
         ("rbd.yaml", "duplicate key")),
        ("rehearse:out-occupied", lambda m, o: ["rehearse", str(g(m)), "--ops", "ai", "--out",
                                                str(_occupied(o))], ("--force",)),
        # validate-change
        ("change:missing-change", lambda m, o: ["validate-change", str(CHANGES /
                                                "boutique-base.yaml"), str(m / "c.yaml"),
                                                "--out", str(o)], ("c.yaml",)),
        ("change:malformed", lambda m, o: ["validate-change", str(CHANGES / "boutique-base.yaml"),
                                           str(_file(m, "c.yaml", "version: [\n")), "--out",
                                           str(o)], ("c.yaml",)),
        ("change:unknown-service", lambda m, o: [
            "validate-change", str(CHANGES / "boutique-base.yaml"),
            str(_file(m, "cu.yaml", "version: {service: nosuch}\n")), "--out", str(o)],
         ("nosuch",)),
        ("change:seeds-zero", lambda m, o: ["validate-change", str(CHANGES / "boutique-base.yaml"),
                                            str(CHANGES / "add-replica.yaml"), "--seeds", "0",
                                            "--out", str(o)], ("--seeds",)),
        ("change:suite-unknown", lambda m, o: ["validate-change", str(CHANGES /
                                               "boutique-base.yaml"), str(CHANGES /
                                               "add-replica.yaml"), "--suite", "huge", "--out",
                                               str(o)], ("huge",)),
        # train / evaluate
        ("train:algo-unknown", lambda m, o: ["train", "--algo", "sarsa", "--env", ENV, "--steps",
                                             "10", "--out", str(o)], ("sarsa",)),
        ("train:env-unknown", lambda m, o: ["train", "--algo", "ppo", "--env", "firebreak/Chess-v0",
                                            "--steps", "10", "--out", str(o)], ("Chess",)),
        ("train:steps-zero", lambda m, o: ["train", "--algo", "ppo", "--env", ENV, "--steps", "0",
                                            "--out", str(o)],
         ("--steps",)),
        ("train:seed-negative", lambda m, o: ["train", "--algo", "ppo", "--env", ENV, "--steps",
                                              "10", "--seed", "-1", "--out", str(o)],
         ("--seed", "-1")),
        ("train:env-kwargs-bad-json", lambda m, o: ["train", "--algo", "ppo", "--env", ENV,
                                                    "--steps", "10", "--env-kwargs", "{oops",
                                                    "--out", str(o)], ("--env-kwargs",)),
        ("train:env-kwargs-unknown", lambda m, o: ["train", "--algo", "ppo", "--env", ENV,
                                                   "--steps", "10", "--env-kwargs",
                                                   '{"colour": 1}', "--out", str(o)],
         ("colour",)),
        ("train:hyperparams-unknown", lambda m, o: ["train", "--algo", "ppo", "--env", ENV,
                                                    "--steps", "10", "--hyperparams",
                                                    '{"lr": 1}', "--out", str(o)],
         ("hyperparams.lr",)),
        ("train:vec-env-unknown", lambda m, o: ["train", "--algo", "ppo", "--env", ENV, "--steps",
                                                "10", "--vec-env", "gpu", "--out", str(o)],
         ("--vec-env", "gpu")),
        ("train-sweep:grid-bad-json", lambda m, o: ["train-sweep", "--algo", "ppo", "--env", ENV,
                                                    "--steps", "10", "--grid", "{oops", "--out",
                                                    str(o)], ("--grid",)),
        ("train-sweep:grid-empty", lambda m, o: ["train-sweep", "--algo", "ppo", "--env", ENV,
                                                 "--steps", "10", "--grid", '{"gamma": []}',
                                                 "--out", str(o)], ("grid.gamma",)),
        ("train-sweep:seeds-bad", lambda m, o: ["train-sweep", "--algo", "ppo", "--env", ENV,
                                                "--steps", "10", "--seeds", "a,b", "--out",
                                                str(o)], ("--seeds",)),
        ("evaluate:missing-policy", lambda m, o: ["evaluate", "--policy", str(m / "nope"),
                                                  "--out", str(o)], ("nope",)),
        ("evaluate:zip-policy", lambda m, o: ["evaluate", "--policy", str(_zip_policy(m)),
                                              "--out", str(o)], ("--trust-pickle",)),
        ("evaluate:episodes-zero", lambda m, o: ["evaluate", "--policy", str(m), "--episodes",
                                                 "0", "--out", str(o)], ("--episodes",)),
        # studies
        ("rca-suite:cases-zero", lambda m, o: ["rca-suite", "--cases", "0", "--out", str(o)],
         ("--cases",)),
        ("rca-suite:topology-unknown", lambda m, o: ["rca-suite", "--cases", "2", "--topologies",
                                                     "mars", "--out", str(o)], ("mars",)),
        ("rca-suite:method-unknown", lambda m, o: ["rca-suite", "--cases", "2", "--methods",
                                                   "magic", "--out", str(o)], ("magic",)),
        ("detect-suite:scenario-unknown", lambda m, o: ["detect-suite", "--scenarios", "atlantis",
                                                        "--out", str(o)], ("atlantis",)),
        ("rca-suite:telemetry-unknown", lambda m, o: ["rca-suite", "--cases", "2", "--telemetry",
                                                      "perfect", "--out", str(o)],
         ("--telemetry", "perfect")),
        ("detect-suite:telemetry-unknown", lambda m, o: ["detect-suite", "--telemetry", "perfect",
                                                         "--out", str(o)],
         ("--telemetry", "perfect")),
        ("rehearse:telemetry-unknown", lambda m, o: ["rehearse", str(g(m)), "--telemetry",
                                                     "perfect", "--out", str(o)],
         ("--telemetry", "perfect")),
        ("impact:telemetry-unknown", lambda m, o: ["impact-study", "--telemetry", "perfect",
                                                   "--out", str(o)], ("--telemetry", "perfect")),
        ("impact:seeds-zero", lambda m, o: ["impact-study", "--seeds", "0", "--out", str(o)],
         ("--seeds",)),
        ("impact:backend-unknown", lambda m, o: ["impact-study", "--backend", "cloud", "--out",
                                                 str(o)], ("cloud",)),
        ("impact:scenario-unknown", lambda m, o: ["impact-study", "--scenarios", "narnia",
                                                  "--out", str(o)], ("narnia",)),
        ("capacity:seeds-zero", lambda m, o: ["capacity-study", "--seeds", "0", "--out", str(o)],
         ("--seeds",)),
        ("capacity:family-unknown", lambda m, o: ["capacity-study", "--families", "winter",
                                                  "--out", str(o)], ("winter",)),
        ("nab:data-missing", lambda m, o: ["nab", "--data", str(m / "nonab")], ("nonab",)),
        ("nab:detector-unknown", lambda m, o: ["nab", "--detector", "psychic", "--data",
                                               str(m / "nonab")], ("psychic",)),
    ]  # fmt: skip
    return [Case(cid, argv, expect) for cid, argv, expect in c]


def _folder(m: Path, name: str) -> Path:
    path = m / name
    path.mkdir(parents=True, exist_ok=True)
    return path


def _zip_policy(m: Path) -> Path:
    """A policy directory holding only a stable-baselines3-style zip (never unpickled)."""
    import zipfile

    folder = _folder(m, "zippolicy")
    with zipfile.ZipFile(folder / "policy.zip", "w") as z:
        z.writestr("data", "{}")
    return folder


def all_cases() -> list[Case]:
    from bad_input_ingest import ingest_cases
    from bad_input_memory import memory_cases
    from bad_input_observe import observe_cases
    from bad_input_series import series_cases
    from bad_input_sim2real import sim2real_cases

    return (
        scenario_cases()
        + flag_cases()
        + ingest_cases()
        + observe_cases()
        + memory_cases()
        + series_cases()
        + sim2real_cases()
    )
