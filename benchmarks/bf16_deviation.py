"""How far ``--precision bf16`` moves the 8-bit output from fp32 on the CPU, so a user can decide.

For every golden case of ../shared/reference (its ``image_u8``) and for a few real photos (McMaster,
through the SwinIR-S x4 reference checkpoint), the whole image is restored in fp32 and in bf16 (autocast)
and compared: PSNR of bf16 against fp32 and the share of 8-bit values that changed. The weights are random
(trained ones cannot be downloaded here), so the figures describe the arithmetic, not a trained model's
quality. Needs a CPU with native bf16 (avx512_bf16 or AMX).

    python benchmarks/bf16_deviation.py [--photos 3] [--crop 128]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image

from swinir_cli.metrics import psnr
from swinir_cli.pipeline import Restorer
from swinir_cli.settings import RestoreSettings

REFERENCE = Path(__file__).resolve().parents[2] / "shared" / "reference"
TESTSETS = REFERENCE.parent / "testsets"


def deviation(checkpoint: Path, pixels: np.ndarray) -> tuple[float, float]:
    """(PSNR of bf16 vs fp32 in dB, % of 8-bit values changed) for one (H, W, C) uint8 image."""
    results = [
        Restorer.from_weights(
            checkpoint, RestoreSettings(device="cpu", tile=0, precision=precision)
        ).restore_pixels(pixels)
        for precision in ("fp32", "bf16")
    ]
    return psnr(results[1], results[0]), float(np.mean(results[0] != results[1]) * 100)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photos", type=int, default=3)
    parser.add_argument("--crop", type=int, default=128)
    args = parser.parse_args()
    print(f"{'case':34} {'PSNR bf16 vs fp32 (dB)':>23} {'8-bit values changed':>21}")
    rows = []
    for checkpoint in [*sorted((REFERENCE / "tiny").glob("*.pth")), REFERENCE / "swinir_s_x4_random.pth"]:
        image = np.load(checkpoint.with_suffix(".npz"))["image_u8"]
        rows.append((checkpoint.stem, *deviation(checkpoint, image if image.ndim == 3 else image[..., None])))
    for photo in sorted((TESTSETS / "McMaster").glob("*.tif"))[: args.photos]:
        pixels = np.asarray(Image.open(photo).convert("RGB"))[: args.crop, : args.crop]
        rows.append(
            (f"McMaster/{photo.name} (SwinIR-S x4)", *deviation(REFERENCE / "swinir_s_x4_random.pth", pixels))
        )
    for name, db, changed in rows:
        print(f"{name:34} {db:>23.1f} {changed:>20.1f}%", flush=True)


if __name__ == "__main__":
    main()
