"""Forward pixels per output pixel of the automatic CPU tile plan, before and after even tiles (geometry).

"Before" is this project's earlier tiler, written out here as the baseline: every tile but the last
``tile`` long, starts spread over the window grid, every tile padded by the authors' extra window, and the
automatic tile from the earlier memory estimate (16 / 1.5 / 1.5 copies, x2 allocator slack, 1 GiB cap).
"After" is swinir_cli.tiling and swinir_cli.memory today: the count first and then the size, inner edges
padded only to the window multiple, and the automatic tile of ``Restorer.auto_tile`` on the CPU (its budget
assumed to be the CPU cap, as on any machine with a few GiB free). A figure of 1.00 would be no padding
and no overlap.

    python benchmarks/tile_waste.py
"""

from __future__ import annotations

import math

from swinir_cli.memory import CPU_TILE_BUDGET_BYTES, choose_tile, forward_pixels
from swinir_cli.tiling import default_overlap

WINDOW = 8
OVERLAP = default_overlap(WINDOW)
MODELS = {
    "SwinIR-S x4": dict(scale=4, embed_dim=60, num_heads=6, head_features=3),
    "SwinIR-M x4": dict(scale=4, embed_dim=180, num_heads=6, head_features=64),
}
SIZES = [(512, 512), (768, 1024), (1080, 1920), (2048, 2048)]
EARLIER_CPU_BUDGET = 1 << 30


def earlier_estimate(
    height: int, width: int, scale: int, embed_dim: int, num_heads: int, head_features: int
) -> int:
    padded = (height // WINDOW + 1) * WINDOW * ((width // WINDOW + 1) * WINDOW)
    per_pixel = 16.0 * embed_dim + 1.5 * num_heads * WINDOW**2 + 1.5 * head_features * scale**2
    return int(padded * per_pixel * 4 * 2.0)


def earlier_tile(height: int, width: int, model: dict) -> int:
    if earlier_estimate(height, width, **model) <= EARLIER_CPU_BUDGET:
        return 0
    for tile in range(max(height, width) // WINDOW * WINDOW, 4 * WINDOW, -WINDOW):
        longest = tile + WINDOW - 1
        if earlier_estimate(min(longest, height), min(longest, width), **model) <= EARLIER_CPU_BUDGET:
            return tile
    return 4 * WINDOW


def earlier_sides(length: int, tile: int) -> list[int]:
    """The earlier tiler's padded tile sides along one axis."""
    last_start = (length - tile) // WINDOW * WINDOW if tile else 0
    if last_start <= 0:
        spans = [(0, length)]
    else:
        gaps = math.ceil(last_start / WINDOW / ((tile - OVERLAP) // WINDOW))
        starts = [i * (last_start // WINDOW) // gaps * WINDOW for i in range(gaps + 1)]
        spans = [(start, start + tile) for start in starts[:-1]] + [(last_start, length)]
    return [((stop - start) // WINDOW + 1) * WINDOW for start, stop in spans]


def main() -> None:
    print(
        f"window {WINDOW}, overlap {OVERLAP}; forward pixels per output pixel (tile in brackets, 0 = whole)\n"
    )
    print(f"{'model':12} {'image':>10} {'before':>14} {'after':>14} {'after, earlier tile':>20}")
    for name, model in MODELS.items():
        for height, width in SIZES:
            pixels = height * width
            old_tile = earlier_tile(height, width, model)
            before = sum(earlier_sides(height, old_tile)) * sum(earlier_sides(width, old_tile)) / pixels
            new_tile = choose_tile(
                height, width, CPU_TILE_BUDGET_BYTES, window=WINDOW, overlap=OVERLAP, **model
            )
            after = forward_pixels(height, width, tile=new_tile, overlap=OVERLAP, window=WINDOW) / pixels
            same = forward_pixels(height, width, tile=old_tile, overlap=OVERLAP, window=WINDOW) / pixels
            print(
                f"{name:12} {f'{width}x{height}':>10} {f'{before:.3f} ({old_tile})':>14} "
                f"{f'{after:.3f} ({new_tile})':>14} {f'{same:.3f} ({old_tile})':>20}"
            )


if __name__ == "__main__":
    main()
