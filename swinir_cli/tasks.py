"""The task vocabulary as data: what ``upscale``, ``denoise`` and ``dejpeg`` are, in one place.

Each :class:`Task` says which setting picks its model (the level key and the levels the authors released),
how outputs are named, the window of its released models, how results are measured (crop border, PSNR-B).
The registry, the evaluation, the estimators and the command line read it from here.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "AUTO",
    "DEJPEG",
    "DENOISE",
    "LEVEL_KEY",
    "LEVEL_RANGE",
    "TASKS",
    "TASK_NAMES",
    "UPSCALE",
    "Task",
    "task_named",
]

#: The ``--sigma``/``--quality`` (and ``--tile``) value that means "estimate it for each image".
AUTO = "auto"


@dataclass(frozen=True)
class Task:
    """One restoration task.

    ``level_key`` is the setting that picks a model (``scale``, ``sigma`` or ``quality``), ``levels`` the
    values the authors released, ``level_range`` the values a registry entry may have; ``window`` is the
    window size of the released models; ``psnrb`` whether evaluation adds PSNR-B (JPEG artifacts).
    """

    name: str
    level_key: str
    levels: tuple[int, ...]
    level_range: tuple[int, int]
    window: int
    psnrb: bool
    default_suffix: str
    summary: str

    def __post_init__(self) -> None:
        low, high = self.level_range
        if not self.levels or not all(low <= level <= high for level in self.levels):
            raise ValueError(f"task {self.name}: levels {self.levels} outside {self.level_range}")

    @property
    def upscales(self) -> bool:
        return self.level_key == "scale"

    def suffix(self, scale: float | None = None) -> str:
        """The default output suffix: ``_x4`` (the final factor) for upscaling, else a fixed word."""
        if self.upscales and scale is not None:
            return f"_x{scale:g}"
        return self.default_suffix

    def crop_border(self, scale: int) -> int:
        """Pixels not measured on each side: the scale for super-resolution, else none."""
        return scale if self.upscales else 0

    def level_label(self, level: int) -> str:
        """The setting for people: ``x4``, ``sigma 25`` or ``quality 10``."""
        return f"x{level}" if self.upscales else f"{self.level_key} {level}"

    @property
    def levels_metavar(self) -> str:
        """``2|3|4|8``: the released levels, as help shows them."""
        return "|".join(str(level) for level in self.levels)


UPSCALE = Task(
    "upscale", "scale", (2, 3, 4, 8), (1, 16), window=8, psnrb=False, default_suffix="_upscaled",
    summary="super-resolution",
)  # fmt: skip
DENOISE = Task(
    "denoise", "sigma", (15, 25, 50), (1, 255), window=8, psnrb=False, default_suffix="_denoised",
    summary="Gaussian noise removal",
)  # fmt: skip
DEJPEG = Task(
    "dejpeg", "quality", (10, 20, 30, 40), (1, 100), window=7, psnrb=True, default_suffix="_dejpeg",
    summary="JPEG artifact removal",
)  # fmt: skip

#: Every task by name, in the order commands and messages list them.
TASKS: dict[str, Task] = {task.name: task for task in (UPSCALE, DENOISE, DEJPEG)}
TASK_NAMES: tuple[str, ...] = tuple(TASKS)
LEVEL_KEY: dict[str, str] = {task.name: task.level_key for task in TASKS.values()}
LEVEL_RANGE: dict[str, tuple[int, int]] = {task.level_key: task.level_range for task in TASKS.values()}


def task_named(name: str) -> Task:
    """The task called ``name``.

    Raises:
        ValueError: no task has that name (the message lists the tasks).
    """
    try:
        return TASKS[name]
    except KeyError:
        raise ValueError(f"unknown task {name!r}; expected one of {', '.join(TASK_NAMES)}") from None
