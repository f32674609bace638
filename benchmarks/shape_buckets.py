"""Shape buckets (``--shape-buckets``): what they cost in padded compute and in pixels.

a. Padded compute (geometry only): for the 25 mixed photo sizes of ``gpu_batch.py`` (120-640 pixels a
   side, seeded, each its own shape) and 640x480 frames, whole images and ``--tile`` plans, the forward
   pixels with buckets over those without, and the distinct forward shapes with and without.
b. Fidelity: fp32 whole-image outputs with buckets (the network masking the padding) against the authors'
   exact shapes (no buckets), per model: the largest difference of the unclamped float outputs, the share
   of 8-bit values within one level, the largest 8-bit difference, and the largest farther than two windows
   from the bottom and right border (``inner max``). Models: the reference SwinIR-S x4 checkpoint
   (``../shared/reference/swinir_s_x4_random.pth``) on crops of mixed sizes of the McMaster images, and
   every tiny checkpoint of ``../shared/reference/tiny`` on its own image, all with RANDOM weights.
c. Speed: seconds of SwinIR-S x4's whole-image fp32 forwards of those McMaster crops, buckets off and on
   alternating in one process (``--rounds``; the first round is each shape's first pass, set-up included).

    python benchmarks/shape_buckets.py [--device cpu|cuda] [--crops 12] [--threads 2] [--rounds 3]

On a lent GPU (the reference data copied to an ignored folder, as for ``gpu_check.py``), (b) and (c) there
too (fp32, TF32 off):

    PYTHONPATH=. python3 benchmarks/shape_buckets.py --device cuda --shared build/gpu_shared
"""

from __future__ import annotations

import argparse
import statistics
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from gpu_batch import Plan, photo_shapes
from PIL import Image

from swinir_cli.buckets import bucket_side
from swinir_cli.pipeline import Restorer
from swinir_cli.settings import RestoreSettings
from swinir_cli.tiling import default_overlap, plan_tile_sides

SHARED = Path(__file__).resolve().parents[2] / "shared"
WINDOW = 8
#: ``gpu_batch.py``'s real batch: its photos (their shapes drawn as it draws them) and its frames.
BATCH = Plan(torch.device("cpu"), dry_run=False)
#: The SwinIR-S x4 checkpoint of random weights in the reference data.
SWINIR_S = Path("reference") / "swinir_s_x4_random.pth"


def forward_shapes(height: int, width: int, tile: int, buckets: bool) -> list[tuple[int, int]]:
    """The (height, width) of every forward input of one image's plan."""
    overlap = default_overlap(WINDOW)
    rows = plan_tile_sides(height, tile, overlap, WINDOW)
    cols = plan_tile_sides(width, tile, overlap, WINDOW)
    if buckets:
        rows, cols = [bucket_side(s, WINDOW) for s in rows], [bucket_side(s, WINDOW) for s in cols]
    return [(row, col) for row in rows for col in cols]


def padded_compute() -> None:
    print("a. padded compute: forward pixels with buckets / without; distinct forward shapes")
    print(f"{'images':<24} {'tile':>5} {'pixels ratio':>13} {'shapes without':>15} {'shapes with':>12}")
    (low, high), (height, width) = BATCH.photo_sides, BATCH.frame_shape
    sets = {
        f"{BATCH.photos} photos {low}-{high}": photo_shapes(BATCH, np.random.default_rng(0)),
        f"{BATCH.frames} frames {width}x{height}": [BATCH.frame_shape] * BATCH.frames,
    }
    for name, shapes in sets.items():
        for tile in (0, 512, 256):
            plans = {
                buckets: [s for h, w in shapes for s in forward_shapes(h, w, tile, buckets)]
                for buckets in (False, True)
            }
            pixels = {buckets: sum(h * w for h, w in plan) for buckets, plan in plans.items()}
            print(
                f"{name:<24} {tile:>5} {pixels[True] / pixels[False]:>13.3f} "
                f"{len(set(plans[False])):>15} {len(set(plans[True])):>12}"
            )


def to_8bit(y: torch.Tensor) -> np.ndarray:
    """An unclamped (1, C, H, W) output rounded to 8 bits as the authors round."""
    return (y[0].clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()


@dataclass(frozen=True)
class Fidelity:
    """Outputs with buckets against the exact shapes': the largest float difference, the 8-bit values
    within one level of all ``values``, the largest 8-bit difference, and the largest farther in."""

    float_max: float = 0.0
    within: int = 0
    values: int = 0
    largest: int = 0
    inner_largest: int = 0

    def __add__(self, other: Fidelity) -> Fidelity:
        return Fidelity(
            max(self.float_max, other.float_max),
            self.within + other.within,
            self.values + other.values,
            max(self.largest, other.largest),
            max(self.inner_largest, other.inner_largest),
        )

    def row(self) -> str:
        return (
            f"{self.float_max:>9.2e} {100 * self.within / self.values:>14.3f}% {self.largest:>10} "
            f"{self.inner_largest:>9}"
        )


def compare(expected: torch.Tensor, produced: torch.Tensor, band: int) -> Fidelity:
    """The fidelity of one output, ``band``: output pixels from the bottom and right border not inner."""
    assert expected.shape == produced.shape, (expected.shape, produced.shape)
    difference = np.abs(to_8bit(expected).astype(np.int16) - to_8bit(produced).astype(np.int16))
    inner = difference[: max(0, difference.shape[0] - band), : max(0, difference.shape[1] - band)]
    return Fidelity(
        float((expected - produced).abs().max()),
        int(np.count_nonzero(difference <= 1)),
        difference.size,
        int(difference.max()),
        int(inner.max()) if inner.size else 0,
    )


def mcmaster_crops(shared: Path, count: int) -> list[np.ndarray]:
    """``count`` seeded crops of 40-160 pixels a side from the McMaster images, in turn."""
    rng = np.random.default_rng(1)
    sources = [
        np.asarray(Image.open(path).convert("RGB"))
        for path in sorted((shared / "testsets" / "McMaster").glob("*.tif"))
    ]
    images = []
    for index in range(count):
        height, width = (int(side) for side in rng.integers(40, 161, 2))
        source = sources[index % len(sources)]
        top, left = rng.integers(0, source.shape[0] - height), rng.integers(0, source.shape[1] - width)
        images.append(np.ascontiguousarray(source[top : top + height, left : left + width]))
    return images


def as_input(image: np.ndarray, device: torch.device) -> torch.Tensor:
    """An (H, W, C) 8-bit image as a (1, C, H, W) float input in [0, 1] on ``device``."""
    return torch.from_numpy(image).permute(2, 0, 1)[None].float().div(255).to(device)


def buckets_off_and_on(weights: Path, device: str) -> dict[str, Restorer]:
    """Whole-image fp32 restorers of ``weights`` on ``device``: ``off`` at the authors' exact shapes, ``on``
    with shape buckets."""
    restorers = {
        mode: Restorer.from_weights(
            weights, RestoreSettings(device=device, tile=0, precision="fp32", shape_buckets=mode)
        )
        for mode in ("off", "on")
    }
    assert restorers["on"].shape_buckets and not restorers["off"].shape_buckets
    return restorers


def fidelity(device: str, crops: int, shared: Path) -> None:
    print(f"\nb. fidelity on {device}, fp32 whole images, RANDOM weights: buckets against the exact shapes")
    print("(float: unclamped outputs; inner: farther than two windows from the bottom and right border)")
    print(
        f"{'model':<28} {'images':>6} {'float max':>9} {'within 1 level':>15} {'max levels':>10} "
        f"{'inner max':>9} {'seconds':>8}"
    )
    cases = {"SwinIR-S x4 (McMaster crops)": (shared / SWINIR_S, mcmaster_crops(shared, crops))}
    for path in sorted((shared / "reference" / "tiny").glob("*.pth")):
        image = np.load(path.with_suffix(".npz"))["image_u8"]
        cases[f"tiny {path.stem}"] = (path, [image if image.ndim == 3 else image[..., None]])
    totals = Fidelity()
    for name, (weights, images) in cases.items():
        started = time.perf_counter()
        exact, bucketed = buckets_off_and_on(weights, device).values()
        measured = Fidelity()
        band = 2 * exact.window * exact.scale
        for image in images:
            pixels = image if image.shape[2] == exact.channels else np.repeat(image[..., :1], 3, axis=2)
            x = as_input(pixels, exact.device)
            with torch.inference_mode():
                outputs = [restorer.forward_padded(x).cpu() for restorer in (exact, bucketed)]
            measured += compare(*outputs, band)
        seconds = time.perf_counter() - started
        print(f"{name:<28} {len(images):>6} {measured.row()} {seconds:>8.1f}")
        totals += measured
    print(f"{'all':<28} {'':>6} {totals.row()}")


def speed(device: str, crops: int, shared: Path, rounds: int) -> None:
    print(f"\nc. speed on {device}, SwinIR-S x4 fp32 whole images, RANDOM weights: {crops} McMaster crops")
    restorers = buckets_off_and_on(shared / SWINIR_S, device)
    torch_device = restorers["off"].device
    inputs = [as_input(image, torch_device) for image in mcmaster_crops(shared, crops)]
    with torch.inference_mode():  # the process's own first-call costs, on a shape none of the crops has
        for restorer in restorers.values():
            restorer.forward_padded(torch.rand(1, 3, 24, 24, device=torch_device))
    seconds: dict[str, list[float]] = {mode: [] for mode in restorers}
    for round_ in range(rounds):
        order = list(restorers) if round_ % 2 == 0 else list(reversed(restorers))
        for mode in order:
            started = time.perf_counter()
            with torch.inference_mode():
                for x in inputs:
                    restorers[mode].forward_padded(x)
            if torch_device.type == "cuda":
                torch.cuda.synchronize(torch_device)
            seconds[mode].append(time.perf_counter() - started)
    print(f"{'buckets':<8} {'first pass s':>12} {'later passes s (median)':>24} {'every round s':<30}")
    for mode, values in seconds.items():
        later = f"{statistics.median(values[1:]):>24.2f}" if len(values) > 1 else f"{'':>24}"
        print(f"{mode:<8} {values[0]:>12.2f} {later} {' '.join(f'{v:.2f}' for v in values)}")
    ratios = [on / off for on, off in zip(seconds["on"], seconds["off"], strict=True)]
    print(f"on / off per round: {' '.join(f'{r:.2f}' for r in ratios)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu", help="where (b) runs: cpu (default) or cuda")
    parser.add_argument("--crops", type=int, default=12, help="McMaster crops of 40-160 pixels for SwinIR-S")
    parser.add_argument("--shared", type=Path, default=SHARED, help="holds reference/ and testsets/McMaster")
    parser.add_argument("--threads", type=int, default=2, help="CPU threads")
    parser.add_argument("--rounds", type=int, default=3, help="passes over the crops in (c), each mode")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    padded_compute()
    fidelity(args.device, args.crops, args.shared)
    speed(args.device, args.crops, args.shared, args.rounds)


if __name__ == "__main__":
    main()
