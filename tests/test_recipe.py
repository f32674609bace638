"""The per-image recipe: a picklable value whose runner does in any process what the command does."""

from __future__ import annotations

import pickle
from pathlib import Path

from conftest import DN_COLOR, save_rgb

from swinir_cli.batch import Job, OutputOptions
from swinir_cli.imageio import read_image
from swinir_cli.recipe import OutputSize, RestoreRecipe, RestorerSettings
from swinir_cli.resolve import ModelRequest


def test_a_recipe_survives_pickling_and_its_runner_restores_writes_and_skips(tmp_path: Path) -> None:
    recipe = RestoreRecipe(
        ModelRequest("denoise", weights=DN_COLOR),
        RestorerSettings(device="cpu", tile=0),
        OutputOptions(suffix="_denoised"),
        OutputSize(width=12),
    )
    copy = pickle.loads(pickle.dumps(recipe))
    assert copy == recipe
    source = save_rgb(tmp_path / "a.png")
    job = Job(source, tmp_path / "a_denoised.png")
    runner = copy.runner()
    result = runner.run(job)
    assert result.status == "done" and result.model == str(DN_COLOR)
    assert read_image(job.target).pixels.shape == (10, 12, 3)
    assert runner.run(job).status == "skipped"
