"""The task vocabulary: one descriptor per task, which the registry, evaluation and command line share."""

from __future__ import annotations

import json
import re
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from helpers import save_rgb

import swinir_cli
from swinir_cli.cli import main
from swinir_cli.evaluate import EvalSettings
from swinir_cli.network import SwinIR, SwinIRConfig
from swinir_cli.registry import load_registry
from swinir_cli.resolve import ModelRequest, check_request
from swinir_cli.tasks import DEJPEG, DENOISE, TASKS, UPSCALE, Task, task_for, task_named

#: A comparison with a task name, or a task name as a string literal (a dict key, an argument).
TASK_NAME_BRANCH = re.compile(r"""task\s*[!=]=\s*["']|["'](upscale|denoise|dejpeg)["']""")


def test_every_released_level_has_a_registry_model_and_the_descriptors_say_how_to_name_and_measure() -> None:
    registry = load_registry().values()
    for task in TASKS.values():
        released = {entry.level for entry in registry if entry.task == task.name}
        assert set(task.levels) <= released, task.name
    assert UPSCALE.suffix(4) == "_x4" and UPSCALE.suffix(1.5) == "_x1.5" and DENOISE.suffix(4) == "_denoised"
    assert EvalSettings("upscale", scale=3).crop_border == 3 and EvalSettings("dejpeg").with_psnrb
    assert task_for(1, DEJPEG.window) is DEJPEG and task_for(1, 8) is DENOISE and task_for(4, 8) is UPSCALE
    assert UPSCALE.levels_metavar == "2|3|4|8"
    assert [UPSCALE.level_label(4), DENOISE.level_label(25), DEJPEG.level_label(10)] == [
        "x4",
        "sigma 25",
        "quality 10",
    ]
    assert UPSCALE.preferred_names(4, 1) == ["real-x4", "classical-x4"]
    assert DEJPEG.preferred_names(10, 1) == ["dejpeg-gray-10"]


def test_a_task_checks_its_levels_and_unknown_names_are_refused() -> None:
    with pytest.raises(ValueError, match="outside"):
        Task("x", "scale", (0,), (1, 4), 8, psnrb=False, default_suffix="_x", summary="", synthesis=print)
    with pytest.raises(ValueError, match="upscale, denoise, dejpeg"):
        task_named("deblur")


def test_no_module_but_tasks_py_branches_on_a_task_name() -> None:
    package = Path(swinir_cli.__file__).parent
    found = [
        f"{path.relative_to(package.parent)}:{number}: {line.strip()}"
        for path in sorted(package.rglob("*.py"))
        if path != package / "tasks.py"
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1)
        if TASK_NAME_BRANCH.search(line)
    ]
    assert not found, "task names outside tasks.py:\n" + "\n".join(found)


def _blurred(gt: np.ndarray, settings: EvalSettings, name: str) -> np.ndarray:
    """The throwaway task's degraded input: the ground truth blurred by its level."""
    return cv2.GaussianBlur(gt, (0, 0), settings.level).reshape(gt.shape)


SHARPEN = Task(
    "sharpen", "strength", (1, 2), (1, 5), window=8, psnrb=False, default_suffix="_sharp",
    summary="sharpening", synthesis=_blurred, per_image_channels=False, preferred_models=("sharpen-{level}",),
)  # fmt: skip


@pytest.fixture
def sharpen_task(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The task table with a throwaway x1 ``sharpen`` task, and a registry override with its one model
    ``sharpen-2`` (a tiny random SwinIR saved in tmp_path)."""
    model = SwinIR(SwinIRConfig(embed_dim=12, depths=(2,), num_heads=(2,), window_size=SHARPEN.window))
    weights = tmp_path / "sharpen.pth"
    torch.save(model.state_dict(), weights)
    registry = tmp_path / "registry.toml"
    registry.write_text(
        f'[models.sharpen-2]\ntask = "sharpen"\nstrength = 2\nurl = "{weights}"\ndescription = "tiny"\n'
    )
    monkeypatch.setitem(TASKS, SHARPEN.name, SHARPEN)
    monkeypatch.setenv("SWINIR_REGISTRY", str(registry))
    monkeypatch.setenv("SWINIR_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("COLUMNS", "200")


@pytest.mark.usefixtures("sharpen_task")
def test_a_new_task_is_listed_resolved_and_evaluated_with_no_other_module_changed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["models"]) == 0
    assert re.search(r"sharpen-2[ │]+sharpen[ │]+strength 2[ │]", capsys.readouterr().out)
    assert main(["models", "--json"]) == 0
    [record] = [r for r in json.loads(capsys.readouterr().out)["models"] if r["name"] == "sharpen-2"]
    assert (record["task"], record["strength"]) == ("sharpen", 2)

    facts = check_request(ModelRequest("sharpen", level=2))
    assert (facts.label, facts.scale, facts.window) == ("sharpen-2", 1, 8)

    gt = tmp_path / "gt"
    gt.mkdir()
    save_rgb(gt / "a.png", height=24, width=24)
    assert main(["eval", "sharpen-2", "--gt", str(gt), "--device", "cpu", "--json"]) == 0
    captured = capsys.readouterr()
    assert "sharpen, inputs synthesised at strength 2" in captured.err
    [image] = json.loads(captured.out)["images"]
    assert image["name"] == "a.png" and image["psnr"] is not None and image["psnrb"] is None
