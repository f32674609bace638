"""A batch's jobs and results, the protocol every batch runner follows, and the one in-order reporter.

The bottom of the batch layer: imports nothing of the project but :mod:`swinir_cli.errors` and
:mod:`swinir_cli.signals`. A :class:`BatchRunner` (in series or overlapped: :mod:`swinir_cli.runners`; one
worker process per device: :mod:`swinir_cli.parallel`; Ray: :mod:`swinir_cli.ray_batch`) runs jobs in any
order and hands every start, result and warning to an :class:`InOrderReporter`, which releases them to the
caller's callbacks in the jobs' order and writes the records of an interrupted batch, the same for every
runner.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Protocol

from .errors import BatchStopError, SwinIRError
from .signals import EXIT_INTERRUPTED

__all__ = [
    "BATCH_STOP_ERRORS",
    "JOB_ERRORS",
    "BatchRunner",
    "BatchSummary",
    "InOrderReporter",
    "Job",
    "JobResult",
    "JobRunnerFactory",
    "JobStatus",
    "job_failure",
    "run_batch",
]


class JobStatus(StrEnum):
    """How a job ended; the value is the status ``--json`` records print."""

    DONE = "done"
    SKIPPED = "skipped"
    FAILED = "failed"
    INTERRUPTED = "interrupted"


@dataclass(frozen=True)
class Job:
    """One image to restore: ``source``/``target`` are None for standard input/output.

    ``problem`` is set when the job is known to fail before it runs (missing input, clashing output);
    ``named_output``: the user named ``target`` itself with ``--output`` (``overwrite`` may then replace
    it even when swinir did not make it).
    """

    source: Path | None
    target: Path | None
    problem: str | None = None
    named_output: bool = False

    @property
    def input_name(self) -> str:
        return str(self.source) if self.source is not None else "<stdin>"

    @property
    def output_name(self) -> str:
        return str(self.target) if self.target is not None else "<stdout>"

    @property
    def recorded_output(self) -> str | None:
        """The output as results name it (``--json``, Ray's result rows); None when planning found no
        output for the job (a missing input)."""
        return None if self.problem is not None and self.target is None else self.output_name


@dataclass
class JobResult:
    """How a job ended; ``model`` names the model that restored it (None when none ran); ``note`` says
    why an existing output was redone. A ``status`` given as its string is turned into its
    :class:`JobStatus`.

    Raises:
        ValueError: ``status`` is not a :class:`JobStatus` value.
    """

    job: Job
    status: JobStatus
    seconds: float = 0.0
    error: str | None = None
    model: str | None = None
    note: str | None = None

    def __post_init__(self) -> None:
        self.status = JobStatus(self.status)


@dataclass
class BatchSummary:
    """Every result a batch reported, in the jobs' order; its time; whether it was interrupted."""

    results: list[JobResult] = field(default_factory=list)
    seconds: float = 0.0
    interrupted: bool = False

    def count(self, status: JobStatus) -> int:
        return sum(result.status == status for result in self.results)

    @property
    def exit_code(self) -> int:
        """0 when everything was done or skipped, 1 when any input failed, 130 when interrupted (by
        SIGINT, SIGTERM or SIGHUP: :mod:`swinir_cli.signals`)."""
        if self.interrupted:
            return EXIT_INTERRUPTED
        return 1 if self.count(JobStatus.FAILED) else 0


#: Errors that fail only the job they happen in, except those of :data:`BATCH_STOP_ERRORS`.
JOB_ERRORS = (SwinIRError, MemoryError)
#: Errors that stop the batch: every other job would fail the same way.
BATCH_STOP_ERRORS = (BatchStopError,)


def job_failure(job: Job, error: BaseException, seconds: float) -> JobResult:
    """The ``failed`` result for one of :data:`JOB_ERRORS`.

    Raises:
        BatchStopError: ``error`` itself (one of :data:`BATCH_STOP_ERRORS`), re-raised.
    """
    if isinstance(error, BATCH_STOP_ERRORS):
        raise error
    message = f"{job.input_name}: out of memory" if isinstance(error, MemoryError) else str(error)
    return JobResult(job, JobStatus.FAILED, seconds, message)


class JobRunnerFactory(Protocol):
    """Picklable; called once in a worker process (or Ray actor) with the worker's device (``cpu``,
    ``cuda:1``...) and where its warnings go (back to the driver, which shows them), it returns
    ``run(job) -> JobResult`` (read, restore, resize, atomic write; the result the serial path gives; a
    model is loaded lazily and cached). ``run`` raises :class:`~swinir_cli.errors.UsageError` for a
    mistake in the command itself, which stops the batch."""

    def __call__(self, device: str, on_warning: Callable[[str], None]) -> Callable[[Job], JobResult]: ...


class InOrderReporter:
    """Receives a batch's starts, results and warnings from a runner in any order, from the thread that
    called the runner, and hands them on: starts and warnings at once, results in the jobs' order.

    ``on_start(job, index)`` when a job begins; ``on_result(result)`` for each result, in order;
    ``on_warning(message)`` for a warning (a worker's too).
    """

    def __init__(
        self,
        jobs: Sequence[Job],
        *,
        on_start: Callable[[Job, int], None] | None = None,
        on_result: Callable[[JobResult], None] | None = None,
        on_warning: Callable[[str], None] | None = None,
    ) -> None:
        self.jobs = jobs
        self._on_start = on_start
        self._on_result = on_result
        self._on_warning = on_warning
        self._summary = BatchSummary()
        self._clock = time.perf_counter()
        self._started: dict[int, float] = {}  # index -> when it began, for the jobs announced
        self._arrived: dict[int, tuple[JobResult, bool]] = {}  # index -> result, start to announce first

    @property
    def complete(self) -> bool:
        """Whether every job's result was released."""
        return self._released == len(self.jobs)

    @property
    def _released(self) -> int:
        return len(self._summary.results)

    def start(self, index: int) -> None:
        """Job ``index`` begins."""
        self._started[index] = time.perf_counter()
        if self._on_start is not None:
            self._on_start(self.jobs[index], index)

    def warning(self, message: str) -> None:
        if self._on_warning is not None:
            self._on_warning(message)

    def finish(self, index: int, result: JobResult, *, announce_start: bool = False) -> None:
        """The result of job ``index``; it and every result waiting behind it are released in order.
        ``announce_start``: the runner did not see the job begin (Ray), so its start is announced just
        before its result."""
        self._arrived[index] = (result, announce_start)
        while self._released in self._arrived:
            self._release(self._released)

    def interrupt(self, holding: Mapping[int, float] | None = None) -> None:
        """After Ctrl-C (or SIGTERM, SIGHUP): the results that arrived are released in order, each job
        that began without a result, or that the runner was ``holding`` (index -> when it took the job,
        by :func:`time.perf_counter`), is ``interrupted``, and the summary says the batch was
        interrupted. Jobs that never began get no record."""
        self._summary.interrupted = True
        now = time.perf_counter()
        began = self._started | dict(holding or {})
        for index in range(self._released, len(self.jobs)):
            if index in self._arrived:
                self._release(index)
            elif index in began:
                seconds = now - began[index]
                self._emit(JobResult(self.jobs[index], JobStatus.INTERRUPTED, seconds, "interrupted"))

    def summary(self) -> BatchSummary:
        """What was reported, with the time since the reporter was made."""
        self._summary.seconds = time.perf_counter() - self._clock
        return self._summary

    def _release(self, index: int) -> None:
        result, announce_start = self._arrived.pop(index)
        if announce_start:
            self.start(index)
        self._emit(result)

    def _emit(self, result: JobResult) -> None:
        self._summary.results.append(result)
        if self._on_result is not None:
            self._on_result(result)


class BatchRunner(Protocol):
    """Runs ``jobs``, telling ``reporter`` each start, result and warning (results in any order); returns
    :meth:`InOrderReporter.summary`. A failed job is a result, not an error; Ctrl-C (KeyboardInterrupt)
    ends in :meth:`InOrderReporter.interrupt`, leaving no partial file.

    Raises:
        BatchStopError: (or another :class:`~swinir_cli.errors.SwinIRError` a worker raised) an error every
            other job would hit too; the batch stops after the results before it are reported.
    """

    def run(self, jobs: Sequence[Job], reporter: InOrderReporter) -> BatchSummary: ...


def run_batch(
    runner: BatchRunner,
    jobs: Sequence[Job],
    *,
    on_start: Callable[[Job, int], None] | None = None,
    on_result: Callable[[JobResult], None] | None = None,
    on_warning: Callable[[str], None] | None = None,
) -> BatchSummary:
    """``jobs`` through ``runner``, the callbacks called in order (see :class:`InOrderReporter`)."""
    reporter = InOrderReporter(jobs, on_start=on_start, on_result=on_result, on_warning=on_warning)
    return runner.run(jobs, reporter)
