"""``swinir eval``: PSNR/SSIM (and PSNR-B) against ground truth, the authors' way.

Two modes: with a model (``MODEL`` or ``--weights``) the inputs are restored and measured exactly as
``main_test_swinir.py`` does (see :mod:`swinir_cli.evaluate`); with ``--restored DIR`` existing outputs of
any tool are measured. The table goes to standard output, or to standard error with ``--json``, where
standard output carries a single JSON line ``{"images": [...], "average": {...}}``.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape
from rich.table import Table

from ..download import verified_weights_path
from ..errors import UsageError
from ..registry import get_model
from .options import parse_tile
from .output import Output

# The evaluation modules load PyTorch: commands import them when they run, so `swinir --help` stays fast.
if TYPE_CHECKING:
    from ..evaluate import EvalSettings, ImagePair, ImageResult
    from ..pipeline import Restorer

_HEADINGS = {
    "psnr": "PSNR",
    "ssim": "SSIM",
    "psnr_y": "PSNR-Y",
    "ssim_y": "SSIM-Y",
    "psnrb": "PSNR-B",
    "psnrb_y": "PSNR-B-Y",
}


def register(app: typer.Typer) -> None:
    app.command("eval")(evaluate)


def evaluate(
    gt: Annotated[Path, typer.Option("--gt", help="Folder of ground-truth images.", show_default=False)],
    model: Annotated[
        str | None,
        typer.Argument(help="Registry model name (see `swinir models`).", show_default=False),
    ] = None,
    weights: Annotated[
        Path | None, typer.Option("--weights", "-w", help="A local SwinIR checkpoint (.pth or .safetensors).")
    ] = None,
    lq: Annotated[
        Path | None,
        typer.Option(
            "--lq",
            help="Folder of degraded inputs (SR: baby.png pairs with babyx4.png, baby_x4.png or baby.png). "
            "Without it, noisy/JPEG inputs are synthesised as the authors do.",
            show_default=False,
        ),
    ] = None,
    restored: Annotated[
        Path | None,
        typer.Option(
            "--restored",
            help="Measure these existing results instead of running a model (baby.png pairs with baby.png, "
            "baby_x4.png, baby_SwinIR.png...).",
            show_default=False,
        ),
    ] = None,
    save: Annotated[
        Path | None,
        typer.Option("--save", help="Keep the restored images here (<name>_SwinIR.png).", show_default=False),
    ] = None,
    task: Annotated[
        str | None,
        typer.Option(
            "--task",
            help="upscale, denoise or dejpeg (default: from the model). With --restored, dejpeg adds PSNR-B.",
            show_default=False,
        ),
    ] = None,
    sigma: Annotated[
        int | None,
        typer.Option(
            "--sigma", min=0, help="Noise level to synthesise (default: the model's).", show_default=False
        ),
    ] = None,
    quality: Annotated[
        int | None,
        typer.Option(
            "--quality",
            min=1,
            max=100,
            help="JPEG quality to synthesise (default: the model's).",
            show_default=False,
        ),
    ] = None,
    scale: Annotated[
        int | None,
        typer.Option(
            "--scale",
            "-s",
            min=1,
            help="With --restored: the SR factor (that border is not measured). Else: must match the model.",
            show_default=False,
        ),
    ] = None,
    tile: Annotated[
        str,
        typer.Option(
            "--tile", help="Tile side in input pixels, 0 for the whole image (the authors' way), or 'auto'."
        ),
    ] = "0",
    tile_overlap: Annotated[
        int | None,
        typer.Option(
            "--tile-overlap", min=0, help="Overlap between tiles in input pixels.", show_default=False
        ),
    ] = None,
    device: Annotated[str, typer.Option("--device", help="auto, cpu, cuda, cuda:N or mps.")] = "auto",
    tta: Annotated[
        bool, typer.Option("--tta", help="x8 self-ensemble (flips and rotations averaged), 8x slower.")
    ] = False,
    json: Annotated[
        bool, typer.Option("--json", help="One JSON line with every figure on standard output.")
    ] = False,
    quiet: Annotated[
        bool, typer.Option("--quiet", "-q", help="Print errors only (and the JSON line).")
    ] = False,
) -> None:
    """Measure PSNR/SSIM (RGB and Y) and PSNR-B against ground truth, exactly as the SwinIR authors do."""
    from ..evaluate import (
        METRIC_KEYS,
        TASKS,
        EvalSettings,
        average,
        check_synthesis,
        pair_lq_images,
    )

    out = Output(quiet=quiet, json_lines=json)
    if task is not None and task not in TASKS:
        raise UsageError(f"--task must be one of {', '.join(TASKS)}, not {task!r}")
    if restored is not None:
        if model is not None or weights is not None or lq is not None:
            raise UsageError("--restored measures existing images; drop MODEL, --weights and --lq")
        scale = scale or 1
        settings = EvalSettings(task or ("upscale" if scale > 1 else "denoise"), scale=scale)
        results = _evaluate_restored(out, gt, restored, settings)
    else:
        restorer, settings = _load(
            out, model, weights, task, sigma, quality, scale, device, tile, tile_overlap
        )
        pairs = pair_lq_images(gt, lq, settings.scale)
        if lq is None:
            check_synthesis(settings)
        results = _run(out, restorer, pairs, settings, save, tta)
    means = average(results)
    _print_table(out, results, means)
    out.result({"images": [r.record() for r in results], "average": {k: means[k] for k in METRIC_KEYS}})


def _load(
    out: Output,
    model: str | None,
    weights: Path | None,
    task: str | None,
    sigma: int | None,
    quality: int | None,
    scale: int | None,
    device: str,
    tile: str,
    tile_overlap: int | None,
) -> tuple[Restorer, EvalSettings]:
    """The restorer and settings for MODEL or --weights, with the model's own level as default."""
    from ..evaluate import EvalSettings, infer_task
    from ..pipeline import (
        Restorer,
        select_device,
    )

    if (model is None) == (weights is None):
        raise UsageError("give a MODEL name or --weights FILE (or --restored DIR to measure existing images)")
    levels: dict[str, int | None] = {"sigma": sigma, "quality": quality}
    if model is not None:
        entry = get_model(model)
        if task is not None and task != entry.task:
            raise UsageError(f"model '{entry.name}' is a {entry.task} model, not {task}")
        if entry.task == "denoise" and sigma is None:
            levels["sigma"] = entry.level
        if entry.task == "dejpeg" and quality is None:
            levels["quality"] = entry.level
        path = verified_weights_path(entry)
    else:
        assert weights is not None
        path = weights
    restorer = Restorer.from_weights(
        path,
        device=select_device(device),
        tile=parse_tile(tile),
        tile_overlap=tile_overlap,
        on_warning=out.warning,
    )
    settings = EvalSettings(task or infer_task(restorer.model.config), scale=restorer.scale, **levels)
    if scale is not None and scale != restorer.scale:
        raise UsageError(f"{path} upscales x{restorer.scale}, not x{scale}")
    if (settings.task == "upscale") != (restorer.scale > 1):
        raise UsageError(f"{path} has scale x{restorer.scale}, which does not fit --task {settings.task}")
    return restorer, settings


def _run(
    out: Output,
    restorer: Restorer,
    pairs: list[ImagePair],
    settings: EvalSettings,
    save: Path | None,
    tta: bool,
) -> list[ImageResult]:
    from ..evaluate import evaluate_model

    what = f"{settings.task} x{settings.scale}" if settings.task == "upscale" else settings.task
    if pairs[0].other is None:
        level = f"sigma {settings.sigma}" if settings.task == "denoise" else f"quality {settings.quality}"
        what += f", inputs synthesised at {level}"
    out.info(f"evaluating {len(pairs)} image(s): {what}" + (", x8 self-ensemble" if tta else ""))
    with out.progress("evaluating", len(pairs), unit="images") as bar:
        done = []

        def finished(result: ImageResult) -> None:
            done.append(result)
            bar.update(len(done), len(pairs))

        return evaluate_model(restorer, pairs, settings, save_dir=save, tta=tta, on_image=finished)


def _evaluate_restored(out: Output, gt: Path, restored: Path, settings: EvalSettings) -> list[ImageResult]:
    from ..evaluate import (
        evaluate_restored,
        pair_restored_images,
    )

    pairs, unmatched = pair_restored_images(gt, restored)
    if unmatched:
        shown = ", ".join(p.name for p in unmatched[:5]) + (" ..." if len(unmatched) > 5 else "")
        out.info(f"ignoring {len(unmatched)} file(s) in {restored} that match no ground truth: {shown}")
    return evaluate_restored(pairs, settings)


def _print_table(out: Output, results: list[ImageResult], means: dict[str, float | None]) -> None:
    """The per-image table with the average as last row: stdout, or stderr when stdout carries JSON."""
    from ..evaluate import METRIC_KEYS

    if out.quiet:
        return
    keys = [k for k in METRIC_KEYS if means[k] is not None]
    table = Table(show_footer=False)
    table.add_column("image")
    for key in keys:
        table.add_column(_HEADINGS[key], justify="right")
    for result in results:
        table.add_row(escape(result.name), *(_format(key, result.metrics[key]) for key in keys))
    table.add_section()
    table.add_row("[bold]average[/]", *(f"[bold]{_format(key, means[key])}[/]" for key in keys))
    (out.err if out.json_lines else out.out).print(table)


def _format(key: str, value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.4f}" if key.startswith("ssim") else f"{value:.2f}"
