"""The task vocabulary: one descriptor per task, which the registry, evaluation and command line share."""

from __future__ import annotations

import pytest

from swinir_cli.evaluate import EvalSettings, infer_task
from swinir_cli.network import SwinIRConfig
from swinir_cli.registry import load_registry
from swinir_cli.tasks import DEJPEG, DENOISE, TASKS, UPSCALE, Task, task_named


def test_every_released_level_has_a_registry_model_and_the_descriptors_say_how_to_name_and_measure() -> None:
    registry = load_registry().values()
    for task in TASKS.values():
        released = {entry.level for entry in registry if entry.task == task.name}
        assert set(task.levels) <= released, task.name
    assert UPSCALE.suffix(4) == "_x4" and UPSCALE.suffix(1.5) == "_x1.5" and DENOISE.suffix(4) == "_denoised"
    assert EvalSettings("upscale", scale=3).crop_border == 3 and EvalSettings("dejpeg").with_psnrb
    assert infer_task(SwinIRConfig(upscale=1, window_size=DEJPEG.window)) == "dejpeg"
    assert UPSCALE.levels_metavar == "2|3|4|8"


def test_a_task_checks_its_levels_and_unknown_names_are_refused() -> None:
    with pytest.raises(ValueError, match="outside"):
        Task("x", "scale", (0,), (1, 4), window=8, psnrb=False, default_suffix="_x", summary="")
    with pytest.raises(ValueError, match="upscale, denoise, dejpeg"):
        task_named("deblur")
