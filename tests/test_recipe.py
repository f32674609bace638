"""The per-image recipe: a picklable value whose runner does in any process what the command does."""

from __future__ import annotations

import dataclasses
import pickle
from pathlib import Path

from helpers import DN_COLOR, TINY, require_shared, save_rgb

from swinir_cli.batch import OutputOptions
from swinir_cli.imageio import read_image
from swinir_cli.jobs import Job
from swinir_cli.recipe import OutputSize, RestoreRecipe
from swinir_cli.resolve import ModelRequest
from swinir_cli.settings import RestoreSettings

require_shared()


def test_a_recipe_survives_pickling_and_its_runner_restores_writes_and_skips(tmp_path: Path) -> None:
    recipe = RestoreRecipe(
        ModelRequest("denoise", weights=DN_COLOR),
        RestoreSettings(device="cpu", tile=0),
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


def test_the_settings_fingerprint_follows_what_changes_pixels_only(tmp_path: Path) -> None:
    def fingerprint(settings: RestoreSettings = RestoreSettings(), **changes: object) -> str:
        base = RestoreRecipe(ModelRequest("denoise", weights=DN_COLOR), settings, OutputOptions("_d"))
        return dataclasses.replace(base, **changes).fingerprinted().writing.settings

    plain = fingerprint()
    assert plain == fingerprint(RestoreSettings(device="cpu", batch=4, engine="torch"))  # speed, place
    changed = [
        fingerprint(RestoreSettings(tile=64)),
        fingerprint(RestoreSettings(tile_overlap=8)),
        fingerprint(RestoreSettings(precision="bf16")),
        fingerprint(RestoreSettings(tta=True)),
        fingerprint(size=OutputSize(width=300)),
        fingerprint(RestoreSettings(alpha="model")),
        fingerprint(writing=OutputOptions("_d", quality=80)),
        fingerprint(request=ModelRequest("denoise", weights=TINY / "dn_gray.pth")),
        fingerprint(request=ModelRequest("denoise", level=15)),
        fingerprint(request=ModelRequest("denoise", level=25)),
    ]
    assert len({plain, *changed}) == len(changed) + 1
    copy = tmp_path / "same_weights.pth"
    copy.write_bytes(DN_COLOR.read_bytes())  # the weights' content counts, not their path
    assert fingerprint(request=ModelRequest("denoise", weights=copy)) == plain
