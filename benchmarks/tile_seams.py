"""Seams of tiled inference: PSNR of tiled against whole-image output, smooth blend vs uniform averaging.

Runs the SwinIR-S x4 reference checkpoint (random weights) on a 272x200 crop of the first McMaster image
(sorted by name), once whole and then tiled for each tile/overlap setting, and prints per setting:
the PSNR (dB, uint8 RGB) of the smooth blend and of the authors' uniform averaging of the same tiles against
the whole image, and the compute overhead (input pixels processed by all tiles / image pixels; in brackets
the same with the padding the padded forward adds, relative to the padded whole image).

    python benchmarks/tile_seams.py [--tiles 64 96 128] [--overlaps 8 16 24 32] [--threads 1]
"""

from __future__ import annotations

import argparse
import hashlib
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from swinir_cli.memory import forward_pixels
from swinir_cli.metrics import psnr
from swinir_cli.pipeline import Restorer
from swinir_cli.tiling import TileEdges, axis_tiles, default_overlap, restore_tiled

SHARED = Path(__file__).resolve().parents[2] / "shared"
SCALE, WINDOW = 4, 8


class Memo:
    """Runs the network once per distinct tile, whichever blend asks for it."""

    def __init__(self, fn: Callable[[torch.Tensor, TileEdges], torch.Tensor]) -> None:
        self.fn, self.outputs = fn, {}

    def __call__(self, x: torch.Tensor, edges: TileEdges) -> torch.Tensor:
        key = (tuple(x.shape), edges, hashlib.sha256(x.numpy().tobytes()).hexdigest())
        if key not in self.outputs:
            self.outputs[key] = self.fn(x, edges)
        return self.outputs[key]


def padded(side: int) -> int:
    return (side // WINDOW + 1) * WINDOW


def overhead(height: int, width: int, tile: int, overlap: int) -> tuple[float, float]:
    """(tile pixels / image pixels, padded tile pixels / padded image pixels)."""
    options = dict(scale=1, tile=tile, overlap=overlap, window=WINDOW)
    rows, cols = axis_tiles(height, **options), axis_tiles(width, **options)
    plain = sum(r.stop - r.start for r in rows) * sum(c.stop - c.start for c in cols)
    with_pad = forward_pixels(height, width, tile=tile, overlap=overlap, window=WINDOW)
    return plain / (height * width), with_pad / (padded(height) * padded(width))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiles", type=int, nargs="+", default=[64, 96, 128])
    parser.add_argument("--overlaps", type=int, nargs="+", default=[8, 16, 24, 32])
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    restorer = Restorer.from_weights(SHARED / "reference" / "swinir_s_x4_random.pth", device="cpu")
    first = sorted((SHARED / "testsets" / "McMaster").glob("*.tif"))[0]
    pixels = np.asarray(Image.open(first).convert("RGB"))[:200, :272]
    image = torch.from_numpy(pixels.astype(np.float32) / 255).permute(2, 0, 1)[None].contiguous()
    forward = Memo(restorer.forward_padded)
    whole = restore_tiled(image, forward, scale=SCALE, window=WINDOW, tile=0, overlap=0)
    print(
        f"SwinIR-S x4 (random weights), {first.name} crop 272x200 -> 1088x800; default overlap "
        f"{default_overlap(WINDOW)}, halo = overlap // 4"
    )
    print(
        f"{'tile':>5} {'overlap':>7} {'tiles':>5} {'smooth dB':>10} {'uniform dB':>10} {'gain dB':>8} "
        f"{'overhead':>9} {'(padded)':>9}"
    )
    for tile in args.tiles:
        for overlap in args.overlaps:
            if overlap > tile // 2:
                continue
            options = dict(scale=SCALE, window=WINDOW, tile=tile, overlap=overlap)
            smooth = restore_tiled(image, forward, **options)
            uniform = restore_tiled(image, forward, **options, blend="uniform")
            rows = axis_tiles(200, scale=1, tile=tile, overlap=overlap, window=WINDOW)
            cols = axis_tiles(272, scale=1, tile=tile, overlap=overlap, window=WINDOW)
            smooth_db, uniform_db = psnr(smooth, whole), psnr(uniform, whole)
            plain, with_pad = overhead(200, 272, tile, overlap)
            print(
                f"{tile:>5} {overlap:>7} {len(rows) * len(cols):>5} {smooth_db:>10.2f} {uniform_db:>10.2f} "
                f"{smooth_db - uniform_db:>8.2f} {plain:>9.2f} {with_pad:>9.2f}",
                flush=True,
            )


if __name__ == "__main__":
    main()
