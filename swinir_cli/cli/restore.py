"""``swinir upscale``, ``swinir denoise`` and ``swinir dejpeg``: one implementation, three front doors.

The commands share every option but the one that picks the model's setting (``--scale``, ``--sigma``,
``--quality``); :func:`_restore` plans the batch (:mod:`swinir_cli.batch`), picks models per image
(:class:`~swinir_cli.pipeline.ModelChooser`) and reports through :class:`~swinir_cli.cli.output.Output`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from enum import StrEnum
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from ..batch import (
    STDIO,
    BatchPlan,
    BatchSummary,
    Job,
    JobResult,
    OutputOptions,
    output_size,
    plan_jobs,
    resize_image,
    run_jobs,
)
from ..errors import UsageError
from ..imageio import LoadedImage
from ..registry import AUTO, get_model
from .options import parse_tile
from .output import BatchProgress, Output

if TYPE_CHECKING:
    from ..pipeline import Restorer


class Precision(StrEnum):
    auto = "auto"
    fp32 = "fp32"
    fp16 = "fp16"
    bf16 = "bf16"


class AlphaMode(StrEnum):
    bicubic = "bicubic"
    model = "model"


Inputs = Annotated[
    list[str],
    typer.Argument(
        help="Image files, folders or glob patterns; '-' reads one image from standard input.",
        show_default=False,
    ),
]
OutputPath = Annotated[
    str | None,
    typer.Option(
        "--output",
        "-o",
        help="Output file (one input), folder (several inputs, or a path ending in '/'), or '-' for "
        "standard output. Default: <name><suffix>.png beside each input file; for a folder, the "
        "folder <folder><suffix> beside it.",
        show_default=False,
    ),
]
ModelName = Annotated[
    str | None, typer.Option("--model", "-m", help="Registry model name (see `swinir models`).")
]
Weights = Annotated[
    Path | None, typer.Option("--weights", "-w", help="A local SwinIR checkpoint (.pth or .safetensors).")
]
Tile = Annotated[
    str,
    typer.Option(
        "--tile",
        help="Tile side in input pixels, 0 for the whole image, or 'auto' "
        "(the largest tile that fits the device's free memory).",
    ),
]
TileOverlap = Annotated[
    int | None,
    typer.Option(
        "--tile-overlap",
        min=0,
        help="Overlap between tiles in input pixels (default: two windows).",
        show_default=False,
    ),
]
Batch = Annotated[int, typer.Option("--batch", min=1, help="Tiles per forward pass.")]
Device = Annotated[str, typer.Option("--device", help="auto, cpu, cuda, cuda:N or mps.")]
PrecisionOption = Annotated[
    Precision,
    typer.Option("--precision", help="Compute precision; auto is fp32 (fp16 is refused on the CPU)."),
]
Tta = Annotated[bool, typer.Option("--tta", help="Average the 8 flips/rotations of each tile (8x slower).")]
Alpha = Annotated[
    AlphaMode,
    typer.Option("--alpha", help="How transparency is resized: bicubic interpolation, or through the model."),
]
Outscale = Annotated[
    float | None,
    typer.Option(
        "--outscale",
        help="Final size as a factor of the input size; the model's result is resized "
        "(area averaging to shrink, Lanczos to enlarge).",
        show_default=False,
    ),
]
Width = Annotated[
    int | None,
    typer.Option(
        "--width", min=1, help="Final width in pixels (alone: keeps the aspect ratio).", show_default=False
    ),
]
Height = Annotated[
    int | None,
    typer.Option(
        "--height", min=1, help="Final height in pixels (alone: keeps the aspect ratio).", show_default=False
    ),
]
Suffix = Annotated[
    str | None,
    typer.Option(
        "--suffix",
        help="Added to output names (default: _xN, _denoised or _dejpeg).",
        show_default=False,
    ),
]
Format = Annotated[
    str | None,
    typer.Option(
        "--format",
        "-f",
        help="Output format: png, jpg, webp, tiff...; default png, or the --output file's suffix.",
        show_default=False,
    ),
]
OutputQuality = Annotated[
    int | None,
    typer.Option(
        "--output-quality",
        min=0,
        max=100,
        help="Quality of lossy outputs (JPEG 95, WebP 95 by default; WebP 100 is lossless).",
        show_default=False,
    ),
]
QualityOrOutputQuality = Annotated[
    int | None,
    typer.Option(
        "--quality",
        "--output-quality",
        min=0,
        max=100,
        help="Quality of lossy outputs (JPEG 95, WebP 95 by default; WebP 100 is lossless).",
        show_default=False,
    ),
]
Overwrite = Annotated[bool, typer.Option("--overwrite", help="Redo outputs that already exist.")]
Recursive = Annotated[
    bool, typer.Option("--recursive", "-r", help="Descend into sub-folders, mirroring them.")
]
StripMetadata = Annotated[bool, typer.Option("--strip-metadata", help="Drop ICC profile, EXIF and PNG text.")]
MaxPixels = Annotated[
    int | None,
    typer.Option(
        "--max-pixels",
        min=1,
        help="Refuse larger images (default: Pillow's limit, about 89 million).",
        show_default=False,
    ),
]
Json = Annotated[bool, typer.Option("--json", help="One JSON object per input on standard output.")]
Quiet = Annotated[bool, typer.Option("--quiet", "-q", help="Print errors only.")]


@dataclass(frozen=True)
class SharedOptions:
    """The options every restoration command has, by their parameter names."""

    inputs: list[str]
    output: str | None
    model: str | None
    weights: Path | None
    tile: str
    tile_overlap: int | None
    batch: int
    device: str
    precision: Precision
    tta: bool
    alpha: AlphaMode
    outscale: float | None
    width: int | None
    height: int | None
    suffix: str | None
    format: str | None
    overwrite: bool
    recursive: bool
    strip_metadata: bool
    max_pixels: int | None
    json: bool
    quiet: bool

    @classmethod
    def of(cls, arguments: dict[str, Any]) -> SharedOptions:
        """Picked from a command's ``locals()``."""
        return cls(**{option.name: arguments[option.name] for option in dataclasses.fields(cls)})


def register(app: typer.Typer) -> None:
    app.command("upscale")(upscale)
    app.command("denoise")(denoise)
    app.command("dejpeg")(dejpeg)


def upscale(
    inputs: Inputs,
    scale: Annotated[
        int | None,
        typer.Option(
            "--scale",
            "-s",
            min=1,
            help="Upscaling factor: 2, 3, 4 or 8 (default: 4, or the model's scale).",
            show_default=False,
        ),
    ] = None,
    output: OutputPath = None,
    model: ModelName = None,
    weights: Weights = None,
    tile: Tile = AUTO,
    tile_overlap: TileOverlap = None,
    batch: Batch = 1,
    device: Device = "auto",
    precision: PrecisionOption = Precision.auto,
    tta: Tta = False,
    alpha: Alpha = AlphaMode.bicubic,
    outscale: Outscale = None,
    width: Width = None,
    height: Height = None,
    suffix: Suffix = None,
    format: Format = None,
    quality: QualityOrOutputQuality = None,
    overwrite: Overwrite = False,
    recursive: Recursive = False,
    strip_metadata: StripMetadata = False,
    max_pixels: MaxPixels = None,
    json: Json = False,
    quiet: Quiet = False,
) -> None:
    """Upscale images (super-resolution). Without --model: the real-world model for x2/x4, else classical."""
    if scale is None and model is None and weights is None:
        scale = 4
    if suffix is None:
        factor = outscale if outscale is not None else scale
        if factor is None and model is not None:
            factor = get_model(model).scale  # a named model's factor is known before it is loaded
        suffix = f"_x{factor:g}" if factor is not None else "_upscaled"
    _restore("upscale", {"scale": scale}, SharedOptions.of(locals()), output_quality=quality)


def denoise(
    inputs: Inputs,
    sigma: Annotated[
        str,
        typer.Option(
            "--sigma",
            help="Noise level of the input: 15, 25, 50, or 'auto' "
            "(estimated per image; the nearest model is used).",
        ),
    ] = AUTO,
    output: OutputPath = None,
    model: ModelName = None,
    weights: Weights = None,
    tile: Tile = AUTO,
    tile_overlap: TileOverlap = None,
    batch: Batch = 1,
    device: Device = "auto",
    precision: PrecisionOption = Precision.auto,
    tta: Tta = False,
    alpha: Alpha = AlphaMode.bicubic,
    outscale: Outscale = None,
    width: Width = None,
    height: Height = None,
    suffix: Suffix = None,
    format: Format = None,
    quality: QualityOrOutputQuality = None,
    overwrite: Overwrite = False,
    recursive: Recursive = False,
    strip_metadata: StripMetadata = False,
    max_pixels: MaxPixels = None,
    json: Json = False,
    quiet: Quiet = False,
) -> None:
    """Remove Gaussian noise. The gray or colour model is picked to match each image."""
    suffix = "_denoised" if suffix is None else suffix
    level = {"sigma": _level(sigma, "--sigma")}
    _restore("denoise", level, SharedOptions.of(locals()), output_quality=quality)


def dejpeg(
    inputs: Inputs,
    quality: Annotated[
        str,
        typer.Option(
            "--quality",
            help="JPEG quality of the input: 10, 20, 30, 40, or "
            "'auto' (read from the file's quantization tables).",
        ),
    ] = AUTO,
    output: OutputPath = None,
    model: ModelName = None,
    weights: Weights = None,
    tile: Tile = AUTO,
    tile_overlap: TileOverlap = None,
    batch: Batch = 1,
    device: Device = "auto",
    precision: PrecisionOption = Precision.auto,
    tta: Tta = False,
    alpha: Alpha = AlphaMode.bicubic,
    outscale: Outscale = None,
    width: Width = None,
    height: Height = None,
    suffix: Suffix = None,
    format: Format = None,
    output_quality: OutputQuality = None,
    overwrite: Overwrite = False,
    recursive: Recursive = False,
    strip_metadata: StripMetadata = False,
    max_pixels: MaxPixels = None,
    json: Json = False,
    quiet: Quiet = False,
) -> None:
    """Remove JPEG compression artifacts. The gray or colour model is picked to match each image."""
    suffix = "_dejpeg" if suffix is None else suffix
    level = {"quality": _level(quality, "--quality")}
    _restore("dejpeg", level, SharedOptions.of(locals()), output_quality=output_quality)


def _level(value: str, option: str) -> int | str:
    if value == AUTO:
        return AUTO
    try:
        return int(value)
    except ValueError:
        raise UsageError(f"{option} must be a number or 'auto', not {value!r}") from None


def _restore(task: str, level: dict[str, Any], options: SharedOptions, *, output_quality: int | None) -> None:
    """Plan the batch, then restore every job with the model ``task`` and ``level`` ask for."""
    if options.json and options.output == STDIO:
        raise UsageError("--json and --output - both write to standard output; choose one")
    output_size((1, 1), **_sizing(options))  # refuses bad combinations before any work
    tile = parse_tile(options.tile)
    out = Output(quiet=options.quiet or options.output == STDIO, json_lines=options.json)
    writing = OutputOptions(
        suffix=options.suffix or "",
        format=options.format,
        quality=output_quality,
        strip_metadata=options.strip_metadata,
        overwrite=options.overwrite,
    )
    plan = plan_jobs(options.inputs, options.output, writing, recursive=options.recursive)
    _report_not_images(out, plan)
    if not plan.jobs:
        raise UsageError("no images to restore among the inputs")

    from ..pipeline import (
        ModelChooser,
        ModelRequest,
        resolve_precision,
        select_device,
    )  # loads PyTorch: not at import

    device = select_device(options.device)
    resolve_precision(options.precision, device)  # refuses fp16 on the CPU before any work
    restorer_options = {
        "device": device,
        "tile": tile,
        "tile_overlap": options.tile_overlap,
        "batch": options.batch,
        "precision": options.precision,
        "tta": options.tta,
        "on_warning": out.warning,
    }
    models: dict[Job, str] = {}
    with out.batch_progress(len(plan.jobs)) as progress:
        chooser = ModelChooser(
            ModelRequest(task, options.model, options.weights, **level),
            restorer_options=restorer_options,
            download_progress=progress.download,
            notice=out.info,
        )

        def restore_one(image: LoadedImage, job: Job) -> LoadedImage:
            for message in dict.fromkeys(image.warnings):
                out.warning(f"{image.name}: {message}")
            models[job], restorer = chooser.restorer_for(image)
            return _restore_image(restorer, image, options, progress)

        def finished(result: JobResult) -> None:
            progress.finished()
            _report_result(out, result, models.get(result.job), single=len(plan.jobs) == 1)

        summary = run_jobs(
            plan.jobs,
            restore_one,
            writing,
            max_pixels=options.max_pixels,
            on_start=partial(_started, progress),
            on_result=finished,
        )
    _report_summary(out, summary, plan)
    if summary.exit_code:
        raise typer.Exit(summary.exit_code)


def _sizing(options: SharedOptions) -> dict[str, Any]:
    return {"outscale": options.outscale, "width": options.width, "height": options.height}


def _restore_image(
    restorer: Restorer, image: LoadedImage, options: SharedOptions, progress: BatchProgress
) -> LoadedImage:
    """The model's result (alpha through the model when asked), then resized when asked."""
    restored = restorer.restore_image(image, progress=progress.tiles, alpha=options.alpha.value)
    size = output_size((image.width, image.height), **_sizing(options))
    return restored if size is None else resize_image(restored, size)


def _started(progress: BatchProgress, job: Job, index: int) -> None:
    progress.start(index, job.input_name, job.output_name)


def _report_not_images(out: Output, plan: BatchPlan) -> None:
    for path in plan.not_images:
        out.info(f"{path}: not an image file, ignored")
        out.result(_record(str(path), None, None, 0.0, "ignored", "not an image file"))


def _report_result(out: Output, result: JobResult, model: str | None, *, single: bool) -> None:
    """A failure always gets its line; in a batch, skipped images are only counted, and on a terminal
    each written image is named (plain logs named it when it started)."""
    job = result.job
    if result.status == "failed":
        out.error(result.error or f"{job.input_name}: failed")
    elif result.status == "skipped" and single:
        out.info(f"{job.input_name}: {job.output_name} exists, skipped (--overwrite redoes it)")
    elif result.status == "done" and out.interactive and not single:
        out.info(f"{job.input_name} -> {job.output_name} ({result.seconds:.1f} s)")
    output = job.output_name if result.status in ("done", "skipped") else None
    out.result(_record(job.input_name, output, model, result.seconds, result.status, result.error))


def _record(
    input_name: str, output: str | None, model: str | None, seconds: float, status: str, error: str | None
) -> dict[str, Any]:
    """One ``--json`` line: status is done, skipped, failed, interrupted or ignored (not an image)."""
    return {
        "input": input_name,
        "output": output,
        "model": model,
        "seconds": round(seconds, 3),
        "status": status,
        "error": error,
    }


def _report_summary(out: Output, summary: BatchSummary, plan: BatchPlan) -> None:
    """One line: what was written for a single image (a failure already said why), else the counts."""
    if len(plan.jobs) == 1 and not plan.not_images and not summary.interrupted:
        if summary.count("done"):
            out.info(f"wrote {plan.jobs[0].output_name} ({summary.seconds:.1f} s)")
        return
    counts = [f"{summary.count(status)} {status}" for status in ("done", "skipped", "failed")]
    if plan.not_images:
        counts.append(f"{len(plan.not_images)} ignored (not images)")
    line = f"{', '.join(counts)} in {summary.seconds:.1f} s"
    if summary.interrupted:
        out.error(f"interrupted: {line}")
    else:
        out.info(line)
