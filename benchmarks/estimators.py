"""How often the automatic JPEG-quality and noise-level choices pick the model a user would pick by hand.

For every classic5 (gray) and McMaster (colour) image:

* JPEG: encoded with OpenCV at qualities 5, 10, ..., 95; the quality is estimated from the encoded bytes.
* Noise: the authors' seeded Gaussian noise (``np.random.seed(0)``, ``np.random.normal(0, sigma/255)`` on
  [0, 1] float32 pixels) at sigma 5, 10, ..., 60, clipped to [0, 1] and rounded to uint8 as a saved noisy
  image would be; sigma is estimated from those pixels.

"By hand" means the released level nearest to the true value (JPEG 10/20/30/40, noise 15/25/50); values
exactly halfway go to the stronger model (the lower quality, the higher sigma), the same rule the
automatic choice uses. Prints the agreement per true value, per hand-picked model and overall, and the
mean absolute error of the raw estimates.

    python benchmarks/estimators.py [--testsets ../shared/testsets]
"""

from __future__ import annotations

import argparse
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from swinir_cli.estimate import (
    choose_jpeg_model_quality,
    choose_noise_model_sigma,
    estimate_jpeg_quality,
    estimate_noise_sigma,
)

DEFAULT_TESTSETS = Path(__file__).resolve().parents[2] / "shared" / "testsets"
JPEG_QUALITIES = range(5, 100, 5)
NOISE_SIGMAS = range(5, 65, 5)


@dataclass(frozen=True)
class Trial:
    true_value: int
    estimate: float
    hand_pick: int
    auto_pick: int


def load_images(testsets: Path) -> list[tuple[str, np.ndarray]]:
    """classic5 as gray HxW and McMaster as HxWx3 BGR uint8 arrays, as the authors read them."""
    images = []
    for path in sorted((testsets / "classic5").glob("*.bmp")):
        images.append((path.name, cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)))
    for path in sorted((testsets / "McMaster").glob("*.tif"), key=lambda p: int(p.stem)):
        images.append((path.name, cv2.imread(str(path), cv2.IMREAD_COLOR)))
    if not images:
        raise SystemExit(f"no classic5/McMaster images under {testsets}")
    return images


def jpeg_trials(images: list[tuple[str, np.ndarray]]) -> Iterator[Trial]:
    for _, image in images:
        for quality in JPEG_QUALITIES:
            ok, encoded = cv2.imencode(".jpg", image, [int(cv2.IMWRITE_JPEG_QUALITY), quality])
            assert ok, quality
            estimate = estimate_jpeg_quality(encoded.tobytes())
            assert estimate is not None
            yield Trial(
                quality, estimate, choose_jpeg_model_quality(quality), choose_jpeg_model_quality(estimate)
            )


def add_authors_noise(image: np.ndarray, sigma: int) -> np.ndarray:
    np.random.seed(0)
    noisy = image.astype(np.float32) / 255.0 + np.random.normal(0, sigma / 255.0, image.shape)
    return np.round(np.clip(noisy, 0, 1) * 255).astype(np.uint8)


def noise_trials(images: list[tuple[str, np.ndarray]]) -> Iterator[Trial]:
    for _, image in images:
        for sigma in NOISE_SIGMAS:
            estimate = estimate_noise_sigma(add_authors_noise(image, sigma))
            yield Trial(sigma, estimate, choose_noise_model_sigma(sigma), choose_noise_model_sigma(estimate))


def summarise(title: str, trials: list[Trial]) -> None:
    print(f"\n== {title}: {len(trials)} images x levels")
    print(f"{'true':>6} {'hand':>5} {'agree':>8} {'MAE':>7} {'mean est':>9}")
    by_true: dict[int, list[Trial]] = defaultdict(list)
    by_hand: dict[int, list[Trial]] = defaultdict(list)
    for trial in trials:
        by_true[trial.true_value].append(trial)
        by_hand[trial.hand_pick].append(trial)
    for true_value, group in sorted(by_true.items()):
        print(
            f"{true_value:>6} {group[0].hand_pick:>5} {_agreement(group):>8} "
            f"{_mae(group):>7.2f} {np.mean([t.estimate for t in group]):>9.2f}"
        )
    for hand_pick, group in sorted(by_hand.items()):
        print(
            f"model {hand_pick:>3}: agreement {_agreement(group)} ({len(group)} cases), MAE {_mae(group):.2f}"
        )
    print(f"overall: agreement {_agreement(trials)}, MAE {_mae(trials):.2f}")


def _agreement(trials: list[Trial]) -> str:
    matches = sum(t.auto_pick == t.hand_pick for t in trials)
    return f"{matches}/{len(trials)} = {100 * matches / len(trials):.1f}%"


def _mae(trials: list[Trial]) -> float:
    return float(np.mean([abs(t.estimate - t.true_value) for t in trials]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--testsets", type=Path, default=DEFAULT_TESTSETS)
    args = parser.parse_args()
    images = load_images(args.testsets)
    print(f"{len(images)} images from {args.testsets} (classic5 gray, McMaster colour)")
    summarise("JPEG quality (qualities 5..95)", list(jpeg_trials(images)))
    summarise("Noise sigma (sigma 5..60)", list(noise_trials(images)))


if __name__ == "__main__":
    main()
