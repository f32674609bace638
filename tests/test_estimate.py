"""JPEG-quality and noise-level estimation on images the tests degrade themselves."""

from __future__ import annotations

import math
from pathlib import Path

import cv2
import numpy as np
import pytest
from helpers import TESTSETS, require_shared
from PIL import Image

from swinir_cli.errors import ImageError, UsageError
from swinir_cli.estimate import (
    choose_jpeg_model_quality,
    choose_noise_model_sigma,
    estimate_jpeg_quality,
    estimate_noise_sigma,
    nearest_level,
)

require_shared()


@pytest.fixture(scope="module")
def gray_image() -> np.ndarray:
    return cv2.imread(str(TESTSETS / "classic5" / "barbara.bmp"), cv2.IMREAD_GRAYSCALE)


@pytest.fixture(scope="module")
def color_image() -> np.ndarray:
    bgr = cv2.imread(str(TESTSETS / "McMaster" / "1.tif"), cv2.IMREAD_COLOR)
    return np.ascontiguousarray(bgr[..., ::-1])


def _opencv_jpeg(image: np.ndarray, quality: int) -> bytes:
    ok, encoded = cv2.imencode(".jpg", image, [int(cv2.IMWRITE_JPEG_QUALITY), quality])
    assert ok
    return encoded.tobytes()


def _authors_noise(image: np.ndarray, sigma: int) -> np.ndarray:
    """The authors' seeded Gaussian noise, clipped and rounded as a saved noisy image would be."""
    np.random.seed(0)
    noisy = image.astype(np.float32) / 255.0 + np.random.normal(0, sigma / 255.0, image.shape)
    return np.round(np.clip(noisy, 0, 1) * 255).astype(np.uint8)


def test_nearest_level_and_ties() -> None:
    assert nearest_level(12, (10, 20, 30)) == 10
    assert nearest_level(27.9, (30, 10, 20)) == 30
    assert nearest_level(15, (10, 20)) == 10
    assert nearest_level(15, (10, 20), on_tie="higher") == 20
    assert nearest_level(500, (15, 25, 50)) == 50


def test_nearest_level_rejects_bad_input() -> None:
    with pytest.raises(UsageError, match="at least one level"):
        nearest_level(3, ())
    with pytest.raises(UsageError, match="non-finite value nan"):
        nearest_level(math.nan, (10, 20))


def test_released_model_choice_prefers_the_stronger_model_on_ties() -> None:
    assert [choose_jpeg_model_quality(q) for q in (1, 15, 16, 25, 35, 36, 90)] == [10, 10, 20, 20, 30, 40, 40]
    assert [choose_noise_model_sigma(s) for s in (2, 19.9, 20, 37.5, 37.4, 80)] == [15, 15, 25, 50, 25, 50]


@pytest.mark.parametrize("quality", [3, 10, 20, 27, 30, 40, 63, 95, 100])
def test_jpeg_quality_of_opencv_files_is_exact(
    quality: int, gray_image: np.ndarray, color_image: np.ndarray
) -> None:
    assert estimate_jpeg_quality(_opencv_jpeg(gray_image, quality)) == quality
    assert estimate_jpeg_quality(_opencv_jpeg(color_image[..., ::-1], quality)) == quality


@pytest.mark.parametrize(("quality", "model"), [(8, 10), (10, 10), (20, 20), (31, 30), (40, 40), (85, 40)])
def test_jpeg_files_choose_the_hand_picked_model(
    quality: int, model: int, tmp_path: Path, color_image: np.ndarray
) -> None:
    path = tmp_path / f"photo_q{quality}.jpg"
    Image.fromarray(color_image).save(path, quality=quality)  # Pillow's encoder, read back from a file
    estimate = estimate_jpeg_quality(path)
    assert estimate == quality
    assert choose_jpeg_model_quality(estimate) == model


def test_non_jpeg_gives_none(tmp_path: Path, color_image: np.ndarray) -> None:
    path = tmp_path / "lossless.png"
    Image.fromarray(color_image).save(path)
    assert estimate_jpeg_quality(path) is None
    assert estimate_jpeg_quality(path.read_bytes()) is None


def test_unreadable_jpeg_sources_raise_image_error(tmp_path: Path) -> None:
    with pytest.raises(ImageError, match=r"missing\.jpg: no such file"):
        estimate_jpeg_quality(tmp_path / "missing.jpg")
    garbage = tmp_path / "garbage.jpg"
    garbage.write_bytes(b"definitely not an image")
    with pytest.raises(ImageError, match=r"garbage\.jpg: cannot be read as an image"):
        estimate_jpeg_quality(garbage)
    with pytest.raises(ImageError, match="image bytes: cannot be read"):
        estimate_jpeg_quality(b"\x00\x01\x02")


@pytest.mark.parametrize("sigma", [15, 25, 50])
def test_noise_level_picks_the_released_model(
    sigma: int, gray_image: np.ndarray, color_image: np.ndarray
) -> None:
    for image in (gray_image, color_image):
        estimate = estimate_noise_sigma(_authors_noise(image, sigma))
        assert estimate == pytest.approx(sigma, abs=2.5)  # texture adds a little on barbara
        assert choose_noise_model_sigma(estimate) == sigma


@pytest.mark.parametrize(("sigma", "model"), [(5, 15), (10, 15), (30, 25), (45, 50), (60, 50)])
def test_noise_between_levels_picks_the_nearest_model(
    sigma: int, model: int, color_image: np.ndarray
) -> None:
    assert choose_noise_model_sigma(estimate_noise_sigma(_authors_noise(color_image, sigma))) == model


def test_clean_images_give_small_noise_estimates(gray_image: np.ndarray, color_image: np.ndarray) -> None:
    assert estimate_noise_sigma(gray_image) < 5
    assert estimate_noise_sigma(color_image) < 7
    flat = np.full((64, 64), 128, dtype=np.uint8)
    assert estimate_noise_sigma(flat) == 0.0


def test_noise_estimate_accepts_gray_shapes_and_float_arrays(gray_image: np.ndarray) -> None:
    noisy = _authors_noise(gray_image, 25)
    expected = estimate_noise_sigma(noisy)
    assert estimate_noise_sigma(noisy[..., None]) == expected
    assert estimate_noise_sigma(noisy.astype(np.float32)) == expected


def test_noise_estimate_near_saturation_is_not_fooled_by_clipping() -> None:
    rng = np.random.default_rng(0)
    mostly_white = np.full((128, 128), 250.0)
    mostly_white[:, :48] = 120.0  # a mid-gray strip where the noise is not clipped
    noisy = np.clip(np.round(mostly_white + rng.normal(0, 25, mostly_white.shape)), 0, 255)
    assert estimate_noise_sigma(noisy) == pytest.approx(25, rel=0.12)


def test_noise_estimate_rejects_non_images() -> None:
    with pytest.raises(ImageError, match=r"shape \(8, 8, 4\)"):
        estimate_noise_sigma(np.zeros((8, 8, 4)))
    with pytest.raises(ImageError, match="at least 4x4"):
        estimate_noise_sigma(np.zeros((2, 40)))
