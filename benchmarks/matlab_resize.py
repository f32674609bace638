"""MATLAB-exact bicubic shrinking (swinir_cli.matlab_resize): agreement with the published files, and speed.

Agreement: every Set5 HR image is cropped to a multiple of the factor and shrunk by 2, 3, 4 and 8 in both
modes (``integer``: rounded between the passes, MATLAB's imresize on uint8 arrays; ``float``: on
im2double data), and compared value by value with the published ``LR_bicubic`` files (which MATLAB made);
OpenCV's and Pillow's bicubic are shown for comparison. Speed: a random 2040x1356 RGB image (the size of
a DIV2K image) shrunk, median of the repeats; NumPy's element-wise operations and ``take`` run on one
thread, so this is one core's time (CPU time is printed beside the wall time).

    python benchmarks/matlab_resize.py [--repeats 5]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from swinir_cli.matlab_resize import PASS_MODES, downscale, modcrop

SET5 = Path(__file__).resolve().parents[2] / "shared" / "testsets" / "Set5"
FACTORS = (2, 3, 4, 8)
#: A DIV2K-sized image: width x height.
SPEED_SIZE = (2040, 1356)

Shrink = Callable[[np.ndarray, int], np.ndarray]


def opencv_cubic(pixels: np.ndarray, factor: int) -> np.ndarray:
    size = (pixels.shape[1] // factor, pixels.shape[0] // factor)
    return cv2.resize(pixels, size, interpolation=cv2.INTER_CUBIC)


def pillow_bicubic(pixels: np.ndarray, factor: int) -> np.ndarray:
    size = (pixels.shape[1] // factor, pixels.shape[0] // factor)
    return np.asarray(Image.fromarray(pixels).resize(size, Image.Resampling.BICUBIC))


def methods() -> dict[str, Shrink]:
    ours: dict[str, Shrink] = {
        mode: (lambda pixels, factor, mode=mode: downscale(pixels, factor, mode)) for mode in PASS_MODES
    }
    return {**ours, "opencv cubic": opencv_cubic, "pillow bicubic": pillow_bicubic}


def agreement(shrink: Shrink, factor: int) -> tuple[int, int, int, int]:
    """(values, identical, off by one, largest difference) over the Set5 images at ``factor``."""
    values = identical = off_by_one = largest = 0
    for hr_path in sorted((SET5 / "HR").glob("*.png")):
        hr = np.asarray(Image.open(hr_path).convert("RGB"))
        published = np.asarray(
            Image.open(SET5 / "LR_bicubic" / f"X{factor}" / f"{hr_path.stem}x{factor}.png").convert("RGB")
        )
        difference = np.abs(shrink(modcrop(hr, factor), factor).astype(int) - published)
        values += difference.size
        identical += int(np.count_nonzero(difference == 0))
        off_by_one += int(np.count_nonzero(difference == 1))
        largest = max(largest, int(difference.max()))
    return values, identical, off_by_one, largest


def print_agreement() -> None:
    print("Set5 (5 images, RGB) against the published LR_bicubic files")
    print(
        f"{'factor':>6}  {'method':<15} {'values':>7} {'identical':>10} {'%':>8} {'off by 1':>9} {'max':>4}"
    )
    for factor in FACTORS:
        for name, shrink in methods().items():
            values, identical, off_by_one, largest = agreement(shrink, factor)
            share = 100 * identical / values
            print(
                f"{'x' + str(factor):>6}  {name:<15} {values:7d} {identical:10d} {share:8.3f} "
                f"{off_by_one:9d} {largest:4d}"
            )


def print_speed(repeats: int) -> None:
    width, height = SPEED_SIZE
    image = np.random.default_rng(0).integers(0, 256, (height, width, 3), dtype=np.uint8)
    print(f"\nspeed: random {width}x{height} RGB uint8, one thread, median of {repeats} (wall / CPU seconds)")
    for factor in FACTORS:
        for mode in PASS_MODES:
            cropped = modcrop(image, factor)
            walls, cpus = [], []
            for _ in range(repeats):
                wall, cpu = time.perf_counter(), time.process_time()
                downscale(cropped, factor, mode)
                walls.append(time.perf_counter() - wall)
                cpus.append(time.process_time() - cpu)
            print(
                f"x{factor} {mode:<8} {statistics.median(walls):6.3f} / {statistics.median(cpus):6.3f}"
                + (
                    ""
                    if cropped.shape == image.shape
                    else f"  (cropped to {cropped.shape[1]}x{cropped.shape[0]})"
                )
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    print_agreement()
    print_speed(args.repeats)


if __name__ == "__main__":
    main()
