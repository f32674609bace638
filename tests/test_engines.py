"""The engine table (swinir_cli.engines): --engine comes from it, and a new engine is a few lines."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import SR_X2, TINY, needs_shared, save_rgb

from swinir_cli import cpu, engines
from swinir_cli.cli import main
from swinir_cli.engines import (
    ENGINES,
    EngineContext,
    EngineSpec,
    Forward,
    auto_engines,
    engine_names,
    register_engine,
    resolve_engine,
)
from swinir_cli.engines.torch_eager import eager_forward
from swinir_cli.errors import UsageError
from swinir_cli.imageio import read_image
from swinir_cli.pipeline import Restorer
from swinir_cli.settings import RestoreSettings

Register = Callable[[EngineSpec], EngineSpec]


@pytest.fixture
def register() -> Iterator[Register]:
    """``register_engine`` for this test only: the engines it adds leave the table afterwards."""
    added: list[str] = []

    def add(spec: EngineSpec) -> EngineSpec:
        added.append(spec.name)
        return register_engine(spec)

    yield add
    for name in added:
        del ENGINES[name]


@pytest.fixture
def bf16_cpu(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """The CPU claims native bf16, which the Restorer asks for: PyTorch emulates it where the CPU lacks it
    (see test_pipeline), so the numbers are checked on any CPU."""
    fake = tmp_path / "cpuinfo"
    fake.write_text("processor\t: 0\nflags\t\t: avx512f avx512_bf16\n")
    monkeypatch.setattr(cpu, "CPUINFO", fake)


@needs_shared
def test_a_registered_engine_computes_the_command_s_pixels(tmp_path: Path, register: Register) -> None:
    calls: list[tuple[int, ...]] = []

    def zeros(context: EngineContext) -> Forward:
        eager = eager_forward(context)

        def forward(x: torch.Tensor) -> torch.Tensor:
            calls.append(tuple(x.shape))
            return torch.zeros_like(eager(x))  # black: nothing the network itself would give

        return forward

    register(EngineSpec("zeros", "Zeros", ("cpu",), ("fp32",), "a black image", zeros))
    image = save_rgb(tmp_path / "a.png")
    common = ["upscale", str(image), "-w", str(SR_X2), "--device", "cpu", "--tile", "0", "--quiet"]
    assert main([*common, "--engine", "zeros", "-o", str(tmp_path / "zeros.png")]) == 0
    assert main([*common, "--engine", "torch", "-o", str(tmp_path / "torch.png")]) == 0
    assert len(calls) == 1  # one whole image, through the new engine only
    through = read_image(tmp_path / "zeros.png").pixels
    assert through.shape == (40, 48, 3) and not through.any()
    assert read_image(tmp_path / "torch.png").pixels.any()


@needs_shared
@pytest.mark.usefixtures("bf16_cpu")
def test_any_engine_s_overflow_is_recomputed_once_in_fp32(register: Register) -> None:

    def overflowing(context: EngineContext) -> Forward:
        return lambda x: torch.full((x.shape[0], 3, x.shape[2] * 2, x.shape[3] * 2), float("inf"))

    register(EngineSpec("overflows", "Overflows", ("cpu",), ("bf16",), "inf everywhere", overflowing))
    warnings: list[str] = []
    settings = RestoreSettings(device="cpu", tile=0, precision="bf16", engine="overflows")
    restorer = Restorer.from_weights(SR_X2, settings, on_warning=warnings.append)
    pixels = np.load(TINY / "sr_pixelshuffle_x2.npz")["image_u8"]
    fp32 = Restorer.from_weights(SR_X2, RestoreSettings(device="cpu", tile=0)).restore_pixels(pixels)
    np.testing.assert_array_equal(restorer.restore_pixels(pixels), fp32)
    assert warnings == ["bf16 overflowed on a tile; recomputed it in fp32"]


@needs_shared
def test_only_engines_that_take_the_valid_region_get_shape_buckets(register: Register) -> None:
    assert {name for name, spec in ENGINES.items() if spec.takes_valid} == {"torch", "compiled"}
    register(EngineSpec("plain", "Plain", ("cpu",), ("fp32",), "forward(x) only", eager_forward))
    on = RestoreSettings(device="cpu", tile=0, shape_buckets="on")
    assert Restorer.from_weights(SR_X2, on).shape_buckets
    assert not Restorer.from_weights(SR_X2, replace(on, engine="plain")).shape_buckets


@needs_shared
@pytest.mark.usefixtures("bf16_cpu")
def test_a_bucketed_overflow_is_recomputed_in_fp32_on_the_valid_region(register: Register) -> None:
    """The fp32 recompute of a bucketed input computes the authors' region too: the exact shapes' pixels."""
    seen: list[tuple[int, ...]] = []

    def overflowing(context: EngineContext) -> Forward:
        def forward(x: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
            seen.append(tuple(valid.shape))
            return torch.full((x.shape[0], 3, x.shape[2] * 2, x.shape[3] * 2), float("inf"))

        return forward

    spec = EngineSpec("validinf", "Valid inf", ("cpu",), ("bf16",), "inf", overflowing, takes_valid=True)
    register(spec)
    settings = RestoreSettings(device="cpu", tile=0, precision="bf16", engine="validinf", shape_buckets="on")
    pixels = np.load(TINY / "sr_pixelshuffle_x2.npz")["image_u8"]
    restored = Restorer.from_weights(SR_X2, settings, on_warning=lambda _line: None).restore_pixels(pixels)
    exact = Restorer.from_weights(SR_X2, RestoreSettings(device="cpu", tile=0)).restore_pixels(pixels)
    assert seen == [(64, 64)]  # the 29x37 image's padded 32x40, in its bucket
    assert np.abs(restored.astype(np.int16) - exact.astype(np.int16)).max() <= 1


@needs_shared
@pytest.mark.usefixtures("bf16_cpu")
def test_overflow_on_several_tiles_is_said_once_per_run(register: Register) -> None:
    calls: list[torch.dtype] = []

    def overflowing_below_fp32(context: EngineContext) -> Forward:
        def forward(x: torch.Tensor) -> torch.Tensor:
            calls.append(context.dtype)
            return torch.full((x.shape[0], 3, x.shape[2] * 2, x.shape[3] * 2), float("inf"))

        return forward

    register(EngineSpec("halfinf", "Half inf", ("cpu",), ("bf16",), "inf in bf16", overflowing_below_fp32))
    warnings: list[str] = []
    settings = RestoreSettings(device="cpu", tile=8, tile_overlap=0, precision="bf16", engine="halfinf")
    restorer = Restorer.from_weights(SR_X2, settings, on_warning=warnings.append)
    pixels = np.load(TINY / "sr_pixelshuffle_x2.npz")["image_u8"]
    reference = RestoreSettings(device="cpu", tile=8, tile_overlap=0)
    fp32 = Restorer.from_weights(SR_X2, reference).restore_pixels(pixels)
    for _ in range(2):  # two images of one run
        np.testing.assert_array_equal(restorer.restore_pixels(pixels), fp32)
    assert len(calls) >= 4 and set(calls) == {torch.bfloat16}  # every tile overflowed
    assert warnings == ["bf16 overflowed on a tile; recomputed it in fp32"]


def test_engine_help_and_choices_list_the_table(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    assert engine_names() == ("auto", *ENGINES) and {"torch", "openvino"} <= set(ENGINES)
    monkeypatch.setenv("COLUMNS", "250")  # one line per option: the choices are not wrapped
    assert main(["upscale", "--help"]) == 0
    shown = capsys.readouterr().out
    assert "|".join(engine_names()) in shown
    for spec in ENGINES.values():
        assert f"{spec.name}: {spec.help}" in shown
    assert main(["upscale", "a.png", "--engine", "tensorrt"]) == 2
    error = capsys.readouterr().err
    assert "unknown engine 'tensorrt'" in error and "auto, torch, openvino" in error


def test_auto_is_the_first_engine_that_runs_on_the_device(register: Register) -> None:
    assert resolve_engine("auto", "cpu").name == "torch"
    assert resolve_engine("auto", "cuda").name == "torch"
    register(EngineSpec("later", "Later", ("cpu",), ("fp32",), "after torch", eager_forward))
    assert resolve_engine("auto", "cpu").name == "torch"  # the table's order decides


def test_auto_passes_over_an_engine_it_may_not_choose(monkeypatch: pytest.MonkeyPatch) -> None:
    named_only = EngineSpec("named", "Named", ("cpu",), ("fp32",), "when named", eager_forward, in_auto=False)
    first_choice = EngineSpec("first", "First", ("cpu",), ("fp32",), "preferred", eager_forward)
    monkeypatch.setattr(engines, "ENGINES", {"named": named_only, **ENGINES})
    assert resolve_engine("auto", "cpu").name == "torch"  # the table's first, but not for auto
    assert resolve_engine("named", "cpu") is named_only
    assert auto_engines() == tuple(ENGINES.values())[:2]
    monkeypatch.setattr(engines, "ENGINES", {"first": first_choice, **ENGINES})
    assert resolve_engine("auto", "cpu") is first_choice
    # unmeasured on whole runs (its first call compiles): used only when named, as its help says
    assert not ENGINES["compiled"].in_auto and "compiled" not in [spec.name for spec in auto_engines()]


def test_an_engine_refuses_what_it_does_not_take(register: Register) -> None:
    with pytest.raises(UsageError, match="unknown engine 'tensorrt'"):
        resolve_engine("tensorrt", "cpu")
    # No GPU here: only the device type is needed to refuse OpenVINO off the CPU.
    with pytest.raises(UsageError, match="runs on the CPU, not cuda; use --engine torch"):
        resolve_engine("openvino", "cuda")
    with pytest.raises(UsageError, match="computes in fp32, bf16, not fp16"):
        resolve_engine("openvino", "cpu", "fp16")
    register(
        EngineSpec(
            "missing", "Missing", ("cpu",), ("fp32",), "needs a package", eager_forward,
            requires="swinir_no_such_package", install_hint="pip install swinir-no-such-package",
        )
    )  # fmt: skip
    with pytest.raises(UsageError, match="needs the swinir_no_such_package package: pip install"):
        resolve_engine("missing", "cpu")


def test_the_table_refuses_malformed_or_duplicate_engines() -> None:
    with pytest.raises(ValueError, match="other than auto"):
        EngineSpec("auto", "Auto", ("cpu",), ("fp32",), "", eager_forward)
    with pytest.raises(ValueError, match="device types"):
        EngineSpec("tpu", "TPU", ("tpu",), ("fp32",), "", eager_forward)
    with pytest.raises(ValueError, match="precisions"):
        EngineSpec("int8", "Int8", ("cpu",), ("int8",), "", eager_forward)
    with pytest.raises(ValueError, match="registered already"):
        register_engine(ENGINES["torch"])
