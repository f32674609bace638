"""The memory and cost model of tile plans, the device memory probe and the out-of-memory fallback.

The fallback tests run :class:`helpers.LocalNet`, the cheap stand-in for SwinIR, through a callable that
raises CUDA's out-of-memory error above a size (no GPU exists here).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import WINDOW, LocalNet, random_image

from swinir_cli import memory
from swinir_cli.memory import (
    CPU_TILE_BUDGET_BYTES,
    FORWARD_CALL_PIXELS,
    available_memory_bytes,
    choose_tile,
    estimate_peak_bytes,
    forward_pixels,
    plan_cost,
    restore_with_oom_fallback,
    tile_memory_budget,
)
from swinir_cli.tiling import TileEdges, plan_tile_sides, restore_tiled, tile_spans

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


def restore_with_memory_limit(
    image: torch.Tensor, limit: int, tile: int, warnings: list[str], **options: object
) -> np.ndarray:
    """``image`` restored through :func:`restore_with_oom_fallback` by a net that runs out of memory above
    ``limit`` pixels per call."""
    failing = OutOfMemoryAbove(LocalNet(), limit)

    def restore(tile: int) -> np.ndarray:
        return restore_tiled(image, failing, scale=2, window=WINDOW, tile=tile, overlap=8, **options)

    return restore_with_oom_fallback(
        restore, tile=tile, longest=max(image.shape[2:]), window=WINDOW, overlap=8, on_warning=warnings.append
    )


def test_out_of_memory_halves_the_tile_and_retries_with_a_warning() -> None:
    image = random_image(96, 80)
    warnings: list[str] = []
    progress: list[tuple[int, int]] = []
    result = restore_with_memory_limit(
        image, 50 * 50, 0, warnings, progress=lambda *done_total: progress.append(done_total)
    )
    assert warnings == ["out of GPU memory at tile 96; retrying the image with tile 48"]
    expected = restore_tiled(image, LocalNet(), scale=2, window=WINDOW, tile=48, overlap=8)
    np.testing.assert_array_equal(result, expected)
    assert progress[-1] == (6, 6)  # the progress restarts with the new tile count


def test_out_of_memory_below_the_smallest_tile_is_raised() -> None:
    warnings: list[str] = []
    with pytest.raises(torch.cuda.OutOfMemoryError):
        restore_with_memory_limit(random_image(96, 80), 20 * 20, 128, warnings)
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


def test_the_tile_budget_is_half_the_available_memory_and_capped_on_the_cpu(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # No GPU here: the CUDA queries are replaced by fixed figures (4 GiB free, nothing cached).
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device: (4 * 2**30, 80 * 2**30))
    monkeypatch.setattr(torch.cuda, "memory_reserved", lambda device: 0)
    monkeypatch.setattr(torch.cuda, "memory_allocated", lambda device: 0)
    assert tile_memory_budget(torch.device("cuda", 0)) == 2 * 2**30
    for available, budget in ((2**30, 2**29), (64 * 2**30, CPU_TILE_BUDGET_BYTES)):
        monkeypatch.setattr(memory, "available_memory_bytes", lambda device, free=available: free)
        assert tile_memory_budget(torch.device("cpu")) == budget


# Tiles main chose on the CPU before the CUDA calibration (fp32 CPU model, overlap 16), per budget:
# (height, width) -> (SwinIR-S x4, SwinIR-M x4).
CPU_TILES_BEFORE = {
    CPU_TILE_BUDGET_BYTES: {
        (120, 160): (0, 0),
        (360, 360): (0, 136),
        (640, 448): (232, 144),
        (1024, 768): (208, 128),
        (2048, 2048): (248, 136),
    },
    256 * 2**20: {
        (120, 160): (0, 88),
        (360, 360): (136, 80),
        (640, 448): (160, 80),
        (1024, 768): (160, 80),
        (2048, 2048): (152, 80),
    },
}
SWINIR_M_X4 = dict(scale=4, embed_dim=180, num_heads=6, head_features=64)


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_the_cpu_automatic_tile_is_unchanged_by_the_cuda_calibration(precision: str) -> None:
    for budget, tiles in CPU_TILES_BEFORE.items():
        for (height, width), expected in tiles.items():
            chosen = tuple(
                choose_tile(
                    height,
                    width,
                    budget,
                    window=WINDOW,
                    overlap=16,
                    device_type="cpu",
                    precision=precision,
                    **model,
                )
                for model in (SWINIR_S_X4, SWINIR_M_X4)
            )
            assert chosen == expected, (budget, height, width)


def test_the_cuda_estimate_is_calibrated_per_precision_and_mps_keeps_the_cpu_model() -> None:
    """On the H200 the tiled CPU figure was 2.4x the peak in fp32 and 6.5x in fp16/bf16, whole images and
    tiles alike: the CUDA estimate aims at 1.25x that peak."""
    tiled_cpu = estimate_peak_bytes(512, 512, window=WINDOW, **SWINIR_M_X4)
    for precision, overestimate in (("fp32", 2.4), ("fp16", 6.5), ("bf16", 6.5)):
        for tiled in (True, False):
            options = dict(window=WINDOW, tiled=tiled, **SWINIR_M_X4, precision=precision)
            cuda = estimate_peak_bytes(512, 512, **options, device_type="cuda")
            assert cuda == pytest.approx(tiled_cpu * 1.25 / overestimate, rel=1e-6)
            assert estimate_peak_bytes(512, 512, **options, device_type="mps") == estimate_peak_bytes(
                512, 512, window=WINDOW, tiled=tiled, **SWINIR_M_X4
            )


def mock_cuda_free(monkeypatch: pytest.MonkeyPatch, free: int) -> None:
    """No GPU here: CUDA's memory queries are replaced by an 80 GB device with ``free`` bytes free."""
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device: (free, 80 * 10**9))
    monkeypatch.setattr(torch.cuda, "memory_reserved", lambda device: 0)
    monkeypatch.setattr(torch.cuda, "memory_allocated", lambda device: 0)


@pytest.mark.parametrize("precision", ["fp16", "bf16"])
def test_the_automatic_tile_is_the_whole_image_where_its_calibrated_estimate_fits(
    monkeypatch: pytest.MonkeyPatch, precision: str
) -> None:
    """SwinIR-M x4 at 2048x2048 in half precision: the calibrated estimate (28 GB) fits the budget of an
    80 GB GPU with all of it free (40 GB), so the image is one tile; the CPU model (146 GB) cut it."""
    options = dict(window=WINDOW, overlap=16, **SWINIR_M_X4)
    mock_cuda_free(monkeypatch, 80 * 10**9)
    budget = tile_memory_budget(torch.device("cuda", 0))
    assert choose_tile(2048, 2048, budget, **options, device_type="cuda", precision=precision) == 0
    assert choose_tile(2048, 2048, budget, **options) > 0
    for tile in (256, 512, 1024):  # whatever fits the budget fits whole, tiled or not
        for height, width in ((tile, tile), (tile, 2 * tile)):
            fits = (
                estimate_peak_bytes(
                    height,
                    width,
                    window=WINDOW,
                    tiled=False,
                    **SWINIR_M_X4,
                    device_type="cuda",
                    precision=precision,
                )
                <= budget
            )
            assert (
                choose_tile(height, width, budget, **options, device_type="cuda", precision=precision) == 0
            ) == fits
    mock_cuda_free(monkeypatch, 40 * 10**9)  # half free: tiles again, but larger than the CPU model's
    budget = tile_memory_budget(torch.device("cuda", 0))
    calibrated = choose_tile(2048, 2048, budget, **options, device_type="cuda", precision=precision)
    assert choose_tile(2048, 2048, budget, **options) < calibrated < 2048
