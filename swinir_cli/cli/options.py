"""Every command-line option, declared once, and the parsing of values several commands share.

Each alias below is an ``Annotated`` type that a command's parameter (or a generated signature, see
:mod:`swinir_cli.cli.restore`) uses as is; the help text, short flag and metavar live only here.
"""

from __future__ import annotations

import dataclasses
import inspect
import math
from collections.abc import Mapping
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer

from ..engines import ENGINES, auto_engines, engine_names
from ..errors import UsageError
from ..formats import DEFAULT_FORMAT, format_names, quality_defaults
from ..matlab_resize import PASS_MODES
from ..settings import (
    ALPHA_MODES,
    PRECISION_CHOICES,
    SHAPE_BUCKET_CHOICES,
    SHAPE_BUCKETS_AUTO_DEVICES,
    RestoreSettings,
)
from ..tasks import AUTO, DEJPEG, DENOISE, TASKS, UPSCALE

Precision = StrEnum("Precision", [(name, name) for name in PRECISION_CHOICES])
AlphaMode = StrEnum("AlphaMode", [(name, name) for name in ALPHA_MODES])
ShapeBucketMode = StrEnum("ShapeBucketMode", [(name, name) for name in SHAPE_BUCKET_CHOICES])
#: Every restoring command's defaults (stated in :class:`~swinir_cli.settings.RestoreSettings`).
DEFAULT_SETTINGS = RestoreSettings()


def _option(*flags: str, metavar: str | None = None, **settings: Any) -> Any:
    """A ``typer.Option``; without ``metavar`` it is a flag, shown without a type (never ``<bool>``)."""
    shown = "" if metavar is None else metavar
    return typer.Option(*flags, metavar=shown, show_default=settings.pop("show_default", False), **settings)


# --- what to restore and where it goes ----------------------------------------------------------------
Inputs = Annotated[
    list[str],
    typer.Argument(
        help="Image files, folders or glob patterns; '-' reads one image from standard input.",
        metavar="INPUT",
        show_default=False,
    ),
]
OutputPath = Annotated[
    str | None,
    _option(
        "--output",
        "-o",
        metavar="PATH",
        help="Output file (one input), folder (several inputs, or a path ending in '/'), or '-' for "
        "standard output (not a terminal). Default: <name><suffix>.png beside each input file; for a "
        "folder, the folder <folder><suffix> beside it.",
    ),
]
Suffix = Annotated[
    str | None,
    _option(
        "--suffix",
        metavar="TEXT",
        help="Added to output names (default: _x4 (the factor), _denoised, _dejpeg).",
    ),
]
Format = Annotated[
    str | None,
    _option(
        "--format",
        "-f",
        metavar="FORMAT",
        help=f"Output format: {', '.join(format_names())}; default {DEFAULT_FORMAT}, or the --output file's "
        "suffix (which must agree).",
    ),
]
OutputQuality = Annotated[
    int | None,
    _option(
        "--output-quality",
        min=0,
        max=100,
        metavar="0-100",
        help=f"Quality of lossy outputs ({quality_defaults()}).",
    ),
]
Overwrite = Annotated[
    bool,
    _option(
        "--overwrite", help="Redo outputs swinir made that already exist (and the -o file, whoever made it)."
    ),
]
Recursive = Annotated[bool, _option("--recursive", "-r", help="Descend into sub-folders, mirroring them.")]
StripMetadata = Annotated[
    bool,
    _option(
        "--strip-metadata",
        help="Drop ICC profile, EXIF, PNG text and swinir's record of the input (then no resume).",
    ),
]
MaxPixels = Annotated[
    int | None,
    _option(
        "--max-pixels",
        min=1,
        metavar="N",
        help="Refuse larger inputs and outputs (default: Pillow's limit of about 89 million for inputs, "
        "16 times that for outputs).",
    ),
]

# --- which model ------------------------------------------------------------------------------------
ModelName = Annotated[
    str | None, _option("--model", "-m", metavar="NAME", help="Registry model name (see `swinir models`).")
]
Weights = Annotated[
    Path | None,
    _option("--weights", "-w", metavar="FILE", help="A local SwinIR checkpoint (.pth or .safetensors)."),
]


def _scale_option(help: str) -> Any:
    """``--scale/-s``, one of the upscaling levels; ``help`` says what it means for the command."""
    return _option("--scale", "-s", min=1, metavar=UPSCALE.levels_metavar, help=help)


Scale = Annotated[int | None, _scale_option("Upscaling factor (default: 4, or the model's).")]
EvalScale = Annotated[
    int | None,
    _scale_option(
        "Upscaling factor (default: the model's). With --restored: the factor of the results, whose border "
        "is not measured."
    ),
]
Sigma = Annotated[
    str,
    _option(
        "--sigma",
        metavar=f"{DENOISE.levels_metavar}|auto",
        help="Noise level of the input, or 'auto' (estimated per image; the nearest model is used).",
        show_default=True,
    ),
]
JpegQuality = Annotated[
    str,
    _option(
        "--quality",
        metavar=f"{DEJPEG.levels_metavar}|auto",
        help="JPEG quality of the input, or 'auto' (read from the file's quantization tables).",
        show_default=True,
    ),
]

# --- how to compute ---------------------------------------------------------------------------------
Tile = Annotated[
    str,
    _option(
        "--tile",
        "-t",
        metavar="PIXELS|auto",
        help="Largest tile side in input pixels, 0 for the whole image at once, or 'auto': the whole image "
        "when its estimated memory fits the device's budget, else the tile plan of least compute that fits.",
        show_default=True,
    ),
]
TileOverlap = Annotated[
    int | None,
    _option("--tile-overlap", min=0, metavar="PIXELS", help="Overlap between tiles (default: two windows)."),
]
Batch = Annotated[
    int, _option("--batch", min=1, metavar="N", help="Tiles per forward pass.", show_default=True)
]
Device = Annotated[
    str,
    _option(
        "--device",
        metavar="auto|cpu|cuda|cuda:N|mps|LIST",
        help="Where to compute; a comma-separated list (cuda:0,cuda:1, cuda:all, cpu,cpu) runs one worker "
        "process per device.",
        show_default=True,
    ),
]
RayOption = Annotated[
    bool,
    _option("--ray", help="Run the batch on a Ray cluster: RAY_ADDRESS, else a local one (the ray extra)."),
]
RayWorkers = Annotated[
    int | None,
    _option(
        "--ray-workers", min=1, metavar="N", help="Ray actors (default: one per GPU, else one per node)."
    ),
]
PrecisionOption = Annotated[
    Precision,
    _option(
        "--precision",
        metavar="|".join(Precision),
        help="Compute precision; auto is fp16 on CUDA GPUs of compute capability 7.0+, else fp32 "
        "(fp16 is refused on the CPU).",
        show_default=True,
    ),
]


def _engine_help() -> str:
    """``--engine``'s help: each engine of the table with its line; ``auto`` is the first of those it may
    choose that runs on the device."""
    listed = "; ".join(f"{spec.name}: {spec.help}" for spec in ENGINES.values())
    candidates = ", ".join(spec.name for spec in auto_engines())
    return f"Inference engine: {listed}; auto: the first of {candidates} that runs on the device."


EngineOption = Annotated[
    str,
    _option("--engine", metavar="|".join(engine_names()), help=_engine_help(), show_default=True),
]
Tf32 = Annotated[
    bool, _option("--tf32", help="Allow TF32 matrix products on NVIDIA GPUs (faster, less exact).")
]
Tta = Annotated[bool, _option("--tta", help="Average the 8 flips/rotations of each tile (8x slower).")]
Alpha = Annotated[
    AlphaMode,
    _option(
        "--alpha",
        metavar="bicubic|model",
        help="How transparency is resized: bicubic interpolation, or through the model.",
        show_default=True,
    ),
]


def _shape_buckets_help() -> str:
    """``--shape-buckets``' help; what ``auto`` does comes from the settings' table of devices, the engines
    that cannot take buckets from the engine table."""
    auto = f"on for {', '.join(SHAPE_BUCKETS_AUTO_DEVICES)} unless --tile 0"
    without = " or ".join(spec.label for spec in ENGINES.values() if not spec.takes_valid)
    return (
        "Pad each image or tile further (bottom and right, masked in the network) to one of a few canonical "
        "shapes, so that a run of mixed sizes pays each shape's set-up (kernel plans, compiled graphs) once; "
        "more pixels to compute, the same pixels within float rounding"
        + (f"; off with the {without} engine" if without else "")
        + f". auto: {auto}."
    )


ShapeBuckets = Annotated[
    ShapeBucketMode,
    _option(
        "--shape-buckets",
        metavar="|".join(ShapeBucketMode),
        help=_shape_buckets_help(),
        show_default=True,
    ),
]

# --- final size -------------------------------------------------------------------------------------
Outscale = Annotated[
    str | None,
    _option(
        "--outscale",
        metavar="FACTOR",
        help="Final size as a factor of the input size; the model's result is resized (area averaging to "
        "shrink, Lanczos to enlarge).",
    ),
]
Width = Annotated[
    int | None,
    _option("--width", min=1, metavar="PIXELS", help="Final width (alone: keeps the aspect ratio)."),
]
Height = Annotated[
    int | None,
    _option("--height", min=1, metavar="PIXELS", help="Final height (alone: keeps the aspect ratio)."),
]

# --- what is printed --------------------------------------------------------------------------------
Json = Annotated[bool, _option("--json", help="Machine-readable JSON on standard output.")]
Quiet = Annotated[bool, _option("--quiet", "-q", help="Print errors only.")]

# --- swinir eval ------------------------------------------------------------------------------------
EvalModel = Annotated[
    str | None,
    typer.Argument(metavar="MODEL", help="Registry model name (see `swinir models`).", show_default=False),
]
GroundTruth = Annotated[Path, _option("--gt", metavar="DIR", help="Folder of ground-truth images.")]
Degraded = Annotated[
    Path | None,
    _option(
        "--lq",
        metavar="DIR",
        help="Folder of degraded inputs (SR: baby.png pairs with babyx4.png, baby_x4.png or baby.png). "
        "Without it, inputs are synthesised from --gt as the authors made theirs: SR by MATLAB's bicubic "
        "imresize of the image cropped to a multiple of the scale, noise, JPEG.",
    ),
]
Restored = Annotated[
    Path | None,
    _option(
        "--restored",
        metavar="DIR",
        help="Measure these existing results instead of running a model (baby.png at --scale 4 pairs "
        "with baby_x4.png, babyx4_x4.png, baby_SwinIR.png or baby.png; see --suffix).",
    ),
]
RestoredSuffix = Annotated[
    str | None,
    _option(
        "--suffix",
        metavar="TEXT",
        help="With --restored: the suffix of the results' names (default: swinir's _x4, _denoised or "
        "_dejpeg, the authors' _SwinIR, or none).",
    ),
]
Save = Annotated[
    Path | None,
    _option("--save", metavar="DIR", help="Keep the restored images here (<name>_SwinIR.png); not in --gt."),
]
SaveLq = Annotated[
    Path | None,
    _option(
        "--save-lq",
        metavar="DIR",
        help="Keep the inputs synthesised from --gt here (babyx4.png at x4, to pass as --lq later); "
        "not for denoising, whose inputs are unrounded floats.",
    ),
]
LqResize = Annotated[
    str,
    _option(
        "--lq-resize",
        metavar="|".join(PASS_MODES),
        help="How SR inputs are shrunk from --gt by MATLAB's bicubic imresize: integer rounds between its "
        "two passes (MATLAB on uint8 images: the published Set5 X2-X4), float does not (on im2double "
        "data: the published Set5 X8).",
        show_default=True,
    ),
]
EvalDevice = Annotated[
    str,
    _option(
        "--device",
        metavar="auto|cpu|cuda|cuda:N|mps",
        help="Where to compute (one device).",
        show_default=True,
    ),
]
EvalTask = Annotated[
    str | None,
    _option(
        "--task",
        metavar="|".join(TASKS),
        help="The task (default: from the model). With --restored, dejpeg adds PSNR-B.",
    ),
]
SynthesisSigma = Annotated[
    int | None,
    _option("--sigma", min=0, metavar="N", help="Noise level to synthesise (default: the model's)."),
]
SynthesisQuality = Annotated[
    int | None,
    _option(
        "--quality",
        min=1,
        max=100,
        metavar="1-100",
        help="JPEG quality to synthesise (default: the model's).",
    ),
]

# --- swinir models / download -----------------------------------------------------------------------
Verify = Annotated[
    bool, _option("--verify", help="Re-hash every cached file; a corrupt one is deleted and reported.")
]
ModelNames = Annotated[
    list[str] | None,
    typer.Argument(metavar="NAME", help="Model names, as `swinir models` lists them.", show_default=False),
]
DownloadAll = Annotated[bool, _option("--all", help="Download every model of the registry.")]


def restore_settings(values: Mapping[str, Any]) -> RestoreSettings:
    """The :class:`~swinir_cli.settings.RestoreSettings` of a command's parsed options, ``values`` by
    parameter name (the settings' field names; ``tile`` as typed). A setting the command has no option
    for keeps its default.

    Raises:
        UsageError: a malformed or out-of-range value, naming its option.
    """
    names = [field.name for field in dataclasses.fields(RestoreSettings) if field.name in values]
    given = {name: str(values[name]) if isinstance(values[name], StrEnum) else values[name] for name in names}
    if "tile" in given:
        given["tile"] = parse_tile(given["tile"])
    return RestoreSettings(**given)


def parse_tile(value: str) -> int | None:
    """``--tile``: a side in input pixels, 0 for the whole image, or ``auto`` (None: fit the memory).

    Raises:
        UsageError: neither a number nor ``auto`` (a negative one is refused by the settings).
    """
    if value == AUTO:
        return None
    try:
        return int(value)
    except ValueError:
        raise UsageError(f"--tile must be a number of pixels or 'auto', not {value!r}") from None


def tile_text(tile: int | None) -> str:
    """A tile as ``--tile`` takes it (None: ``auto``)."""
    return AUTO if tile is None else str(tile)


def parse_float(value: str | None, option: str) -> float | None:
    """A float option's value (None when not given): a finite number.

    Raises:
        UsageError: not a number, or not finite (``nan``, ``inf``, or too large for a float).
    """
    if value is None:
        return None
    try:
        number = float(value)
    except ValueError:
        raise UsageError(f"{option} must be a number, not {value!r}") from None
    if not math.isfinite(number):
        raise UsageError(f"{option} must be a finite number, not {value!r}")
    return number


def check_tiling(tile: int | None, overlap: int | None, window: int) -> None:
    """Refuse a tile smaller than the model's window, or an overlap over half the tile.

    Raises:
        UsageError: naming the values and the window.
    """
    if tile and tile < window:
        raise UsageError(f"--tile {tile} is smaller than the model's window of {window} pixels")
    if tile and overlap is not None and overlap > tile // 2:
        raise UsageError(f"--tile-overlap {overlap} is more than half of --tile {tile}")


def parse_level(value: str, option: str) -> int | str:
    """``--sigma``/``--quality`` of the input: a number or ``auto``.

    Raises:
        UsageError: neither.
    """
    if value == AUTO:
        return AUTO
    try:
        return int(value)
    except ValueError:
        raise UsageError(f"{option} must be a number or 'auto', not {value!r}") from None


def parameter(name: str, alias: Any, default: Any = inspect.Parameter.empty) -> inspect.Parameter:
    """A keyword parameter ``name: alias = default`` for a generated command signature."""
    return inspect.Parameter(name, inspect.Parameter.POSITIONAL_OR_KEYWORD, default=default, annotation=alias)


def _show_version(value: bool) -> None:
    if value:
        from .._version import __version__

        typer.echo(f"swinir-cli {__version__}")
        raise typer.Exit()


def _show_help(context: typer.Context, value: bool) -> None:
    if value:
        typer.echo(context.get_help())
        raise typer.Exit()


Version = Annotated[
    bool,
    _option("--version", "-V", callback=_show_version, is_eager=True, help="Show the version and exit."),
]
Help = Annotated[
    bool, _option("--help", "-h", callback=_show_help, is_eager=True, help="Show this help and exit.")
]
