"""Encoding a batch's results on one thread against the overlapped runner's pool of encoders.

Makes ``--count`` photo-like RGB results of ``--side`` pixels square (the photos of ../shared/testsets,
bicubically enlarged), then encodes all of them with ``swinir_cli.imageio.encode_image`` on one thread and
on a pool of :func:`swinir_cli.runners.default_encoders` threads (one per core, capped), alternating, and
prints the median times and their ratio. The pool pays only because OpenCV and Pillow release the GIL while
they encode; the ratio is bounded by the cores of the machine that runs it, and by its load: the cores
busy (this process's CPU seconds per wall second, the most of the runs) say whether the encoders ran at once
even where other work took the cores.

    python benchmarks/encode_pool.py [--count 16] [--side 2048] [--format PNG] [--repeats 3]
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from swinir_cli.imageio import LoadedImage, encode_image
from swinir_cli.runners import default_encoders

TESTSETS = Path(__file__).resolve().parents[2] / "shared" / "testsets"


def photo_results(count: int, side: int) -> list[LoadedImage]:
    """``count`` RGB images of ``side`` x ``side``, each a different photo enlarged."""
    photos = sorted(path for path in TESTSETS.rglob("*") if path.suffix.lower() in {".png", ".tif", ".bmp"})
    results = []
    for path in itertools.islice(itertools.cycle(photos), count):
        pixels = np.asarray(Image.open(path).convert("RGB"))
        results.append(LoadedImage(cv2.resize(pixels, (side, side), interpolation=cv2.INTER_CUBIC)))
    return results


def encode_all(results: list[LoadedImage], image_format: str, encoders: int) -> tuple[float, float]:
    """(wall seconds, CPU seconds of this process) to encode every result on ``encoders`` threads."""
    wall, cpu = time.perf_counter(), time.process_time()
    with ThreadPoolExecutor(encoders) as pool:
        sizes = list(pool.map(lambda image: len(encode_image(image, image_format)), results))
    assert all(sizes)
    return time.perf_counter() - wall, time.process_time() - cpu


def python_rate(seconds: float, running: Callable[[], bool] = lambda: True) -> float:
    """Iterations per second of a pure-Python loop, for ``seconds`` or while ``running()``."""
    count, start = 0, time.perf_counter()
    while running() and time.perf_counter() - start < seconds:
        count += 1
    return count / (time.perf_counter() - start)


def python_share_while_encoding(image: LoadedImage, image_format: str) -> float:
    """The calling thread's Python progress while another thread encodes ``image``, as a share of its
    progress alone: near 0 if the encoder held the GIL, near 1 (less on a loaded machine) if it released
    it."""
    alone = python_rate(0.5)
    encoder = threading.Thread(target=encode_image, args=(image, image_format))
    encoder.start()
    beside = python_rate(60.0, encoder.is_alive)
    encoder.join()
    return beside / alone


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=16)
    parser.add_argument("--side", type=int, default=2048)
    parser.add_argument("--format", default="PNG", choices=["PNG", "JPEG", "WEBP"])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    results = photo_results(args.count, args.side)
    pool = default_encoders()
    times: dict[int, list[tuple[float, float]]] = {1: [], pool: []}
    for _ in range(args.repeats):
        for encoders in times:
            times[encoders].append(encode_all(results, args.format, encoders))
    medians = {encoders: statistics.median(wall for wall, _ in runs) for encoders, runs in times.items()}
    # CPU seconds per wall second: above 1 only where encoders ran at once, i.e. released the GIL
    cores_busy = {encoders: max(cpu / wall for wall, cpu in runs) for encoders, runs in times.items()}
    size = f"{args.side}x{args.side}"
    print(f"{args.count} results of {size} RGB {args.format}, median of {args.repeats}, alternating")
    for encoders, seconds in medians.items():
        rate, busy = args.count / seconds, cores_busy[encoders]
        print(f"{encoders:2} encoder(s) {seconds:6.2f} s {rate:6.2f} images/s, {busy:.2f} cores busy")
    print(f"ratio 1 encoder / {pool} encoders: {medians[1] / medians[pool]:.2f}x")
    share = python_share_while_encoding(results[0], args.format)
    print(
        f"Python progress beside one encoding: {share:.0%} of its rate alone (about 0 % if it held the GIL)"
    )


if __name__ == "__main__":
    main()
