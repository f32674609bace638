"""A batch on a Ray cluster (``--ray``): Ray Data actors that each hold a model, read, restore and write.

The driver plans the jobs as a local run does (:func:`swinir_cli.batch.plan_jobs`), hands them to Ray Data
as rows (``index``, ``source``, ``target``, ``problem``), and reports the rows that come back (the
:class:`~swinir_cli.jobs.JobResult` fields, and the warnings the row's work gave) through the
:class:`~swinir_cli.jobs.InOrderReporter`, as a local run reports them (:class:`RayRunner`). Each actor
(:class:`RestoreBatch`, the callable class given to ``Dataset.map_batches``) builds one runner from a
picklable :class:`~swinir_cli.jobs.JobRunnerFactory` on its device (one GPU per actor where the
cluster has GPUs) and writes every result atomically itself, so inputs and outputs must be on a file
system every node sees. Ray restarts an actor whose process dies and retries its rows.

The cluster is the one ``RAY_ADDRESS`` names (Ray's own convention), else a local one started for the
batch. Ray is optional: ``pip install 'swinir-cli[ray]'``.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import threading
import time
from collections.abc import Generator, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from .durable import remove_stale_temporaries
from .errors import SwinIRError, UsageError
from .jobs import BatchSummary, InOrderReporter, Job, JobResult, JobRunnerFactory, JobStatus
from .signals import interrupt_on_stop_signals

__all__ = ["INSTALL_HINT", "RAY_DATA_THREADS", "RayRunner", "RestoreBatch", "job_rows", "require_ray"]

INSTALL_HINT = "--ray needs Ray Data, which is not installed: pip install 'swinir-cli[ray]'"
#: The columns of a job row, and of the result row an actor returns for it.
JOB_COLUMNS = ("index", "source", "target", "problem")
RESULT_COLUMNS = ("index", "input", "output", "status", "seconds", "error", "model", "note", "warnings",
                  "stop")  # fmt: skip


def require_ray() -> ModuleType:
    """The ``ray`` module with Ray Data imported.

    Raises:
        UsageError: Ray Data is not installed (the message says how to install it).
    """
    try:
        import ray
        import ray.data  # Ray Data is a separate extra of Ray
    except ImportError:
        raise UsageError(INSTALL_HINT) from None
    return ray


def job_rows(jobs: Sequence[Job]) -> list[dict[str, Any]]:
    """One row per job (paths as strings; ``""`` for no problem), numbered by ``index``.

    Raises:
        UsageError: a job reads standard input or writes standard output, which actors cannot reach.
    """
    if any(job.source is None or job.target is None for job in jobs):
        raise UsageError("--ray reads and writes files: standard input and output are not supported")
    return [
        {
            "index": index,
            "source": str(job.source),
            "target": str(job.target),
            "problem": job.problem or "",
            "named_output": job.named_output,
        }
        for index, job in enumerate(jobs)
    ]


def _job(batch: dict[str, np.ndarray], row: int) -> Job:
    problem = str(batch["problem"][row]) if "problem" in batch else ""
    named = bool(batch["named_output"][row]) if "named_output" in batch else False
    return Job(Path(str(batch["source"][row])), Path(str(batch["target"][row])), problem or None, named)


def _actor_device() -> str:
    import ray

    return "cuda" if ray.get_gpu_ids() else "cpu"  # Ray limits CUDA_VISIBLE_DEVICES to the actor's GPU


class RestoreBatch:
    """The callable class for ``Dataset.map_batches``: each actor holds one runner (one model, loaded on
    its first image) and turns a batch of job rows into result rows.

    Args:
        factory: a :class:`~swinir_cli.jobs.JobRunnerFactory`, such as
            :class:`~swinir_cli.parallel.CheckpointRunnerFactory`.
        device: the actor's device; default ``cuda`` when Ray gave the actor a GPU, else ``cpu``.
        threads: PyTorch threads of the actor (default: PyTorch's own choice, which follows the
            ``OMP_NUM_THREADS`` Ray sets from the actor's ``num_cpus``).

    A batch (``batch_format="numpy"``) has the columns ``source`` and ``target`` (paths on a file system
    the actor sees), optionally ``problem`` (a reason to fail the row without work, ``""`` for none) and
    ``index`` (kept, to match results to rows; default: the row's position in the batch). The result has
    :data:`RESULT_COLUMNS`: ``input``/``output`` as ``--json`` prints them (``""`` for none),
    ``status`` done/skipped/failed, ``seconds``, ``error``, ``model`` (the model's name) and ``note`` (why
    an existing output was redone; ``""`` for none), ``warnings``: the JSON list of the warnings the row's
    work gave, ``stop``: the class name of an error that would stop a local batch (a failed
    download, a model that does not fit the command), whose row is ``failed``; ``""`` for none.
    """

    def __init__(
        self, factory: JobRunnerFactory, device: str | None = None, threads: int | None = None
    ) -> None:
        if threads is not None:
            import torch

            torch.set_num_threads(threads)
        # Ray stops actors with SIGTERM: raising lets an atomic write in progress remove its temporary file.
        interrupt_on_stop_signals()
        self._warnings: list[str] = []
        self.run = factory(device or _actor_device(), self._warnings.append)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        count = len(batch["source"])
        results, stops, warnings = [], [], []
        for row in range(count):
            job = _job(batch, row)
            try:
                results.append(self.run(job))
                stops.append("")
            except SwinIRError as exc:  # stops a local batch; Ray would keep only its text, so name it
                results.append(JobResult(job, JobStatus.FAILED, 0.0, str(exc)))
                stops.append(type(exc).__name__)
            warnings.append(json.dumps(self._warnings))
            self._warnings.clear()
        return {
            "index": np.asarray(batch["index"] if "index" in batch else np.arange(count), dtype=np.int64),
            "input": np.array([r.job.input_name for r in results], dtype=object),
            "output": np.array([r.job.recorded_output or "" for r in results], dtype=object),
            "status": np.array([str(r.status) for r in results], dtype=object),
            "seconds": np.array([r.seconds for r in results], dtype=np.float64),
            "error": np.array([r.error or "" for r in results], dtype=object),
            "model": np.array([r.model or "" for r in results], dtype=object),
            "note": np.array([r.note or "" for r in results], dtype=object),
            "warnings": np.array(warnings, dtype=object),
            "stop": np.array(stops, dtype=object),
        }


@dataclass(frozen=True)
class RayRunner:
    """Runs jobs on Ray Data actors (:class:`RestoreBatch`), ``workers`` of them (default: one per GPU of
    the cluster, else one per node), one GPU each where the cluster has GPUs, else the cluster's CPUs
    split between them. Connects to ``RAY_ADDRESS`` or starts a local Ray, unless Ray is already
    initialised in this process.

    Results are reported as they arrive (each job's start just before its result: the driver does not see
    when an actor starts), with the warnings the actor's work gave. An image whose actor died after its
    write and before its answer is retried by Ray and finds its output: it is reported done, not skipped,
    when that output did not exist as the batch began. Ctrl-C, SIGTERM or SIGHUP (in place of the SIGTERM
    handler of ``ray.init``, which exits at once) stops the batch: results that arrived are reported, the
    summary says it was interrupted, Ray is shut down (its actors remove their temporary files on
    SIGTERM).

    Raises:
        UsageError: (from :meth:`run`) Ray Data is not installed, a job uses standard input/output, or the
            batch failed in Ray (an actor that cannot start, for one).
        SwinIRError: (from :meth:`run`) the error an actor's runner raised to stop the batch (such as a
            UsageError), as the same class.
    """

    factory: JobRunnerFactory
    workers: int | None = None

    def run(self, jobs: Sequence[Job], reporter: InOrderReporter) -> BatchSummary:
        ray = require_ray()
        rows = job_rows(jobs)
        with _native_stderr_aside():
            self._run(ray, jobs, rows, reporter)
        return reporter.summary()

    def _run(
        self, ray: ModuleType, jobs: Sequence[Job], rows: list[dict[str, Any]], reporter: InOrderReporter
    ) -> None:
        new_outputs = {i for i, job in enumerate(jobs) if job.target is not None and not job.target.exists()}
        owned = not ray.is_initialized()
        if owned:  # RAY_ADDRESS names a cluster to join; without it a local Ray starts, without its dashboard
            local = {} if os.environ.get("RAY_ADDRESS") else {"include_dashboard": False}
            ray.init(**_ray_logging(), **local)
        restore_signals = interrupt_on_stop_signals()  # ray.init makes SIGTERM exit at once: Ctrl-C here too
        results = _results(ray, rows, self.factory, self.workers)
        finished = False
        try:
            for batch in results:
                for row in range(len(batch["index"])):
                    for message in json.loads(str(batch["warnings"][row])):
                        reporter.warning(message)
                    if batch["stop"][row]:
                        raise _stop_error(str(batch["stop"][row]), str(batch["error"][row]))
                    index = int(batch["index"][row])
                    result = _result(jobs[index], batch, row, written_in_this_batch=index in new_outputs)
                    reporter.finish(index, result, announce_start=True)
            finished = True
        except KeyboardInterrupt:
            reporter.interrupt()
        finally:
            if not finished:
                _stop_ray_data(results, jobs)
            restore_signals()
            if owned:
                ray.shutdown()


#: Seconds an interrupted batch waits in all for Ray Data's threads to end before Ray shuts down.
RAY_DATA_STOP_S = 30.0
#: Name prefixes of Ray Data's threads that call into Ray: the streaming executor's scheduling thread and
#: the result iterator's worker (its ``Prefetcher`` only waits on a condition once the iterator is closed).
RAY_DATA_THREADS = ("StreamingExecutor-", "iter_threaded")


def _stop_ray_data(results: Generator[dict[str, np.ndarray], None, None], jobs: Sequence[Job]) -> None:
    """Stop Ray Data before Ray shuts down, after a batch that ended early (Ctrl-C, a stop error).

    A Ctrl-C between two results leaves the result iterator suspended, and its executor thread, once Ray
    is shut down, touched the core worker, which ended the process with exit 1. Closing the iterator stops
    the executor by killing its actors (no SIGTERM, so they cannot remove their temporary files): the
    temporary file of an image a killed actor was writing is removed here, as its writer is gone.
    """
    results.close()
    _await_ray_data_threads(RAY_DATA_STOP_S)
    for job in jobs:
        if job.target is not None:
            remove_stale_temporaries(job.target)


def _await_ray_data_threads(timeout: float) -> None:
    """Wait up to ``timeout`` seconds for Ray Data's threads that call into Ray (:data:`RAY_DATA_THREADS`)
    to end.

    Closing the result iterator asks its executor to stop but waits only 2 s for its thread, and the
    iterator's own worker thread may still be inside a call for the next block; a thread that outlives
    ``ray.shutdown`` and touches the shut-down core worker ends the whole process with exit 1 instead of
    the interrupted batch's 130.
    """
    deadline = time.monotonic() + timeout
    for thread in threading.enumerate():
        if thread.name.startswith(RAY_DATA_THREADS) and thread is not threading.current_thread():
            thread.join(max(0.0, deadline - time.monotonic()))


#: Set (to anything but 0) to see Ray's own log lines, as tracebacks.
DEBUG_VARIABLE = "SWINIR_DEBUG"


def _debugging() -> bool:
    return os.environ.get(DEBUG_VARIABLE, "") not in ("", "0")


def _ray_logging() -> dict[str, Any]:
    """``ray.init`` keywords that keep Ray's Python log lines (its warnings, Ray Data's notes, the actors'
    output) from the user unless ``SWINIR_DEBUG`` is set: swinir reports every result and error itself."""
    if _debugging():
        return {"logging_level": logging.INFO}
    logging.getLogger("ray.data").setLevel(logging.CRITICAL)
    return {"logging_level": logging.CRITICAL, "log_to_driver": False}


@contextmanager
def _native_stderr_aside() -> Iterator[None]:
    """Ray's native code (its core worker in this process, and the local daemons it starts) writes log
    lines straight to file descriptor 2; unless ``SWINIR_DEBUG`` is set, that descriptor points at the
    null device meanwhile, and ``sys.stderr`` (swinir's own lines) at a copy of the real one."""
    if _debugging() or sys.stderr is None:
        yield
        return
    sys.stderr.flush()
    real = os.dup(2)
    null = os.open(os.devnull, os.O_WRONLY)
    os.dup2(null, 2)
    os.close(null)
    python_stderr = sys.stderr
    encoding = getattr(python_stderr, "encoding", None) or "utf-8"
    try:
        with open(
            real, "w", buffering=1, encoding=encoding, errors="backslashreplace", closefd=False
        ) as copy:
            sys.stderr = copy
            yield
    finally:
        sys.stderr = python_stderr
        os.dup2(real, 2)
        os.close(real)


def _results(
    ray: ModuleType, rows: list[dict[str, Any]], factory: JobRunnerFactory, workers: int | None
) -> Any:
    """The result batches of ``rows`` (one row per block, so idle actors take the next image)."""
    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False
    context.print_on_execution_start = False
    resources = ray.cluster_resources()
    gpus = int(resources.get("GPU", 0))
    if workers is None:
        workers = gpus or max(1, sum(node["Alive"] for node in ray.nodes()))
    cpus = 1.0 if gpus else max(1.0, float(resources.get("CPU", 1)) // workers)
    import torch

    threads = max(1, min(int(cpus), torch.get_num_threads()))  # no more than this process would use
    dataset = ray.data.from_items(rows, override_num_blocks=max(1, len(rows)))
    restored = dataset.map_batches(
        RestoreBatch,
        fn_constructor_kwargs={"factory": factory, "threads": None if gpus else threads},
        batch_size=1,
        batch_format="numpy",
        compute=ray.data.ActorPoolStrategy(size=workers),
        num_cpus=cpus,
        num_gpus=1 if gpus else 0,
    )
    try:
        # no prefetching: it would hold each result back until the next one is done (progress, Ctrl-C)
        yield from restored.iter_batches(batch_size=None, batch_format="numpy", prefetch_batches=0)
    except ray.exceptions.RayError as exc:
        raise UsageError(f"the Ray batch failed: {_last_line(exc)}") from None


def _result(job: Job, batch: dict[str, np.ndarray], row: int, *, written_in_this_batch: bool) -> JobResult:
    """The row's result; ``skipped`` becomes ``done`` when the output was written in this batch (by an
    attempt of this row that Ray retried after its actor died)."""
    status, error, model = str(batch["status"][row]), str(batch["error"][row]), str(batch["model"][row])
    if status == JobStatus.SKIPPED and written_in_this_batch:
        status = JobStatus.DONE
    note = str(batch["note"][row]) if "note" in batch else ""
    return JobResult(job, status, float(batch["seconds"][row]), error or None, model or None, note or None)


def _stop_error(name: str, message: str) -> SwinIRError:
    """The error an actor's runner raised to stop the batch, by its class name in :mod:`swinir_cli.errors`."""
    from . import errors

    kind = getattr(errors, name, None)
    if not (isinstance(kind, type) and issubclass(kind, SwinIRError)):
        kind = errors.BatchStopError
    return kind(message)


def _last_line(error: BaseException) -> str:
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return lines[-1] if lines else type(error).__name__
