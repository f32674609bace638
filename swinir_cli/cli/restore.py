"""``swinir upscale``, ``swinir denoise`` and ``swinir dejpeg``: one implementation, three front doors.

The three commands share every option but the one that picks the model's level (``--scale``,
``--sigma``, ``--quality``); their signatures are generated from the aliases of
:mod:`swinir_cli.cli.options`, so each option is declared once. A run goes validate -> plan -> resolve ->
run -> report: everything that needs no image is refused before any model is loaded, the per-image work is
a :class:`~swinir_cli.recipe.RestoreRecipe`, and :mod:`swinir_cli.cli.report` says what happened.
"""

from __future__ import annotations

import inspect
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import typer

from ..batch import STDIO, BatchPlan, OutputOptions, output_is_folder, output_size, plan_jobs
from ..errors import BatchStopError, ImageError, UsageError
from ..formats import format_names, writable_format
from ..imageio import IMAGE_EXTENSIONS, output_format
from ..jobs import BatchRunner, BatchSummary, Job, JobResult, run_batch
from ..recipe import OutputSize, RestoreRecipe
from ..resolve import ModelFacts, ModelRequest, check_request
from ..settings import RestoreSettings
from ..tasks import AUTO, TASKS, Task
from . import options as o
from .output import BatchProgress, Output
from .report import report_not_images, report_result, report_stopped, report_summary


@dataclass(frozen=True)
class RestoreOptions:
    """What a restoration command was asked, typed (``level`` is the scale, sigma or quality; ``settings``
    how to compute, with ``--device`` as given: one device or a list of them)."""

    task: str
    inputs: tuple[str, ...]
    level: int | str | None
    output: str | None
    model: str | None
    weights: Path | None
    settings: RestoreSettings
    ray: bool
    ray_workers: int | None
    size: OutputSize
    suffix: str | None
    format: str | None
    output_quality: int | None
    overwrite: bool
    recursive: bool
    strip_metadata: bool
    max_pixels: int | None
    json: bool
    quiet: bool

    @classmethod
    def parse(cls, task: Task, values: dict[str, Any]) -> RestoreOptions:
        """From the parsed command line (``values`` by parameter name).

        Raises:
            UsageError: a value that is malformed on its own (a setting, the level, the size).
        """
        level = values[task.level_key]
        return cls(
            task=task.name,
            inputs=tuple(values["inputs"]),
            level=o.parse_level(level, f"--{task.level_key}") if task.estimates_level else level,
            output=values["output"],
            model=values["model"],
            weights=values["weights"],
            settings=o.restore_settings(values),
            ray=values["ray"],
            ray_workers=values["ray_workers"],
            size=OutputSize(
                o.parse_float(values["outscale"], "--outscale"), values["width"], values["height"]
            ),
            suffix=values["suffix"],
            format=values["format"],
            output_quality=values["output_quality"],
            overwrite=values["overwrite"],
            recursive=values["recursive"],
            strip_metadata=values["strip_metadata"],
            max_pixels=values["max_pixels"],
            json=values["json"],
            quiet=values["quiet"],
        )

    def request(self) -> ModelRequest:
        return ModelRequest(self.task, self.model, self.weights, self.level)


# --- the three commands ------------------------------------------------------------------------------

_SHARED = [
    ("output", o.OutputPath, None),
    ("model", o.ModelName, None),
    ("weights", o.Weights, None),
    ("tile", o.Tile, o.tile_text(o.DEFAULT_SETTINGS.tile)),
    ("tile_overlap", o.TileOverlap, o.DEFAULT_SETTINGS.tile_overlap),
    ("batch", o.Batch, o.DEFAULT_SETTINGS.batch),
    ("device", o.Device, o.DEFAULT_SETTINGS.device),
    ("ray", o.RayOption, False),
    ("ray_workers", o.RayWorkers, None),
    ("precision", o.PrecisionOption, o.Precision(o.DEFAULT_SETTINGS.precision)),
    ("engine", o.EngineOption, o.DEFAULT_SETTINGS.engine),
    ("tf32", o.Tf32, o.DEFAULT_SETTINGS.tf32),
    ("tta", o.Tta, o.DEFAULT_SETTINGS.tta),
    ("alpha", o.Alpha, o.AlphaMode(o.DEFAULT_SETTINGS.alpha)),
    ("shape_buckets", o.ShapeBuckets, o.ShapeBucketMode(o.DEFAULT_SETTINGS.shape_buckets)),
    ("outscale", o.Outscale, None),
    ("width", o.Width, None),
    ("height", o.Height, None),
    ("suffix", o.Suffix, None),
    ("format", o.Format, None),
    ("output_quality", o.OutputQuality, None),
    ("overwrite", o.Overwrite, False),
    ("recursive", o.Recursive, False),
    ("strip_metadata", o.StripMetadata, False),
    ("max_pixels", o.MaxPixels, None),
    ("json", o.Json, False),
    ("quiet", o.Quiet, False),
    ("version", o.Version, False),
    ("show_help", o.Help, False),
]
#: The option of each level key (``--scale``, ``--sigma``, ``--quality``); its default is ``auto`` where the
#: task estimates the level from each image.
_LEVEL_OPTIONS = {"scale": o.Scale, "sigma": o.Sigma, "quality": o.JpegQuality}


def register(app: typer.Typer) -> None:
    """Add a command for each task (``upscale``, ``denoise`` and ``dejpeg``) to ``app``."""
    for task in TASKS.values():
        app.command(task.name, help=task.help, add_help_option=False)(_command(task))


def _command(task: Task) -> Callable[..., None]:
    """The command function of ``task``, its signature built from the shared option aliases."""
    level_default = AUTO if task.estimates_level else None
    parameters = [
        o.parameter("inputs", o.Inputs),
        o.parameter(task.level_key, _LEVEL_OPTIONS[task.level_key], level_default),
        *(o.parameter(name, alias, default) for name, alias, default in _SHARED),
    ]

    def command(**values: Any) -> None:
        restore(RestoreOptions.parse(task, values))

    command.__name__ = task.name
    command.__signature__ = inspect.Signature(parameters)  # type: ignore[attr-defined]
    command.__annotations__ = {p.name: p.annotation for p in parameters}
    return command


# --- validate -> plan -> resolve -> run -> report ------------------------------------------------------


def restore(options: RestoreOptions) -> None:
    """Run one restoration command; see the module docstring.

    Raises:
        UsageError: before any work, for anything the command cannot do.
        typer.Exit: with the batch's exit code (1: an image failed, 130: interrupted).
    """
    facts = validate(options)
    writing = output_options(options, facts)
    plan = plan_jobs(list(options.inputs), options.output, writing, recursive=options.recursive)
    out = Output(quiet=options.quiet or options.output == STDIO, json_lines=options.json)
    _refuse_self_overwrite(plan)
    report_not_images(out, plan)
    if not plan.jobs:
        raise UsageError("no images to restore among the inputs")
    recipe = RestoreRecipe(
        options.request(), options.settings, writing, options.size, options.max_pixels
    ).fingerprinted()
    exit_code = run(recipe, plan, out, fixed_model=facts.label is not None, spread=_spread(options))
    if exit_code:
        raise typer.Exit(exit_code)


def _refuse_self_overwrite(plan: BatchPlan) -> None:
    """An output that is its own input is a usage error (a --suffix or --output fixes every such job)."""
    for job in plan.jobs:
        own = (
            job.source is not None and job.target is not None and job.source.resolve() == job.target.resolve()
        )
        if job.problem and own:
            raise UsageError(job.problem)


def validate(options: RestoreOptions) -> ModelFacts:
    """Every check that needs no image: output, sizes, the model request, each device with the precision
    and engine, tiling (the settings refused what is wrong on its own when they were built).

    Raises:
        UsageError: naming the option at fault.
    """
    _check_output(options)
    facts = check_request(options.request())
    from ..devices import PRECISION_NAMES, resolve_precision, select_device  # loads PyTorch: not at import
    from ..engines import resolve_engine

    settings = options.settings
    for device in _devices(options):
        selected = select_device(device)
        precision = PRECISION_NAMES[resolve_precision(settings.precision, selected)]
        resolve_engine(settings.engine, selected.type, precision)
    o.check_tiling(settings.tile, settings.tile_overlap, facts.window)
    return facts


def _devices(options: RestoreOptions) -> list[str]:
    """The ``--device`` list (one entry without a comma); refuses ``--ray`` combined with a list.

    Raises:
        UsageError: a bad entry, ``--ray`` with a device list, ``--ray-workers`` without ``--ray``.
    """
    from ..parallel import expand_devices

    device = options.settings.device
    listed = "," in device or device == "cuda:all"
    devices = expand_devices(device) if listed else []
    if options.ray and devices:
        raise UsageError("--ray places its workers itself; drop the --device list (--ray-workers N)")
    if options.ray_workers is not None and not options.ray:
        raise UsageError("--ray-workers is for --ray")
    return devices or [device]


def _check_output(options: RestoreOptions) -> None:
    """Refuse an output that cannot be written: binary data for a terminal, a format that cannot hold the
    result, one file for several images, a size no image can have.

    Raises:
        UsageError: naming the option at fault.
    """
    to_stdout = options.output == STDIO or (options.output is None and options.inputs == (STDIO,))
    if options.json and to_stdout:
        raise UsageError("--json and the image both go to standard output; give --output a file or folder")
    if to_stdout and sys.stdout is not None and sys.stdout.isatty():
        raise UsageError(
            "the result is image data, not for a terminal: redirect standard output to a file or a pipe, "
            "or give --output a file or folder"
        )
    if STDIO in options.inputs and sys.stdin is not None and sys.stdin.isatty():
        raise UsageError("'-' reads an image from standard input, which is a terminal: pipe one in (< a.png)")
    output_size((1, 1), outscale=options.size.outscale, width=options.size.width, height=options.size.height)
    if options.format is not None and writable_format(options.format) is None:
        raise UsageError(
            f"--format {options.format}: not a format swinir writes ({'|'.join(format_names())})"
        )
    if options.output in (None, STDIO):
        return
    if output_is_folder(options.inputs, options.output):
        _check_output_folder(options.output)
        return
    target = Path(options.output)
    try:
        from_suffix = output_format(target)
    except ImageError as exc:
        raise UsageError(f"--output {exc}") from None
    if options.format is not None and output_format(target, options.format) != from_suffix:
        raise UsageError(
            f"--output {target} names a {from_suffix.name} file but --format is {options.format}"
        )


def _check_output_folder(output: str) -> None:
    """The ``--output`` of several inputs (or a folder, or a pattern) must be a folder: not an existing
    file, nor a new path named like an image file.

    Raises:
        UsageError: naming the path.
    """
    folder = Path(output)
    if folder.is_dir() or output.endswith(("/", "\\")):
        return
    need = "several inputs, a folder or a pattern need an output folder"
    if folder.exists():
        raise UsageError(f"--output {output} is a file; {need}")
    if folder.suffix.lower() in IMAGE_EXTENSIONS:
        raise UsageError(f"--output {output} names an image file; {need} (end it with '/' to make one)")


def output_options(options: RestoreOptions, facts: ModelFacts) -> OutputOptions:
    """How outputs are named and encoded: the suffix names the true factor (``_x4``) by default."""
    suffix = options.suffix
    if suffix is None:
        suffix = TASKS[options.task].suffix(
            options.size.outscale if options.size.outscale is not None else facts.scale
        )
    return OutputOptions(
        suffix=suffix,
        format=options.format,
        quality=options.output_quality,
        strip_metadata=options.strip_metadata,
        overwrite=options.overwrite,
    )


@dataclass(frozen=True)
class Spread:
    """Where a batch runs: in this process (one device), one worker process per device, or on Ray."""

    devices: tuple[str, ...] = ()
    ray: bool = False
    ray_workers: int | None = None

    @property
    def workers(self) -> int:
        """Images restored at once: one per device, ``--ray-workers`` (Ray's own default counts as 1)."""
        return (self.ray_workers or 1) if self.ray else max(1, len(self.devices))

    @property
    def elsewhere(self) -> bool:
        """Whether the batch runs outside this process (worker processes or Ray)."""
        return self.ray or bool(self.devices)

    def runner(self, recipe: RestoreRecipe) -> BatchRunner:
        """The runner of a batch :attr:`elsewhere`: Ray's, or one worker process per device."""
        from ..parallel import DevicesRunner, RecipeRunnerFactory

        factory = RecipeRunnerFactory(recipe)
        if self.ray:
            from ..ray_batch import RayRunner

            return RayRunner(factory, self.ray_workers)
        return DevicesRunner(factory, self.devices)


def _spread(options: RestoreOptions) -> Spread:
    devices = _devices(options)
    return Spread(tuple(devices) if len(devices) > 1 else (), options.ray, options.ray_workers)


def run(recipe: RestoreRecipe, plan: BatchPlan, out: Output, *, fixed_model: bool, spread: Spread) -> int:
    """Restore every job of ``plan`` (a fixed model is fetched first); returns the batch's exit code.

    Jobs that failed in planning (a missing input) are reported without a model: when no job is left,
    the model is neither fetched nor loaded.

    Raises:
        BatchStopError: the batch stopped (with ``--json``, each input not yet reported has its
            ``failed`` record first).
    """
    single = len(plan.jobs) == 1
    reported: set[int] = set()
    workable = any(job.problem is None for job in plan.jobs)
    try:
        with out.batch_progress(len(plan.jobs), workers=spread.workers) as progress:

            def on_start(job: Job, index: int) -> None:
                _started(progress, job, index)

            def on_result(result: JobResult) -> None:
                reported.add(id(result.job))
                progress.finished(
                    result.status, result.seconds, (result.job.input_name, result.job.output_name)
                )
                report_result(out, result, single=single)

            where = spread if workable else Spread()
            callbacks = (on_start, on_result)
            summary = _run_spread(recipe, plan, out, progress, callbacks, fixed_model and workable, where)
    except BatchStopError as stop:
        report_stopped(out, [job for job in plan.jobs if id(job) not in reported], str(stop))
        raise
    report_summary(out, summary, plan)
    return summary.exit_code


def _run_spread(
    recipe: RestoreRecipe,
    plan: BatchPlan,
    out: Output,
    progress: BatchProgress,
    callbacks: tuple[Callable[[Job, int], None], Callable[[JobResult], None]],
    prepare: bool,
    spread: Spread,
) -> BatchSummary:
    """The jobs run where ``spread`` says, ``prepare``: the fixed model fetched and loaded first (in this
    process); every warning, the workers' too, goes to ``out``."""
    on_start, on_result = callbacks
    if spread.elsewhere:
        elsewhere = spread.runner(recipe)
        return run_batch(elsewhere, plan.jobs, on_start=on_start, on_result=on_result, on_warning=out.warning)
    here = recipe.runner(on_warning=out.warning, progress=progress, notice=out.info)
    if prepare:
        here.prepare()
    return here.run_all(plan.jobs, on_start=on_start, on_result=on_result)


def _started(progress: BatchProgress, job: Job, index: int) -> None:
    progress.start(index, job.input_name, job.output_name)
