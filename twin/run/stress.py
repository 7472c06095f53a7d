"""The stress suite: designed cases where a flow model is easy to get wrong, each run in both
fidelities and judged against the request fidelity.

The cases live in scenarios/stress/ (tight caller pools, high-cv service times, 95% load,
knife-edge retries and their safe side, overload with and without retries, parallel fan-out,
a call cycle, CPU quota at low rates). A case passes when every service the request run
sees above 1 request/s has flow's throughput within 2%, mean latency within 10% and p99
within 25% (or inside the request run's own uncertainty, see FidelityReport.misses), its
error ratio within 0.02, and both fidelities fall into a storm or neither, the onsets
within 30 s.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from twin.errors import FirebreakError
from twin.run.fidelity import FidelityReport, run_both
from twin.scenario.loader import load_scenario

SCENARIO_ROOT = Path(__file__).resolve().parents[2] / "scenarios"
STRESS_TARGETS = {"throughput": 0.02, "latency_mean_ms": 0.10, "latency_p99_ms": 0.25}
MIN_RATE = 1.0  # requests/s: services below it are shown, not judged
ONSET_GAP_S = 30.0


@dataclass
class CaseResult:
    """One stress case: its comparison, what missed, whether the storms agree."""

    path: Path
    report: FidelityReport
    misses: dict[str, list[str]] = field(default_factory=dict)
    storms_agree: bool = True

    @property
    def passed(self) -> bool:
        return self.storms_agree and not any(self.misses.values())


def suite_paths(name: str) -> list[Path]:
    """The scenario files of a suite: a folder under scenarios/ by name, or any folder."""
    folder = Path(name)
    if not folder.is_dir():
        folder = SCENARIO_ROOT / name
    if not folder.is_dir():
        raise FirebreakError(
            f"--suite: no folder {name!r} (nor {SCENARIO_ROOT / name}) with scenario files"
        )
    paths = sorted(folder.glob("*.yaml"))
    if not paths:
        raise FirebreakError(f"--suite: {folder} holds no .yaml scenario files")
    return paths


def run_case(
    path: Path, *, duration: float | None = None, warmup_s: float = 60.0, seed: int | None = None
) -> CaseResult:
    """Run one case in both fidelities and judge it."""
    scenario = load_scenario(path, seed=seed, duration=duration)
    if warmup_s >= scenario.duration:
        raise FirebreakError(
            f"--warmup: {warmup_s:g}s is not shorter than {path.name}'s run "
            f"({scenario.duration:g}s)"
        )
    report = run_both(scenario, warmup_s=warmup_s)
    return CaseResult(
        path=path,
        report=report,
        misses=report.misses(STRESS_TARGETS, MIN_RATE),
        storms_agree=report.storms_agree(ONSET_GAP_S),
    )


def run_suite(
    paths: list[Path],
    *,
    duration: float | None = None,
    warmup_s: float = 60.0,
    progress: Callable[[str], None] | None = None,
) -> list[CaseResult]:
    """Every case of the suite, in file order."""
    results = []
    for path in paths:
        if progress is not None:
            progress(path.stem)
        results.append(run_case(path, duration=duration, warmup_s=warmup_s))
    return results


def _worst(report: FidelityReport, metric: str) -> float:
    """Largest |flow - request| / request over the judged services."""
    rel = abs(report.relative_difference(metric))
    judged = report.compared(MIN_RATE)
    values = [float(r) for r, j in zip(rel, judged, strict=True) if j and r == r]
    return max(values, default=0.0)


def _onset(value: float | None) -> str:
    return "-" if value is None else f"{value:g}"


def summary_table(results: list[CaseResult]) -> str:
    """One line per case: the worst judged differences, the storms, the verdict."""
    head = (
        f"{'case':28s} {'judged':>6s} {'thr':>7s} {'mean':>7s} {'p99':>7s} {'err':>7s} "
        f"{'storm f/r (s)':>14s}  verdict"
    )
    rows = [head, "-" * len(head)]
    for res in results:
        rep = res.report
        judged = int(rep.compared(MIN_RATE).sum())
        err = max(
            (
                abs(f.error_ratio - r.error_ratio)
                for (f, r), j in zip(rep.pairs(), rep.compared(MIN_RATE), strict=True)
                if j
            ),
            default=0.0,
        )
        storms = f"{_onset(rep.storm_onset.get('flow'))}/{_onset(rep.storm_onset.get('request'))}"
        missed = [f"{m}: {', '.join(names)}" for m, names in res.misses.items() if names]
        if not res.storms_agree:
            missed.append("storm onset")
        verdict = "ok" if res.passed else "MISS " + "; ".join(missed)
        rows.append(
            f"{res.path.stem[:28]:28s} {judged:6d} {_worst(rep, 'throughput'):7.1%} "
            f"{_worst(rep, 'latency_mean_ms'):7.1%} {_worst(rep, 'latency_p99_ms'):7.1%} "
            f"{err:7.3f} {storms:>14s}  {verdict}"
        )
    return "\n".join(rows)
