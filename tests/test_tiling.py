"""Tiled inference: tile geometry, blending weights, exactness, band assembly, seams, OOM fallback.

Most tests use :class:`LocalNet`, a cheap stand-in for SwinIR whose output at a pixel depends on a 5x5
neighbourhood and on the pixel's position within its window (anchored at the tile origin, as SwinIR's
windows are). The seam acceptance test runs the real SwinIR-S x4 reference checkpoint (random weights).
"""

from __future__ import annotations

import hashlib
import itertools
import math
import tracemalloc
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from helpers import SHARED, needs_shared
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from swinir_cli.metrics import psnr
from swinir_cli.pipeline import Restorer
from swinir_cli.tiling import (
    FORWARD_CALL_PIXELS,
    WHOLE_IMAGE,
    TileEdges,
    available_memory_bytes,
    axis_tiles,
    choose_tile,
    default_overlap,
    estimate_peak_bytes,
    forward_pixels,
    plan_cost,
    plan_tile_sides,
    restore_tiled,
    restore_with_oom_fallback,
    tile_spans,
)

WINDOW = 8


class LocalNet:
    """Maps (N, C, h, w) to (N, C_out, h * scale, w * scale); receptive radius 2 input pixels.

    Two 3x3 convolutions (zero padding at the input's edges) plus a per-position offset that repeats every
    ``window`` pixels from the input's origin, so a tile not aligned to the window shifts it.
    """

    def __init__(
        self, scale: int = 2, channels: int = 3, out_channels: int = 3, window: int = WINDOW
    ) -> None:
        generator = torch.Generator().manual_seed(0)
        self.scale, self.window = scale, window
        self.conv1 = torch.randn(8, channels, 3, 3, generator=generator) * 0.4
        self.conv2 = torch.randn(out_channels * scale**2, 8, 3, 3, generator=generator) * 0.4
        self.offset = torch.randn(window, window, generator=generator)
        self.calls: list[tuple[int, ...]] = []
        self.edges: list[TileEdges] = []

    def __call__(self, x: torch.Tensor, edges: TileEdges = WHOLE_IMAGE) -> torch.Tensor:
        self.calls.append(tuple(x.shape))
        self.edges.append(edges)
        height, width = x.shape[2:]
        hidden = torch.tanh(F.conv2d(x * 2 - 1, self.conv1, padding=1))
        reps = (math.ceil(height / self.window), math.ceil(width / self.window))
        features = F.conv2d(hidden, self.conv2, padding=1) + self.offset.repeat(reps)[:height, :width]
        return F.pixel_shuffle(torch.sigmoid(features), self.scale) * 1.2 - 0.1


def random_image(height: int, width: int, channels: int = 3, seed: int = 1) -> torch.Tensor:
    return torch.rand(1, channels, height, width, generator=torch.Generator().manual_seed(seed))


def quantise(chw: torch.Tensor, max_value: int = 255) -> np.ndarray:
    """The authors' quantisation, written out independently of the module."""
    levels = (chw.clamp(0, 1).numpy() * float(max_value)).round()
    return levels.transpose(1, 2, 0).astype(np.uint8 if max_value == 255 else np.uint16)


# --- geometry -----------------------------------------------------------------------------------------------


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
    restorer = Restorer.from_weights(SHARED / "reference" / "tiny" / "sr_pixelshuffle_x2.pth", device="cpu")
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


# --- out-of-memory fallback (a GPU cannot exist here: the CUDA error is raised by the callable) -------------


class OutOfMemoryAbove:
    """Wraps a callable and raises the CUDA out-of-memory error for inputs above ``limit`` pixels."""

    def __init__(self, net: LocalNet, limit: int) -> None:
        self.net, self.limit, self.failures = net, limit, 0

    def __call__(self, x: torch.Tensor, edges: TileEdges) -> torch.Tensor:
        if x.shape[0] * x.shape[2] * x.shape[3] > self.limit:
            self.failures += 1
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return self.net(x, edges)


def test_out_of_memory_halves_the_tile_and_retries_with_a_warning() -> None:
    image = random_image(96, 80)
    warnings: list[str] = []
    progress: list[tuple[int, int]] = []
    failing = OutOfMemoryAbove(LocalNet(), limit=50 * 50)
    result = restore_with_oom_fallback(
        image,
        failing,
        scale=2,
        window=WINDOW,
        tile=0,
        overlap=8,
        on_warning=warnings.append,
        progress=lambda *a: progress.append(a),
    )
    assert failing.failures == 1
    assert warnings == ["out of GPU memory at tile 96; retrying the image with tile 48"]
    expected = restore_tiled(image, LocalNet(), scale=2, window=WINDOW, tile=48, overlap=8)
    np.testing.assert_array_equal(result, expected)
    assert progress[-1] == (6, 6)


def test_out_of_memory_below_the_smallest_tile_is_raised() -> None:
    warnings: list[str] = []
    failing = OutOfMemoryAbove(LocalNet(), limit=20 * 20)
    with pytest.raises(torch.cuda.OutOfMemoryError):
        restore_with_oom_fallback(
            random_image(96, 80),
            failing,
            scale=2,
            window=WINDOW,
            tile=128,
            overlap=8,
            on_warning=warnings.append,
        )
    assert warnings == [
        "out of GPU memory at tile 96; retrying the image with tile 48",
        "out of GPU memory at tile 48; retrying the image with tile 32",
    ]


# --- memory budget ------------------------------------------------------------------------------------------

SWINIR_S_X4 = dict(scale=4, embed_dim=60, num_heads=6, head_features=3)


def test_choose_tile_takes_the_cheapest_plan_that_fits() -> None:
    budget, overlap = 200 * 2**20, 16
    tile = choose_tile(1000, 800, budget, window=WINDOW, overlap=overlap, **SWINIR_S_X4)
    assert tile % WINDOW == 0 and 32 <= tile < 800

    def largest_tile_fits(tile: int) -> bool:
        tallest = max(b - a for a, b in tile_spans(1000, tile, overlap, WINDOW))
        widest = max(b - a for a, b in tile_spans(800, tile, overlap, WINDOW))
        return estimate_peak_bytes(tallest, widest, window=WINDOW, **SWINIR_S_X4) <= budget

    assert largest_tile_fits(tile)  # costed at the largest tile of its plan
    # No other fitting tile computes less.
    cost = plan_cost(1000, 800, tile=tile, overlap=overlap, window=WINDOW)
    for other in range(32, 1000, WINDOW):
        if largest_tile_fits(other):
            assert plan_cost(1000, 800, tile=other, overlap=overlap, window=WINDOW) >= cost
    assert choose_tile(100, 80, budget, window=WINDOW, overlap=overlap, **SWINIR_S_X4) == 0  # whole image
    assert choose_tile(1000, 800, 1, window=WINDOW, overlap=overlap, **SWINIR_S_X4) == 4 * WINDOW


def test_forward_pixels_count_overlap_and_border_padding_only() -> None:
    # 512 = two tiles of 264 overlapping by 16; the inner edge needs no padding, the border edge a window.
    assert tile_spans(512, 280, 16, WINDOW) == [(0, 264), (248, 512)]
    assert plan_tile_sides(512, 280, 16, WINDOW) == [264, 272]
    assert forward_pixels(512, 512, tile=280, overlap=16, window=WINDOW) == 536 * 536
    assert forward_pixels(100, 60, tile=0, overlap=16, window=WINDOW) == 104 * 64  # the authors' padding
    assert plan_cost(512, 512, tile=280, overlap=16, window=WINDOW) == 536 * 536 + 4 * FORWARD_CALL_PIXELS


@needs_shared
def test_inner_tile_edges_are_reported_and_padded_only_to_the_window_multiple() -> None:
    image, net = random_image(100, 131), LocalNet(scale=2)
    restore_tiled(image, net, scale=2, window=WINDOW, tile=48, overlap=16)
    rows, cols = tile_spans(100, 48, 16, WINDOW), tile_spans(131, 48, 16, WINDOW)
    assert net.edges == [
        TileEdges(bottom=row[1] == 100, right=col[1] == 131) for col in cols for row in rows
    ]  # a wide image runs in columns of tiles
    restorer = Restorer.from_weights(SHARED / "reference" / "tiny" / "sr_pixelshuffle_x2.pth", device="cpu")
    seen: list[tuple[int, ...]] = []
    restorer.model.register_forward_pre_hook(lambda module, args: seen.append(tuple(args[0].shape[2:])))
    x = torch.rand(1, 3, 32, 44)
    with torch.inference_mode():
        for edges in (TileEdges(False, False), TileEdges(True, False), WHOLE_IMAGE):
            assert restorer.forward_padded(x, edges).shape == (1, 3, 64, 88)
    assert seen == [(32, 48), (40, 48), (40, 48)]


def test_estimate_is_above_measured_peaks_and_grows_with_the_model_and_batch() -> None:
    options = dict(window=WINDOW, tiled=False)
    small = estimate_peak_bytes(256, 256, **options, **SWINIR_S_X4)
    medium = estimate_peak_bytes(128, 128, **options, scale=4, embed_dim=180, num_heads=6, head_features=64)
    # Measured on CPU (tuned allocator): resident growth over three passes of SwinIR-S x4 at 256x256
    # (264 padded), 325.5 MiB; of SwinIR-M x4 at 128x128 (136 padded), 305.5 MiB.
    assert 325.5 * 2**20 < small < 1.3 * 325.5 * 2**20
    assert 305.5 * 2**20 < medium < 1.3 * 305.5 * 2**20
    # Among the differently shaped tiles of a tiled run, fragments add up (1.9x, measured).
    assert estimate_peak_bytes(256, 256, window=WINDOW, **SWINIR_S_X4) == pytest.approx(1.9 * small)
    assert estimate_peak_bytes(256, 256, **options, batch=2, **SWINIR_S_X4) == pytest.approx(2 * small)


def test_available_memory_on_cpu_is_positive_and_below_the_total() -> None:
    available = available_memory_bytes(torch.device("cpu"))
    total = next(
        int(line.split()[1]) * 1024
        for line in Path("/proc/meminfo").read_text().splitlines()
        if line.startswith("MemTotal:")
    )
    assert 0 < available <= total


def test_available_memory_on_cuda_counts_free_and_cached(monkeypatch: pytest.MonkeyPatch) -> None:
    # No GPU here: the CUDA queries are replaced by fixed figures.
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device: (3 * 2**30, 80 * 2**30))
    monkeypatch.setattr(torch.cuda, "memory_reserved", lambda device: 2**30)
    monkeypatch.setattr(torch.cuda, "memory_allocated", lambda device: 2**29)
    assert available_memory_bytes(torch.device("cuda", 0)) == 3 * 2**30 + 2**29


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


@pytest.fixture
def one_thread() -> Iterator[None]:
    """Single-threaded torch: steady timing when other test processes share the cores."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def mcmaster_crop() -> torch.Tensor:
    first = sorted((SHARED / "testsets" / "McMaster").glob("*.tif"))[0]
    pixels = np.asarray(Image.open(first).convert("RGB"))[:200, :272]  # 272 wide, 200 high
    return torch.from_numpy(pixels.astype(np.float32) / 255).permute(2, 0, 1)[None].contiguous()


@needs_shared
@pytest.mark.usefixtures("one_thread")
def test_tiles_of_swinir_s_blend_without_seams() -> None:
    restorer = Restorer.from_weights(SHARED / "reference" / "swinir_s_x4_random.pth", device="cpu")
    forward = Memo(restorer.forward_padded)
    image = mcmaster_crop()
    whole = quantise(forward(image)[0])
    options = dict(scale=4, window=WINDOW, tile=64, overlap=default_overlap(WINDOW))
    smooth = restore_tiled(image, forward, **options)
    uniform = restore_tiled(image, forward, **options, blend="uniform")
    assert len(forward.outputs) == 1 + 4 * 6
    smooth_db, uniform_db = psnr(smooth, whole), psnr(uniform, whole)
    assert smooth_db >= 45 and smooth_db >= uniform_db + 10, (smooth_db, uniform_db)
