"""How much memory and compute a tile plan needs, how much a device offers, and what to do when it runs out.

:mod:`swinir_cli.tiling` knows geometry only; this module adds SwinIR and the device. It estimates a
forward pass's peak memory from the network's sizes (:func:`estimate_peak_bytes`) and a plan's compute
from its padded tiles (:func:`plan_cost`), reads what a device has free (:func:`available_memory_bytes`),
takes a share of it (:func:`tile_memory_budget`), picks the cheapest tile that fits
(:func:`choose_tile`), and restores again with a smaller tile after a CUDA out-of-memory error
(:func:`restore_with_oom_fallback`).
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from .tiling import (
    aligned_geometry,
    aligned_overlap,
    aligned_tile,
    plan_tile_sides,
    tile_spans,
)

__all__ = [
    "CPU_TILE_BUDGET_BYTES",
    "CUDA_ESTIMATE_MARGIN",
    "CUDA_OVERESTIMATE",
    "FORWARD_CALL_PIXELS",
    "MEMORY_BUDGET_FRACTION",
    "available_memory_bytes",
    "choose_tile",
    "estimate_peak_bytes",
    "forward_pixels",
    "plan_cost",
    "restore_with_oom_fallback",
    "tile_memory_budget",
]

#: Share of the device's available memory that an automatic tile may plan to use.
MEMORY_BUDGET_FRACTION = 0.5
#: Cap on the CPU, for the estimate of :func:`estimate_peak_bytes`: evenly spread tiles of 200-270 pixels
#: compute only 10-20% more than the whole image (benchmarks/tile_waste.py), and the cap keeps a 768x768
#: SwinIR-S x4 run under 1 GB resident (benchmarks/tile_memory.py; 272-pixel tiles peaked at 1012 MiB
#: there).
CPU_TILE_BUDGET_BYTES = 700 * 2**20

#: Values held per padded input pixel, per unit of each term of :func:`estimate_peak_bytes`; fitted to
#: the growth of peak resident memory over CPU forward passes (the tuned allocator of swinir_cli.cpu,
#: 2 threads): SwinIR-S x4 4.9 KB per padded pixel (3 passes, 264x264; one pass at 520x520: 4.2 KB),
#: SwinIR-M x4 17.3 KB (3 passes, 136x136; one pass at 200x200: 17.9 KB), denoising SwinIR-M 11.5 KB
#: (one pass, 136x136). The fit gives 16.6 / 0.44 / 1.24; the figures below round it up.
_FEATURE_COPIES = 17.0
_ATTENTION_COPIES = 0.5
_HEAD_COPIES = 1.25
#: A tiled run peaks higher than passes of one shape: tiles of a few different shapes fragment the heap.
#: Measured: a 768x768 SwinIR-S x4 run in 272-pixel tiles grew 690 MiB over the process and its output,
#: 1.9 times three same-shape passes of that tile (the tuned allocator; 1.6 times with glibc's defaults).
_TILED_SLACK = 1.9

#: How many times the CPU model of a tiled run (slack included, 4 bytes a value) overstated the peak CUDA
#: allocated (``torch.cuda.max_memory_allocated`` over the weights) for SwinIR-M x4 at 512-2048 pixels,
#: whole images and 1032-pixel tiles alike, per precision: one H200, 2026-12-04, benchmarks/gpu_check.py's
#: memory section. MPS is unmeasured and keeps the CPU model.
CUDA_OVERESTIMATE = {"fp32": 2.4, "fp16": 6.5, "bf16": 6.5}
#: A calibrated CUDA estimate aims at this multiple of the measured peak, for what one GPU's figures miss.
CUDA_ESTIMATE_MARGIN = 1.25


#: Fixed cost of one forward pass in the cost model, in pixels: a single-threaded SwinIR-S x4 forward took
#: 0.33 ms per padded pixel plus 14 ms per call (56x56 to 200x200 inputs), about 43 pixels' worth.
FORWARD_CALL_PIXELS = 48


def estimate_peak_bytes(
    tile_height: int,
    tile_width: int,
    *,
    window: int,
    scale: int,
    embed_dim: int,
    num_heads: int,
    head_features: int,
    batch: int = 1,
    tiled: bool = True,
    device_type: str = "cpu",
    precision: str = "fp32",
) -> int:
    """Estimated peak memory of one forward pass on (batch, C, tile_height, tile_width) input, in bytes.

    The input is padded to ``(side // window + 1) * window`` per side. Per padded pixel the pass holds about
    17 copies of the ``embed_dim`` features, 0.5 of the ``num_heads * window**2`` attention scores and
    1.25 of the upsampling head's largest tensor (``head_features * scale**2`` values: 64 for the
    ``pixelshuffle`` and ``nearest+conv`` heads, the image channels for ``pixelshuffledirect``, 0 without
    an upsampler); times 1.9 for a pass among the differently shaped tiles of a tiled run (``tiled``), whose
    fragments add up, at 4 bytes a value. On CUDA, tiled or not, the tiled figure is divided by what it
    overstated there (:data:`CUDA_OVERESTIMATE` for ``precision``) and multiplied by
    :data:`CUDA_ESTIMATE_MARGIN`; other devices, in any precision, keep the CPU figures. Model weights are
    not included.
    """
    padded = (tile_height // window + 1) * window * ((tile_width // window + 1) * window)
    per_pixel = (
        _FEATURE_COPIES * embed_dim
        + _ATTENTION_COPIES * num_heads * window**2
        + _HEAD_COPIES * head_features * scale**2
    )
    return int(batch * padded * per_pixel * 4 * _calibration(tiled, device_type, precision))


def _calibration(tiled: bool, device_type: str, precision: str) -> float:
    """The factor from one pass's values to the estimated peak: the slack of a tiled run on the CPU; on
    CUDA the tiled CPU figure over what it overstated there, with the margin (whole or tiled alike, as
    measured)."""
    if device_type == "cuda":
        return _TILED_SLACK * CUDA_ESTIMATE_MARGIN / CUDA_OVERESTIMATE[precision]
    return _TILED_SLACK if tiled else 1.0


def forward_pixels(height: int, width: int, *, tile: int, overlap: int, window: int) -> int:
    """Input pixels all forward passes of a tile plan process, padding and overlap included (tile 0: the
    whole image). Divided by ``height * width`` it is the plan's compute per output pixel."""
    return sum(plan_tile_sides(height, tile, overlap, window)) * sum(
        plan_tile_sides(width, tile, overlap, window)
    )


def plan_cost(height: int, width: int, *, tile: int, overlap: int, window: int) -> float:
    """Estimated compute of a tile plan, in forward pixels: :func:`forward_pixels` plus a fixed cost per
    forward pass (:data:`FORWARD_CALL_PIXELS`). SwinIR's attention is windowed, so a pass costs in
    proportion to its pixels."""
    rows = plan_tile_sides(height, tile, overlap, window)
    cols = plan_tile_sides(width, tile, overlap, window)
    return sum(rows) * sum(cols) + len(rows) * len(cols) * FORWARD_CALL_PIXELS


def choose_tile(
    height: int,
    width: int,
    budget_bytes: int,
    *,
    window: int,
    overlap: int,
    min_tile: int | None = None,
    **model: int,
) -> int:
    """The cheapest tile plan whose estimated peak memory fits ``budget_bytes``.

    ``model`` holds the keyword arguments of :func:`estimate_peak_bytes` other than the tile sides. Returns
    0 (the whole image, which costs least) when its :func:`estimate_peak_bytes` fits; else, among the
    window-multiple tiles from ``min_tile`` (default four windows) to the image's longer side whose
    largest tile fits, the one of least :func:`plan_cost` (the smaller tile on a tie); ``min_tile`` when
    none fits.
    """
    min_tile = aligned_tile(4 * window if min_tile is None else min_tile, window)
    if estimate_peak_bytes(height, width, window=window, tiled=False, **model) <= budget_bytes:
        return 0
    best, best_cost = min_tile, math.inf
    for tile in range(min_tile, max(height, width) // window * window + 1, window):
        rows = tile_spans(height, *aligned_geometry(tile, overlap, window), window)
        cols = tile_spans(width, *aligned_geometry(tile, overlap, window), window)
        tallest = max(stop - start for start, stop in rows)
        widest = max(stop - start for start, stop in cols)
        if estimate_peak_bytes(tallest, widest, window=window, **model) > budget_bytes:
            continue
        cost = plan_cost(height, width, tile=tile, overlap=overlap, window=window)
        if cost < best_cost:
            best, best_cost = tile, cost
    return best


def available_memory_bytes(device: torch.device) -> int:
    """Memory a restoration may use on ``device``, in bytes.

    CUDA: free device memory plus what PyTorch's caching allocator holds unused. CPU: ``MemAvailable`` of
    /proc/meminfo, else the available physical pages from ``os.sysconf``; raises OSError if neither exists.
    """
    if device.type == "cuda":
        free, _total = torch.cuda.mem_get_info(device)
        return int(free + torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device))
    meminfo = Path("/proc/meminfo")
    if meminfo.exists():
        for line in meminfo.read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError) as error:
        raise OSError(f"cannot read the available memory of {device}: {error}") from error


def tile_memory_budget(device: torch.device) -> int:
    """Bytes an automatic tile may plan to use on ``device``: a share of its available memory, capped on
    the CPU (see :data:`CPU_TILE_BUDGET_BYTES`)."""
    budget = int(available_memory_bytes(device) * MEMORY_BUDGET_FRACTION)
    if device.type == "cpu":
        budget = min(budget, CPU_TILE_BUDGET_BYTES)
    return budget


def restore_with_oom_fallback(
    restore: Callable[[int], np.ndarray],
    *,
    tile: int,
    longest: int,
    window: int,
    overlap: int,
    on_warning: Callable[[str], None] | None = None,
) -> np.ndarray:
    """``restore(tile)`` (a tiled restoration of one image, e.g. :func:`~swinir_cli.tiling.restore_tiled`
    with all else fixed), again with half the tile after a CUDA out-of-memory error.

    On ``torch.cuda.OutOfMemoryError`` the tile (at most the image's ``longest`` side; 0, the whole image,
    counts as that side) is halved, rounded down to a multiple of ``window`` but not below the smallest
    tile (four windows, or twice the ``overlap`` if larger), and the image is restored again; ``on_warning``
    receives one line per retry. An error at the smallest tile is raised again.
    """
    min_tile = aligned_tile(max(4 * window, 2 * aligned_overlap(overlap, window)), window)
    tile = aligned_tile(tile, window)
    while True:
        try:
            return restore(tile)
        except torch.cuda.OutOfMemoryError:
            current = min(tile, longest) if tile else longest
            if current <= min_tile:
                raise
            smaller = max(current // 2 // window * window, min_tile)
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
        if on_warning is not None:
            on_warning(f"out of GPU memory at tile {current}; retrying the image with tile {smaller}")
        tile = smaller
