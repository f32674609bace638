"""Peak resident memory of tiled SwinIR-S x4 restoration against image size (CPU).

Each size runs in a fresh process: load the SwinIR-S x4 reference checkpoint, tile the image with
:func:`swinir_cli.tiling.restore_tiled` (padded forward, default overlap) and report the peak resident set
(``ru_maxrss``) next to the size of the uint8 output, the peak before restoring (model loaded) and the
estimated peak of one forward pass on a tile. The tile is ``--tile`` or, by default, the one
:func:`choose_tile` picks for a forward-pass budget of ``--budget-mb`` (default 1024 MiB).

    python benchmarks/tile_memory.py [--sizes 512 1024 2048] [--tile N] [--budget-mb MB] [--threads N]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

from swinir_cli.tiling import (
    available_memory_bytes,
    choose_tile,
    default_overlap,
    estimate_peak_bytes,
    restore_tiled,
)

SHARED = Path(__file__).resolve().parents[2] / "shared"
CHECKPOINT = SHARED / "reference" / "swinir_s_x4_random.pth"
SCALE, WINDOW = 4, 8
SWINIR_S_X4 = dict(scale=SCALE, embed_dim=60, num_heads=6, head_features=3)
MIB = 2**20


def padded_forward(model: torch.nn.Module) -> Callable[[torch.Tensor], torch.Tensor]:
    def forward(x: torch.Tensor) -> torch.Tensor:
        height, width = x.shape[2:]
        x = torch.cat([x, x.flip(2)], 2)[:, :, : (height // WINDOW + 1) * WINDOW]
        x = torch.cat([x, x.flip(3)], 3)[:, :, :, : (width // WINDOW + 1) * WINDOW]
        with torch.inference_mode():
            return model(x)[:, :, : height * SCALE, : width * SCALE]

    return forward


def measure(side: int, tile: int | None, budget: int) -> dict[str, float]:
    """Runs in the child process: one restoration of a side x side image."""
    from swinir_cli.checkpoint import load_model

    model = load_model(CHECKPOINT)
    image = torch.rand(1, 3, side, side, generator=torch.Generator().manual_seed(0))
    tile = choose_tile(side, side, budget, window=WINDOW, **SWINIR_S_X4) if tile is None else tile
    tile_side = min(tile or side, side)
    estimate = estimate_peak_bytes(tile_side, tile_side, window=WINDOW, **SWINIR_S_X4)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    started = time.perf_counter()
    output = restore_tiled(
        image, padded_forward(model), scale=SCALE, window=WINDOW, tile=tile, overlap=default_overlap(WINDOW)
    )
    return dict(
        side=side,
        tile=tile,
        seconds=time.perf_counter() - started,
        output_mib=output.nbytes / MIB,
        estimate_mib=estimate / MIB,
        before_mib=before / MIB,
        peak_mib=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / MIB,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[512, 1024, 2048])
    parser.add_argument("--tile", type=int, default=None)
    parser.add_argument("--budget-mb", type=int, default=1024)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--child", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    budget = args.budget_mb * MIB
    if args.child is not None:
        print(json.dumps(measure(args.child, args.tile, budget)))
        return
    available = available_memory_bytes(torch.device("cpu")) / MIB
    print(
        f"SwinIR-S x4, CPU, {args.threads} thread(s), overlap {default_overlap(WINDOW)}, forward budget "
        f"{budget / MIB:.0f} MiB (available memory {available:.0f} MiB)"
    )
    print(
        f"{'input':>11} {'output':>11} {'tile':>6} {'output MiB':>11} {'est. fwd MiB':>13} "
        f"{'RSS before MiB':>15} {'peak RSS MiB':>13} {'seconds':>8}"
    )
    for side in args.sizes:
        command = [sys.executable, __file__, "--child", str(side), "--threads", str(args.threads)]
        command += ["--budget-mb", str(budget // MIB)] + (["--tile", str(args.tile)] if args.tile else [])
        row = json.loads(subprocess.run(command, check=True, capture_output=True, text=True).stdout)
        out = side * SCALE
        print(
            f"{f'{side}x{side}':>11} {f'{out}x{out}':>11} {row['tile'] or 'whole':>6} "
            f"{row['output_mib']:>11.0f} {row['estimate_mib']:>13.0f} {row['before_mib']:>15.0f} "
            f"{row['peak_mib']:>13.0f} {row['seconds']:>8.1f}",
            flush=True,
        )


if __name__ == "__main__":
    main()
