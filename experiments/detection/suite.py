"""The detection suite: detectors against the twin's causal ground truth, side by side.

For each scenario the twin streams its frames once and every detector sees the same frames:
the static-threshold baseline, tier 1 alone, the tiered pipeline (tier 2 only where tier 1
escalates) and tier 2 on every service-frame (the reference for the compute saved). Tier 2
is fitted beforehand on a separate fault-free run of the same topology with another seed,
never on the run it is scored on; labels.json is read only by the scorer.

With `telemetry="production"` every run (the scored ones and tier 2's fault-free ones) goes
through `run_scenario` with production-like telemetry into a temporary run directory, and
the detectors stream the 15 s steps its metrics.parquet holds (`experiments/observed.py`);
the detectors' settings stay as they are (counted in frames). The labels are the same
but-for ground truth the ideal mode scores against (the run directory's labels.json).
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from detectors.anomaly.evaluation import evaluate, parse_labels
from detectors.anomaly.features import K
from detectors.anomaly.pipeline import Z_CLIP, TieredPipeline
from detectors.anomaly.static import StaticThresholds
from detectors.correlation import Correlator
from experiments.observed import TelemetryChoice, check_telemetry, observe
from twin.flow.engine import Simulation
from twin.run.labels import ground_truth
from twin.scenario.loader import load_scenario
from twin.scenario.schema import Scenario
from twin.telemetry.recorders import SignalRecorder

ROOT = Path(__file__).resolve().parents[2]
SUITE = (
    "bad-deploy",
    "memory-leak",
    "dependency-outage",
    "network-partition",
    "retry-storm",
    "train-ticket-cascade",
    "black-friday",
    "steady-state",
)
TRAIN_S = 6 * 3600.0
TRAIN_SEED_OFFSET = 1000
SAMPLE_EVERY = 5


def normal_run(scenario: Scenario, duration: float = TRAIN_S) -> Scenario:
    """The same system on another day: no faults, another seed."""
    return scenario.model_copy(
        update={
            "faults": [],
            "seed": scenario.seed + TRAIN_SEED_OFFSET,
            "duration": min(duration, scenario.duration),
        }
    )


def collect_normal_z(
    scenario: Scenario, sample_every: int = SAMPLE_EVERY, telemetry: TelemetryChoice = "ideal"
) -> np.ndarray:
    """Per service-frame robust z-vectors of tier 1 on a run, to fit tier 2 on."""
    if check_telemetry(telemetry) == "production":
        with tempfile.TemporaryDirectory(prefix="detect-normal-") as tmp:
            obs = observe(scenario, Path(tmp) / "run", logs=False)
        names: Sequence[str] = obs.services
        frames: Iterable[tuple[float, np.ndarray]] = obs.frames()
    else:
        sim = Simulation(scenario)
        names = sim.topo.names
        frames = ((f.time, f.values) for f in sim.frames())
    pipe = TieredPipeline(names)
    rows = []
    for i, (t, values) in enumerate(frames):
        x = pipe.layout.transform(values)
        if pipe.robust.ready and i % sample_every == 0:
            z = pipe.robust.score_one(x)
            rows.append(np.clip(z, -Z_CLIP, Z_CLIP).reshape(-1, K))
        pipe.learn(x, t)
    return np.concatenate(rows) if rows else np.zeros((0, K))


TIER2_MODELS = ("pca", "iforest", "autoencoder")


def make_tier2(kind: str, seed: int = 0):
    """A fresh tier-2 model of the given kind (the torch one is imported only if asked)."""
    from detectors.anomaly import multivariate

    if kind == "pca":
        return multivariate.PcaDetector()
    if kind == "iforest":
        return multivariate.IsolationForestDetector(seed=seed)
    if kind == "autoencoder":
        return multivariate.AutoencoderDetector(seed=seed)
    raise ValueError(f"tier 2: expected one of {', '.join(TIER2_MODELS)}, got {kind!r}")


def fit_tier2(
    train: Sequence[Scenario],
    seed: int = 0,
    kind: str = "pca",
    telemetry: TelemetryChoice = "ideal",
):
    """One tier-2 model over K robust z-scores, shared by every service."""
    X = np.concatenate([collect_normal_z(sc, telemetry=telemetry) for sc in train])
    return make_tier2(kind, seed).fit(X)


@dataclass
class CaseResult:
    scenario: str
    services: int
    duration_s: float
    faults: int
    detectors: dict[str, dict] = field(default_factory=dict)


def run_case(
    scenario: Scenario,
    tier2,
    *,
    progress: Callable[[float, float], None] | None = None,
    pipeline: dict | None = None,
    telemetry: TelemetryChoice = "ideal",
) -> CaseResult:
    """Stream one scenario through every detector and score each against its labels.

    `pipeline` overrides the tiered pipelines' settings (escalate_z, persist, ...);
    `telemetry` picks what the detectors see (the module docstring)."""
    opts = dict(pipeline or {})
    if check_telemetry(telemetry) == "production":
        with tempfile.TemporaryDirectory(prefix="detect-case-") as tmp:
            obs = observe(scenario, Path(tmp) / "run", labels=True, logs=False)
        names: tuple[str, ...] = obs.services
        frames: Iterable[tuple[float, np.ndarray]] = obs.frames()
        n_frames = len(obs.times)
        labels = obs.labels

        def truth_of() -> dict:
            return labels or {}
    else:
        sim = Simulation(scenario)
        names = sim.topo.names
        recorder = SignalRecorder(sim.n_ticks, len(names))
        sim.sinks.append(recorder)
        frames = ((f.time, f.values) for f in sim.frames())
        n_frames = sim.n_ticks

        def truth_of() -> dict:
            return ground_truth(scenario, recorder.data, names, sim.n_ticks * sim.dt)

    detectors = {
        "static": StaticThresholds.for_scenario(scenario, names),
        "tier1": TieredPipeline(names, detector_name="tier1", **opts),
        "tiered": TieredPipeline(names, tier2=tier2, detector_name="tiered", **opts),
        "tier2-always": TieredPipeline(
            names, tier2=tier2, tier2_always=True, detector_name="tier2-always", **opts
        ),
    }
    alerts: dict[str, list] = {name: [] for name in detectors}
    walls = dict.fromkeys(detectors, 0.0)
    for t, values in frames:
        for name, det in detectors.items():
            t0 = time.perf_counter()
            alerts[name].extend(det.process(t, values))
            walls[name] += time.perf_counter() - t0
        if progress is not None and t % 600 == 0:
            progress(t, scenario.duration)
    faults = parse_labels(truth_of(), f"{scenario.name} labels")
    graph = scenario.topology.graph()
    result = CaseResult(scenario.name, len(names), scenario.duration, len(faults))
    for name, det in detectors.items():
        correlator = Correlator(graph)
        correlator.extend(alerts[name])
        correlator.flush()
        ev = evaluate(
            alerts[name],
            faults,
            n_services=len(names),
            duration_s=scenario.duration,
            incidents=correlator.incidents,
        )
        entry = ev.to_dict()
        entry["n_alerts"] = len(alerts[name])
        entry["ms_per_tick"] = round(walls[name] / max(n_frames, 1) * 1000.0, 4)
        stats = getattr(det, "stats", None)
        if stats is not None:
            entry["tier2_calls"] = stats.tier2_calls
            entry["service_frames"] = stats.service_frames
        result.detectors[name] = entry
    return result


def load_suite(names: Sequence[str] = SUITE) -> list[Scenario]:
    return [load_scenario(ROOT / "scenarios" / f"{name}.yaml") for name in names]


def summarise(results: Sequence[CaseResult]) -> dict:
    """Pooled figures per detector over the suite (events pooled, not scores averaged)."""
    out: dict[str, dict] = {}
    names = list(results[0].detectors) if results else []
    for name in names:
        faults = detected = items = true_items = 0
        alerts = incidents = fa_episodes = 0
        service_days = 0.0
        delays: list[float] = []
        purity_num = purity_den = 0.0
        added: list[float] = []
        surfaced = surfacable = 0
        tier2_calls = service_frames = 0
        for r in results:
            d = r.detectors[name]
            a = d["alerts"]
            faults += a["faults"]
            detected += a["detected"]
            items += a["items"]
            true_items += a["true_items"]
            delays += list(a["delays_s"].values())
            days = r.services * r.duration_s / 86400.0
            service_days += days
            fa_episodes += round(d["false_alerts_per_service_day"] * days)
            alerts += d["n_alerts"]
            c = d["correlation"]
            incidents += c["incidents"]
            purity_num += c["purity"] * c["alerts"]
            purity_den += c["alerts"]
            added += list(c["added_delay_s"].values())
            surfaced += c["surfaced"]
            surfacable += c["faults_with_alerts"]
            tier2_calls += d.get("tier2_calls") or 0
            service_frames += d.get("service_frames") or 0
        precision = true_items / items if items else 1.0
        recall = detected / faults if faults else 1.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        out[name] = {
            "faults": faults,
            "detected": detected,
            "precision": round(precision, 4),
            "recall": round(recall, 4),
            "f1": round(f1, 4),
            "mttd_s": round(float(np.mean(delays)), 1) if delays else None,
            "false_alerts_per_service_day": round(fa_episodes / service_days, 4),
            "alerts": alerts,
            "incidents": incidents,
            "compression": round(1.0 - incidents / alerts, 4) if alerts else None,
            "purity": round(purity_num / purity_den, 4) if purity_den else None,
            "surfaced_share": round(surfaced / surfacable, 4) if surfacable else None,
            "correlation_added_delay_s": round(float(np.mean(added)), 1) if added else 0.0,
            "tier2_calls": tier2_calls,
            "service_frames": service_frames,
        }
    if "tiered" in out and "tier2-always" in out:
        t, ref = out["tiered"], out["tier2-always"]
        out["tiered"]["tier2_compute_saved_x"] = round(
            ref["tier2_calls"] / max(t["tier2_calls"], 1), 1
        )
        out["tiered"]["recall_kept_vs_tier2_always"] = (
            round(t["recall"] / ref["recall"], 4) if ref["recall"] else None
        )
    return out


# ------------------------------------------------------------------------- cold start
BASE_LOAD = {  # each topology file's documented base load (entry -> rps)
    "online-boutique": {"frontend": 100.0},
    "sock-shop": {"front-end": 60.0, "queue-master": 3.0},
    "social-network": {"nginx-thrift": 200.0, "media-frontend": 20.0},
    "hotel-reservation": {"frontend": 200.0},
    "train-ticket": {"ts-ui-dashboard": 50.0},
}


def base_scenario(topology: str, hours: float, seed: int) -> Scenario:
    """A fault-free day of a topology at its documented base load, with a daily cycle."""
    classes = [
        {"name": f"{entry}-requests", "entry": entry, "rate": rate}
        for entry, rate in BASE_LOAD[topology].items()
    ]
    return Scenario.model_validate(
        {
            "name": f"{topology}-normal",
            "topology": load_topology_dict(topology),
            "duration": hours * 3600.0,
            "seed": seed,
            "workload": {"classes": classes, "daily_amplitude": 0.3, "noise": 0.05},
        }
    )


def load_topology_dict(name: str) -> dict:
    import yaml

    return yaml.safe_load((ROOT / "scenarios" / "topologies" / f"{name}.yaml").read_text())


def cold_start(
    target: Scenario,
    sources: Sequence[str],
    *,
    warmup_s: float = 7200.0,
    hours: float = 6.0,
    telemetry: TelemetryChoice = "ideal",
) -> dict:
    """The tiered pipeline's scores in the target's first day with a tier-2 model learned on
    other topologies only (transfer), beside one learned from scratch on `warmup_s` of the
    target's own fault-free traffic. The scratch model is used from the first tick, which
    flatters it: a real one would not exist before `warmup_s`."""
    if target.topology.name in sources:
        raise ValueError(f"{target.topology.name} is among the source topologies")
    sources_normal = [base_scenario(name, hours, seed=7) for name in sources]
    transfer = fit_tier2(sources_normal, telemetry=telemetry)
    own_start = target.model_copy(update={"faults": [], "duration": warmup_s})
    scratch = fit_tier2([own_start], telemetry=telemetry)
    day = target.model_copy(update={"duration": min(target.duration, 86400.0)})
    out = {}
    for label, model in (("transfer", transfer), ("scratch", scratch)):
        result = run_case(day, model, telemetry=telemetry)
        out[label] = result.detectors["tiered"]
    return out
