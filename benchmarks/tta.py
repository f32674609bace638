"""Effect and cost of the x8 self-ensemble (``--tta``) on the golden checkpoints, in one run.

For each tiny reference checkpoint and the random-weight SwinIR-S x4, the golden ``image_u8`` is restored
with and without ``tta=True`` (whole image, CPU, fp32). Printed: the mean and maximum absolute difference
between the two 8-bit outputs (levels), the share of output values that differ, and the ratio of the
median times. The plain output is also compared with the golden ``pipeline_u8`` ("golden": how many
values differ and by at most how much; a few values one level off are last-bit float differences).

Random weights are not trained to be equivariant to flips and rotations, so the differences here are an
upper bound on what a trained model shows: they measure how far the ensemble moves the output, not how
much closer to the truth it gets (``swinir eval --tta`` measures that on real data with real weights).

    python benchmarks/tta.py [--repeats 5] [--threads 1]
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import numpy as np
import torch

from swinir_cli.pipeline import Restorer
from swinir_cli.settings import RestoreSettings

REFERENCE = Path(__file__).resolve().parents[2] / "shared" / "reference"


def cases() -> list[tuple[str, Path]]:
    tiny = sorted((REFERENCE / "tiny").glob("*.pth"))
    return [(p.stem, p) for p in tiny] + [("swinir_s_x4_random", REFERENCE / "swinir_s_x4_random.pth")]


def timed(restorer: Restorer, pixels: np.ndarray, repeats: int) -> tuple[float, np.ndarray]:
    """(median seconds, output) of ``repeats`` restorations after one warm-up."""
    output = restorer.restore_pixels(pixels)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        output = restorer.restore_pixels(pixels)
        times.append(time.perf_counter() - start)
    return statistics.median(times), output


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {args.threads} thread(s), median of {args.repeats} runs after warm-up")
    print(
        f"{'checkpoint':28} {'input':>7} {'golden':>6} {'mean |d|':>9} {'max |d|':>8} "
        f"{'differ':>7} {'plain (s)':>10} {'tta (s)':>8} {'ratio':>6}"
    )
    for name, path in cases():
        golden = np.load(path.with_suffix(".npz"))
        pixels = golden["image_u8"]
        pixels = pixels[..., None] if pixels.ndim == 2 else pixels
        expected = golden["pipeline_u8"]
        plain_restorer = Restorer.from_weights(path, RestoreSettings(device="cpu", tile=0))
        tta_restorer = Restorer(plain_restorer.model, RestoreSettings(device="cpu", tile=0, tta=True))
        plain_s, plain = timed(plain_restorer, pixels, args.repeats)
        tta_s, ensembled = timed(tta_restorer, pixels, args.repeats)
        off = np.abs(plain.reshape(expected.shape).astype(np.int16) - expected)
        golden_note = f"{(off > 0).sum()}@{off.max()}"
        diff = np.abs(plain.astype(np.int16) - ensembled.astype(np.int16))
        size = f"{pixels.shape[1]}x{pixels.shape[0]}"
        print(
            f"{name:28} {size:>7} {golden_note:>6} {diff.mean():9.2f} {diff.max():8d} "
            f"{(diff > 0).mean():7.1%} {plain_s:10.4f} {tta_s:8.4f} {tta_s / plain_s:5.1f}x"
        )


if __name__ == "__main__":
    main()
