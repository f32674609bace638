"""Peak resident memory of `swinir upscale` (SwinIR-S x4, default tile) against image size, on the CPU.

Each size runs the real command in a fresh process on a random RGB PNG and reports the child's peak
resident set (``ru_maxrss``) beside the size of the decoded output, so the growth with image size can be
read off. The checkpoint is the SwinIR-S x4 layout with random weights from ../shared/reference.

    python benchmarks/tile_memory.py [--sizes 512 1024 2048] [--tile auto]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

SHARED = Path(__file__).resolve().parents[2] / "shared"
CHECKPOINT = SHARED / "reference" / "swinir_s_x4_random.pth"
SCALE = 4
MIB = 2**20


def peak_rss_of(command: list[str]) -> tuple[float, float]:
    """(peak resident MiB, seconds) of one child process; each run forks a fresh measuring process."""
    probe = (
        "import resource, subprocess, sys, time\n"
        "start = time.perf_counter()\n"
        "subprocess.run(sys.argv[1:], check=True, stdout=subprocess.DEVNULL)\n"
        "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, time.perf_counter() - start)\n"
    )
    done = subprocess.run([sys.executable, "-c", probe, *command], check=True, capture_output=True, text=True)
    kib, seconds = done.stdout.split()
    return int(kib) / 1024, float(seconds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[512, 1024, 2048])
    parser.add_argument("--tile", default="auto")
    args = parser.parse_args()
    swinir = Path(sys.executable).with_name("swinir")
    print(f"swinir upscale, SwinIR-S x4 (random weights), CPU, --tile {args.tile}, {os.cpu_count()} cores")
    header = f"{'input':>11} {'output':>11} {'output MiB':>11} {'peak RSS MiB':>13}"
    print(f"{header} {'RSS/output':>11} {'seconds':>8}")
    with tempfile.TemporaryDirectory() as folder:
        for side in args.sizes:
            source, target = Path(folder, f"in{side}.png"), Path(folder, f"out{side}.png")
            pixels = np.random.default_rng(side).integers(0, 256, (side, side, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(source)
            command = [str(swinir), "upscale", str(source), "-o", str(target), "--weights", str(CHECKPOINT)]
            command += ["--device", "cpu", "--tile", args.tile, "--quiet", "--overwrite"]
            peak, seconds = peak_rss_of(command)
            output_mib = (side * SCALE) ** 2 * 3 / MIB
            print(
                f"{f'{side}x{side}':>11} {f'{side * SCALE}x{side * SCALE}':>11} {output_mib:>11.0f} "
                f"{peak:>13.0f} {peak / output_mib:>11.1f} {seconds:>8.1f}",
                flush=True,
            )
            target.unlink()


if __name__ == "__main__":
    main()
