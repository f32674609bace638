"""``swinir eval``: PSNR/SSIM (and PSNR-B) against ground truth, the authors' way.

Two modes: with a model (``MODEL`` or ``--weights``) the inputs are restored and measured exactly as
``main_test_swinir.py`` does (see :mod:`swinir_cli.evaluate`); with ``--restored DIR`` existing outputs of
any tool are measured. The table goes to standard output, or to standard error with ``--json``, where
standard output carries a single JSON line ``{"images": [...], "average": {...}}``: strict JSON, an
infinite figure (PSNR of identical images) null and named in that object's ``"infinite"`` list.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.markup import escape
from rich.table import Table

from ..errors import UsageError
from ..matlab_resize import PASS_MODES
from ..resolve import ModelRequest, check_request, named_entry, open_restorer
from ..tasks import TASKS, Task, task_for
from ..text import printable
from . import options as o
from .options import check_tiling
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
    app.command("eval", add_help_option=False)(evaluate)


def evaluate(
    gt: o.GroundTruth,
    model: o.EvalModel = None,
    weights: o.Weights = None,
    lq: o.Degraded = None,
    restored: o.Restored = None,
    suffix: o.RestoredSuffix = None,
    save: o.Save = None,
    save_lq: o.SaveLq = None,
    task: o.EvalTask = None,
    sigma: o.SynthesisSigma = None,
    quality: o.SynthesisQuality = None,
    scale: o.EvalScale = None,
    lq_resize: o.LqResize = "integer",
    tile: o.Tile = "0",
    tile_overlap: o.TileOverlap = None,
    device: o.EvalDevice = "auto",
    tta: o.Tta = False,
    json: o.Json = False,
    quiet: o.Quiet = False,
    version: o.Version = False,
    show_help: o.Help = False,
) -> None:
    """Measure PSNR/SSIM (RGB and Y) and PSNR-B against ground truth, exactly as the SwinIR authors do.

    [b]Examples[/]

      swinir eval classical-x2 --gt Set5/HR --lq Set5/LR_bicubic/X2

      swinir eval classical-x4 --gt DIV2K_valid_HR    [dim]# inputs made with MATLAB's bicubic imresize[/]

      swinir eval denoise-color-25 --gt McMaster    [dim]# noise synthesised as the authors do[/]

      swinir eval --restored results/ --gt Set5/HR --scale 4
    """
    from ..evaluate import average, check_output_folder, json_figures

    out = Output(quiet=quiet, json_lines=json)
    if task is not None and task not in TASKS:
        raise UsageError(f"--task must be one of {', '.join(TASKS)}, not {task!r}")
    if lq_resize not in PASS_MODES:
        raise UsageError(f"--lq-resize must be one of {', '.join(PASS_MODES)}, not {lq_resize!r}")
    if restored is not None:
        model_run = {"MODEL": model, "--weights": weights, "--lq": lq, "--save": save, "--save-lq": save_lq}
        given = [name for name, value in model_run.items() if value is not None]
        if given:
            raise UsageError(f"--restored measures existing images; drop {', '.join(given)}")
        settings = _restored_settings(out, task, scale)
        results = _evaluate_restored(out, gt, restored, settings, suffix)
    else:
        if suffix is not None:
            raise UsageError("--suffix names the images of --restored; drop it when a model runs")
        if save_lq is not None and lq is not None:
            raise UsageError("--save-lq keeps inputs synthesised from --gt; with --lq they are files already")
        for folder, option in ((save, "--save"), (save_lq, "--save-lq")):
            if folder is not None:
                check_output_folder(folder, option, [gt])
        request = _request(model, weights, task, scale)
        level = {"sigma": sigma, "quality": quality}.get(request.kind.level_key)
        restorer, settings = _load(out, request, level, lq_resize, device, o.parse_tile(tile), tile_overlap)
        results = _run(out, restorer, _pairs(gt, lq, settings), settings, (save, save_lq), tta)
    means = average(results)
    _print_table(out, results, means)
    out.result({"images": [r.record() for r in results], "average": json_figures(means)})


def _restored_settings(out: Output, task: str | None, scale: int | None) -> EvalSettings:
    """Settings for ``--restored``: the crop border comes from --scale, and is said when it is a guess."""
    from ..evaluate import EvalSettings

    chosen = TASKS[task] if task is not None else task_for(scale or 1)
    if chosen.upscales and scale is None:
        raise UsageError(f"--task {chosen.name} with --restored needs --scale N (its border is not measured)")
    settings = EvalSettings(chosen.name, scale=scale or 1)
    if scale is None:
        out.info("measuring every pixel (crop border 0); pass --scale N for super-resolution results")
    return settings


def _request(model: str | None, weights: Path | None, task: str | None, scale: int | None) -> ModelRequest:
    if model is None and weights is None:
        raise UsageError("give a MODEL name or --weights FILE (or --restored DIR to measure existing images)")
    if model is not None and weights is None:
        entry = named_entry(model)
        if task is not None and task != entry.task:
            raise UsageError(f"model '{entry.name}' is a {entry.task} model, not {task}")
        return ModelRequest(entry.task, model=model, level=_asked_scale(entry.kind, scale))
    assert weights is not None
    chosen = TASKS[task] if task is not None else _checkpoint_task(weights)
    return ModelRequest(chosen.name, model, weights, level=_asked_scale(chosen, scale))


def _asked_scale(task: Task, scale: int | None) -> int | None:
    """The request's level from --scale: the factor the model must have, for an upscaling task."""
    return scale if task.upscales else None


def _checkpoint_task(weights: Path) -> Task:
    """The task a checkpoint was trained for, from its architecture (:func:`~swinir_cli.tasks.task_for`)."""
    from ..checkpoint import detect_config, read_state_dict

    config = detect_config(read_state_dict(weights))
    return task_for(config.upscale, config.window_size)


def _load(
    out: Output,
    request: ModelRequest,
    level: int | None,
    lq_resize: str,
    device: str,
    tile: int | None,
    tile_overlap: int | None,
) -> tuple[Restorer, EvalSettings]:
    """The restorer and settings of the request; ``level`` synthesises the inputs, the model's own by
    default."""
    from ..devices import select_device
    from ..evaluate import EvalSettings

    facts = check_request(request)
    check_tiling(tile, tile_overlap, facts.window)
    options = {
        "device": select_device(device),
        "tile": tile,
        "tile_overlap": tile_overlap,
        "on_warning": out.warning,
    }
    _, restorer = open_restorer(request, options)
    if level is None and facts.entry is not None:
        level = facts.entry.level
    return restorer, EvalSettings(request.task, scale=restorer.scale, level=level, lq_resize=lq_resize)


def _pairs(gt: Path, lq: Path | None, settings: EvalSettings) -> list[ImagePair]:
    from ..evaluate import check_synthesis, pair_lq_images

    pairs = pair_lq_images(gt, lq, settings.scale)
    if lq is None:
        check_synthesis(settings)
    return pairs


def _run(
    out: Output,
    restorer: Restorer,
    pairs: list[ImagePair],
    settings: EvalSettings,
    saves: tuple[Path | None, Path | None],
    tta: bool,
) -> list[ImageResult]:
    """Restore and measure; ``saves`` are the folders of ``--save`` and ``--save-lq``."""
    from ..evaluate import evaluate_model

    task = settings.kind
    what = f"{task.name} {task.level_label(settings.scale)}" if task.upscales else task.name
    if pairs[0].other is None:
        how = task.synthesis_label.format(
            key=task.level_key, level=settings.level, lq_resize=settings.lq_resize
        )
        what += f", inputs synthesised {how}"
    out.info(f"evaluating {len(pairs)} image(s): {what}" + (", x8 self-ensemble" if tta else ""))
    with out.progress("evaluating", len(pairs), unit="images") as bar:
        done = []

        def finished(result: ImageResult) -> None:
            done.append(result)
            bar.update(len(done), len(pairs))

        save, save_lq = saves
        return evaluate_model(
            restorer, pairs, settings, save_dir=save, save_lq_dir=save_lq, tta=tta, on_image=finished
        )


def _evaluate_restored(
    out: Output, gt: Path, restored: Path, settings: EvalSettings, suffix: str | None
) -> list[ImageResult]:
    from ..evaluate import evaluate_restored, pair_restored_images, restored_suffixes

    pairs, unmatched = pair_restored_images(gt, restored, settings.scale, restored_suffixes(settings, suffix))
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
        table.add_row(escape(printable(result.name)), *(_format(key, result.metrics[key]) for key in keys))
    table.add_section()
    table.add_row("[bold]average[/]", *(f"[bold]{_format(key, means[key])}[/]" for key in keys))
    (out.err if out.json_lines else out.out).print(table)


def _format(key: str, value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.4f}" if key.startswith("ssim") else f"{value:.2f}"
