"""8-bit PNG encoding: this project's encoder (OpenCV's IDAT, spliced metadata) against Pillow's default.

Encodes a photo-like 2048x2048 RGB result (a McMaster image, bicubically enlarged) with
``swinir_cli.imageio.encode_image`` and with Pillow's ``Image.save(format="PNG")``, alternating, and
prints the median times, their ratio and the file sizes.

    python benchmarks/png_encode.py [--side 2048] [--repeats 3]
"""

from __future__ import annotations

import argparse
import io
import statistics
import time
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from swinir_cli.imageio import LoadedImage, encode_image

SHARED = Path(__file__).resolve().parents[2] / "shared"


def timed(encode) -> tuple[float, int]:
    start = time.perf_counter()
    size = len(encode())
    return time.perf_counter() - start, size


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--side", type=int, default=2048)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    photo = np.asarray(Image.open(sorted((SHARED / "testsets" / "McMaster").glob("*.tif"))[0]).convert("RGB"))
    pixels = cv2.resize(photo, (args.side, args.side), interpolation=cv2.INTER_CUBIC)

    def pillow() -> bytes:
        stream = io.BytesIO()
        Image.fromarray(pixels).save(stream, format="PNG")
        return stream.getvalue()

    def ours() -> bytes:
        return encode_image(LoadedImage(pixels), "PNG")

    runs: dict[str, list[tuple[float, int]]] = {"ours": [], "pillow": []}
    for _ in range(args.repeats):
        runs["ours"].append(timed(ours))
        runs["pillow"].append(timed(pillow))
    medians = {name: statistics.median(t for t, _ in results) for name, results in runs.items()}
    sizes = {name: results[0][1] for name, results in runs.items()}
    print(f"{args.side}x{args.side} RGB, median of {args.repeats}, alternating")
    for name in runs:
        print(f"{name:7} {medians[name]:6.2f} s {sizes[name] / 2**20:7.2f} MiB")
    time_ratio, size_ratio = medians["ours"] / medians["pillow"], sizes["ours"] / sizes["pillow"]
    print(f"ratio ours/pillow: time {time_ratio:.2f}, size {size_ratio:.2f}")


if __name__ == "__main__":
    main()
