"""The batch runners of one process: :class:`SerialRunner` (each job's stages in turn) and
:class:`OverlappedRunner` (the next image decoded and the previous result written on threads while the
model restores the current one). Both run a batch's :class:`~swinir_cli.batch.JobSteps` and report through
an :class:`~swinir_cli.jobs.InOrderReporter`; :func:`run_jobs` picks one.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

from .batch import JobSteps, OutputOptions
from .imageio import LoadedImage
from .jobs import (
    BATCH_STOP_ERRORS,
    JOB_ERRORS,
    BatchSummary,
    InOrderReporter,
    Job,
    JobResult,
    job_failure,
    run_batch,
)

__all__ = ["OverlappedRunner", "SerialRunner", "run_jobs"]


def run_jobs(
    jobs: Sequence[Job],
    restore: Callable[[LoadedImage, Job], LoadedImage],
    options: OutputOptions,
    *,
    max_pixels: int | None = None,
    on_start: Callable[[Job, int], None] | None = None,
    on_result: Callable[[JobResult], None] | None = None,
    overlap: bool = True,
) -> BatchSummary:
    """Read, restore and write each job in this process; a job that fails is reported and the batch goes on.

    ``restore(image, job) -> image`` does the work (a :class:`~swinir_cli.pipeline.Restorer` method with
    progress attached). ``on_start(job, index)`` is called before a job that is not skipped runs, and
    ``on_result(result)`` after every job, in the jobs' order. ``max_pixels`` refuses larger images (None:
    Pillow's limit). With ``overlap`` (and more than one job), the :class:`OverlappedRunner` decodes the
    next image and writes the previous result on threads beside ``restore``, else the
    :class:`SerialRunner` runs them; results, files and errors are the same. Ctrl-C (KeyboardInterrupt;
    the command line raises it for SIGTERM and SIGHUP too, :mod:`swinir_cli.signals`) stops the batch:
    the job in flight leaves no partial file, is reported as ``interrupted`` and
    :attr:`~swinir_cli.jobs.BatchSummary.interrupted` is set.

    Raises:
        BatchStopError: a job hit an error that every other job would hit too (a model of the wrong
            scale, a model that cannot be downloaded); the batch stops.
    """
    steps = JobSteps(restore, options, max_pixels)
    runner = OverlappedRunner(steps) if overlap and len(jobs) > 1 else SerialRunner(steps)
    return run_batch(runner, jobs, on_start=on_start, on_result=on_result)


@dataclass(frozen=True)
class SerialRunner:
    """Each job's stages in turn (:meth:`~swinir_cli.batch.JobSteps.run`); Ctrl-C: the job in flight
    removes its temporary file and is ``interrupted``, the later ones get no record."""

    steps: JobSteps

    def run(self, jobs: Sequence[Job], reporter: InOrderReporter) -> BatchSummary:
        for index, job in enumerate(jobs):
            began = time.perf_counter()
            try:
                result = self.steps.run(job, functools.partial(reporter.start, index))
            except KeyboardInterrupt:
                reporter.interrupt({index: began})
                break
            reporter.finish(index, result)
        return reporter.summary()


@dataclass(frozen=True)
class OverlappedRunner:
    """The stages of :class:`~swinir_cli.batch.JobSteps` with the read of the next job and the write of the
    previous one on threads beside ``steps.restore`` (which stays on the calling thread, as do the
    reporter's callbacks).

    Memory: at most three images are held at once: one decoded ahead, one being restored, one being
    written. A job's ``seconds`` is the sum of its three stages. Ctrl-C: the write in flight completes
    (atomically) and is reported, the job the calling thread held is ``interrupted``, the read ahead is
    dropped; nothing partial is left.
    """

    steps: JobSteps

    def run(self, jobs: Sequence[Job], reporter: InOrderReporter) -> BatchSummary:
        if not jobs:
            return reporter.summary()
        batch = _Overlapped(self.steps, reporter)
        with (
            ThreadPoolExecutor(1, thread_name_prefix="swinir-read") as readers,
            ThreadPoolExecutor(1, thread_name_prefix="swinir-write") as writers,
        ):
            try:
                batch.run(jobs, readers, writers)
            except KeyboardInterrupt:
                batch.interrupted()
            except BATCH_STOP_ERRORS:
                batch.drop_read_ahead()
                batch.report_written(wait=True)  # the job before it was done, as in series
                raise
        return reporter.summary()


@dataclass
class _Decoded:
    """A job after the read stage: its image, or its result when it is already finished."""

    job: Job
    image: LoadedImage | None = None
    result: JobResult | None = None
    ran: bool = False  # the job had work (its start is reported), even if its read failed
    seconds: float = 0.0


def _decode(steps: JobSteps, job: Job) -> _Decoded:
    settled = steps.settled(job)
    if settled is not None:
        return _Decoded(job, result=settled)
    started = time.perf_counter()
    try:
        image = steps.read(job)
    except JOB_ERRORS as exc:
        return _Decoded(job, result=job_failure(job, exc, time.perf_counter() - started), ran=True)
    return _Decoded(job, image, ran=True, seconds=time.perf_counter() - started)


def _encode(steps: JobSteps, job: Job, image: LoadedImage, seconds: float) -> JobResult:
    started = time.perf_counter()
    try:
        steps.write(job, image)
    except JOB_ERRORS as exc:
        return job_failure(job, exc, seconds + time.perf_counter() - started)
    return steps.done(job, seconds + time.perf_counter() - started)


class _Overlapped:
    """The state of one overlapped batch: the read ahead, the write behind, the job held meanwhile."""

    def __init__(self, steps: JobSteps, reporter: InOrderReporter) -> None:
        self.steps = steps
        self.reporter = reporter
        self.current: int | None = None  # the job the calling thread works on, until its write is handed off
        self.current_started = 0.0
        self.reading: Future[_Decoded] | None = None
        self.writing: tuple[int, Future[JobResult]] | None = None

    def run(self, jobs: Sequence[Job], readers: ThreadPoolExecutor, writers: ThreadPoolExecutor) -> None:
        self.reading = readers.submit(_decode, self.steps, jobs[0])
        for index, job in enumerate(jobs):
            self.current, self.current_started = index, time.perf_counter()
            decoded = self.reading.result()
            following = jobs[index + 1] if index + 1 < len(jobs) else None
            self.reading = readers.submit(_decode, self.steps, following) if following else None
            if decoded.ran:
                self.report_written(wait=False)
                self.reporter.start(index)
            if decoded.result is not None or decoded.image is None:  # settled, or its read failed
                self.report_written(wait=True)
                self.report(index, decoded.result)
                continue
            started = time.perf_counter()
            try:
                restored = self.steps.restore(decoded.image, job)
            except JOB_ERRORS as exc:
                failure = job_failure(job, exc, decoded.seconds + time.perf_counter() - started)
                self.report_written(wait=True)
                self.report(index, failure)
                continue
            seconds = decoded.seconds + time.perf_counter() - started
            self.report_written(wait=True)
            self.writing = index, writers.submit(_encode, self.steps, job, restored, seconds)
            self.current = None
        self.report_written(wait=True)

    def interrupted(self) -> None:
        """After Ctrl-C: see :class:`OverlappedRunner`."""
        self.drop_read_ahead()
        self.report_written(wait=True)
        holding = {} if self.current is None else {self.current: self.current_started}
        self.reporter.interrupt(holding)

    def drop_read_ahead(self) -> None:
        if self.reading is not None:
            self.reading.cancel()

    def report_written(self, *, wait: bool) -> None:
        if self.writing is not None and (wait or self.writing[1].done()):
            index, writing = self.writing
            self.writing = None
            self.report(index, writing.result())

    def report(self, index: int, result: JobResult | None) -> None:
        if result is None:
            return
        if self.current == index:
            self.current = None
        self.reporter.finish(index, result)
