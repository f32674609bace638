"""Throughput on one machine: I/O beside the model, and one worker process per device.

:func:`run_overlapped` runs a batch's :class:`~swinir_cli.batch.JobSteps` in one process, decoding the next
image and encoding/writing the previous result on threads while the model restores the current one (at
most one image ahead and one behind). :func:`run_on_devices` runs a batch in one worker process per device
(``--device cuda:0,cuda:1``, ``cuda:all``, ``cpu,cpu``), each with its own model, pulling images from one
dynamic queue. Both give the results, files, ``--json`` records and exit codes a serial run gives.

Worker processes and Ray actors (:mod:`swinir_cli.ray_batch`) get their work as a picklable
:class:`JobRunnerFactory`: called once in the worker with its device, it returns ``run(job) -> JobResult``
doing read, restore, resize and atomic write, the same per-job semantics as the serial path.
"""

from __future__ import annotations

import contextlib
import dataclasses
import multiprocessing
import multiprocessing.connection
import os
import signal
import sys
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from .batch import (
    BATCH_STOP_ERRORS,
    JOB_ERRORS,
    BatchSummary,
    Job,
    JobResult,
    JobSteps,
    OutputOptions,
    job_failure,
)
from .errors import SwinIRError, UsageError
from .imageio import LoadedImage
from .settings import RestoreSettings
from .signals import interrupt_on_stop_signals
from .text import printable

if TYPE_CHECKING:
    from .recipe import RestoreRecipe

__all__ = [
    "CheckpointRunnerFactory",
    "JobRunnerFactory",
    "RecipeRunnerFactory",
    "expand_devices",
    "run_on_devices",
    "run_overlapped",
    "threads_per_worker",
]

#: How long stopping workers may take after Ctrl-C before they are killed (they remove temporary files
#: themselves on SIGINT; killing one mid-write could leave its hidden temporary file behind).
STOP_GRACE_SECONDS = 30.0
#: Times the worker of one device is started again after its process died, before the device is dropped.
RESTARTS_PER_DEVICE = 3
#: After Ctrl-C, how long a worker is given to stop by itself (the terminal signals the whole group).
INTERRUPT_REACH_SECONDS = 1.0
#: How often the driver looks for workers that died without a word (their sentinel also wakes it).
_POLL_SECONDS = 1.0


class JobRunnerFactory(Protocol):
    """Picklable; called once in a worker process with the worker's device (``cpu``, ``cuda:1``...), it
    returns ``run(job) -> JobResult`` (read, restore, resize, atomic write; the result the serial path
    gives; a model is loaded lazily and cached). ``run`` raises :class:`UsageError` for a mistake in the
    command itself, which stops the batch."""

    def __call__(self, device: str) -> Callable[[Job], JobResult]: ...


# --------------------------------------------------------------------------------------------------
# Overlapped I/O on one device


@dataclass
class _Decoded:
    """A job after the read stage: its image, or its result when it is already finished."""

    job: Job
    image: LoadedImage | None = None
    result: JobResult | None = None
    ran: bool = False  # the job had work (on_start applies), even if its read failed
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
    """The state of one overlapped batch: the read ahead, the write behind, and what was reported."""

    def __init__(
        self,
        steps: JobSteps,
        on_start: Callable[[Job, int], None] | None,
        on_result: Callable[[JobResult], None] | None,
    ) -> None:
        self.steps = steps
        self.on_start = on_start
        self.on_result = on_result
        self.summary = BatchSummary()
        self.current: Job | None = None  # the job the main thread works on, until its write is handed off
        self.current_started = 0.0
        self.reading: Future[_Decoded] | None = None
        self.writing: Future[JobResult] | None = None

    def run(self, jobs: Sequence[Job], readers: ThreadPoolExecutor, writers: ThreadPoolExecutor) -> None:
        self.reading = readers.submit(_decode, self.steps, jobs[0])
        for index, job in enumerate(jobs):
            self.current, self.current_started = job, time.perf_counter()
            decoded = self.reading.result()
            following = jobs[index + 1] if index + 1 < len(jobs) else None
            self.reading = readers.submit(_decode, self.steps, following) if following else None
            if decoded.ran:
                self.report_written(wait=False)
                if self.on_start is not None:
                    self.on_start(job, index)
            if decoded.result is not None or decoded.image is None:  # settled, or its read failed
                self.report_written(wait=True)
                self.report(decoded.result)
                continue
            started = time.perf_counter()
            try:
                restored = self.steps.restore(decoded.image, job)
            except JOB_ERRORS as exc:
                failure = job_failure(job, exc, decoded.seconds + time.perf_counter() - started)
                self.report_written(wait=True)
                self.report(failure)
                continue
            seconds = decoded.seconds + time.perf_counter() - started
            self.report_written(wait=True)
            self.writing = writers.submit(_encode, self.steps, job, restored, seconds)
            self.current = None
        self.report_written(wait=True)

    def interrupted(self) -> None:
        """After Ctrl-C: the write in flight completes (atomically) and is reported; the job the main
        thread held is reported ``interrupted``; the read ahead is dropped."""
        self.summary.interrupted = True
        if self.reading is not None:
            self.reading.cancel()
        self.report_written(wait=True)
        if self.current is not None:
            seconds = time.perf_counter() - self.current_started
            self.report(JobResult(self.current, "interrupted", seconds, "interrupted"))

    def report_written(self, *, wait: bool) -> None:
        if self.writing is not None and (wait or self.writing.done()):
            result = self.writing.result()
            self.writing = None
            self.report(result)

    def report(self, result: JobResult | None) -> None:
        if result is None:
            return
        if self.current is result.job:
            self.current = None
        self.summary.results.append(result)
        if self.on_result is not None:
            self.on_result(result)


def run_overlapped(
    jobs: Sequence[Job],
    steps: JobSteps,
    *,
    on_start: Callable[[Job, int], None] | None = None,
    on_result: Callable[[JobResult], None] | None = None,
) -> BatchSummary:
    """:func:`swinir_cli.batch.run_jobs` with the read of the next job and the write of the previous one on
    threads beside ``steps.restore`` (which stays on the calling thread, as do ``on_start``/``on_result``).

    Memory: at most three images are held at once: one decoded ahead, one being restored, one being
    written. Results are reported in the jobs' order; a job's ``seconds`` is the sum of its three stages.
    Ctrl-C: see :meth:`_Overlapped.interrupted`; nothing partial is left (writes are atomic).

    Raises:
        BatchStopError: from any stage; the batch stops.
    """
    started = time.perf_counter()
    batch = _Overlapped(steps, on_start, on_result)
    if jobs:
        with (
            ThreadPoolExecutor(1, thread_name_prefix="swinir-read") as readers,
            ThreadPoolExecutor(1, thread_name_prefix="swinir-write") as writers,
        ):
            try:
                batch.run(jobs, readers, writers)
            except KeyboardInterrupt:
                batch.interrupted()
            except BATCH_STOP_ERRORS:
                if batch.reading is not None:
                    batch.reading.cancel()
                batch.report_written(wait=True)  # the job before it was done, as in series
                raise
    batch.summary.seconds = time.perf_counter() - started
    return batch.summary


# --------------------------------------------------------------------------------------------------
# One worker process per device


def expand_devices(spec: str) -> list[str]:
    """``--device`` as a list: ``cuda:0,cuda:1`` -> two devices, ``cuda:all`` -> every visible GPU,
    ``cpu,cpu`` -> two CPU workers. Each device is checked as one ``--device`` value would be.

    Raises:
        UsageError: an entry is empty or not available, or ``cuda:all`` finds no GPU.
    """
    from .devices import select_device  # loads PyTorch: not at import

    devices: list[str] = []
    for entry in (part.strip() for part in spec.split(",")):
        if not entry:
            raise UsageError(f"--device {spec!r} has an empty entry")
        if entry == "cuda:all":
            import torch

            if not torch.cuda.is_available() or torch.cuda.device_count() == 0:
                raise UsageError("--device cuda:all: this PyTorch build sees no CUDA GPU")
            devices += [f"cuda:{index}" for index in range(torch.cuda.device_count())]
            continue
        devices.append(str(select_device(entry)))
    return devices


def threads_per_worker(devices: Sequence[str], cpus: int | None = None) -> int:
    """PyTorch threads for each worker: ``cpus`` (default: the threads PyTorch would use here, which
    follow ``OMP_NUM_THREADS``) split between the workers, at least 1 each."""
    if cpus is None:
        import torch

        cpus = torch.get_num_threads()
    return max(1, cpus // max(1, len(devices)))


def _worker_main(factory: JobRunnerFactory, device: str, threads: int, tasks: Any, events: Any) -> None:
    """A worker process: load lazily, then run jobs received on ``tasks`` until None, reporting on
    ``events`` (its own pipes: a worker killed mid-message breaks only its own)."""
    try:
        interrupt_on_stop_signals()  # a worker stopped by SIGTERM or SIGHUP removes its temporary file too
        import torch

        torch.set_num_threads(threads)
        try:
            run = factory(device)
            while (task := tasks.recv()) is not None:
                index, job = task
                events.send(("start", index, None))
                events.send(("result", index, run(job)))
        except SwinIRError as exc:  # run returns a job's failure: what it raises stops the batch
            events.send(("stop", None, exc))
    except (KeyboardInterrupt, EOFError, BrokenPipeError):
        return  # Ctrl-C or SIGTERM/SIGHUP (the job in flight removed its temporary file), or no driver


@dataclass
class _Worker:
    device: str
    process: Any
    tasks: Any  # the driver's sending end
    events: Any  # the driver's receiving end
    holding: tuple[int, Job] | None = None
    restarts: int = 0


@dataclass
class _Pool:
    """The driver's view: workers by slot, results waiting for their turn, and what comes next."""

    factory: JobRunnerFactory
    threads: int
    context: Any
    workers: dict[int, _Worker] = field(default_factory=dict)
    finished: dict[int, JobResult] = field(default_factory=dict)
    started: set[int] = field(default_factory=set)

    def start(self, slot: int, device: str, restarts: int = 0) -> None:
        task_reader, task_writer = self.context.Pipe(duplex=False)
        event_reader, event_writer = self.context.Pipe(duplex=False)
        process = self.context.Process(
            target=_worker_main,
            args=(self.factory, device, self.threads, task_reader, event_writer),
            name=f"swinir-{device}-{slot}",
            daemon=True,
        )
        process.start()
        task_reader.close()
        event_writer.close()
        self.workers[slot] = _Worker(device, process, task_writer, event_reader, restarts=restarts)

    def give(self, slot: int, index: int, job: Job) -> None:
        worker = self.workers[slot]
        worker.holding = (index, job)
        try:
            worker.tasks.send((index, job))
        except OSError:  # the worker is gone: reaped with the job it was given
            worker.process.join(1.0)

    def idle(self) -> list[int]:
        return [slot for slot, worker in self.workers.items() if worker.holding is None]

    def wait(self, timeout: float) -> list[tuple[int, tuple[str, int | None, Any]]]:
        """Events that arrived within ``timeout`` (slot, event); workers whose process died are reaped."""
        by_handle = {}
        for slot, worker in self.workers.items():
            by_handle[worker.events] = slot
            by_handle[worker.process.sentinel] = slot
        events = []
        for ready in multiprocessing.connection.wait(list(by_handle), timeout):
            slot = by_handle[ready]
            worker = self.workers.get(slot)
            if worker is None or ready is not worker.events:
                continue
            try:
                while worker.events.poll():
                    events.append((slot, worker.events.recv()))
            except (EOFError, OSError):
                worker.process.join(1.0)  # it died; reaped below
        self.reap()
        return events

    def reap(self) -> None:
        """Workers whose process died: the image each held fails (one line), and the worker restarts."""
        for slot, worker in list(self.workers.items()):
            if worker.process.is_alive():
                continue
            del self.workers[slot]
            worker.process.join()
            if worker.holding is not None:
                index, job = worker.holding
                code = worker.process.exitcode
                reason = f"the worker process on {worker.device} stopped (exit code {code})"
                self.finished[index] = JobResult(job, "failed", 0.0, f"{job.input_name}: {reason}")
            if worker.restarts < RESTARTS_PER_DEVICE:
                self.start(slot, worker.device, worker.restarts + 1)

    def stop(self, *, interrupt: bool) -> None:
        """Ask every worker to finish (or, after Ctrl-C, to abort its job cleanly), then wait for them.

        A Ctrl-C at a terminal reaches the workers too; only those still running a moment later are sent
        SIGINT, so that none is interrupted again while it removes its temporary file."""
        for worker in self.workers.values():
            if interrupt:
                worker.process.join(INTERRUPT_REACH_SECONDS)
                if worker.process.is_alive() and worker.process.pid is not None:
                    os.kill(worker.process.pid, signal.SIGINT)
            else:
                with contextlib.suppress(OSError):  # a worker that already exited needs no goodbye
                    worker.tasks.send(None)
        deadline = time.monotonic() + STOP_GRACE_SECONDS
        for worker in self.workers.values():
            worker.process.join(max(0.0, deadline - time.monotonic()))
            if worker.process.is_alive():
                worker.process.kill()
                worker.process.join()

    def handle(self, slot: int, event: tuple[str, int | None, Any]) -> None:
        kind, index, payload = event
        if kind == "stop":
            raise payload
        if kind == "start":
            self.started.add(index)
            return
        self.finished[index] = payload
        if slot in self.workers:
            self.workers[slot].holding = None


def run_on_devices(
    jobs: Sequence[Job],
    factory: JobRunnerFactory,
    devices: Sequence[str],
    *,
    on_start: Callable[[Job, int], None] | None = None,
    on_result: Callable[[JobResult], None] | None = None,
    threads: int | None = None,
) -> BatchSummary:
    """Run ``jobs`` in one worker process per entry of ``devices`` (spawned; each builds its runner with
    ``factory(device)``); an idle worker gets the next job, so a slow image does not hold the others.

    ``on_start(job, index)`` is called when a worker starts a job (skipped jobs too: the worker decides);
    ``on_result`` in the jobs' order, as in series. ``threads``: PyTorch threads per worker (default: the
    cores split between the workers). A worker whose process dies fails only the image it held (one
    line) and is started again. Ctrl-C: every worker is sent SIGINT and aborts its job cleanly (no
    partial file); jobs done are reported, those in flight are ``interrupted``.

    Raises:
        UsageError: a job reads standard input or writes standard output.
        SwinIRError: the error a worker's runner raised (one that stops the batch, such as a
            UsageError), after every worker is stopped.
    """
    if any(job.source is None or job.target is None for job in jobs):
        raise UsageError("worker processes read and write files: standard input and output need one device")
    started = time.perf_counter()
    context = multiprocessing.get_context("spawn")
    pool = _Pool(factory, threads or threads_per_worker(devices), context)
    summary = BatchSummary()
    pending = list(enumerate(jobs))[::-1]
    reported = 0
    try:
        for slot, device in enumerate(devices):
            pool.start(slot, device)
        while reported < len(jobs):
            for slot in pool.idle():
                if pending:
                    pool.give(slot, *pending.pop())
            if not pool.workers:
                _fail_unstarted(pool, pending, "no worker process is left to run it")
            _wait_for_event(pool, on_start, jobs)
            while reported in pool.finished:
                _report(summary, pool.finished.pop(reported), on_result)
                reported += 1
    except KeyboardInterrupt:
        pool.stop(interrupt=True)
        _report_interrupted(summary, pool, jobs, reported, on_result)
    except BaseException:
        pool.stop(interrupt=True)
        raise
    else:
        pool.stop(interrupt=False)
    summary.seconds = time.perf_counter() - started
    return summary


def _wait_for_event(pool: _Pool, on_start: Callable[[Job, int], None] | None, jobs: Sequence[Job]) -> None:
    for slot, event in pool.wait(_POLL_SECONDS):
        pool.handle(slot, event)
        if event[0] == "start" and on_start is not None:
            on_start(jobs[event[1]], event[1])


def _fail_unstarted(pool: _Pool, pending: list[tuple[int, Job]], reason: str) -> None:
    while pending:
        index, job = pending.pop()
        pool.finished[index] = JobResult(job, "failed", 0.0, f"{job.input_name}: {reason}")


def _report(summary: BatchSummary, result: JobResult, on_result: Callable[[JobResult], None] | None) -> None:
    summary.results.append(result)
    if on_result is not None:
        on_result(result)


def _report_interrupted(
    summary: BatchSummary,
    pool: _Pool,
    jobs: Sequence[Job],
    reported: int,
    on_result: Callable[[JobResult], None] | None,
) -> None:
    """After Ctrl-C: results that arrived, in order, then ``interrupted`` for jobs a worker had started."""
    summary.interrupted = True
    _drain(pool)
    for index in range(reported, len(jobs)):
        if index in pool.finished:
            _report(summary, pool.finished[index], on_result)
        elif index in pool.started:
            _report(summary, JobResult(jobs[index], "interrupted", 0.0, "interrupted"), on_result)


def _drain(pool: _Pool) -> None:
    """Results the stopped workers sent before they exited."""
    for worker in pool.workers.values():
        with contextlib.suppress(EOFError, OSError):
            while worker.events.poll():
                slot_event = worker.events.recv()
                if slot_event[0] != "stop":
                    pool.handle(-1, slot_event)


# --------------------------------------------------------------------------------------------------
# Factories: the command's recipe, or one checkpoint file


@dataclass(frozen=True)
class RecipeRunnerFactory:
    """The :class:`JobRunnerFactory` of a command: its :class:`~swinir_cli.recipe.RestoreRecipe` with the
    worker's device in place of the recipe's; warnings go to standard error, one line each."""

    recipe: RestoreRecipe

    def __call__(self, device: str) -> Callable[[Job], JobResult]:
        settings = dataclasses.replace(self.recipe.settings, device=device)
        recipe = dataclasses.replace(self.recipe, settings=settings)
        return recipe.runner(on_warning=_warn_on_stderr).run


def _warn_on_stderr(message: str) -> None:
    print(f"warning: {printable(message)}", file=sys.stderr, flush=True)


@dataclass(frozen=True)
class CheckpointRunnerFactory:
    """Runs every job with one local checkpoint: ``Restorer.from_weights(weights, settings)`` on the
    worker's device (in place of the settings' own) and :class:`~swinir_cli.batch.JobSteps` (read,
    restore, atomic write) with ``output``.

    Picklable; the model is loaded on the first job that needs it.
    """

    weights: Path
    output: OutputOptions
    settings: RestoreSettings = field(default_factory=RestoreSettings)
    max_pixels: int | None = None

    def __call__(self, device: str) -> Callable[[Job], JobResult]:
        loaded: list[Any] = []

        def restore(image: LoadedImage, job: Job) -> LoadedImage:
            if not loaded:
                from .pipeline import Restorer

                loaded.append(
                    Restorer.from_weights(self.weights, dataclasses.replace(self.settings, device=device))
                )
            return loaded[0].restore_image(image)

        return JobSteps(restore, self.output, self.max_pixels).run
