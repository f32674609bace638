"""The metrics against the authors' figures in ../shared/reference/metrics_golden.json, plus edge cases."""

from __future__ import annotations

import json
import math
from pathlib import Path

import cv2
import numpy as np
import pytest
from helpers import SHARED, require_shared

from swinir_cli import metrics
from swinir_cli.errors import ImageError, UsageError

require_shared()

GOLDEN_ROWS = json.loads((SHARED / "reference" / "metrics_golden.json").read_text())
METRIC_KEYS = ("psnr", "ssim", "psnr_y", "ssim_y", "psnrb", "psnrb_y")


def _read_bgr_or_gray(relative: str) -> np.ndarray:
    image = cv2.imread(str(SHARED / "testsets" / relative), cv2.IMREAD_UNCHANGED)
    assert image is not None, relative
    return image


def _bicubic_sr_pair(row: dict) -> tuple[np.ndarray, np.ndarray]:
    """OpenCV bicubic upscaling of the bicubic LR; the golden rows resized float32 pixels, then rounded."""
    scale = row["crop_border"]
    hr_path = Path(row["gt"])
    gt = _read_bgr_or_gray(row["gt"])
    lr = _read_bgr_or_gray(f"Set5/LR_bicubic/X{scale}/{hr_path.stem}x{scale}.png")
    height, width = lr.shape[:2]
    upscaled = cv2.resize(
        lr.astype(np.float32), (width * scale, height * scale), interpolation=cv2.INTER_CUBIC
    )
    restored = np.clip(np.round(upscaled), 0, 255).astype(np.uint8)
    return restored, gt[: height * scale, : width * scale]


def _noisy_pair(row: dict) -> tuple[np.ndarray, np.ndarray]:
    """The authors' seeded noise on float32 [0, 1] pixels, clipped and rounded as a saved image."""
    gt = _read_bgr_or_gray(row["gt"])
    np.random.seed(0)
    noisy = gt.astype(np.float32) / 255.0 + np.random.normal(0, row["sigma"] / 255.0, gt.shape)
    restored = np.round(np.clip(noisy, 0, 1) * 255).astype(np.uint8)
    return restored, gt


def _jpeg_pair(row: dict) -> tuple[np.ndarray, np.ndarray]:
    gt = _read_bgr_or_gray(row["gt"])
    ok, encoded = cv2.imencode(".jpg", gt, [int(cv2.IMWRITE_JPEG_QUALITY), row["quality"]])
    assert ok
    restored = cv2.imdecode(encoded, cv2.IMREAD_GRAYSCALE if row["kind"] == "jpeg_gray" else cv2.IMREAD_COLOR)
    return restored, gt


PAIR_MAKERS = {
    "sr": _bicubic_sr_pair,
    "denoise_color": _noisy_pair,
    "jpeg_gray": _jpeg_pair,
    "jpeg_color": _jpeg_pair,
}


def _row_id(row: dict) -> str:
    level = row.get("sigma", row.get("quality", row["crop_border"]))
    return f"{row['kind']}-{row['gt']}-{level}"


def test_golden_file_has_the_35_rows_described() -> None:
    assert len(GOLDEN_ROWS) == 35
    assert {row["kind"] for row in GOLDEN_ROWS} == set(PAIR_MAKERS)


@pytest.mark.parametrize("row", GOLDEN_ROWS, ids=_row_id)
def test_reproduces_authors_figures(row: dict) -> None:
    restored_bgr, gt_bgr = PAIR_MAKERS[row["kind"]](row)
    # The golden rows hold BGR as cv2 reads; our API takes RGB.
    if restored_bgr.ndim == 3:
        restored_bgr, gt_bgr = restored_bgr[..., ::-1], gt_bgr[..., ::-1]
    results = metrics.compute_all(
        restored_bgr, gt_bgr, crop_border=row["crop_border"], with_psnrb="psnrb" in row
    )
    expected = {key: row[key] for key in METRIC_KEYS if key in row}
    assert expected, row
    for key, value in expected.items():
        assert results[key] == pytest.approx(value, abs=1e-6), key


def test_identical_images_give_infinite_psnr_and_unit_ssim() -> None:
    image = np.random.default_rng(1).integers(0, 256, (32, 40, 3), dtype=np.uint8)
    assert metrics.psnr(image, image) == math.inf
    assert metrics.psnr(image, image, y_channel=True) == math.inf
    assert metrics.ssim(image, image) == pytest.approx(1.0)
    assert metrics.psnrb(image, image) == math.inf


def test_psnr_matches_textbook_formula() -> None:
    gt = np.full((16, 16), 100, dtype=np.uint8)
    restored = gt.copy()
    restored[0, 0] = 110  # one pixel off by 10: MSE = 100 / 256
    assert metrics.psnr(restored, gt) == pytest.approx(20 * math.log10(255 / math.sqrt(100 / 256)))
    # Cropping one pixel removes the only difference.
    assert metrics.psnr(restored, gt, crop_border=1) == math.inf


def test_y_channel_takes_rgb_order() -> None:
    red = np.zeros((12, 12, 3), dtype=np.uint8)
    red[..., 0] = 255
    assert metrics.rgb_to_y(red) == pytest.approx(16 + 65.481, abs=1e-4)
    blue = red[..., ::-1]
    assert metrics.rgb_to_y(blue) == pytest.approx(16 + 24.966, abs=1e-4)


def test_swapping_red_and_blue_changes_only_y_metrics() -> None:
    rng = np.random.default_rng(2)
    gt = rng.integers(0, 256, (24, 24, 3), dtype=np.uint8)
    restored = gt.copy()
    restored[..., 0] = np.clip(restored[..., 0].astype(int) + 20, 0, 255)  # error in red only
    swapped = metrics.compute_all(restored[..., ::-1], gt[..., ::-1])
    straight = metrics.compute_all(restored, gt)
    assert swapped["psnr"] == pytest.approx(straight["psnr"])
    assert swapped["ssim"] == pytest.approx(straight["ssim"])
    # Red weighs 65.481 in Y and blue 24.966, so a red error costs more on Y than the same error in blue.
    assert straight["psnr_y"] < swapped["psnr_y"] - 5


def test_gray_y_metrics_equal_plain_metrics() -> None:
    rng = np.random.default_rng(3)
    gt = rng.integers(0, 256, (30, 30), dtype=np.uint8)
    restored = np.clip(gt + rng.normal(0, 5, gt.shape), 0, 255).round().astype(np.uint8)
    results = metrics.compute_all(restored, gt, with_psnrb=True)
    assert results["psnr_y"] == pytest.approx(results["psnr"], abs=1e-4)
    assert results["ssim_y"] == pytest.approx(results["ssim"], abs=1e-9)
    assert results["psnrb_y"] == pytest.approx(results["psnrb"], abs=1e-4)


def test_psnrb_equals_psnr_without_blocking_and_is_lower_with_it() -> None:
    ramp = np.add.outer(np.arange(64), np.arange(64)).astype(np.uint8)  # smooth ground truth
    shifted = ramp + 3  # the same error everywhere: no block edge stands out
    assert metrics.psnrb(shifted, ramp) == pytest.approx(metrics.psnr(shifted, ramp))
    rows, cols = np.indices(ramp.shape)
    checkerboard = 6 * ((rows // 8 + cols // 8) % 2)  # steps only across 8x8 block boundaries
    blocky = (ramp + checkerboard).astype(np.uint8)
    assert metrics.psnrb(blocky, ramp) < metrics.psnr(blocky, ramp) - 1


def test_compute_all_keys() -> None:
    image = np.random.default_rng(5).integers(0, 256, (20, 20, 3), dtype=np.uint8)
    assert set(metrics.compute_all(image, image)) == {"psnr", "ssim", "psnr_y", "ssim_y"}
    assert set(metrics.compute_all(image, image, with_psnrb=True)) == set(METRIC_KEYS)


def test_shape_mismatch_raises_image_error() -> None:
    with pytest.raises(ImageError, match=r"\(10, 10\).*\(10, 12\)"):
        metrics.psnr(np.zeros((10, 10)), np.zeros((10, 12)))
    with pytest.raises(ImageError, match="HxWx3"):
        metrics.psnr(np.zeros((10, 10, 4)), np.zeros((10, 10, 4)))


def test_bad_crop_border_raises_usage_error() -> None:
    image = np.zeros((20, 20), dtype=np.uint8)
    with pytest.raises(UsageError, match="crop_border must be 0 or more, got -1"):
        metrics.psnr(image, image, crop_border=-1)
    with pytest.raises(UsageError, match="crop_border 10 leaves no pixels"):
        metrics.psnr(image, image, crop_border=10)
    with pytest.raises(UsageError, match="larger than 10x10"):
        metrics.ssim(image, image, crop_border=5)
