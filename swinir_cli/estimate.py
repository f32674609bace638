"""Estimate how an image was degraded, to pick the released denoising or JPEG model automatically.

* :func:`estimate_jpeg_quality` reads a JPEG file's quantization tables and finds the IJG quality
  (1-100, the scale of libjpeg, OpenCV, Pillow and most software) whose scaled standard tables fit best.
* :func:`estimate_noise_sigma` measures additive Gaussian noise (0-255 units) from the finest diagonal
  Haar wavelet coefficients, ignoring regions near black or white where clipping hides the noise.
* :func:`nearest_level` maps an estimate to a released model; :func:`choose_jpeg_model_quality` and
  :func:`choose_noise_model_sigma` apply it to SwinIR's released levels. Halfway values go to the
  stronger model (lower JPEG quality, higher noise level): leftover artifacts or noise are worse than
  slightly more smoothing.
* :func:`jpeg_quality_level` and :func:`noise_sigma_level` are the per-image estimators the tasks
  (:mod:`swinir_cli.tasks`) point to: a loaded image in, a :class:`LevelEstimate` out.
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import cv2
import numpy as np
from PIL import Image, UnidentifiedImageError

from swinir_cli.errors import ImageError, UsageError
from swinir_cli.imageio import to_8_bit
from swinir_cli.tasks import DEJPEG, DENOISE

if TYPE_CHECKING:
    from swinir_cli.imageio import LoadedImage
    from swinir_cli.tasks import Task

RELEASED_JPEG_QUALITIES: tuple[int, ...] = DEJPEG.levels
RELEASED_NOISE_SIGMAS: tuple[int, ...] = DENOISE.levels

# Standard quantization tables of the JPEG specification (Annex K), row-major 8x8, as Pillow lists them.
_STANDARD_LUMINANCE = np.array(
    [
        [16, 11, 10, 16, 24, 40, 51, 61],
        [12, 12, 14, 19, 26, 58, 60, 55],
        [14, 13, 16, 24, 40, 57, 69, 56],
        [14, 17, 22, 29, 51, 87, 80, 62],
        [18, 22, 37, 56, 68, 109, 103, 77],
        [24, 35, 55, 64, 81, 104, 113, 92],
        [49, 64, 78, 87, 103, 121, 120, 101],
        [72, 92, 95, 98, 112, 100, 103, 99],
    ]
).ravel()
_STANDARD_CHROMINANCE = np.full((8, 8), 99)
_STANDARD_CHROMINANCE[:4, :4] = [[17, 18, 24, 47], [18, 21, 26, 66], [24, 26, 56, 99], [47, 66, 99, 99]]
_STANDARD_CHROMINANCE = _STANDARD_CHROMINANCE.ravel()

_MAD_TO_SIGMA = 0.6745  # median(|N(0, 1)|)
_CLIP_MARGIN_SIGMAS = 2.0
_CLIP_MARGIN_MAX = 120.0
_MIN_KEPT_FRACTION = 0.05
_REFINEMENTS = 3


def nearest_level(
    value: float, levels: Sequence[int], *, on_tie: Literal["lower", "higher"] = "lower"
) -> int:
    """The level closest to ``value``; exactly halfway between two levels, the lower or higher one.

    Raises:
        UsageError: ``levels`` is empty or ``value`` is not a finite number.
    """
    if not levels:
        raise UsageError("nearest_level needs at least one level, got none")
    if not math.isfinite(value):
        raise UsageError(f"cannot pick a level for the non-finite value {value}")
    ordered = sorted(levels) if on_tie == "lower" else sorted(levels, reverse=True)
    return min(ordered, key=lambda level: abs(level - value))


def choose_jpeg_model_quality(quality: float, levels: Sequence[int] = RELEASED_JPEG_QUALITIES) -> int:
    """Released JPEG model (10/20/30/40) for an image saved at ``quality``; ties go to the lower quality."""
    return nearest_level(quality, levels, on_tie="lower")


def choose_noise_model_sigma(sigma: float, levels: Sequence[int] = RELEASED_NOISE_SIGMAS) -> int:
    """Released denoising model (15/25/50) for noise level ``sigma``; ties go to the higher sigma."""
    return nearest_level(sigma, levels, on_tie="higher")


@dataclass(frozen=True)
class LevelEstimate:
    """What an estimator found in one image, for people (``JPEG quality ~35``), and the level it picks."""

    level: int
    found: str


def jpeg_quality_level(image: LoadedImage, task: Task) -> LevelEstimate:
    """The ``task`` level (its released JPEG quality) for a loaded JPEG, from its quantization tables.

    Raises:
        ImageError: the image was not read from a JPEG file (the message names the option to pass).
    """
    estimated = jpeg_quality_from_tables(image.jpeg_quantization)
    if estimated is None:
        raise ImageError(
            f"{image.name}: cannot estimate the JPEG quality (not a JPEG file); "
            f"pass --{task.level_key} {task.levels_metavar}"
        )
    return LevelEstimate(choose_jpeg_model_quality(estimated, task.levels), f"JPEG quality ~{estimated}")


def noise_sigma_level(image: LoadedImage, task: Task) -> LevelEstimate:
    """The ``task`` level (its released noise sigma) for a loaded image, from its measured noise.

    Raises:
        ImageError: the image is too small or oddly shaped to measure (the message names the option).
    """
    try:
        estimated = estimate_noise_sigma(to_8_bit(image.pixels))
    except ImageError as exc:
        raise ImageError(
            f"{image.name}: cannot estimate the noise level ({exc}); "
            f"pass --{task.level_key} {task.levels_metavar}"
        ) from None
    return LevelEstimate(choose_noise_model_sigma(estimated, task.levels), f"noise sigma ~{estimated:.1f}")


def estimate_jpeg_quality(source: str | Path | bytes) -> int | None:
    """IJG quality 1-100 a JPEG was saved at, from its quantization tables; None if not a JPEG.

    Each quality from 1 to 100 scales the standard tables as libjpeg does; the one closest to the file's
    tables (mean absolute log ratio, luminance and, if present, chrominance) wins. Files saved by libjpeg
    based encoders match one quality exactly; other encoders' tables get the nearest equivalent.

    Args:
        source: path of an image file, or its bytes.

    Raises:
        ImageError: the file cannot be opened or is not an image.
    """
    return jpeg_quality_from_tables(_read_quantization_tables(source))


def jpeg_quality_from_tables(quantization: Sequence[Sequence[int]] | None) -> int | None:
    """IJG quality 1-100 matching a JPEG's quantization tables (as Pillow lists them); None without any.

    Only the first two 64-entry tables (luminance, chrominance) are compared; see
    :func:`estimate_jpeg_quality`.
    """
    if not quantization:
        return None
    tables = [np.maximum(np.asarray(table, dtype=np.float64), 1) for table in quantization[:2]]
    tables = [table for table in tables if table.size == _STANDARD_LUMINANCE.size]
    if not tables:
        return None
    return min(range(1, 101), key=lambda quality: _table_distance(tables, quality))


def estimate_noise_sigma(image: np.ndarray) -> float:
    """Standard deviation (0-255 units) of additive white Gaussian noise in ``image``.

    Median absolute deviation of the finest diagonal Haar coefficients (HH of 2x2 blocks, which carry
    noise at full strength and little image structure) divided by 0.6745. Blocks whose local mean lies
    within 2 sigma of 0 or 255 are left out, re-estimating a few times, because clipping there hides
    noise. Colour images combine the three channels' variances. Clean natural images give a few units
    (strong fine texture, such as fur, gives up to about 8).

    Args:
        image: HxW or HxWxC (C = 1 or 3) array of values in [0, 255], any real dtype, at least 4x4.

    Raises:
        ImageError: the array is not an image of that shape.
    """
    channels = _channels(image)
    variances = [_channel_sigma(channel) ** 2 for channel in channels]
    return float(math.sqrt(sum(variances) / len(variances)))


def _read_quantization_tables(source: str | Path | bytes) -> list[list[int]] | None:
    """A JPEG's quantization tables in table order; None for other formats."""
    name = "image bytes" if isinstance(source, bytes) else str(source)
    stream = io.BytesIO(source) if isinstance(source, bytes) else source
    try:
        with Image.open(stream) as image:
            if image.format != "JPEG":
                return None
            quantization = getattr(image, "quantization", None) or {}
    except FileNotFoundError as error:
        raise ImageError(f"{name}: no such file") from error
    except (UnidentifiedImageError, OSError) as error:
        raise ImageError(f"{name}: cannot be read as an image ({error})") from error
    return [list(quantization[index]) for index in sorted(quantization)]


def _ijg_table(standard: np.ndarray, quality: int) -> np.ndarray:
    """libjpeg's ``jpeg_quality_scaling`` then ``jpeg_add_quant_table`` with baseline clamping."""
    scale = 5000 // quality if quality < 50 else 200 - 2 * quality
    return np.clip((standard * scale + 50) // 100, 1, 255)


def _table_distance(tables: list[np.ndarray], quality: int) -> float:
    standards = (_STANDARD_LUMINANCE, _STANDARD_CHROMINANCE)
    distances = [
        np.mean(np.abs(np.log(table) - np.log(_ijg_table(standard, quality))))
        for table, standard in zip(tables, standards, strict=False)
    ]
    return float(np.mean(distances))


def _channels(image: np.ndarray) -> list[np.ndarray]:
    if image.ndim == 3 and image.shape[2] in (1, 3):
        planes = [image[..., c] for c in range(image.shape[2])]
    elif image.ndim == 2:
        planes = [image]
    else:
        raise ImageError(f"noise estimation needs an HxW or HxWx(1|3) image, got shape {image.shape}")
    if min(image.shape[:2]) < 4:
        raise ImageError(f"noise estimation needs at least 4x4 pixels, got shape {image.shape}")
    return [plane.astype(np.float64) for plane in planes]


def _channel_sigma(channel: np.ndarray) -> float:
    height, width = channel.shape
    even = channel[: height // 2 * 2, : width // 2 * 2]
    top_left, top_right = even[0::2, 0::2], even[0::2, 1::2]
    bottom_left, bottom_right = even[1::2, 0::2], even[1::2, 1::2]
    diagonal = np.abs(top_left - top_right - bottom_left + bottom_right) / 2
    block_mean = (top_left + top_right + bottom_left + bottom_right) / 4
    local_mean = cv2.blur(block_mean, (3, 3))

    sigma = np.median(diagonal) / _MAD_TO_SIGMA
    for _ in range(_REFINEMENTS):
        margin = min(_CLIP_MARGIN_SIGMAS * sigma, _CLIP_MARGIN_MAX)
        unclipped = (local_mean > margin) & (local_mean < 255 - margin)
        if unclipped.mean() < _MIN_KEPT_FRACTION:
            break
        sigma = np.median(diagonal[unclipped]) / _MAD_TO_SIGMA
    return float(sigma)
