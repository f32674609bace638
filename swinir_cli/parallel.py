"""One worker process per device: :class:`DevicesRunner` runs a batch in one worker process per device
(``--device cuda:0,cuda:1``, ``cuda:all``, ``cpu,cpu``), each with its own model, pulling images from one
dynamic queue; it gives the results, files, ``--json`` records and exit codes a serial run gives.

Worker processes and Ray actors (:mod:`swinir_cli.ray_batch`) get their work as a picklable
:class:`~swinir_cli.jobs.JobRunnerFactory`: called once in the worker with its device and where its
warnings go, it returns ``run(job) -> JobResult`` doing read, restore, resize and atomic write, the same
per-job semantics as the serial path. This module holds the two factories: :class:`RecipeRunnerFactory`
(the command's recipe) and :class:`CheckpointRunnerFactory` (one checkpoint file).
"""

from __future__ import annotations

import contextlib
import dataclasses
import multiprocessing
import multiprocessing.connection
import os
import signal
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .batch import JobSteps, OutputOptions
from .errors import SwinIRError, UsageError
from .imageio import LoadedImage
from .jobs import BatchSummary, InOrderReporter, Job, JobResult, JobRunnerFactory, JobStatus
from .settings import RestoreSettings
from .signals import interrupt_on_stop_signals

if TYPE_CHECKING:
    from .recipe import RestoreRecipe

__all__ = [
    "CheckpointRunnerFactory",
    "DevicesRunner",
    "RecipeRunnerFactory",
    "expand_devices",
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
    """A worker process: load lazily, then run jobs received on ``tasks`` until None, reporting starts,
    results and warnings on ``events`` (its own pipes: a worker killed mid-message breaks only its own)."""
    try:
        interrupt_on_stop_signals()  # a worker stopped by SIGTERM or SIGHUP removes its temporary file too
        import torch

        torch.set_num_threads(threads)
        try:
            run = factory(device, lambda message: events.send(("warning", None, message)))
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
    """The driver's view: workers by slot; what they send goes to the ``reporter``."""

    factory: JobRunnerFactory
    threads: int
    context: Any
    reporter: InOrderReporter
    workers: dict[int, _Worker] = field(default_factory=dict)

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

    def wait(self, timeout: float) -> None:
        """Handle the events that arrive within ``timeout``; workers whose process died are reaped."""
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
        for slot, event in events:
            self.handle(slot, event)
        self.reap()

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
                self.reporter.finish(index, _failed(job, reason))
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

    def drain(self) -> None:
        """Handle what the stopped workers sent before they exited (an error that stops the batch aside)."""
        for slot, worker in self.workers.items():
            with contextlib.suppress(EOFError, OSError):
                while worker.events.poll():
                    event = worker.events.recv()
                    if event[0] != "stop":
                        self.handle(slot, event)

    def handle(self, slot: int, event: tuple[str, int | None, Any]) -> None:
        kind, index, payload = event
        if kind == "stop":
            raise payload
        if kind == "warning":
            self.reporter.warning(payload)
            return
        assert index is not None
        if kind == "start":
            self.reporter.start(index)
            return
        if slot in self.workers:
            self.workers[slot].holding = None
        self.reporter.finish(index, payload)

    def fail_unstarted(self, pending: list[tuple[int, Job]], reason: str) -> None:
        while pending:
            index, job = pending.pop()
            self.reporter.finish(index, _failed(job, reason))


def _failed(job: Job, reason: str) -> JobResult:
    """The result of a job no worker could finish."""
    return JobResult(job, JobStatus.FAILED, 0.0, f"{job.input_name}: {reason}")


@dataclass(frozen=True)
class DevicesRunner:
    """Runs jobs in one worker process per entry of ``devices`` (spawned; each builds its runner with
    ``factory(device, on_warning)``, its warnings sent back to the reporter); an idle worker gets the next
    job, so a slow image does not hold the others.

    A job's start is reported when a worker starts it (skipped jobs too: the worker decides); results in
    the jobs' order, as in series. ``threads``: PyTorch threads per worker (default: the cores split
    between the workers). A worker whose process dies fails only the image it held (one line) and is
    started again. Ctrl-C: every worker is sent SIGINT and aborts its job cleanly (no partial file); jobs
    done are reported, those in flight are ``interrupted``.

    Raises:
        UsageError: (from :meth:`run`) a job reads standard input or writes standard output.
        SwinIRError: (from :meth:`run`) the error a worker's runner raised (one that stops the batch, such
            as a UsageError), after every worker is stopped.
    """

    factory: JobRunnerFactory
    devices: tuple[str, ...]
    threads: int | None = None

    def __post_init__(self) -> None:
        if not self.devices:
            raise ValueError("a DevicesRunner needs at least one device")

    def run(self, jobs: Sequence[Job], reporter: InOrderReporter) -> BatchSummary:
        if any(job.source is None or job.target is None for job in jobs):
            raise UsageError(
                "worker processes read and write files: standard input and output need one device"
            )
        context = multiprocessing.get_context("spawn")
        pool = _Pool(self.factory, self.threads or threads_per_worker(self.devices), context, reporter)
        pending = list(enumerate(jobs))[::-1]
        try:
            for slot, device in enumerate(self.devices):
                pool.start(slot, device)
            while not reporter.complete:
                for slot in pool.idle():
                    if pending:
                        pool.give(slot, *pending.pop())
                if not pool.workers:
                    pool.fail_unstarted(pending, "no worker process is left to run it")
                pool.wait(_POLL_SECONDS)
        except KeyboardInterrupt:
            pool.stop(interrupt=True)
            pool.drain()
            reporter.interrupt()
        except BaseException:
            pool.stop(interrupt=True)
            raise
        else:
            pool.stop(interrupt=False)
        return reporter.summary()


# --------------------------------------------------------------------------------------------------
# Factories: the command's recipe, or one checkpoint file


@dataclass(frozen=True)
class RecipeRunnerFactory:
    """The :class:`~swinir_cli.jobs.JobRunnerFactory` of a command: its
    :class:`~swinir_cli.recipe.RestoreRecipe` with the worker's device in place of the recipe's."""

    recipe: RestoreRecipe

    def __call__(self, device: str, on_warning: Callable[[str], None]) -> Callable[[Job], JobResult]:
        settings = dataclasses.replace(self.recipe.settings, device=device)
        recipe = dataclasses.replace(self.recipe, settings=settings)
        return recipe.runner(on_warning=on_warning).run


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

    def __call__(self, device: str, on_warning: Callable[[str], None]) -> Callable[[Job], JobResult]:
        loaded: list[Any] = []

        def restore(image: LoadedImage, job: Job) -> LoadedImage:
            if not loaded:
                from .pipeline import Restorer

                settings = dataclasses.replace(self.settings, device=device)
                loaded.append(Restorer.from_weights(self.weights, settings, on_warning=on_warning))
            return loaded[0].restore_image(image)

        return JobSteps(restore, self.output, self.max_pixels).run
