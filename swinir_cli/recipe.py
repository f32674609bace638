"""The per-image work of a restoration command as one picklable value, and the runner that does it.

A :class:`RestoreRecipe` holds everything a command decided before the first image (the model request,
the :class:`~swinir_cli.pipeline.Restorer` settings, alpha handling, the output size and encoding); it is
frozen and picklable, so worker processes and Ray actors receive the very same value. In any process,
``recipe.runner(...)`` builds a :class:`RecipeRunner` that loads models lazily (once per process) and whose
:meth:`RecipeRunner.run` reads a job's input, chooses and loads its model, restores, resizes and writes it
atomically, returning the :class:`~swinir_cli.batch.JobResult` the serial command reports.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from .batch import (
    STDIO,
    BatchSummary,
    Job,
    JobResult,
    OutputOptions,
    check_output_size,
    output_pixel_limit,
    output_size,
    resize_image,
    run_jobs,
    run_one,
)
from .errors import UsageError
from .formats import DEFAULT_FORMAT, OutputFormat
from .imageio import LoadedImage, output_format
from .provenance import settings_fingerprint
from .tasks import AUTO

if TYPE_CHECKING:
    from .download import DownloadEvent
    from .resolve import ModelChooser, ModelRequest

__all__ = [
    "OutputSize",
    "RecipeRunner",
    "RestoreRecipe",
    "RestorerSettings",
    "RunProgress",
    "pixel_settings",
]

ALPHA_MODES = ("bicubic", "model")


class RunProgress(Protocol):
    """What a runner reports while it works (see :class:`~swinir_cli.cli.output.BatchProgress`)."""

    def tiles(self, done: int, total: int) -> None: ...

    def download(self, event: DownloadEvent) -> None: ...


@dataclass(frozen=True)
class RestorerSettings:
    """Keyword arguments of :class:`~swinir_cli.pipeline.Restorer` (see there for their meaning)."""

    device: str = "auto"
    tile: int | None = None
    tile_overlap: int | None = None
    batch: int = 1
    precision: str = "auto"
    tta: bool = False
    engine: str = "auto"
    tf32: bool = False

    def keywords(self) -> dict[str, Any]:
        """The settings as keyword arguments of :class:`~swinir_cli.pipeline.Restorer`."""
        return asdict(self)


@dataclass(frozen=True)
class OutputSize:
    """The final size asked for: ``outscale`` of the input size, or ``width``/``height`` (see
    :func:`~swinir_cli.batch.output_size`); none of them: the model's own size."""

    outscale: float | None = None
    width: int | None = None
    height: int | None = None

    def __post_init__(self) -> None:
        output_size((1, 1), **asdict(self))  # refuses bad combinations and sides

    @property
    def resizes(self) -> bool:
        return any(value is not None for value in asdict(self).values())

    def of(self, width: int, height: int, scale: int) -> tuple[int, int]:
        """(width, height) of the output of a ``width`` x ``height`` input through a x``scale`` model."""
        asked = output_size((width, height), **asdict(self))
        return asked if asked is not None else (width * scale, height * scale)


@dataclass(frozen=True)
class RestoreRecipe:
    """Everything decided before the first image; see the module docstring.

    Raises:
        UsageError: ``alpha`` is neither ``bicubic`` nor ``model``.
    """

    request: ModelRequest
    restorer: RestorerSettings
    writing: OutputOptions
    size: OutputSize = field(default_factory=OutputSize)
    alpha: str = "bicubic"
    max_pixels: int | None = None

    def __post_init__(self) -> None:
        if self.alpha not in ALPHA_MODES:
            raise UsageError(f"--alpha must be bicubic or model, not {self.alpha!r}")

    def fingerprinted(self) -> RestoreRecipe:
        """This recipe with :attr:`OutputOptions.settings` set to the fingerprint of
        :func:`pixel_settings` (a ``--weights`` file is hashed: do it once, before the batch)."""
        settings = settings_fingerprint(pixel_settings(self))
        return dataclasses.replace(self, writing=dataclasses.replace(self.writing, settings=settings))

    def runner(
        self,
        *,
        on_warning: Callable[[str], None] | None = None,
        progress: RunProgress | None = None,
        notice: Callable[[str], None] | None = None,
    ) -> RecipeRunner:
        """A runner for this process (models load on first use)."""
        return RecipeRunner(self, on_warning=on_warning, progress=progress, notice=notice)


class RecipeRunner:
    """Runs jobs by a :class:`RestoreRecipe`; models are loaded once and kept.

    ``on_warning`` receives one line per kind of loss (alpha dropped, 16 bits into 8, frames ignored, colour
    through a gray model) the first time it happens, and decoder warnings; ``notice`` the automatic model
    choices; ``progress`` the tiles and downloads.
    """

    def __init__(
        self,
        recipe: RestoreRecipe,
        *,
        on_warning: Callable[[str], None] | None = None,
        progress: RunProgress | None = None,
        notice: Callable[[str], None] | None = None,
    ) -> None:
        self.recipe = recipe
        self._warn = on_warning or (lambda message: None)
        self._progress = progress
        self._notice = notice
        self._chooser: ModelChooser | None = None
        self._models: dict[Job, str] = {}
        self._warned: set[str] = set()

    def run(self, job: Job, index: int = 0, on_start: Callable[[Job, int], None] | None = None) -> JobResult:
        """Skip, or read, restore, resize and write ``job``; see :func:`~swinir_cli.batch.run_one`."""
        recipe = self.recipe
        result = run_one(job, index, self.restore, recipe.writing, recipe.max_pixels, on_start)
        result.model = self._models.pop(job, None)
        return result

    def run_all(
        self,
        jobs: Sequence[Job],
        on_start: Callable[[Job, int], None] | None = None,
        on_result: Callable[[JobResult], None] | None = None,
    ) -> BatchSummary:
        """Every job in turn, as :func:`~swinir_cli.batch.run_jobs` runs them."""

        def finished(result: JobResult) -> None:
            result.model = self._models.pop(result.job, None)
            if on_result is not None:
                on_result(result)

        recipe = self.recipe
        return run_jobs(
            jobs,
            self.restore,
            recipe.writing,
            max_pixels=recipe.max_pixels,
            on_start=on_start,
            on_result=finished,
        )

    def prepare(self) -> str:
        """Fetch and load the one model the recipe names (before the first image); returns its label.

        Raises:
            BatchStopError: the model cannot be had, or does not fit the request.
        """
        label, _ = self._model_chooser().fixed()
        return label

    def restore(self, image: LoadedImage, job: Job) -> LoadedImage:
        """``image`` through the model it needs, resized as asked.

        Raises:
            ImageError: the output would be too large, or the level cannot be estimated from the image.
            BatchStopError: the model cannot be had, or does not fit the request.
        """
        for message in dict.fromkeys(image.warnings):
            self._warn(f"{image.name}: {message}")
        label, restorer = self._model_chooser().restorer_for(image)
        self._models[job] = label
        size = self.recipe.size.of(image.width, image.height, restorer.scale)
        check_output_size(size, output_pixel_limit(self.recipe.max_pixels), image.name)
        self._warn_losses(image, job, label, restorer.channels)
        tiles = None if self._progress is None else self._progress.tiles
        restored = restorer.restore_image(image, progress=tiles, alpha=self.recipe.alpha)
        return resize_image(restored, size) if self.recipe.size.resizes else restored

    def _model_chooser(self) -> ModelChooser:
        if self._chooser is None:
            from .devices import select_device
            from .resolve import ModelChooser

            keywords = self.recipe.restorer.keywords()
            keywords["device"] = select_device(keywords["device"])
            self._chooser = ModelChooser(
                self.recipe.request,
                restorer_options={**keywords, "on_warning": self._warn},
                download_events=None if self._progress is None else self._progress.download,
                notice=self._notice,
            )
        return self._chooser

    def _warn_losses(self, image: LoadedImage, job: Job, label: str, model_channels: int) -> None:
        fmt = _target_format(job, self.recipe.writing)
        name = image.name
        if image.alpha is not None and not fmt.alpha:
            self._warn_once("alpha", f"{name}: {fmt.name} has no alpha channel; the transparency is dropped")
        if image.bit_depth == 16 and not fmt.deep:
            self._warn_once(
                "depth", f"{name}: {fmt.name} stores 8 bits per sample; the 16-bit depth is reduced"
            )
        if image.channels == 3 and model_channels == 3 and fmt.palette_only:
            self._warn_once(
                "colours", f"{name}: {fmt.name} holds 256 colours; the result's colours are reduced"
            )
        if image.channels == 3 and model_channels == 1:
            self._warn_once(
                "gray",
                f"{name}: {label} is a gray model, so the result is gray (a colour model keeps colour)",
            )
        if image.frames > 1:
            self._warn_once(
                "frames", f"{name}: has {image.frames} frames or pages; only the first is restored"
            )

    def _warn_once(self, kind: str, message: str) -> None:
        if kind not in self._warned:
            self._warned.add(kind)
            self._warn(message + " (said once per run)")


def pixel_settings(recipe: RestoreRecipe) -> dict[str, object]:
    """Every setting of ``recipe`` that changes an output's pixels: the model (its weights' sha256, or
    the registry entries it may be chosen from, by sha256 or else URL), the level, the output size,
    precision, tiles and their overlap, TTA, TF32, alpha handling and the lossy quality. What only
    changes speed or place (device, batch, engine, workers) is left out."""
    request, restorer = recipe.request, recipe.restorer
    return {
        "task": request.task,
        "model": _model_identity(request),
        "level": request.level,
        "img_range": request.img_range,
        "size": asdict(recipe.size),
        "precision": restorer.precision,
        "tile": restorer.tile,
        "tile_overlap": restorer.tile_overlap,
        "tta": restorer.tta,
        "tf32": restorer.tf32,
        "alpha": recipe.alpha,
        "quality": recipe.writing.quality,
    }


def _model_identity(request: ModelRequest) -> list[list[str]]:
    """``[["weights", sha256]]`` for a ``--weights`` file, else ``[name, sha256 or url]`` of each registry
    entry the request may run (one when it names or fixes the model), sorted."""
    from .download import sha256_of
    from .registry import task_models
    from .resolve import check_request

    if request.weights is not None:
        return [["weights", sha256_of(request.weights)]]
    fixed = check_request(request).entry
    level = None if request.level == AUTO else request.level
    entries = [fixed] if fixed is not None else list(task_models(request.kind, level).values())
    return sorted([entry.name, entry.sha256 or entry.url] for entry in entries)


def _target_format(job: Job, writing: OutputOptions) -> OutputFormat:
    target = job.target if job.target is not None else Path(STDIO)
    return output_format(target, writing.format or (DEFAULT_FORMAT if job.target is None else None))
