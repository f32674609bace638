"""The task vocabulary as data: what ``upscale``, ``denoise`` and ``dejpeg`` are, in one place.

Each :class:`Task` says which setting picks its model (the level key and the levels the authors released),
which registry names it prefers, whether a gray or colour model is picked per image, how a level is
estimated from an image, how outputs are named, the window of its released models, how evaluation
synthesises a degraded input and measures the result (crop border, PSNR-B), and its help text. The
registry, the model resolution, the evaluation, the estimators and the command line read it from here and
branch on no task name. The functions a task points to (its estimator, its synthesis) are named by module
and imported when first called, so that this module imports neither NumPy nor PyTorch.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .errors import UsageError
from .lazy import FunctionRef

__all__ = [
    "AUTO",
    "DEJPEG",
    "DENOISE",
    "TASKS",
    "UPSCALE",
    "Task",
    "level_keys",
    "task_for",
    "task_named",
]

#: The ``--sigma``/``--quality`` (and ``--tile``) value that means "estimate it for each image".
AUTO = "auto"


@dataclass(frozen=True)
class Task:
    """One restoration task.

    ``level_key`` is the setting that picks a model (``scale``, ``sigma`` or ``quality``: the command-line
    option and the registry key), ``levels`` the values the authors released, ``level_range`` the values a
    registry entry may have; ``window`` is the window size of the released models; ``psnrb`` whether
    evaluation adds PSNR-B (JPEG artifacts).

    ``synthesis(gt, settings, name)`` makes an evaluation's degraded input from a fitted uint8 ground truth
    (:class:`~swinir_cli.evaluate.EvalSettings`), ``to_one_channel(rgb)`` turns a colour ground truth into
    what a gray model is measured against; ``estimator(image, task)`` (None: the level cannot be ``auto``)
    returns the :class:`~swinir_cli.estimate.LevelEstimate` of a
    :class:`~swinir_cli.imageio.LoadedImage`. ``upscales``: the level is the model's upscale factor;
    ``per_image_channels``: a gray or colour model is picked to match each image (else one model per
    level, for every image); ``preferred_models``: registry names tried first (``{name}``, ``{level}``,
    ``{colour}`` filled in), the rest by name; ``default_level``: the level used when none is asked.

    Words: ``help`` is the command's help (with examples), ``label_format`` the level for people
    (``{key}``, ``{level}``), ``degraded_words`` names synthesised inputs in messages (``noisy``),
    ``synthesis_label`` says how they were made (``{key}``, ``{level}``, ``{lq_resize}``), and
    ``synthesis_is_image`` is False where they are not images ``--save-lq`` could keep.
    """

    name: str
    level_key: str
    levels: tuple[int, ...]
    level_range: tuple[int, int]
    window: int
    psnrb: bool
    default_suffix: str
    summary: str
    synthesis: Callable[..., Any]
    help: str = ""
    upscales: bool = False
    per_image_channels: bool = True
    preferred_models: tuple[str, ...] = ("{name}-{colour}-{level}",)
    default_level: int | None = None
    estimator: Callable[..., Any] | None = None
    to_one_channel: Callable[..., Any] = FunctionRef("swinir_cli.imageio", "to_gray")
    label_format: str = "{key} {level}"
    degraded_words: str = "degraded"
    synthesis_label: str = "at {key} {level}"
    synthesis_is_image: bool = True

    def __post_init__(self) -> None:
        low, high = self.level_range
        if not self.levels or not all(low <= level <= high for level in self.levels):
            raise ValueError(f"task {self.name}: levels {self.levels} outside {self.level_range}")
        if self.default_level is not None and not low <= self.default_level <= high:
            raise ValueError(
                f"task {self.name}: default level {self.default_level} outside {self.level_range}"
            )
        if not self.level_key.isidentifier() or self.window < 1:
            raise ValueError(f"task {self.name}: level key {self.level_key!r}, window {self.window}")

    def suffix(self, scale: float | None = None) -> str:
        """The default output suffix: ``_x4`` (the final factor) for upscaling, else a fixed word."""
        if self.upscales and scale is not None:
            return f"_x{scale:g}"
        return self.default_suffix

    def crop_border(self, scale: int) -> int:
        """Pixels not measured on each side: the scale for super-resolution, else none."""
        return scale if self.upscales else 0

    def level_label(self, level: int | None) -> str:
        """The setting for people: ``x4``, ``sigma 25`` or ``quality 10``."""
        return self.label_format.format(key=self.level_key, level=level)

    @property
    def levels_metavar(self) -> str:
        """``2|3|4|8``: the released levels, as help shows them."""
        return "|".join(str(level) for level in self.levels)

    @property
    def estimates_level(self) -> bool:
        """Whether the level may be ``auto``: estimated from each image."""
        return self.estimator is not None

    def preferred_names(self, level: int | str, channels: int) -> list[str]:
        """The registry names tried first for ``level`` and an image of ``channels`` (1 gray, 3 colour)."""
        colour = "gray" if channels == 1 else "color"
        return [
            pattern.format(name=self.name, level=level, colour=colour) for pattern in self.preferred_models
        ]

    def estimate_level(self, image: Any) -> Any:
        """The :class:`~swinir_cli.estimate.LevelEstimate` of a loaded image.

        Raises:
            UsageError: the task has no estimator.
            ImageError: the image does not allow an estimate (the message names the option to pass).
        """
        if self.estimator is None:
            raise UsageError(f"{self.name} cannot estimate its {self.level_key}; pass --{self.level_key}")
        return self.estimator(image, self)


UPSCALE = Task(
    "upscale", "scale", (2, 3, 4, 8), (1, 16), window=8, psnrb=False, default_suffix="_upscaled",
    summary="super-resolution",
    synthesis=FunctionRef("swinir_cli.evaluate", "low_resolution_input"),
    help="""Upscale images (super-resolution): the real-world model for x2/x4, else classical.

    [b]Examples[/]

      swinir upscale photo.jpg                  [dim]# photo_x4.png beside it[/]

      swinir upscale -s 2 photos/ -o big/       [dim]# every image of photos/ into big/[/]

      swinir upscale scan.png -m classical-x4 -t 256 -o - > scan_x4.png
    """,
    upscales=True, per_image_channels=False, preferred_models=("real-x{level}", "classical-x{level}"),
    default_level=4, label_format="x{level}", degraded_words="low-resolution",
    synthesis_label="by MATLAB's bicubic imresize ({lq_resize} mode)",
)  # fmt: skip
DENOISE = Task(
    "denoise", "sigma", (15, 25, 50), (1, 255), window=8, psnrb=False, default_suffix="_denoised",
    summary="Gaussian noise removal",
    synthesis=FunctionRef("swinir_cli.evaluate", "noisy_synthesis"),
    help="""Remove Gaussian noise; the gray or colour model is picked to match each image.

    [b]Examples[/]

      swinir denoise noisy.png                  [dim]# noisy_denoised.png, noise level estimated[/]

      swinir denoise --sigma 25 -r shots/ -o clean/
    """,
    estimator=FunctionRef("swinir_cli.estimate", "noise_sigma_level"), degraded_words="noisy",
    synthesis_is_image=False,
)  # fmt: skip
DEJPEG = Task(
    "dejpeg", "quality", (10, 20, 30, 40), (1, 100), window=7, psnrb=True, default_suffix="_dejpeg",
    summary="JPEG artifact removal",
    synthesis=FunctionRef("swinir_cli.evaluate", "jpeg_synthesis"),
    help="""Remove JPEG compression artifacts; the gray or colour model is picked to match each image.

    [b]Examples[/]

      swinir dejpeg old.jpg                     [dim]# old_dejpeg.png, quality read from the file[/]

      swinir dejpeg --quality 10 '*.jpg' -o fixed/
    """,
    estimator=FunctionRef("swinir_cli.estimate", "jpeg_quality_level"),
    to_one_channel=FunctionRef("swinir_cli.evaluate", "authors_luma_u8"), degraded_words="JPEG",
)  # fmt: skip

#: Every task by name, in the order commands and messages list them.
TASKS: dict[str, Task] = {task.name: task for task in (UPSCALE, DENOISE, DEJPEG)}


def task_named(name: str) -> Task:
    """The task called ``name``.

    Raises:
        ValueError: no task has that name (the message lists the tasks).
    """
    try:
        return TASKS[name]
    except KeyError:
        raise ValueError(f"unknown task {name!r}; expected one of {', '.join(TASKS)}") from None


def task_for(scale: int, window: int | None = None) -> Task:
    """The task a model of upscale factor ``scale`` most likely does: the first upscaling task for a scale
    above 1, else the first other task, preferring one whose released models have ``window`` (the authors'
    JPEG models are the window-7 ones)."""
    candidates = [task for task in TASKS.values() if task.upscales == (scale > 1)]
    return next((task for task in candidates if task.window == window), candidates[0])


def level_keys() -> list[str]:
    """Every task's level key (``scale``, ``sigma``, ``quality``): the registry keys of a level."""
    return list(dict.fromkeys(task.level_key for task in TASKS.values()))
