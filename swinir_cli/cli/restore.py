"""``swinir upscale``, ``swinir denoise`` and ``swinir dejpeg``: one implementation, three front doors."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ..batch import STDIO, BatchSummary, Job, JobResult, OutputOptions, plan_jobs, run_jobs
from ..errors import UsageError
from ..imageio import LoadedImage
from ..pipeline import AUTO, ModelChooser, ModelRequest, select_device
from .output import Output

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
        help="Output file (one input), folder (several inputs), or '-' for "
        "standard output. Default: beside each input, named <name><suffix>.png.",
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
Suffix = Annotated[
    str | None,
    typer.Option(
        "--suffix", help="Added to output names (default: _xN, _denoised or _dejpeg).", show_default=False
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
    typer.Option("--output-quality", min=0, max=100, help="Quality of lossy outputs (JPEG, WebP)."),
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
        help="Refuse larger images (default: Pillow's limit, about 179 million).",
        show_default=False,
    ),
]
Json = Annotated[bool, typer.Option("--json", help="One JSON object per input on standard output.")]
Quiet = Annotated[bool, typer.Option("--quiet", "-q", help="Print errors only.")]

SUFFIXES = {"upscale": "_x{scale}", "denoise": "_denoised", "dejpeg": "_dejpeg"}


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
    tile: Tile = "auto",
    tile_overlap: TileOverlap = None,
    batch: Batch = 1,
    device: Device = "auto",
    suffix: Suffix = None,
    format: Format = None,
    quality: Annotated[
        int | None,
        typer.Option(
            "--quality", "--output-quality", min=0, max=100, help="Quality of lossy outputs (JPEG, WebP)."
        ),
    ] = None,
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
    _restore(
        ModelRequest("upscale", model, weights, scale=scale), **_options(locals()), output_quality=quality
    )


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
    tile: Tile = "auto",
    tile_overlap: TileOverlap = None,
    batch: Batch = 1,
    device: Device = "auto",
    suffix: Suffix = None,
    format: Format = None,
    quality: Annotated[
        int | None,
        typer.Option(
            "--quality", "--output-quality", min=0, max=100, help="Quality of lossy outputs (JPEG, WebP)."
        ),
    ] = None,
    overwrite: Overwrite = False,
    recursive: Recursive = False,
    strip_metadata: StripMetadata = False,
    max_pixels: MaxPixels = None,
    json: Json = False,
    quiet: Quiet = False,
) -> None:
    """Remove Gaussian noise. The gray or colour model is picked to match each image."""
    request = ModelRequest("denoise", model, weights, sigma=_level(sigma, "--sigma"))
    _restore(request, **_options(locals()), output_quality=quality)


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
    tile: Tile = "auto",
    tile_overlap: TileOverlap = None,
    batch: Batch = 1,
    device: Device = "auto",
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
    request = ModelRequest("dejpeg", model, weights, quality=_level(quality, "--quality"))
    _restore(request, **_options(locals()), output_quality=output_quality)


def _options(arguments: dict) -> dict:
    """The arguments every restoration command shares, from a command's ``locals()``."""
    shared = (
        "inputs",
        "output",
        "tile",
        "tile_overlap",
        "batch",
        "device",
        "suffix",
        "format",
        "overwrite",
        "recursive",
        "strip_metadata",
        "max_pixels",
        "json",
        "quiet",
    )
    return {name: arguments[name] for name in shared}


def _level(value: str, option: str) -> int | str:
    if value == AUTO:
        return AUTO
    try:
        return int(value)
    except ValueError:
        raise UsageError(f"{option} must be a number or 'auto', not {value!r}") from None


def _parse_tile(value: str) -> int | None:
    if value == AUTO:
        return None
    try:
        tile = int(value)
    except ValueError:
        raise UsageError(f"--tile must be a number of pixels or 'auto', not {value!r}") from None
    if tile < 0:
        raise UsageError(f"--tile must not be negative, got {tile}")
    return tile


def _restore(
    request: ModelRequest,
    *,
    inputs: list[str],
    output: str | None,
    tile: str,
    tile_overlap: int | None,
    batch: int,
    device: str,
    suffix: str | None,
    format: str | None,
    output_quality: int | None,
    overwrite: bool,
    recursive: bool,
    strip_metadata: bool,
    max_pixels: int | None,
    json: bool,
    quiet: bool,
) -> None:
    out = Output(quiet=quiet or output == STDIO, json_lines=json)
    if json and output == STDIO:
        raise UsageError("--json and --output - both write to standard output; choose one")
    options = OutputOptions(
        suffix=suffix if suffix is not None else SUFFIXES[request.task].format(scale=request.scale or "N"),
        format=format,
        quality=output_quality,
        strip_metadata=strip_metadata,
        overwrite=overwrite,
    )
    if request.task == "upscale" and suffix is None and request.scale is None:
        options = OutputOptions(**{**options.__dict__, "suffix": "_restored"})
    jobs, not_images = plan_jobs(inputs, output, options, recursive=recursive)
    if not_images:
        out.info(f"skipping {not_images} file(s) that are not images")
    if not jobs:
        raise UsageError("no images to restore among the inputs")

    with out.progress("restoring", None) as bar:
        chooser = ModelChooser(
            request,
            restorer_options={
                "device": select_device(device),
                "tile": _parse_tile(tile),
                "tile_overlap": tile_overlap,
                "batch": batch,
                "on_warning": out.warning,
            },
            download_progress=lambda done, total: bar.update(done, total),
            notice=out.info,
        )
        labels: dict[Job, str] = {}

        def restore_one(image: LoadedImage, job: Job) -> LoadedImage:
            label, restorer = chooser.restorer_for(image, job.source)
            labels[job] = label
            return restorer.restore_image(image, progress=lambda done, total: bar.update(done, total))

        def started(job: Job, index: int) -> None:
            bar.describe(f"[{index + 1}/{len(jobs)}] {job.input_name}")

        def finished(result: JobResult) -> None:
            if result.status == "failed":
                out.error(result.error or "failed")
            elif result.status == "skipped":
                out.info(f"{result.job.output_name} exists, skipped (--overwrite redoes it)")
            out.result(
                {
                    "input": result.job.input_name,
                    "output": result.job.output_name,
                    "model": labels.get(result.job),
                    "seconds": round(result.seconds, 3),
                    "status": result.status,
                    "error": result.error,
                }
            )

        summary = run_jobs(
            jobs, restore_one, options, max_pixels=max_pixels, on_start=started, on_result=finished
        )
    _report(out, summary, jobs)
    if summary.exit_code:
        raise typer.Exit(summary.exit_code)


def _report(out: Output, summary: BatchSummary, jobs: list[Job]) -> None:
    if len(jobs) == 1 and summary.count("done") == 1:
        out.info(f"wrote {jobs[0].output_name} ({summary.seconds:.1f} s)")
        return
    out.info(
        f"{summary.count('done')} done, {summary.count('skipped')} skipped, {summary.count('failed')} failed "
        f"in {summary.seconds:.1f} s"
    )
