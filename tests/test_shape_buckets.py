"""Shape buckets (swinir_cli.buckets, --shape-buckets): a few forward shapes for any image size, at bounded
padding, and the authors' exact shapes' pixels (the network masks the padding)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import SR_X2, TINY, needs_shared, run_swinir, save_rgb

from swinir_cli import settings
from swinir_cli.buckets import BUCKET_RUNGS, MAX_SIDE_GROWTH, bucket_side
from swinir_cli.checkpoint import load_model
from swinir_cli.errors import UsageError
from swinir_cli.imageio import read_image
from swinir_cli.pipeline import Restorer
from swinir_cli.settings import RestoreSettings


@pytest.mark.parametrize("window", [7, 8, 16])
def test_the_ladder_rises_in_window_multiples_at_bounded_waste(window: int) -> None:
    sides = range(window, 4097, window)  # padded sides are window multiples
    buckets = [bucket_side(side, window) for side in sides]
    assert all(bucket % window == 0 and bucket >= side for side, bucket in zip(sides, buckets, strict=True))
    assert buckets == sorted(buckets)  # monotone: a larger side never gets a smaller bucket
    first = bucket_side(1, window)
    assert first == -(-BUCKET_RUNGS[0] // window) * window  # smaller sides all become the first rung
    growth = max(bucket / side for side, bucket in zip(sides, buckets, strict=True) if side >= first)
    assert growth < MAX_SIDE_GROWTH
    assert len({bucket for side, bucket in zip(sides, buckets, strict=True) if side <= 1024}) <= 9
    assert bucket_side(bucket_side(500, window), window) == bucket_side(500, window)  # a bucket is its own


def test_many_image_sizes_fall_into_a_few_shapes() -> None:
    rng = np.random.default_rng(0)
    sizes = rng.integers(120, 641, size=(300, 2))
    padded = {tuple((side // 8 + 1) * 8 for side in size) for size in sizes}  # the authors' padding
    bucketed = {tuple(bucket_side(side, 8) for side in shape) for shape in padded}
    assert len(padded) > 250 and len(bucketed) <= 36  # six buckets a side between 128 and 648
    with pytest.raises(ValueError, match="positive side and window"):
        bucket_side(0, 8)


def test_auto_follows_the_table_of_devices_and_never_a_zero_tile(monkeypatch: pytest.MonkeyPatch) -> None:
    assert settings.SHAPE_BUCKETS_AUTO_DEVICES == ("cuda",)
    assert RestoreSettings().buckets_on("cuda") and RestoreSettings(tile=256).buckets_on("cuda")
    assert not RestoreSettings(tile=0).buckets_on("cuda")
    assert not RestoreSettings().buckets_on("cpu") and not RestoreSettings().buckets_on("mps")
    assert RestoreSettings(shape_buckets="on", tile=0).buckets_on("cpu")
    assert not RestoreSettings(shape_buckets="off").buckets_on("cuda")
    monkeypatch.setattr(settings, "SHAPE_BUCKETS_AUTO_DEVICES", ("cuda", "mps"))  # the table decides
    assert RestoreSettings().buckets_on("mps")
    with pytest.raises(UsageError, match="--shape-buckets must be auto, on, off, not 'maybe'"):
        RestoreSettings(shape_buckets="maybe")


def _recording(restorer: Restorer) -> list[tuple[int, int]]:
    """The (height, width) of every forward input the restorer's engine sees from now on."""
    shapes: list[tuple[int, int]] = []
    engine = restorer._engine

    def forward(x: torch.Tensor, valid: torch.Tensor | None = None) -> torch.Tensor:
        shapes.append((x.shape[-2], x.shape[-1]))
        return engine(x) if valid is None else engine(x, valid)

    restorer._engine = forward
    return shapes


def _restorers(case: str, tile: int) -> tuple[Restorer, Restorer]:
    """(without buckets, with buckets) of a tiny checkpoint on the CPU, whole images or ``tile``."""
    weights = TINY / f"{case}.pth"
    return tuple(
        Restorer.from_weights(weights, RestoreSettings(device="cpu", tile=tile, shape_buckets=mode))
        for mode in ("off", "on")
    )


#: One tiny checkpoint per kind of network: each upsampler, the 3conv real-SR layout, gray, window 7.
LAYOUTS = [
    "sr_pixelshuffle_x2",
    "sr_pixelshuffledirect_x3",
    "real_nearestconv_x4",
    "real_large_3conv_x4",
    "dn_gray",
    "car_color_w7",
]


@needs_shared
@pytest.mark.parametrize(
    ("case", "tile"), [*((case, 0) for case in LAYOUTS), ("sr_pixelshuffle_x2", 24), ("car_color_w7", 21)]
)
def test_buckets_keep_the_exact_shapes_pixels_and_the_output_shape(case: str, tile: int) -> None:
    """The tiny images (below the first rung, not square) whole or tiled: every pixel within one 8-bit
    level of the authors' exact shapes, though every forward input is a bucket."""
    exact, bucketed = _restorers(case, tile)
    pixels = np.load(TINY / f"{case}.npz")["image_u8"]
    pixels = pixels if pixels.ndim == 3 else pixels[..., None]  # gray cases are (H, W)
    exact_shapes, bucket_shapes = _recording(exact), _recording(bucketed)
    expected, produced = exact.restore_pixels(pixels), bucketed.restore_pixels(pixels)
    assert (
        produced.shape
        == expected.shape
        == (*(side * exact.scale for side in pixels.shape[:2]), pixels.shape[2])
    )
    assert np.abs(produced.astype(np.int16) - expected.astype(np.int16)).max() <= 1
    window = exact.window
    assert bucket_shapes == [tuple(bucket_side(side, window) for side in shape) for shape in exact_shapes]
    assert bucket_shapes != exact_shapes


@needs_shared
@pytest.mark.parametrize("case", LAYOUTS)
@pytest.mark.parametrize("size", [(13, 9), (70, 101)])
def test_the_bucketed_forward_equals_the_exact_one_in_floats(case: str, size: tuple[int, int]) -> None:
    """The unclamped padded forward, below one rung and across rungs, not square, two images at once."""
    exact, bucketed = _restorers(case, 0)
    x = torch.rand(2, exact.channels, *size, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        difference = (bucketed.forward_padded(x) - exact.forward_padded(x)).abs().max()
    assert difference < 1e-4


@pytest.mark.skipif(importlib.util.find_spec("openvino") is None, reason="needs the openvino extra")
@needs_shared
def test_an_engine_that_cannot_take_the_valid_region_does_not_bucket() -> None:
    settings_on = RestoreSettings(device="cpu", tile=0, engine="openvino", shape_buckets="on")
    restorer = Restorer(load_model(SR_X2), settings_on)  # no weights file: nothing cached in ../shared
    shapes = _recording(restorer)
    assert not restorer.shape_buckets and not restorer.engine.takes_valid
    pixels = np.load(TINY / "sr_pixelshuffle_x2.npz")["image_u8"]
    restorer.restore_pixels(pixels)
    assert shapes == [tuple((side // 8 + 1) * 8 for side in pixels.shape[:2])]  # the authors' shape


@needs_shared
def test_off_and_tile_zero_keep_the_authors_shapes_bit_for_bit() -> None:
    pixels = np.load(TINY / "sr_pixelshuffle_x2.npz")["image_u8"]
    default = Restorer.from_weights(SR_X2, RestoreSettings(device="cpu", tile=0)).restore_pixels(pixels)
    for exact in (
        RestoreSettings(device="cpu", tile=0),
        RestoreSettings(device="cpu", shape_buckets="off"),
    ):
        restorer = Restorer.from_weights(SR_X2, exact)
        shapes = _recording(restorer)
        np.testing.assert_array_equal(restorer.restore_pixels(pixels), default)
        assert not restorer.shape_buckets
        assert shapes == [tuple((side // 8 + 1) * 8 for side in pixels.shape[:2])]


@needs_shared
def test_the_command_takes_shape_buckets(tmp_path: Path) -> None:
    image = save_rgb(tmp_path / "a.png", height=21, width=30)
    common = ["upscale", image, "-w", SR_X2, "--device", "cpu", "--tile", "0", "--quiet"]
    assert run_swinir(*common, "--shape-buckets", "on", "-o", tmp_path / "on.png").returncode == 0
    assert run_swinir(*common, "-o", tmp_path / "exact.png").returncode == 0
    on, exact = (read_image(tmp_path / name).pixels for name in ("on.png", "exact.png"))
    assert on.shape == exact.shape == (42, 60, 3)
    assert np.abs(on.astype(np.int16) - exact.astype(np.int16)).max() <= 1
    refused = run_swinir(*common, "--shape-buckets", "maybe", "-o", tmp_path / "no.png", text=True)
    assert refused.returncode == 2 and "--shape-buckets" in refused.stderr
    shown = run_swinir("upscale", "--help", env={"COLUMNS": "250"}, text=True).stdout
    assert "--shape-buckets" in shown and "auto|on|off" in shown


@needs_shared
def test_the_automatic_tile_leaves_room_for_the_buckets_growth() -> None:
    exact = Restorer.from_weights(SR_X2, RestoreSettings(device="cpu"))
    bucketed = Restorer.from_weights(SR_X2, RestoreSettings(device="cpu", shape_buckets="on"))
    assert 0 < bucketed.auto_tile(3000, 3000) < exact.auto_tile(3000, 3000)
