"""Batches: which files to restore, where each result goes, and running them so one bad file costs nothing.

Inputs are files, folders (``recursive`` mirrors sub-folders in the output folder), glob patterns the shell
left unexpanded, or ``-`` for standard input. Outputs, unless ``--output`` says otherwise:

* a file ``photo.jpg`` gives ``photo<suffix>.png`` beside it;
* a folder ``photos/`` gives the folder ``photos<suffix>/`` beside it, holding ``<name><suffix>.png`` for
  each image (sub-folders mirrored with ``recursive``);
* ``-`` (standard input) gives standard output.

An output never replaces an input: a job whose output is its own input, or another input while
``overwrite`` is on, or the output of an earlier job, fails before any work. A file that is an output this
run plans to write is never one of its inputs (so running ``'*.png'`` twice does not restore the first
run's results). Each result is written atomically (see :func:`swinir_cli.imageio.write_image`), and a
hidden ``.<output name>.source.json`` beside it records the input it was made from (resolved path, size and
modification time). An existing output is skipped unless ``overwrite`` when that record names this input
as it is now, so running an interrupted batch again resumes it; an output made from another input (or by
something else) fails the job instead, naming both. Files in folders that are not images (judged by
suffix) and special files (FIFOs, devices, sockets) found in folders or through patterns are ignored and
listed; every other problem fails its own job, and the batch goes on.

After the model, :func:`resize_image` gives other output sizes.
"""

from __future__ import annotations

import dataclasses
import glob
import json
import os
import stat
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

import cv2
import numpy as np

from .durable import write_file_atomically
from .errors import BatchStopError, ImageError, SwinIRError, UsageError
from .imageio import (
    PILLOW_LIMIT,
    LoadedImage,
    encode_image,
    is_probably_image,
    output_format,
    pillow_pixel_limit,
    read_image,
    read_image_stream,
    write_image,
)

__all__ = [
    "STDIO",
    "BatchPlan",
    "BatchSummary",
    "Job",
    "JobResult",
    "JobSteps",
    "OutputOptions",
    "check_output_size",
    "output_pixel_limit",
    "output_size",
    "plan_jobs",
    "resize_image",
    "run_jobs",
    "run_one",
    "source_record_path",
]

#: The path that stands for standard input (as an input) or standard output (as ``--output``).
STDIO = "-"
DEFAULT_FORMAT = "png"
#: The name of the standard-input image when its result goes into an output folder.
STDIN_STEM = "stdin"


@dataclass(frozen=True)
class Job:
    """One image to restore: ``source``/``target`` are None for standard input/output.

    ``problem`` is set when the job is known to fail before it runs (missing input, clashing output).
    """

    source: Path | None
    target: Path | None
    problem: str | None = None

    @property
    def input_name(self) -> str:
        return str(self.source) if self.source is not None else "<stdin>"

    @property
    def output_name(self) -> str:
        return str(self.target) if self.target is not None else "<stdout>"


@dataclass
class JobResult:
    """How a job ended: ``status`` is "done", "skipped", "failed" or "interrupted"; ``model`` names the
    model that restored it (None when none ran)."""

    job: Job
    status: str
    seconds: float = 0.0
    error: str | None = None
    model: str | None = None


@dataclass
class BatchPlan:
    """The jobs to run, the files found in folders that are not images, and other files left out with
    the reason (special files, outputs of this very run): ignored, not errors."""

    jobs: list[Job]
    not_images: list[Path] = field(default_factory=list)
    ignored: list[tuple[Path, str]] = field(default_factory=list)


@dataclass
class BatchSummary:
    results: list[JobResult] = field(default_factory=list)
    seconds: float = 0.0
    interrupted: bool = False

    def count(self, status: str) -> int:
        return sum(result.status == status for result in self.results)

    @property
    def exit_code(self) -> int:
        """0 when everything was done or skipped, 1 when any input failed, 130 when interrupted."""
        if self.interrupted:
            return 130
        return 1 if self.count("failed") else 0


@dataclass(frozen=True)
class OutputOptions:
    """How results are named and encoded."""

    suffix: str
    format: str | None = None
    quality: int | None = None
    strip_metadata: bool = False
    overwrite: bool = False


# --------------------------------------------------------------------------------------------------
# Planning


def plan_jobs(
    inputs: Sequence[str], output: str | None, options: OutputOptions, *, recursive: bool = False
) -> BatchPlan:
    """Turn command-line inputs into jobs (see the module docstring for the output names).

    ``output`` is a file for one input image, else a folder (created when missing; a trailing slash
    makes it a folder for one input too); ``-`` is standard output. Inputs that do not exist, and outputs
    that would replace an input or an earlier job's output, become jobs with a ``problem``.

    Raises:
        UsageError: ``-`` is mixed with other inputs, or ``--output -`` is given more than one image.
    """
    if STDIO in inputs:
        if len(inputs) > 1:
            raise UsageError("standard input ('-') cannot be combined with other inputs")
        return BatchPlan([_stdin_job(output, options)])
    if output == STDIO and (len(inputs) != 1 or Path(inputs[0]).is_dir() or glob.has_magic(inputs[0])):
        raise UsageError("--output - (standard output) takes exactly one input image")

    out_dir = _output_folder(inputs, output)
    found = _Found()
    for pattern in inputs:
        matches = _expand(pattern)
        if not matches:
            found.problems.append(Job(Path(pattern), None, f"{pattern}: no file matches this pattern"))
        for path in matches:
            found.add(path, recursive=recursive, exclude=out_dir, matched=matches != [Path(pattern)])
    jobs = [
        Job(source, _target(source, folder, output, out_dir, options))
        for source, folder in _unique(found.files)
    ]
    jobs, own_outputs = _without_own_outputs(jobs)
    ignored = found.ignored + [(path, "an output of this run, not an input") for path in own_outputs]
    return BatchPlan(found.problems + _refuse_clashes(jobs, options), found.not_images, ignored)


@dataclass
class _Found:
    """What the inputs named: image files (with the input folder each was found in), problems, non-images."""

    files: list[tuple[Path, Path | None]] = field(default_factory=list)
    problems: list[Job] = field(default_factory=list)
    not_images: list[Path] = field(default_factory=list)
    ignored: list[tuple[Path, str]] = field(default_factory=list)

    def add(self, path: Path, *, recursive: bool, exclude: Path | None, matched: bool = False) -> None:
        """Add ``path``, named on the command line or ``matched`` by a pattern."""
        special = _special_kind(path)
        if special is not None and matched:
            self.ignored.append((path, f"{special}, not a regular file"))
        elif special is not None:
            self.problems.append(Job(path, None, f"{path}: {special}, not a regular file; skipped"))
        elif path.is_dir():
            try:
                images, others = _folder_files(path, recursive, exclude)
            except OSError as exc:
                self.problems.append(
                    Job(path, None, f"{path}: cannot list the folder ({exc.strerror or exc})")
                )
                return
            self.files += [(image, path) for image in images]
            self.not_images += others
        elif path.exists() or path.is_symlink():  # a dangling link fails when read, naming the reason
            self.files.append((path, None))
        else:
            self.problems.append(Job(path, None, f"{path}: no such file or folder"))


def _special_kind(path: Path) -> str | None:
    """``"a FIFO"``, ``"a device"`` or ``"a socket"`` for such a file (symbolic links followed), else None."""
    try:
        mode = path.stat().st_mode
    except OSError:
        return None  # missing or dangling: reported as such later
    if stat.S_ISFIFO(mode):
        return "a FIFO"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return None


def _without_own_outputs(jobs: list[Job]) -> tuple[list[Job], list[Path]]:
    """The jobs whose input is not the planned output of another job, and those inputs."""
    targets = {job.target.resolve() for job in jobs if job.target is not None}
    kept, own = [], []
    for job in jobs:
        is_output = job.source is not None and job.source.resolve() in targets
        if is_output and job.target is not None and job.target.resolve() != job.source.resolve():
            own.append(job.source)
        else:
            kept.append(job)
    return kept, own


def _stdin_job(output: str | None, options: OutputOptions) -> Job:
    if output in (None, STDIO):
        return Job(None, None)
    target = Path(output)
    if target.is_dir() or output.endswith(("/", "\\")):
        target = target / _file_name(STDIN_STEM, options)
    return Job(None, target)


def _output_folder(inputs: Sequence[str], output: str | None) -> Path | None:
    """The ``--output`` folder, or None when ``output`` names a file (or is absent or ``-``)."""
    if output in (None, STDIO):
        return None
    several = len(inputs) > 1 or any(Path(p).is_dir() or glob.has_magic(p) for p in inputs)
    if several or Path(output).is_dir() or output.endswith(("/", "\\")):
        return Path(output)
    return None


def _expand(pattern: str) -> list[Path]:
    path = Path(pattern)
    if path.exists() or path.is_symlink() or not glob.has_magic(pattern):
        return [path]
    return sorted(Path(p) for p in glob.glob(pattern, recursive=True))


def _folder_files(folder: Path, recursive: bool, exclude: Path | None) -> tuple[list[Path], list[Path]]:
    """(images, other files) in ``folder``, sorted; hidden entries and the ``exclude`` folder are left out."""
    excluded = exclude.resolve() if exclude is not None else None
    files = []
    for path in sorted(folder.rglob("*") if recursive else folder.iterdir()):
        relative = path.relative_to(folder)
        if any(part.startswith(".") for part in relative.parts) or not path.is_file():
            continue
        if excluded is not None and path.resolve().is_relative_to(excluded):
            continue
        files.append(path)
    return [p for p in files if is_probably_image(p)], [p for p in files if not is_probably_image(p)]


def _unique(found: list[tuple[Path, Path | None]]) -> Iterator[tuple[Path, Path | None]]:
    """Each file once, in order, even when named twice (a file and its folder, or two patterns)."""
    seen: set[Path] = set()
    for source, folder in found:
        key = source.resolve()
        if key not in seen:
            seen.add(key)
            yield source, folder


def _file_name(stem: str, options: OutputOptions) -> str:
    return f"{stem}{options.suffix}.{(options.format or DEFAULT_FORMAT).lower()}"


def _target(
    source: Path, folder: Path | None, output: str | None, out_dir: Path | None, options: OutputOptions
) -> Path | None:
    if output == STDIO:
        return None
    name = _file_name(source.stem, options)
    if out_dir is not None:
        relative = source.parent.relative_to(folder) if folder is not None else Path()
        return out_dir / relative / name
    if output is not None:
        return Path(output)
    if folder is not None:
        return _sibling_folder(folder, options.suffix) / source.parent.relative_to(folder) / name
    return source.with_name(name)


def _sibling_folder(folder: Path, suffix: str) -> Path:
    """The default output folder of an input folder: ``photos`` -> ``photos<suffix>`` beside it."""
    if folder.name in ("", ".."):  # "." or a path ending in "..": name it after the real folder
        folder = folder.resolve()
    return folder.with_name(f"{folder.name}{suffix}")


def _refuse_clashes(jobs: list[Job], options: OutputOptions) -> list[Job]:
    """Give a problem to each job whose output would replace an input or an earlier job's output."""
    sources = {job.source.resolve(): job.source for job in jobs if job.source is not None}
    claimed: dict[Path, Job] = {}
    checked = []
    for job in jobs:
        if job.target is None or job.source is None:
            checked.append(job)
            continue
        target = job.target.resolve()
        problem = None
        if target == job.source.resolve():
            problem = f"{job.source}: the output would replace the input; choose another --output or --suffix"
        elif target in sources and options.overwrite:
            problem = f"{job.source}: the output {job.target} would replace the input {sources[target]}"
        elif target in claimed:
            problem = f"{job.source}: the output {job.target} is also the output of {claimed[target].source}"
        else:
            claimed[target] = job
        checked.append(dataclasses.replace(job, problem=problem) if problem else job)
    return checked


# --------------------------------------------------------------------------------------------------
# Running


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
    """Read, restore and write each job; a job that fails is reported and the batch goes on.

    ``restore(image, job) -> image`` does the work (a :class:`~swinir_cli.pipeline.Restorer` method with
    progress attached). ``on_start(job, index)`` is called before a job that is not skipped runs, and
    ``on_result(result)`` after every job, in the jobs' order. ``max_pixels`` refuses larger images (None:
    Pillow's limit). With ``overlap`` (and more than one job), the next image is decoded and the previous
    result encoded and written on threads beside ``restore`` (:func:`swinir_cli.parallel.run_overlapped`);
    results, files and errors are the same as in series. Ctrl-C (KeyboardInterrupt) stops the batch: the
    job in flight leaves no partial file, is reported as ``interrupted`` and
    :attr:`BatchSummary.interrupted` is set.

    Raises:
        BatchStopError: a job hit an error that every other job would hit too (a model of the wrong
            scale, a model that cannot be downloaded); the batch stops.
    """
    steps = JobSteps(restore, options, max_pixels)
    if overlap and len(jobs) > 1:
        from .parallel import run_overlapped  # parallel builds on this module's types

        return run_overlapped(jobs, steps, on_start=on_start, on_result=on_result)
    summary = BatchSummary()
    started = time.perf_counter()
    for index, job in enumerate(jobs):
        job_started = time.perf_counter()
        try:
            result = steps.run(job, index, on_start)
        except KeyboardInterrupt:
            result = JobResult(job, "interrupted", time.perf_counter() - job_started, "interrupted")
            summary.interrupted = True
        summary.results.append(result)
        if on_result is not None:
            on_result(result)
        if summary.interrupted:
            break
    summary.seconds = time.perf_counter() - started
    return summary


def run_one(
    job: Job,
    index: int,
    restore: Callable[[LoadedImage, Job], LoadedImage],
    options: OutputOptions,
    max_pixels: int | None = None,
    on_start: Callable[[Job, int], None] | None = None,
) -> JobResult:
    """One job of :func:`run_jobs` (``index`` is its place in the batch): skipped when its output exists
    and was made from this input, else read, restored and written; a failure is returned, not raised.
    The stages are :class:`JobSteps`.

    Raises:
        BatchStopError: see :func:`run_jobs`.
    """
    return JobSteps(restore, options, max_pixels).run(job, index, on_start)


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
    return JobResult(job, "failed", seconds, message)


@dataclass(frozen=True)
class JobSteps:
    """One job's work as separable stages: :meth:`settled` (no work needed), :meth:`read`, :meth:`restore`,
    :meth:`write`. :meth:`run` chains them in series; :mod:`swinir_cli.parallel` runs the same stages on
    threads. Each stage raises one of :data:`JOB_ERRORS` when the job fails.

    ``restore(image, job) -> image`` is the model's work; ``max_pixels`` refuses larger images (None:
    Pillow's limit).
    """

    restore_image: Callable[[LoadedImage, Job], LoadedImage]
    options: OutputOptions
    max_pixels: int | None = None

    def settled(self, job: Job) -> JobResult | None:
        """The result of a job that needs no work: it failed in planning, or its output exists, skipped
        when made from this input as it is now, failed when made from another."""
        if job.problem is not None:
            return JobResult(job, "failed", error=job.problem)
        if job.target is not None and job.target.exists() and not self.options.overwrite:
            clash = _made_from_another(job)
            return JobResult(job, "skipped") if clash is None else JobResult(job, "failed", error=clash)
        return None

    def read(self, job: Job) -> LoadedImage:
        """The job's decoded input (standard input when ``job.source`` is None)."""
        limit = PILLOW_LIMIT if self.max_pixels is None else self.max_pixels
        if job.source is None:
            return read_image_stream(_stdin(), max_pixels=limit)
        return read_image(job.source, max_pixels=limit)

    def restore(self, image: LoadedImage, job: Job) -> LoadedImage:
        return self.restore_image(image, job)

    def write(self, job: Job, image: LoadedImage) -> None:
        """Write the result atomically to ``job.target`` (standard output when None), then the record of
        the input it was made from beside it."""
        _write(job, image, self.options)
        _record_source(job)

    def run(self, job: Job, index: int = 0, on_start: Callable[[Job, int], None] | None = None) -> JobResult:
        """The job's result, its stages in series; ``on_start(job, index)`` before a job that has work."""
        settled = self.settled(job)
        if settled is not None:
            return settled
        if on_start is not None:
            on_start(job, index)
        started = time.perf_counter()
        try:
            self.write(job, self.restore(self.read(job), job))
        except JOB_ERRORS as exc:
            return job_failure(job, exc, time.perf_counter() - started)
        return JobResult(job, "done", time.perf_counter() - started)


def _stdin() -> BinaryIO:
    """Standard input's byte stream, read within a bound by :func:`~swinir_cli.imageio.read_image_stream`."""
    if sys.stdin is None:
        raise ImageError("<stdin>: standard input is closed")
    return sys.stdin.buffer


def _write_stdout(data: bytes) -> None:
    """All of ``data`` to standard output, flushed; a failure (closed, full disk, the reader gone) is an
    ImageError, and standard output then points at the null device so that the interpreter's own flush
    at exit has nothing left to fail on."""
    if sys.stdout is None:
        raise ImageError("<stdout>: standard output is closed")
    try:
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()
    except OSError as exc:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        raise ImageError(f"<stdout>: cannot write ({exc.strerror or exc})") from None


def _write(job: Job, image: LoadedImage, options: OutputOptions) -> None:
    if job.target is None:
        data = encode_image(
            image,
            options.format or DEFAULT_FORMAT,
            quality=options.quality,
            strip_metadata=options.strip_metadata,
        )
        _write_stdout(data)
        return
    output_format(job.target, options.format)  # fail early on an unknown suffix
    try:
        job.target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ImageError(f"{job.target}: cannot create its folder ({exc.strerror or exc})") from None
    write_image(
        job.target,
        image,
        format=options.format,
        quality=options.quality,
        strip_metadata=options.strip_metadata,
    )


def source_record_path(target: Path) -> Path:
    """The hidden file beside ``target`` that records the input it was made from."""
    return target.with_name(f".{target.name}.source.json")


def _source_identity(source: Path) -> dict[str, object]:
    """What identifies an input as it is now: its resolved path, size and modification time (ns)."""
    status = source.stat()
    return {"source": str(source.resolve()), "size": status.st_size, "mtime_ns": status.st_mtime_ns}


def _record_source(job: Job) -> None:
    if job.source is None or job.target is None:
        return
    record = source_record_path(job.target)
    try:
        write_file_atomically(record, json.dumps(_source_identity(job.source)).encode("utf-8"))
    except OSError as exc:
        raise ImageError(
            f"{record}: cannot record the source of {job.target} ({exc.strerror or exc})"
        ) from None


def _made_from_another(job: Job) -> str | None:
    """None when the existing output of ``job`` was made from its input as it is now; else why not."""
    assert job.target is not None
    redo = "--overwrite replaces it, --suffix or --output avoids it"
    try:
        recorded = json.loads(source_record_path(job.target).read_text(encoding="utf-8"))
        current = _source_identity(job.source) if job.source is not None else None
    except (OSError, ValueError):
        return f"{job.input_name}: {job.output_name} exists and was not made from this input ({redo})"
    if recorded == current:
        return None
    if isinstance(recorded, dict) and recorded.get("source") != (current or {}).get("source"):
        return f"{job.input_name}: {job.output_name} exists, made from {recorded.get('source')} ({redo})"
    return f"{job.input_name}: {job.output_name} exists, made from an earlier version of this input ({redo})"


# --------------------------------------------------------------------------------------------------
# After the model


#: The longest side an output may have (the JPEG limit; larger images exhaust memory long before use).
MAX_OUTPUT_SIDE = 65535
#: Without --max-pixels: outputs up to a Pillow-limit image upscaled x4.
DEFAULT_OUTPUT_PIXEL_FACTOR = 16


def output_pixel_limit(max_pixels: int | None) -> int:
    """The most pixels an output may have: ``--max-pixels`` when given, else 16x Pillow's input limit
    (with Pillow's limit switched off: the largest image of :data:`MAX_OUTPUT_SIDE` sides)."""
    if max_pixels is not None:
        return max_pixels
    input_limit = pillow_pixel_limit()
    return MAX_OUTPUT_SIDE**2 if input_limit is None else DEFAULT_OUTPUT_PIXEL_FACTOR * input_limit


def check_output_size(size: tuple[int, int], limit: int, label: str) -> None:
    """Refuse an output of ``size`` = (width, height) larger than ``limit`` pixels or
    :data:`MAX_OUTPUT_SIDE` per side, before anything is allocated.

    Raises:
        ImageError: naming ``label``, the size and the limit.
    """
    width, height = size
    if max(width, height) > MAX_OUTPUT_SIDE:
        raise ImageError(
            f"{label}: the output would be {width}x{height}, over {MAX_OUTPUT_SIDE} pixels a side"
        )
    if width * height > limit:
        raise ImageError(
            f"{label}: the output would be {width}x{height} = {width * height} pixels, over the limit of "
            f"{limit} (--max-pixels)"
        )


def output_size(
    input_size: tuple[int, int],
    *,
    outscale: float | None = None,
    width: int | None = None,
    height: int | None = None,
) -> tuple[int, int] | None:
    """The (width, height) asked for by ``--outscale`` or ``--width``/``--height``; None when not asked.

    ``outscale`` multiplies the input size; one of ``width``/``height`` alone keeps the aspect ratio.
    Sides are rounded and at least 1.

    Raises:
        UsageError: ``outscale`` is combined with ``width``/``height``, a value is not positive, or a
            side is over :data:`MAX_OUTPUT_SIDE`.
    """
    if outscale is not None and (width is not None or height is not None):
        raise UsageError("--outscale cannot be combined with --width/--height")
    if any(value is not None and value <= 0 for value in (outscale, width, height)):
        raise UsageError("--outscale, --width and --height must be positive")
    for option, value in (("--width", width), ("--height", height)):
        if value is not None and value > MAX_OUTPUT_SIDE:
            raise UsageError(f"{option} {value} is over the limit of {MAX_OUTPUT_SIDE} pixels a side")
    in_width, in_height = input_size
    if outscale is not None:
        return max(1, round(in_width * outscale)), max(1, round(in_height * outscale))
    if width is not None and height is not None:
        return width, height
    if width is not None:
        return width, max(1, round(in_height * width / in_width))
    if height is not None:
        return max(1, round(in_width * height / in_height)), height
    return None


def resize_image(image: LoadedImage, size: tuple[int, int]) -> LoadedImage:
    """``image`` (colour and alpha) resized to ``size`` = (width, height), bit depth kept.

    Shrinking on both axes uses area averaging (``cv2.INTER_AREA``, no aliasing); anything else uses
    Lanczos (``cv2.INTER_LANCZOS4``, saturated to the dtype's range). The same size is returned as is.
    """
    width, height = size
    if (width, height) == (image.width, image.height):
        return image
    shrinking = width <= image.width and height <= image.height
    interpolation = cv2.INTER_AREA if shrinking else cv2.INTER_LANCZOS4

    def resized(array: np.ndarray) -> np.ndarray:
        result = cv2.resize(np.ascontiguousarray(array), (width, height), interpolation=interpolation)
        return result.reshape(height, width, *array.shape[2:])  # cv2 drops a single channel axis

    alpha = None if image.alpha is None else resized(image.alpha)
    return dataclasses.replace(image, pixels=resized(image.pixels), alpha=alpha)
