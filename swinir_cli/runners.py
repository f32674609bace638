"""The batch runners of one process: :class:`SerialRunner` (each job's stages in turn) and
:class:`OverlappedRunner` (the next images decoded and the previous results encoded on thread pools while
the model restores the current one). Both run a batch's :class:`~swinir_cli.batch.JobSteps` and report through
an :class:`~swinir_cli.jobs.InOrderReporter`; :func:`run_jobs` picks one.
"""

from __future__ import annotations

import functools
import os
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor
from concurrent.futures import wait as wait_for
from dataclasses import dataclass, field

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

__all__ = ["MAX_ENCODERS", "READ_AHEAD", "OverlappedRunner", "SerialRunner", "default_encoders", "run_jobs"]

#: The most results encoded at once by default, whatever the cores: each one held is a whole result image.
MAX_ENCODERS = 8
#: Inputs decoded ahead of the one being restored.
READ_AHEAD = 2


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
    next images and encodes the previous results on thread pools beside ``restore``, else the
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


def default_encoders() -> int:
    """One encoder per core this process may use, at most :data:`MAX_ENCODERS`."""
    return max(1, min(len(os.sched_getaffinity(0)), MAX_ENCODERS))


@dataclass(frozen=True)
class OverlappedRunner:
    """The stages of :class:`~swinir_cli.batch.JobSteps` with reads ahead and writes behind on thread pools
    beside ``steps.restore`` (which stays on the calling thread, as do the reporter's callbacks). Pillow and
    OpenCV release the GIL while they decode and encode, so ``encoders`` threads encode that many results at
    once (default: one per core, at most :data:`MAX_ENCODERS`) and ``read_ahead`` threads decode the next
    inputs; results are still reported in the jobs' order.

    Memory: at most ``read_ahead + 1 + encoders`` images are held at once: ``read_ahead`` inputs decoded (or
    being decoded) ahead, one being restored, ``encoders`` results waiting for or in their encoding; the
    calling thread waits for a write to finish before it hands on another. A job's ``seconds`` is the sum of
    its three stages. Ctrl-C: the writes in flight complete (atomically) and are reported, the job the
    calling thread held is ``interrupted``, the reads ahead are dropped; nothing partial is left.
    Results written to standard output are encoded one at a time, in order.
    """

    steps: JobSteps
    encoders: int = field(default_factory=default_encoders)
    read_ahead: int = READ_AHEAD

    def __post_init__(self) -> None:
        if self.encoders < 1 or self.read_ahead < 1:
            raise ValueError(f"encoders and read_ahead must be >= 1, not {self.encoders}, {self.read_ahead}")

    def run(self, jobs: Sequence[Job], reporter: InOrderReporter) -> BatchSummary:
        if not jobs:
            return reporter.summary()
        batch = _Overlapped(self.steps, reporter, self.encoders)
        with (
            ThreadPoolExecutor(self.read_ahead, thread_name_prefix="swinir-read") as readers,
            ThreadPoolExecutor(self.encoders, thread_name_prefix="swinir-write") as writers,
        ):
            try:
                batch.run(jobs, _ReadAhead(self.steps, jobs, readers, self.read_ahead), writers)
            except KeyboardInterrupt:
                batch.interrupted()
            except BATCH_STOP_ERRORS:
                batch.drop_read_ahead()
                batch.report_written(wait=True)  # the jobs before it were done, as in series
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


class _ReadAhead:
    """The jobs' reads, up to ``depth`` of them submitted ahead of the one the calling thread takes."""

    def __init__(self, steps: JobSteps, jobs: Sequence[Job], readers: ThreadPoolExecutor, depth: int) -> None:
        self.steps = steps
        self.jobs = jobs
        self.readers = readers
        self.depth = depth
        self.submitted = 0
        self.pending: deque[Future[_Decoded]] = deque()
        self.fill()

    def take(self) -> _Decoded:
        """The next job's read, once done; the following read is submitted meanwhile."""
        decoded = self.pending.popleft()
        self.fill()
        return decoded.result()

    def fill(self) -> None:
        while len(self.pending) < self.depth and self.submitted < len(self.jobs):
            self.pending.append(self.readers.submit(_decode, self.steps, self.jobs[self.submitted]))
            self.submitted += 1

    def drop(self) -> None:
        """Cancel the reads not yet begun; those under way finish, unreported."""
        for reading in self.pending:
            reading.cancel()
        self.pending.clear()


class _Overlapped:
    """The state of one overlapped batch: the reads ahead, the writes behind, the job held meanwhile."""

    def __init__(self, steps: JobSteps, reporter: InOrderReporter, encoders: int) -> None:
        self.steps = steps
        self.reporter = reporter
        self.encoders = encoders
        self.current: int | None = None  # the job the calling thread works on, until its write is handed off
        self.current_started = 0.0
        self.reading: _ReadAhead | None = None
        self.writing: dict[int, Future[JobResult]] = {}  # index -> its write, in the order submitted
        self.to_stdout = False  # a write in flight goes to standard output

    def run(self, jobs: Sequence[Job], reading: _ReadAhead, writers: ThreadPoolExecutor) -> None:
        self.reading = reading
        for index, job in enumerate(jobs):
            self.current, self.current_started = index, time.perf_counter()
            decoded = reading.take()
            self.report_written(wait=False)
            if decoded.ran:
                self.reporter.start(index)
            if decoded.result is not None or decoded.image is None:  # settled, or its read failed
                self.report(index, decoded.result)
                continue
            started = time.perf_counter()
            try:
                restored = self.steps.restore(decoded.image, job)
            except JOB_ERRORS as exc:
                self.report(index, job_failure(job, exc, decoded.seconds + time.perf_counter() - started))
                continue
            seconds = decoded.seconds + time.perf_counter() - started
            self.make_room(to_stdout=job.target is None)
            self.writing[index] = writers.submit(_encode, self.steps, job, restored, seconds)
            self.to_stdout = self.to_stdout or job.target is None
            self.current = None
        self.report_written(wait=True)

    def make_room(self, *, to_stdout: bool) -> None:
        """Wait until another write may begin: fewer than ``encoders`` in flight, and none at all where
        this write or one in flight goes to standard output (its bytes must follow in order)."""
        if to_stdout or self.to_stdout:
            self.report_written(wait=True)
        while len(self.writing) >= self.encoders:
            wait_for(self.writing.values(), return_when=FIRST_COMPLETED)
            self.report_written(wait=False)

    def interrupted(self) -> None:
        """After Ctrl-C: see :class:`OverlappedRunner`."""
        self.drop_read_ahead()
        self.report_written(wait=True)
        holding = {} if self.current is None else {self.current: self.current_started}
        self.reporter.interrupt(holding)

    def drop_read_ahead(self) -> None:
        if self.reading is not None:
            self.reading.drop()

    def report_written(self, *, wait: bool) -> None:
        """Report the writes that finished (with ``wait``: every write in flight, once finished)."""
        for index, writing in list(self.writing.items()):
            if wait or writing.done():
                del self.writing[index]
                self.report(index, writing.result())
        self.to_stdout = self.to_stdout and bool(self.writing)

    def report(self, index: int, result: JobResult | None) -> None:
        if result is None:
            return
        if self.current == index:
            self.current = None
        self.reporter.finish(index, result)
