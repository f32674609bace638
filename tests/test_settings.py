"""RestoreSettings: one value built from the options, checked once, and handed on unchanged."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from helpers import DN_COLOR, SR_X2, needs_shared, save_rgb

from swinir_cli.cli import main
from swinir_cli.cli.options import AlphaMode, Precision, restore_settings
from swinir_cli.errors import UsageError
from swinir_cli.resolve import ModelChooser, ModelRequest, load_restorer, open_restorer
from swinir_cli.settings import RestoreSettings


def test_the_defaults_are_the_commands_defaults() -> None:
    assert restore_settings({}) == RestoreSettings()
    assert RestoreSettings() == RestoreSettings(
        device="auto", tile=None, tile_overlap=None, batch=1, precision="auto", engine="auto",
        tta=False, tf32=False, alpha="bicubic",
    )  # fmt: skip


def test_options_become_settings_typed() -> None:
    values = {
        "tile": "auto", "tile_overlap": 8, "batch": 2, "device": "cpu", "precision": Precision("bf16"),
        "engine": "torch", "tta": True, "tf32": True, "alpha": AlphaMode("model"), "quiet": True,
    }  # fmt: skip
    settings = restore_settings(values)
    assert settings == RestoreSettings("cpu", None, 8, 2, "bf16", "torch", True, True, "model")
    assert type(settings.precision) is str and type(settings.alpha) is str  # not the options' enums
    assert restore_settings({"tile": "64"}).tile == 64
    with pytest.raises(UsageError, match="--tile must be a number of pixels or 'auto', not 'big'"):
        restore_settings({"tile": "big"})


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"tile": -1}, "--tile must not be negative, got -1"),
        ({"tile_overlap": -2}, "--tile-overlap must not be negative"),
        ({"batch": 0}, "--batch must be at least 1"),
        ({"precision": "fp8"}, r"unknown precision 'fp8' \(--precision\)"),
        ({"engine": "tensorrt"}, r"unknown engine 'tensorrt' \(--engine\): use auto, torch, openvino"),
        ({"alpha": "nearest"}, "--alpha must be bicubic or model, not 'nearest'"),
    ],
)
def test_a_bad_value_is_refused_naming_its_option(change: dict[str, object], message: str) -> None:
    with pytest.raises(UsageError, match=message):
        RestoreSettings(**change)  # type: ignore[arg-type]


@needs_shared
def test_the_commands_refuse_a_bad_setting_before_any_work(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    image = save_rgb(tmp_path / "a.png")
    assert main(["upscale", str(image), "-w", str(SR_X2), "--tile", "-8"]) == 2
    assert "--tile must not be negative, got -8" in capsys.readouterr().err
    assert main(["eval", "--gt", str(tmp_path), "-w", str(SR_X2), "--tile", "-8"]) == 2
    assert "--tile must not be negative, got -8" in capsys.readouterr().err
    assert not list(tmp_path.glob("a_*"))


@needs_shared
def test_the_same_settings_reach_every_restorer() -> None:
    settings = RestoreSettings(device="cpu", tile=16, tile_overlap=4, batch=2)
    request = ModelRequest("denoise", weights=DN_COLOR)
    assert ModelChooser(request, settings).fixed()[1].settings is settings
    assert open_restorer(request, settings)[1].settings is settings
    assert load_restorer(DN_COLOR, settings).settings is settings
    assert load_restorer(str(DN_COLOR), settings).settings is settings  # a string that is no model name


def test_load_restorer_refuses_what_is_neither_a_name_nor_a_file() -> None:
    with pytest.raises(UsageError, match="real-x4"):  # the close registry name is suggested
        load_restorer("real-4x")


def test_the_settings_load_no_pytorch() -> None:
    code = "import sys, swinir_cli.settings; sys.exit('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0
