"""Tiled inference: tile geometry, blending weights, exactness, band assembly, seams.

Most tests use :class:`helpers.LocalNet`, a cheap stand-in for SwinIR whose output at a pixel depends on a 5x5
neighbourhood and on the pixel's position within its window (anchored at the tile origin, as SwinIR's
windows are). The seam acceptance test runs the real SwinIR-S x4 reference checkpoint (random weights).
"""

from __future__ import annotations

import ast
import hashlib
import itertools
import math
import tracemalloc
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import SHARED, WINDOW, LocalNet, needs_shared, random_image
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from swinir_cli import devices, tiling
from swinir_cli.metrics import psnr
from swinir_cli.pipeline import Restorer
from swinir_cli.settings import RestoreSettings
from swinir_cli.tiling import (
    WHOLE_IMAGE,
    TileEdges,
    axis_tiles,
    default_overlap,
    restore_tiled,
    tile_spans,
)


def quantise(chw: torch.Tensor, max_value: int = 255) -> np.ndarray:
    """The authors' quantisation, written out independently of the module."""
    levels = (chw.clamp(0, 1).numpy() * float(max_value)).round()
    return levels.transpose(1, 2, 0).astype(np.uint8 if max_value == 255 else np.uint16)


# --- geometry -----------------------------------------------------------------------------------------------


def imported_modules(module: object) -> set[str]:
    """The modules a module's source imports, relative ones written with their leading dots."""
    tree = ast.parse(Path(module.__file__).read_text())  # type: ignore[attr-defined]
    names = {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    return names | {
        "." * node.level + (node.module or "") for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)
    }


def test_tiling_knows_geometry_and_not_the_project_or_devices() -> None:
    source = Path(tiling.__file__).read_text()
    assert {name for name in imported_modules(tiling) if name.startswith((".", "swinir_cli"))} == set()
    assert "torch.cuda" not in source and "torch.device" not in source
    assert not any(name.endswith("tiling") for name in imported_modules(devices))


@settings(max_examples=300, deadline=None)
@given(
    length=st.integers(1, 700),
    tile_windows=st.integers(1, 40),
    overlap_windows=st.integers(0, 20),
    window=st.sampled_from([7, 8]),
)
def test_tiles_are_window_aligned_cover_the_side_and_overlap(
    length: int, tile_windows: int, overlap_windows: int, window: int
) -> None:
    tile, overlap = tile_windows * window, min(overlap_windows, tile_windows // 2) * window
    spans = tile_spans(length, tile, overlap, window)
    if length < tile + window:
        assert spans == [(0, length)]
        return
    assert spans[0][0] == 0 and spans[-1][1] == length
    assert all(start % window == 0 for start, _ in spans)
    size = spans[0][1] - spans[0][0]
    assert size % window == 0 and size <= tile
    assert all(stop - start == size for start, stop in spans[:-1])
    assert size <= spans[-1][1] - spans[-1][0] < size + window
    for (start, stop), (next_start, _) in itertools.pairwise(spans):
        assert start < next_start and stop - next_start >= overlap
    # The count is the fewest that tiles of at most `tile` allow ...
    last_start = (length - tile) // window * window
    assert len(spans) == 1 + math.ceil(last_start / (tile - overlap))
    # ... the size the shortest with which that many tiles still overlap enough ...
    shorter = size - window
    if shorter >= max(window, 2 * overlap):
        assert len(tile_spans(length, shorter, overlap, window)) > len(spans)
    # ... and the starts spread evenly: consecutive steps differ by at most one window.
    steps = [b[0] - a[0] for a, b in itertools.pairwise(spans)]
    assert max(steps) - min(steps) <= window


@pytest.mark.parametrize(
    ("tile", "overlap", "window"), [(60, 8, 8), (64, 12, 8), (64, 40, 8), (64, 8, 0), (-8, 0, 8)]
)
def test_invalid_geometry_is_refused(tile: int, overlap: int, window: int) -> None:
    with pytest.raises(ValueError, match=r"tile|window"):
        tile_spans(100, tile, overlap, window)


@pytest.mark.parametrize(
    ("length", "tile", "overlap"), [(200, 64, 16), (272, 64, 16), (101, 32, 8), (64, 32, 0)]
)
@pytest.mark.parametrize("blend", ["smooth", "uniform"])
def test_weights_are_a_partition_of_unity_that_keeps_image_borders(
    length: int, tile: int, overlap: int, blend: str
) -> None:
    scale = 3
    tiles = axis_tiles(length, scale=scale, tile=tile, overlap=overlap, window=WINDOW, blend=blend)
    total = np.zeros(length * scale)
    for item in tiles:
        assert item.weight.dtype == np.float32 and np.all(item.weight > 0)
        assert item.start * scale <= item.out_start < item.out_stop <= item.stop * scale
        total[item.out_start : item.out_stop] += item.weight
    np.testing.assert_allclose(total, 1.0, atol=1e-6)
    # The image's own borders are not down-weighted: the first and last tile alone cover them.
    assert tiles[0].out_start == 0 and tiles[0].weight[0] == 1.0
    assert tiles[-1].out_stop == length * scale and tiles[-1].weight[-1] == 1.0


def test_smooth_weights_vanish_in_the_halo_and_rise_smoothly() -> None:
    scale, tile, overlap, halo = 4, 64, 16, 4
    tiles = axis_tiles(208, scale=scale, tile=tile, overlap=overlap, window=WINDOW, halo=halo)
    for item in tiles[1:]:  # left edge inner: nothing from the first `halo` input pixels
        assert item.out_start == (item.start + halo) * scale
    for item in tiles[:-1]:  # right edge inner
        assert item.out_stop == (item.stop - halo) * scale
    # Between two tiles with exactly `overlap` in common, the weight crosses 0.5 midway, without jumps.
    first, second = tiles[0], tiles[1]
    assert first.stop - second.start == overlap
    ramp = second.weight[: (overlap - 2 * halo) * scale]
    assert np.all(np.diff(ramp) > 0) and np.max(np.diff(ramp)) < 0.06
    middle = (second.start + overlap // 2) * scale - second.out_start
    assert ramp[middle - 1] < 0.5 < ramp[middle]


# --- exactness and assembly ---------------------------------------------------------------------------------


@pytest.mark.parametrize("tile", [0, 48, 400])
def test_one_covering_tile_is_bit_identical_to_the_whole_image(tile: int) -> None:
    image, net = random_image(45, 37), LocalNet(scale=3)
    expected = quantise(net(image)[0])
    result = restore_tiled(image, net, scale=3, window=WINDOW, tile=tile, overlap=16)
    assert net.calls == [(1, 3, 45, 37), (1, 3, 45, 37)]
    assert result.dtype == np.uint8 and result.shape == (135, 111, 3)
    np.testing.assert_array_equal(result, expected)


@needs_shared
def test_golden_image_through_a_covering_tile_matches_the_whole_image_forward() -> None:
    restorer = Restorer.from_weights(
        SHARED / "reference" / "tiny" / "sr_pixelshuffle_x2.pth", RestoreSettings(device="cpu")
    )
    reference = np.load(SHARED / "reference" / "tiny" / "sr_pixelshuffle_x2.npz")
    image = torch.from_numpy(reference["image_u8"].astype(np.float32) / 255).permute(2, 0, 1)[None]
    window, forward = restorer.window, restorer.forward_padded
    result = restore_tiled(image, forward, scale=2, window=window, tile=10 * window, overlap=16)
    np.testing.assert_array_equal(result, quantise(forward(image)[0]))
    # The golden file comes from the authors' network: the bundled one agrees to within rounding ties.
    assert np.mean(result == reference["pipeline_u8"]) > 0.999
    assert np.abs(result.astype(int) - reference["pipeline_u8"]).max() <= 1


def test_aligned_tiles_reproduce_a_local_network_and_misaligned_ones_do_not() -> None:
    image, net = random_image(100, 131), LocalNet(scale=2)
    whole = quantise(net(image)[0], 65535).astype(np.int64)
    # Halo 4 > receptive radius 2: every blended value comes from tiles that saw its whole neighbourhood,
    # so the tiles agree with the whole image up to float rounding of the normalised weights.
    tiled = restore_tiled(image, net, scale=2, window=WINDOW, tile=32, overlap=16, max_value=65535)
    assert tiled.dtype == np.uint16
    assert np.abs(tiled - whole).max() <= 1
    # Tiles on a 4-pixel grid put half of them off the network's 8-pixel window grid: far from the image.
    misaligned = restore_tiled(image, net, scale=2, window=4, tile=32, overlap=16, max_value=65535)
    assert np.mean(np.abs(misaligned - whole) > 256) > 0.2


def test_uniform_averaging_shows_the_tile_edges_that_smooth_blending_hides() -> None:
    image, net = random_image(100, 131), LocalNet(scale=2)
    whole = quantise(net(image)[0]).astype(np.int64)
    uniform = restore_tiled(image, net, scale=2, window=WINDOW, tile=32, overlap=16, blend="uniform")
    smooth = restore_tiled(image, net, scale=2, window=WINDOW, tile=32, overlap=16)
    assert np.abs(smooth - whole).max() <= 1
    assert np.abs(uniform - whole).max() > 20


@pytest.mark.parametrize(("channels", "out_channels", "max_value"), [(3, 3, 255), (1, 1, 65535), (3, 1, 255)])
def test_output_shape_and_dtype(channels: int, out_channels: int, max_value: int) -> None:
    image = random_image(70, 90, channels)
    net = LocalNet(scale=4, channels=channels, out_channels=out_channels)
    result = restore_tiled(image, net, scale=4, window=WINDOW, tile=32, overlap=8, max_value=max_value)
    assert result.shape == (280, 360, out_channels)
    assert result.dtype == (np.uint8 if max_value == 255 else np.uint16)
    assert result.flags.c_contiguous


@pytest.mark.parametrize(("height", "width"), [(512, 64), (64, 512)])
def test_memory_holds_the_output_and_one_band_not_a_float_copy_of_the_output(height: int, width: int) -> None:
    # The output is 1024 x 128 x 3 (or transposed): a float32 copy would be 1.5 MiB, the uint8 output 384 KiB.
    image, net = random_image(height, width), LocalNet(scale=2)
    whole = quantise(net(image)[0]).astype(int)
    tracemalloc.start()
    try:
        result = restore_tiled(image, net, scale=2, window=WINDOW, tile=32, overlap=8)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # Traced: the uint8 output, the band accumulators (numpy, bands along the longer side) and tile buffers.
    float_copy = result.size * 4
    assert result.nbytes < peak < result.nbytes + float_copy // 4
    assert np.abs(result - whole).max() <= 1


# --- batching and progress ----------------------------------------------------------------------------------


def test_batches_group_equal_tiles_and_give_the_same_image() -> None:
    image = random_image(70, 150)
    single, batched = LocalNet(), LocalNet()
    progress: list[tuple[int, int]] = []
    expected = restore_tiled(image, single, scale=2, window=WINDOW, tile=32, overlap=8)
    result = restore_tiled(
        image,
        batched,
        scale=2,
        window=WINDOW,
        tile=32,
        overlap=8,
        batch=3,
        progress=lambda *a: progress.append(a),
    )
    assert np.abs(result.astype(int) - expected).max() <= 1
    # A wide image runs in columns of tiles: six columns, each of two 32-high tiles and one 38 high (on the
    # border), which go through the network as a batch of 2 and a batch of 1.
    assert len(single.calls) == 6 * 3 and len(batched.calls) == 6 * 2
    assert [call[:3] for call in batched.calls[:2]] == [(2, 3, 32), (1, 3, 38)]
    assert progress == [(done, 18) for column in range(6) for done in (3 * column + 2, 3 * column + 3)]


def test_progress_for_the_whole_image() -> None:
    calls: list[tuple[int, int]] = []
    restore_tiled(
        random_image(20, 20),
        LocalNet(),
        scale=2,
        window=WINDOW,
        tile=0,
        overlap=16,
        progress=lambda *a: calls.append(a),
    )
    assert calls == [(1, 1)]


def test_a_wrong_output_shape_is_reported() -> None:
    with pytest.raises(ValueError, match="expected"):
        restore_tiled(random_image(40, 40), LocalNet(scale=2), scale=3, window=WINDOW, tile=16, overlap=8)


@needs_shared
def test_inner_tile_edges_are_reported_and_padded_only_to_the_window_multiple() -> None:
    image, net = random_image(100, 131), LocalNet(scale=2)
    restore_tiled(image, net, scale=2, window=WINDOW, tile=48, overlap=16)
    rows, cols = tile_spans(100, 48, 16, WINDOW), tile_spans(131, 48, 16, WINDOW)
    assert net.edges == [
        TileEdges(bottom=row[1] == 100, right=col[1] == 131) for col in cols for row in rows
    ]  # a wide image runs in columns of tiles
    restorer = Restorer.from_weights(
        SHARED / "reference" / "tiny" / "sr_pixelshuffle_x2.pth", RestoreSettings(device="cpu")
    )
    seen: list[tuple[int, ...]] = []
    restorer.model.register_forward_pre_hook(lambda module, args: seen.append(tuple(args[0].shape[2:])))
    x = torch.rand(1, 3, 32, 44)
    with torch.inference_mode():
        for edges in (TileEdges(False, False), TileEdges(True, False), WHOLE_IMAGE):
            assert restorer.forward_padded(x, edges).shape == (1, 3, 64, 88)
    assert seen == [(32, 48), (40, 48), (40, 48)]


# --- seams with the real network ----------------------------------------------------------------------------


class Memo:
    """Remembers outputs by input content, so that two blends of the same tiles run the network once."""

    def __init__(self, fn: Callable[[torch.Tensor, TileEdges], torch.Tensor]) -> None:
        self.fn, self.outputs = fn, {}

    def __call__(self, x: torch.Tensor, edges: TileEdges = WHOLE_IMAGE) -> torch.Tensor:
        key = (tuple(x.shape), edges, hashlib.sha256(x.numpy().tobytes()).hexdigest())
        if key not in self.outputs:
            self.outputs[key] = self.fn(x, edges)
        return self.outputs[key]


def mcmaster_crop() -> torch.Tensor:
    first = sorted((SHARED / "testsets" / "McMaster").glob("*.tif"))[0]
    pixels = np.asarray(Image.open(first).convert("RGB"))[:136, :200]  # 200 wide, 136 high
    return torch.from_numpy(pixels.astype(np.float32) / 255).permute(2, 0, 1)[None].contiguous()


@needs_shared
@pytest.mark.usefixtures("single_thread")
def test_tiles_of_swinir_s_blend_without_seams() -> None:
    restorer = Restorer.from_weights(
        SHARED / "reference" / "swinir_s_x4_random.pth", RestoreSettings(device="cpu")
    )
    forward = Memo(restorer.forward_padded)
    image = mcmaster_crop()
    whole = quantise(forward(image)[0])
    options = dict(scale=4, window=WINDOW, tile=64, overlap=default_overlap(WINDOW))
    smooth = restore_tiled(image, forward, **options)
    uniform = restore_tiled(image, forward, **options, blend="uniform")
    assert len(forward.outputs) == 1 + 3 * 4
    smooth_db, uniform_db = psnr(smooth, whole), psnr(uniform, whole)
    assert smooth_db >= 45 and smooth_db >= uniform_db + 10, (smooth_db, uniform_db)
