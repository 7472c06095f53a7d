"""The sweep runner: results in job order, identical across backends, clear job errors."""

from __future__ import annotations

import importlib.util
import sys
import time

import pytest
from conftest import SCENARIOS

from experiments.change.suite import SuiteCase, SuiteTiming, case_scenario, run_case
from experiments.sweep import Job, SweepError, run_sweep
from twin.errors import FirebreakError
from twin.scenario.loader import load_scenario

HAS_RAY = importlib.util.find_spec("ray") is not None
TIMING = SuiteTiming(warmup_s=60, before_s=60, trigger_s=60, grace_s=60, after_s=60)


def slow_square(x: int, delay: float = 0.0) -> int:
    """Later jobs finish first when earlier ones sleep longer: order must not follow."""
    time.sleep(delay)
    return x * x


def fails_on(x: int, bad: int) -> int:
    if x == bad:
        raise ValueError(f"no good: {x}")
    return x


def _twin_jobs() -> list[Job]:
    """Short seeded twin runs (the sweeps studies make), with a fault, two seeds."""
    base = load_scenario(SCENARIOS / "changes" / "boutique-base.yaml")
    case = SuiteCase(
        "latency@productcatalogservice",
        "latency",
        "productcatalogservice",
        fault={
            "kind": "latency",
            "target": "productcatalogservice",
            "start": TIMING.trigger_at,
            "duration": TIMING.trigger_s,
            "factor": 5.0,
        },
    )
    jobs = []
    for seed in (3, 4):
        scenario = case_scenario(base, base.topology, case, seed, TIMING)
        kwargs = {"scenario": scenario, "timing": TIMING, "case": case.name, "system": "base"}
        jobs.append(Job(run_case, {**kwargs, "steady": False}, label=f"seed {seed}"))
    return jobs


@pytest.fixture(scope="module")
def serial_results() -> list[dict]:
    return run_sweep(_twin_jobs(), backend="serial", progress=False)


def test_results_come_back_in_job_order_whatever_finishes_first() -> None:
    jobs = [Job(slow_square, {"x": i, "delay": 0.3 - 0.1 * i}) for i in range(3)]
    assert run_sweep(jobs, backend="process", jobs_n=3, progress=False) == [0, 1, 4]
    assert run_sweep(jobs, backend="serial", progress=False) == [0, 1, 4]


def test_twin_runs_identical_serial_and_process(serial_results: list[dict]) -> None:
    pooled = run_sweep(_twin_jobs(), backend="process", jobs_n=2, progress=False)
    assert pooled == serial_results
    assert serial_results[0]["seed"] == 3 and serial_results[1]["seed"] == 4


def test_determinism_same_seed_same_numbers_other_seed_differs(
    serial_results: list[dict],
) -> None:
    again = run_sweep(_twin_jobs(), backend="serial", progress=False)
    assert again == serial_results
    a, b = serial_results
    assert a["p99_by_minute"] != b["p99_by_minute"]  # the seed changes the traffic


@pytest.mark.skipif(not HAS_RAY, reason="ray not installed (pip install 'firebreak[ray]')")
def test_twin_runs_identical_on_ray(serial_results: list[dict]) -> None:
    import ray
    import ray.cloudpickle

    # this module is not importable on Ray's workers (the package's modules are): ship
    # its job functions by value
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    ray.init(num_cpus=1, include_dashboard=False, log_to_driver=False)
    try:
        on_ray = run_sweep(_twin_jobs(), backend="ray", progress=False)
        squares = run_sweep(
            [Job(slow_square, {"x": i, "delay": 0.1 * (2 - i)}) for i in range(3)],
            backend="ray",
            progress=False,
        )
        with pytest.raises(SweepError, match="bad=1"):
            run_sweep([Job(fails_on, {"x": 1, "bad": 1})], backend="ray", progress=False)
    finally:
        ray.shutdown()
    assert on_ray == serial_results
    assert squares == [0, 1, 4]


@pytest.mark.parametrize("backend", ["serial", "process"])
def test_a_failing_job_names_itself_and_its_parameters(backend: str) -> None:
    jobs = [Job(fails_on, {"x": i, "bad": 2}, label=f"x={i}") for i in range(4)]
    with pytest.raises(SweepError) as info:
        run_sweep(jobs, backend=backend, jobs_n=2, progress=False)
    err = info.value
    assert err.index == 2
    assert isinstance(err, FirebreakError)  # the CLI prints it without a traceback
    message = str(err)
    for fragment in ("job 2 (x=2)", "fails_on(x=2, bad=2)", "ValueError: no good: 2"):
        assert fragment in message
    assert "raise ValueError" in err.worker_traceback


def test_bad_arguments_are_refused() -> None:
    with pytest.raises(FirebreakError, match="backend: expected one of process, serial, ray"):
        run_sweep([Job(slow_square, {"x": 1})], backend="threads")
    with pytest.raises(FirebreakError, match="jobs: need at least one worker"):
        run_sweep([Job(slow_square, {"x": 1})], jobs_n=0)
    with pytest.raises(FirebreakError, match=r"jobs\[0\]: expected a Job"):
        run_sweep([(slow_square, {"x": 1})])  # type: ignore[list-item]
    assert run_sweep([], backend="process") == []


@pytest.mark.skipif(HAS_RAY, reason="ray is installed")
def test_ray_backend_without_ray_says_how_to_install() -> None:
    with pytest.raises(FirebreakError, match=r"firebreak\[ray\]"):
        run_sweep([Job(slow_square, {"x": 1})], backend="ray", progress=False)
