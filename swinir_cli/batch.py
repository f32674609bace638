"""Batches: which files to restore, where each result goes, and running them so one bad file costs nothing.

Inputs are files, folders (``recursive`` mirrors sub-folders in the output folder), glob patterns the shell
left unexpanded, or ``-`` for standard input. Outputs, unless ``--output`` says otherwise:

* a file ``photo.jpg`` gives ``photo<suffix>.png`` beside it;
* a folder ``photos/`` gives the folder ``photos<suffix>/`` beside it, holding ``<name><suffix>.png`` for
  each image (sub-folders mirrored with ``recursive``);
* ``-`` (standard input) gives standard output.

An output never replaces an input: a job whose output is its own input, another input, or the output of
an earlier job fails before any work, ``overwrite`` or not. A file swinir made (it carries swinir's
provenance) that this run plans to write again is not one of its inputs (so running ``'*.png'`` twice
does not restore the first run's results); a file of that name that swinir did not make stays an input.

Each result is written atomically (see :func:`swinir_cli.imageio.write_image`), never over a file another
process wrote meanwhile (with ``overwrite``, over only the file found when the job began), with its
:class:`~swinir_cli.provenance.Provenance` inside (the input's name, size and sha256, and the fingerprint
of the settings that change pixels, :attr:`OutputOptions.settings`). An existing output is judged by
:func:`judge_existing`: skipped when made from this input's content with these settings (so running an
interrupted batch again resumes it), redone with a note when made from this input with other settings or
from its earlier content, and otherwise left alone, its job failed with a line: made from another input
(``overwrite`` replaces it), or not made by swinir (replaced only when ``--output`` names that very file
and ``overwrite`` is on). Formats without provenance (BMP, GIF, ...) and ``strip_metadata`` write results
swinir cannot recognise later: such an existing output is neither skipped nor replaced. The hidden
``.<output name>.source.json`` records of earlier versions are honoured and removed when their output is
written again. Files in folders that are not images (judged by suffix) and special files (FIFOs,
devices, sockets) and symbolic links to nothing found in folders or through patterns are ignored and listed,
as are sub-folders not entered (without ``recursive``); every other problem fails its own job, and the
batch goes on.

After the model, :func:`resize_image` gives other output sizes.
"""

from __future__ import annotations

import contextlib
import dataclasses
import glob
import json
import stat
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

import cv2
import numpy as np

from .durable import FileIdentity, overlong_name
from .errors import BatchStopError, ImageError, StdoutError, SwinIRError, UsageError
from .formats import DEFAULT_FORMAT
from .imageio import (
    PILLOW_LIMIT,
    LoadedImage,
    carries_provenance,
    encode_image,
    is_probably_image,
    output_format,
    pillow_pixel_limit,
    read_image,
    read_image_stream,
    read_provenance,
    write_image,
)
from .provenance import ContentId, Provenance, place_of
from .reading import read_regular
from .signals import EXIT_INTERRUPTED
from .stdout import write_stdout

__all__ = [
    "STDIO",
    "BatchPlan",
    "BatchSummary",
    "Job",
    "JobResult",
    "JobSteps",
    "OutputOptions",
    "Verdict",
    "check_output_size",
    "judge_existing",
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
#: The name of the standard-input image when its result goes into an output folder.
STDIN_STEM = "stdin"


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


@dataclass
class JobResult:
    """How a job ended: ``status`` is "done", "skipped", "failed" or "interrupted"; ``model`` names the
    model that restored it (None when none ran); ``note`` says why an existing output was redone."""

    job: Job
    status: str
    seconds: float = 0.0
    error: str | None = None
    model: str | None = None
    note: str | None = None


@dataclass
class BatchPlan:
    """The jobs to run, the files found in folders that are not images, other files left out with the
    reason (special files, dangling links, outputs of this very run): ignored, not errors; and the input
    folders whose sub-folders were not entered (without ``recursive``), with their number."""

    jobs: list[Job]
    not_images: list[Path] = field(default_factory=list)
    ignored: list[tuple[Path, str]] = field(default_factory=list)
    unentered: list[tuple[Path, int]] = field(default_factory=list)


@dataclass
class BatchSummary:
    results: list[JobResult] = field(default_factory=list)
    seconds: float = 0.0
    interrupted: bool = False

    def count(self, status: str) -> int:
        return sum(result.status == status for result in self.results)

    @property
    def exit_code(self) -> int:
        """0 when everything was done or skipped, 1 when any input failed, 130 when interrupted (by
        SIGINT, SIGTERM or SIGHUP: :mod:`swinir_cli.signals`)."""
        if self.interrupted:
            return EXIT_INTERRUPTED
        return 1 if self.count("failed") else 0


@dataclass(frozen=True)
class OutputOptions:
    """How results are named and encoded; ``suffix`` is part of a file name, never a path; ``settings``
    fingerprints the settings that change pixels (:func:`swinir_cli.recipe.settings_fingerprint`), recorded
    in each output's provenance.

    Raises:
        UsageError: ``suffix`` holds a path separator (``/`` or ``\\``) or a NUL: it would leave the output
            folder, or name no file.
    """

    suffix: str
    format: str | None = None
    quality: int | None = None
    strip_metadata: bool = False
    overwrite: bool = False
    settings: str = ""

    def __post_init__(self) -> None:
        forbidden = [c for c in ("/", "\\", "\0") if c in self.suffix]  # either separator, anywhere
        if forbidden:
            shown = "a NUL" if forbidden[0] == "\0" else f"the path separator {forbidden[0]!r}"
            raise UsageError(f"--suffix {self.suffix!r} holds {shown}; a suffix is part of a file name")


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
    named = out_dir is None and output not in (None, STDIO)
    jobs = [
        Job(source, _target(source, folder, output, out_dir, options), named_output=named)
        for source, folder in _unique(found.files)
    ]
    jobs, own_outputs = _without_own_outputs(jobs)
    ignored = found.ignored + [(path, "an output of this run, not an input") for path in own_outputs]
    jobs = found.problems + _refuse_clashes(jobs)
    return BatchPlan(jobs, found.not_images, ignored, found.unentered)


@dataclass
class _Found:
    """What the inputs named: image files (with the input folder each was found in), problems, non-images."""

    files: list[tuple[Path, Path | None]] = field(default_factory=list)
    problems: list[Job] = field(default_factory=list)
    not_images: list[Path] = field(default_factory=list)
    ignored: list[tuple[Path, str]] = field(default_factory=list)
    unentered: list[tuple[Path, int]] = field(default_factory=list)

    def add(self, path: Path, *, recursive: bool, exclude: Path | None, matched: bool = False) -> None:
        """Add ``path``, named on the command line or ``matched`` by a pattern."""
        special = _special_kind(path)
        if special is not None and matched:
            self.ignored.append((path, f"{special}, not a regular file"))
        elif special is not None:
            self.problems.append(Job(path, None, f"{path}: {special}, not a regular file; skipped"))
        elif path.is_dir():
            try:
                listing = _folder_files(path, recursive, exclude)
            except OSError as exc:
                self.problems.append(
                    Job(path, None, f"{path}: cannot list the folder ({exc.strerror or exc})")
                )
                return
            self.files += [(image, path) for image in listing.images]
            self.not_images += listing.others
            self.ignored += listing.ignored
            if listing.subfolders:
                self.unentered.append((path, listing.subfolders))
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
    """The jobs whose input is not an output swinir made that another job plans to write, and those
    inputs. A file of a planned output's name that swinir did not make stays an input (and the job that
    would replace it fails in :func:`_refuse_clashes`)."""
    targets = {job.target.resolve() for job in jobs if job.target is not None}
    kept, own = [], []
    for job in jobs:
        is_output = job.source is not None and job.source.resolve() in targets
        another = is_output and job.target is not None and job.target.resolve() != job.source.resolve()
        if another and _made_by_swinir(job.source):  # type: ignore[arg-type]
            own.append(job.source)
        else:
            kept.append(job)
    return kept, own


def _stdin_job(output: str | None, options: OutputOptions) -> Job:
    if output in (None, STDIO):
        return Job(None, None)
    target = Path(output)
    if target.is_dir() or output.endswith(("/", "\\")):
        return Job(None, target / _file_name(STDIN_STEM, options))
    return Job(None, target, named_output=True)


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


@dataclass
class _Listing:
    """What a folder holds: images, other files, files left out with the reason (special files,
    dangling links), and sub-folders not entered (without ``recursive``)."""

    images: list[Path] = field(default_factory=list)
    others: list[Path] = field(default_factory=list)
    ignored: list[tuple[Path, str]] = field(default_factory=list)
    subfolders: int = 0


def _folder_files(folder: Path, recursive: bool, exclude: Path | None) -> _Listing:
    """What ``folder`` holds, sorted; hidden entries and the ``exclude`` folder are left out."""
    excluded = exclude.resolve() if exclude is not None else None
    listing = _Listing()
    for path in sorted(folder.rglob("*") if recursive else folder.iterdir()):
        relative = path.relative_to(folder)
        if any(part.startswith(".") for part in relative.parts):
            continue
        if excluded is not None and path.resolve().is_relative_to(excluded):
            continue
        special = _special_kind(path)
        if path.is_dir():
            listing.subfolders += not recursive
        elif special is not None:
            listing.ignored.append((path, f"{special}, not a regular file"))
        elif not path.exists():
            listing.ignored.append((path, "a symbolic link to nothing"))
        else:
            (listing.images if is_probably_image(path) else listing.others).append(path)
    return listing


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


def _refuse_clashes(jobs: list[Job]) -> list[Job]:
    """Give a problem to each job whose output would replace an input or an earlier job's output
    (``--overwrite`` or not: an input of the run is never replaced)."""
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
        elif target in sources:
            problem = (
                f"{job.source}: the output {job.target} would replace the input {sources[target]}, which "
                "swinir did not make; choose another --output or --suffix"
            )
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
    results, files and errors are the same as in series. Ctrl-C (KeyboardInterrupt; the command line raises
    it for SIGTERM and SIGHUP too, :mod:`swinir_cli.signals`) stops the batch: the
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
    # Per target with work: the file it held when the job began (None: none), the only file its write
    # may replace (another run's result, written meanwhile, is kept).
    _found: dict[Path, FileIdentity | None] = field(default_factory=dict, compare=False, repr=False)
    #: Why a job's existing output is being redone, by job, until :meth:`done` reports it.
    notes: dict[Job, str] = field(default_factory=dict, compare=False, repr=False)

    def settled(self, job: Job) -> JobResult | None:
        """The result of a job that needs no work: it failed in planning, its output's name is too long, or
        its existing output is skipped or refused (:func:`judge_existing`); None when the job is to run."""
        if job.problem is not None:
            return JobResult(job, "failed", error=job.problem)
        if job.target is None:
            return None
        overlong = overlong_name(job.target)
        if overlong is not None:
            part, size, limit = overlong
            return JobResult(
                job,
                "failed",
                error=f"{job.input_name}: the output name {part} is {size} bytes, over the limit of {limit} "
                "of its file system (a shorter --suffix or input name avoids it)",
            )
        found = FileIdentity.of(job.target)
        if found is not None:
            verdict = judge_existing(job, self.options)
            if verdict.status != "redo":
                error = verdict.message if verdict.status == "failed" else None
                return JobResult(job, verdict.status, error=error)
            if verdict.message is not None:
                self.notes[job] = verdict.message
        self._found[job.target] = found
        return None

    def done(self, job: Job, seconds: float) -> JobResult:
        """The ``done`` result of ``job``, with the note of an output it redid."""
        return JobResult(job, "done", seconds, note=self.notes.pop(job, None))

    def read(self, job: Job) -> LoadedImage:
        """The job's decoded input (standard input when ``job.source`` is None)."""
        limit = PILLOW_LIMIT if self.max_pixels is None else self.max_pixels
        if job.source is None:
            return read_image_stream(_stdin(), max_pixels=limit)
        return read_image(job.source, max_pixels=limit)

    def restore(self, image: LoadedImage, job: Job) -> LoadedImage:
        return self.restore_image(image, job)

    def write(self, job: Job, image: LoadedImage) -> None:
        """Write the result atomically to ``job.target`` (standard output when None) with its provenance
        inside, replacing only the file :meth:`settled` found there (one that another process wrote
        meanwhile is kept, and the job fails); an earlier version's record beside it is then removed."""
        replaces = self._found.pop(job.target, None) if job.target is not None else None
        _write(job, image, self.options, replaces)
        if job.target is not None:
            with contextlib.suppress(OSError):  # the provenance inside the output now prevails
                source_record_path(job.target).unlink(missing_ok=True)

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
        return self.done(job, time.perf_counter() - started)


def _stdin() -> BinaryIO:
    """Standard input's byte stream, read within a bound by :func:`~swinir_cli.imageio.read_image_stream`."""
    if sys.stdin is None:
        raise ImageError("<stdin>: standard input is closed")
    return sys.stdin.buffer


def _write_stdout(data: bytes) -> None:
    """All of ``data`` to standard output (see :func:`swinir_cli.stdout.write_stdout`); a failure (closed,
    full disk, the reader gone, a short write) fails the image."""
    try:
        write_stdout(data)
    except StdoutError as exc:
        raise ImageError(str(exc)) from None


def _write(job: Job, image: LoadedImage, options: OutputOptions, replaces: FileIdentity | None) -> None:
    if image.content is not None:
        provenance = _provenance(job.source, image.content, options)
        metadata = dataclasses.replace(image.metadata, provenance=provenance)
        image = dataclasses.replace(image, metadata=metadata)
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
        replaces=replaces,
    )


def _provenance(source: Path | None, content: ContentId, options: OutputOptions) -> str:
    """The provenance text of a result made from ``source`` (None: standard input) of ``content``."""
    if source is None:
        return Provenance("<stdin>", content, "", options.settings).to_text()
    return Provenance(source.name, content, place_of(source), options.settings).to_text()


@dataclass(frozen=True)
class Verdict:
    """What to do with a job's existing output: ``status`` "skipped", "redo" or "failed"; ``message``
    is the note of a redo (None: nothing to say) or the failure's line."""

    status: str
    message: str | None = None

    def __post_init__(self) -> None:
        if self.status not in ("skipped", "redo", "failed") or (self.status == "failed" and not self.message):
            raise ValueError(f"not a verdict: {self.status!r} {self.message!r}")


def judge_existing(job: Job, options: OutputOptions) -> Verdict:
    """What to do with ``job.target``, which exists (see the module docstring for the rules).

    Reads the existing output's provenance from its header (or an earlier version's record beside it);
    the input is hashed only when the sizes leave the question open.
    """
    assert job.target is not None
    recorded = _recorded_provenance(job.target)
    legacy = _legacy_record(job.target) if recorded is None else None
    names = f"{job.input_name}: {job.output_name}"
    if recorded is None and legacy is None:
        if options.overwrite and job.named_output:
            return Verdict("redo")
        hint = (
            "--overwrite replaces it, as --output names it"
            if job.named_output
            else "delete it, or choose another --output or --suffix"
        )
        return Verdict("failed", f"{names} exists and carries no swinir provenance, so it is kept ({hint})")
    if options.overwrite:
        return Verdict("redo")
    if job.source is None:
        return Verdict("failed", f"{names} exists (--overwrite replaces it)")
    if recorded is not None:
        relation = _relation(job.source, recorded)
        same_settings = recorded.settings == options.settings
        made_from = f"another {recorded.input}"
    else:
        assert legacy is not None
        relation = _relation_to_legacy(job.source, legacy)
        same_settings = True  # earlier versions recorded no settings: their record is honoured as it is
        made_from = str(legacy["source"])
    # A result this run would write without a record is redone (the old one has one, or is an earlier
    # version's, then kept as it is: its record beside it is what resumes it).
    if relation == "same" and same_settings and (legacy is not None or _marks(job, options)):
        return Verdict("skipped")
    if relation == "same":
        return Verdict("redo", f"{names} was made from this input with other settings; redone")
    if relation == "changed":
        return Verdict("redo", f"{names} was made from an earlier version of this input; redone")
    return Verdict(
        "failed",
        f"{names} exists, made from {made_from} (--overwrite replaces it, --suffix or --output avoids it)",
    )


def _marks(job: Job, options: OutputOptions) -> bool:
    """Whether this run records the provenance in ``job``'s output (its format has a place for it)."""
    assert job.target is not None
    try:
        return not options.strip_metadata and carries_provenance(output_format(job.target, options.format))
    except ImageError:
        return False


def _relation(source: Path, recorded: Provenance) -> str:
    """``same`` (this input's content), ``changed`` (made from this place, other content) or ``other``."""
    try:
        size = source.stat().st_size
        if size == recorded.content.size and ContentId.of_file(source) == recorded.content:
            return "same"
        place = place_of(source)
    except OSError:
        return "other"  # its read fails the job; nothing is replaced meanwhile
    return "changed" if recorded.place == place else "other"


def _recorded_provenance(target: Path) -> Provenance | None:
    text = read_provenance(target)
    return None if text is None else Provenance.from_text(text)


def _made_by_swinir(path: Path) -> bool:
    """Whether ``path`` carries swinir's provenance (or an earlier version's record beside it)."""
    return _recorded_provenance(path) is not None or _legacy_record(path) is not None


def source_record_path(target: Path) -> Path:
    """The hidden file beside ``target`` in which earlier versions recorded the input it was made from."""
    return target.with_name(f".{target.name}.source.json")


#: The most bytes read of an earlier version's record (they hold one path, a size and a time).
_LEGACY_RECORD_LIMIT = 64 * 1024


def _legacy_record(target: Path) -> dict[str, object] | None:
    """An earlier version's record of ``target``'s input (path, size, mtime); None when there is none."""
    try:
        record = json.loads(read_regular(source_record_path(target), _LEGACY_RECORD_LIMIT))
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) and isinstance(record.get("source"), str) else None


def _relation_to_legacy(source: Path, record: dict[str, object]) -> str:
    """As :func:`_relation`, for an earlier version's record (resolved path, size, modification time)."""
    try:
        status = source.stat()
        path = str(source.resolve())
    except OSError:
        return "other"
    if record.get("source") != path:
        return "other"
    same = record.get("size") == status.st_size and record.get("mtime_ns") == status.st_mtime_ns
    return "same" if same else "changed"


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
            side (or ``outscale``, which makes every side larger) is over :data:`MAX_OUTPUT_SIDE`.
    """
    if outscale is not None and (width is not None or height is not None):
        raise UsageError("--outscale cannot be combined with --width/--height")
    if any(value is not None and not value > 0 for value in (outscale, width, height)):  # NaN too
        raise UsageError("--outscale, --width and --height must be positive")
    if outscale is not None and outscale > MAX_OUTPUT_SIDE:
        raise UsageError(f"--outscale {outscale:g} makes every output side over {MAX_OUTPUT_SIDE} pixels")
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
