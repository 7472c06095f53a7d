"""A sweep runner: many independent (function, kwargs) jobs, here or on a Ray cluster.

Studies (validate-change, the impact study) are grids of seeded runs, each a pure function of
its parameters. This runner executes such a list serially, on a local process pool (the
default) or on Ray, and always hands back results in job order, so a study's numbers do not
depend on which backend ran it or in which order jobs finished.

Jobs must be picklable: a module-level function (importable by workers: it travels by name)
and plain or picklable keyword arguments. A failing job stops the sweep with a `SweepError`
that names the job and its parameters and keeps the worker's traceback.
"""

from __future__ import annotations

import multiprocessing
import os
import sys
import threading
import traceback
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from twin.errors import FirebreakError

BACKENDS = ("process", "serial", "ray")
MAX_SHOWN_PARAM = 120  # characters of one parameter's repr in an error message


@dataclass(frozen=True)
class Job:
    """One unit of a sweep: `fn(**kwargs)`; `label` names it in progress and errors."""

    fn: Callable[..., Any]
    kwargs: Mapping[str, Any] = field(default_factory=dict)
    label: str | None = None

    def describe(self, index: int) -> str:
        """`job 3 (label) fn(a=1, b='x')`: enough to rerun the failing job by hand."""
        params = ", ".join(f"{k}={_short(v)}" for k, v in self.kwargs.items())
        name = getattr(self.fn, "__qualname__", repr(self.fn))
        module = getattr(self.fn, "__module__", "")
        label = f" ({self.label})" if self.label else ""
        return f"job {index}{label} {module}.{name}({params})"


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= MAX_SHOWN_PARAM else text[: MAX_SHOWN_PARAM - 3] + "..."


class SweepError(FirebreakError):
    """A job of a sweep failed: which one, with what parameters, and why.

    `index` and `job` identify it; `worker_traceback` is the traceback text from wherever it
    ran (a pool worker or a Ray node), since the original exception may not travel back.
    """

    def __init__(self, index: int, job: Job, cause: str, worker_traceback: str) -> None:
        self.index = index
        self.job = job
        self.cause = cause
        self.worker_traceback = worker_traceback
        super().__init__(f"{job.describe(index)} failed: {cause}")


def _call(fn: Callable[..., Any], kwargs: Mapping[str, Any]) -> tuple[bool, Any]:
    """Run one job where it lands; failures come back as text (exceptions may not pickle)."""
    try:
        return True, fn(**kwargs)
    except Exception as exc:  # a job's failure is data for the parent, which raises it
        return False, (f"{type(exc).__name__}: {exc}", traceback.format_exc())


def run_sweep(
    jobs: Sequence[Job],
    backend: str = "process",
    jobs_n: int | None = None,
    progress: bool = True,
    desc: str = "jobs",
) -> list[Any]:
    """Run every job and return their results in job order.

    `backend`: "process" (a local pool of `jobs_n` workers, default every CPU), "serial"
    (in this process: for debugging and tiny sweeps) or "ray" (the cluster `ray.init()`
    finds: RAY_ADDRESS, or a local one started for this sweep and stopped after it; workers
    must be able to import the jobs' functions). `progress` shows a tqdm bar on stderr when
    it is a terminal.
    """
    if backend not in BACKENDS:
        raise FirebreakError(f"backend: expected one of {', '.join(BACKENDS)}, got {backend!r}")
    if jobs_n is not None and jobs_n < 1:
        raise FirebreakError(f"jobs: need at least one worker, got {jobs_n}")
    for i, job in enumerate(jobs):
        if not isinstance(job, Job):
            raise FirebreakError(f"jobs[{i}]: expected a Job, got {type(job).__name__}")
    jobs = list(jobs)
    if not jobs:
        return []
    workers = _workers(jobs_n, len(jobs))
    method = _start_method()  # before the bar: its monitor thread would rule out fork
    with _bar(len(jobs), progress, desc) as tick:
        if backend == "serial" or (backend == "process" and workers == 1):
            return _run_serial(jobs, tick)
        if backend == "process":
            return _run_pool(jobs, workers, method, tick)
        return _run_ray(jobs, jobs_n, tick)


def _workers(jobs_n: int | None, n_jobs: int) -> int:
    return max(1, min(jobs_n or os.cpu_count() or 1, n_jobs))


def _start_method() -> str:
    """fork where it is safe (POSIX, no other thread whose locks a child could inherit held):
    workers start at once with the compiled kernel already loaded; spawn otherwise."""
    if "fork" in multiprocessing.get_all_start_methods() and threading.active_count() == 1:
        return "fork"
    return "spawn"


@contextmanager
def _bar(total: int, enabled: bool, desc: str) -> Iterator[Callable[[], None]]:
    if not (enabled and sys.stderr.isatty()):
        yield lambda: None
        return
    from tqdm import tqdm

    bar = tqdm(total=total, desc=desc, unit="job", file=sys.stderr, leave=False)
    try:
        yield lambda: bar.update(1)
    finally:
        bar.close()


def _unwrap(index: int, job: Job, outcome: tuple[bool, Any]) -> Any:
    ok, value = outcome
    if not ok:
        cause, trace = value
        raise SweepError(index, job, cause, trace)
    return value


def _run_serial(jobs: list[Job], tick: Callable[[], None]) -> list[Any]:
    results = []
    for i, job in enumerate(jobs):
        results.append(_unwrap(i, job, _call(job.fn, job.kwargs)))
        tick()
    return results


def _run_pool(jobs: list[Job], workers: int, method: str, tick: Callable[[], None]) -> list[Any]:
    results: list[Any] = [None] * len(jobs)
    context = multiprocessing.get_context(method)
    with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
        pending: dict[Future, int] = {
            pool.submit(_call, job.fn, job.kwargs): i for i, job in enumerate(jobs)
        }
        try:
            while pending:
                done, _ = wait(pending, return_when=FIRST_COMPLETED)
                for future in done:
                    i = pending.pop(future)
                    try:
                        outcome = future.result()
                    except BrokenProcessPool:
                        raise SweepError(
                            i,
                            jobs[i],
                            "a worker process died (killed, out of memory, or a script that "
                            "starts a sweep without `if __name__ == '__main__':`)",
                            "",
                        ) from None
                    results[i] = _unwrap(i, jobs[i], outcome)
                    tick()
        except BaseException:
            for future in pending:
                future.cancel()
            raise
    return results


def _run_ray(jobs: list[Job], jobs_n: int | None, tick: Callable[[], None]) -> list[Any]:
    try:
        import ray
    except ImportError:
        raise FirebreakError(
            "backend ray: ray is not installed (pip install 'firebreak[ray]')"
        ) from None
    started = not ray.is_initialized()
    if started and os.environ.get("RAY_ADDRESS"):
        ray.init(log_to_driver=False)  # a cluster's size is its own, not ours to set
    elif started:
        ray.init(num_cpus=jobs_n, include_dashboard=False, log_to_driver=False)
    try:
        remote = ray.remote(num_cpus=1)(_call)
        refs = [remote.remote(job.fn, dict(job.kwargs)) for job in jobs]
        index = {ref: i for i, ref in enumerate(refs)}
        results: list[Any] = [None] * len(jobs)
        left = list(refs)
        try:
            while left:
                done, left = ray.wait(left, num_returns=1)
                for ref in done:
                    i = index[ref]
                    results[i] = _unwrap(i, jobs[i], ray.get(ref))
                    tick()
        except BaseException:
            for ref in left:
                ray.cancel(ref)
            raise
        return results
    finally:
        if started:
            ray.shutdown()
