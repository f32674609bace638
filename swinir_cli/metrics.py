"""Image-quality metrics computed exactly as the SwinIR authors compute them.

The authors evaluate with ``utils/util_calculate_psnr_ssim.py`` of JingyunLiang/SwinIR; published
figures are only comparable when every detail matches, so this module reproduces its arithmetic
(re-implemented with NumPy and OpenCV, no code copied):

* images are HWC (or HW for gray) with values in [0, 255]; they are converted to float64 and
  ``crop_border`` pixels are removed from every side before anything else;
* PSNR is ``20 log10(255 / sqrt(MSE))`` over all pixels and channels;
* SSIM uses an 11x11 Gaussian window (sigma 1.5) applied with ``cv2.filter2D`` (reflect-101 border), the
  5-pixel margin of the filtered maps is dropped, and colour images average the per-channel SSIM;
* the Y channel is ITU-R BT.601 luma as the authors' ``bgr2ycbcr(img / 255., y_only=True) * 255``:
  ``16 + (65.481 R + 128.553 G + 24.966 B) / 255`` for values in [0, 255]. As in the authors' code the
  Y image is float32, so PSNR and PSNR-B on Y are computed in float32 (the published ``psnr_y`` figures
  carry float32 precision) while SSIM on Y promotes it back to float64;
* PSNR-B adds the blocking-effect factor (BEF) of the restored image's 8x8 block boundaries to each
  channel's MSE (Yim & Bovik 2011, as in the authors' port of quantization-guided-ac's ``psnrb.py``).

Channel order: every public function takes **RGB** colour images (the order the rest of swinir-cli
uses). The authors feed BGR images as ``cv2.imread`` returns them; the Y conversion is the only step
that depends on the order, and it is applied after reversing RGB to BGR so the result is bit-identical.
Gray images are HxW or HxWx1; their "Y channel" is the gray image itself (float32, as the authors').

The first argument is always the restored image and the second the ground truth: the order matters
for PSNR-B, whose blocking factor is measured on the restored image.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import math
from collections.abc import Callable

import cv2
import numpy as np

from swinir_cli.errors import ImageError, UsageError

#: BT.601 luma weights for [0, 1] inputs in B, G, R order, and the offset, as in the authors' bgr2ycbcr.
Y_WEIGHTS_BGR = np.array([24.966, 128.553, 65.481])
Y_OFFSET = 16.0
_SSIM_C1 = (0.01 * 255) ** 2
_SSIM_C2 = (0.03 * 255) ** 2
_SSIM_MARGIN = 5
_JPEG_BLOCK = 8


def psnr(restored: np.ndarray, gt: np.ndarray, *, crop_border: int = 0, y_channel: bool = False) -> float:
    """PSNR in dB between two images with values in [0, 255].

    Args:
        restored: HxW, HxWx1 or HxWx3 (RGB) array, any real dtype, values in [0, 255].
        gt: ground truth of the same shape.
        crop_border: pixels removed from each side before measuring (the scale for SR, else 0).
        y_channel: measure the BT.601 Y channel instead of all channels.

    Returns:
        PSNR in dB; ``inf`` for identical images.

    Raises:
        ImageError: the shapes differ or are not images.
        UsageError: ``crop_border`` is negative or leaves no pixels.
    """
    first, second = _prepare(restored, gt, crop_border, y_channel)
    mse = np.mean((first - second) ** 2)
    if mse == 0:
        return math.inf
    return float(20.0 * _log10(255.0 / np.sqrt(mse)))


def ssim(restored: np.ndarray, gt: np.ndarray, *, crop_border: int = 0, y_channel: bool = False) -> float:
    """SSIM (Wang et al. 2004, Gaussian window) in [-1, 1], averaged over channels.

    Arguments and errors as :func:`psnr`; each side must keep more than 10 pixels after cropping
    (the filtered maps lose a 5-pixel margin), otherwise :class:`UsageError` is raised.
    """
    first, second = _prepare(restored, gt, crop_border, y_channel)
    height, width = first.shape[:2]
    if min(height, width) <= 2 * _SSIM_MARGIN:
        raise UsageError(f"SSIM needs images larger than 10x10 pixels after cropping, got {height}x{width}")
    per_channel = [_ssim_one_channel(first[..., c], second[..., c]) for c in range(first.shape[2])]
    return float(np.array(per_channel).mean())


def psnrb(restored: np.ndarray, gt: np.ndarray, *, crop_border: int = 0, y_channel: bool = False) -> float:
    """PSNR-B in dB: PSNR with the restored image's JPEG blocking-effect factor added to the MSE.

    Computed per channel and averaged. Arguments and errors as :func:`psnr`.
    """
    first, second = _prepare(restored, gt, crop_border, y_channel)
    first = first / 255.0
    second = second / 255.0
    total = 0.0
    with np.errstate(divide="ignore"):
        for c in range(first.shape[2]):
            mse = np.mean((first[..., c] - second[..., c]) ** 2)
            bef = _blocking_effect_factor(first[..., c])
            total += float(10.0 * _log10(1.0 / (mse + bef)))
    return total / first.shape[2]


def compute_all(
    restored: np.ndarray, gt: np.ndarray, *, crop_border: int = 0, with_psnrb: bool = False
) -> dict[str, float]:
    """Every metric the authors report for one image pair.

    Returns:
        ``{"psnr", "ssim", "psnr_y", "ssim_y"}`` plus ``"psnrb"`` and ``"psnrb_y"`` when ``with_psnrb``
        (JPEG models). For gray images the ``_y`` values are measured on the gray channel itself.

    Raises:
        ImageError, UsageError: as :func:`psnr` and :func:`ssim`.
    """
    results = {
        "psnr": psnr(restored, gt, crop_border=crop_border),
        "ssim": ssim(restored, gt, crop_border=crop_border),
        "psnr_y": psnr(restored, gt, crop_border=crop_border, y_channel=True),
        "ssim_y": ssim(restored, gt, crop_border=crop_border, y_channel=True),
    }
    if with_psnrb:
        results["psnrb"] = psnrb(restored, gt, crop_border=crop_border)
        results["psnrb_y"] = psnrb(restored, gt, crop_border=crop_border, y_channel=True)
    return results


def rgb_to_y(image: np.ndarray) -> np.ndarray:
    """BT.601 luma of an RGB image, as the authors' ``bgr2ycbcr(bgr / 255., y_only=True) * 255``.

    Args:
        image: HxWx3 RGB array, values in [0, 255].

    Returns:
        HxW float32 array, values in [16, 235], not rounded.

    Raises:
        ImageError: the array is not HxWx3.
    """
    if image.ndim != 3 or image.shape[2] != 3:
        raise ImageError(f"Y conversion needs an HxWx3 RGB image, got shape {image.shape}")
    return _luma(np.asarray(image, dtype=np.float64))


def _prepare(
    restored: np.ndarray, gt: np.ndarray, crop_border: int, y_channel: bool
) -> tuple[np.ndarray, np.ndarray]:
    """Validate, convert to HxWxC float64, crop, and optionally reduce to the float32 Y channel."""
    if restored.shape != gt.shape:
        raise ImageError(f"restored image shape {restored.shape} differs from ground truth shape {gt.shape}")
    first = _as_hwc(restored)
    second = _as_hwc(gt)
    first, second = _crop(first, crop_border), _crop(second, crop_border)
    if y_channel:
        first, second = _y_of(first), _y_of(second)
    return first, second


def _as_hwc(image: np.ndarray) -> np.ndarray:
    if image.ndim == 2:
        image = image[..., None]
    if image.ndim != 3 or image.shape[2] not in (1, 3):
        raise ImageError(f"expected an HxW, HxWx1 or HxWx3 image, got shape {image.shape}")
    return image.astype(np.float64)


def _crop(image: np.ndarray, crop_border: int) -> np.ndarray:
    if crop_border < 0:
        raise UsageError(f"crop_border must be 0 or more, got {crop_border}")
    if crop_border == 0:
        return image
    height, width = image.shape[:2]
    if min(height, width) <= 2 * crop_border:
        raise UsageError(f"crop_border {crop_border} leaves no pixels of a {height}x{width} image")
    return image[crop_border:-crop_border, crop_border:-crop_border, :]


def _y_of(image: np.ndarray) -> np.ndarray:
    """HxWxC float64 in [0, 255] -> HxWx1 float32 Y in [0, 255], as the authors' ``to_y_channel``."""
    if image.shape[2] == 3:
        return _luma(image)[..., None]
    return image.astype(np.float32) / 255.0 * 255.0


def _luma(rgb: np.ndarray) -> np.ndarray:
    """HxWx3 RGB in [0, 255] -> HxW float32 Y, with the authors' float32 / float64 steps."""
    bgr_unit = np.ascontiguousarray(rgb[..., ::-1]).astype(np.float32) / 255.0
    y_unit = (np.dot(bgr_unit, Y_WEIGHTS_BGR) + Y_OFFSET) / 255.0
    return y_unit.astype(np.float32) * 255.0


def _log10(value: np.floating) -> np.floating:
    """log10 in the precision of ``value``; float32 through the C library's ``log10f``.

    The authors' Y-channel figures are float32, and their last bit depends on the float32 logarithm:
    NumPy calls the C library's ``log10f`` on CPUs without AVX-512 but its own SIMD routine on AVX-512
    ones. The reference figures in ``metrics_golden.json`` were made with ``log10f``; calling it directly
    reproduces them bit for bit on either kind of CPU (with NumPy's float32 log10 on an AVX-512 CPU, 16 of
    the 25 ``psnr_y`` figures were off by 1-2 float32 ulps, up to 4e-6 dB). Where no C library can be
    loaded the float64 logarithm rounded to float32 is used (23 of 25 bit-exact, the others 2 ulps off).
    """
    if value.dtype == np.float32 and _C_LOG10F is not None:
        return np.float32(_C_LOG10F(float(value)))
    return value.dtype.type(np.log10(np.float64(value)))


def _load_c_log10f() -> Callable[[float], float] | None:
    library_name = ctypes.util.find_library("m") or ctypes.util.find_library("c")
    if library_name is None:
        return None
    try:
        log10f = ctypes.CDLL(library_name).log10f
    except (OSError, AttributeError):
        return None
    log10f.argtypes = [ctypes.c_float]
    log10f.restype = ctypes.c_float
    return log10f


_C_LOG10F = _load_c_log10f()


def _ssim_one_channel(first: np.ndarray, second: np.ndarray) -> float:
    first = first.astype(np.float64)
    second = second.astype(np.float64)
    kernel = cv2.getGaussianKernel(11, 1.5)
    window = np.outer(kernel, kernel.transpose())

    def local_mean(image: np.ndarray) -> np.ndarray:
        m = _SSIM_MARGIN
        return cv2.filter2D(image, -1, window)[m:-m, m:-m]

    mu1, mu2 = local_mean(first), local_mean(second)
    mu1_sq, mu2_sq, mu1_mu2 = mu1**2, mu2**2, mu1 * mu2
    sigma1_sq = local_mean(first**2) - mu1_sq
    sigma2_sq = local_mean(second**2) - mu2_sq
    sigma12 = local_mean(first * second) - mu1_mu2
    numerator = (2 * mu1_mu2 + _SSIM_C1) * (2 * sigma12 + _SSIM_C2)
    denominator = (mu1_sq + mu2_sq + _SSIM_C1) * (sigma1_sq + sigma2_sq + _SSIM_C2)
    return (numerator / denominator).mean()


def _blocking_effect_factor(channel: np.ndarray) -> np.floating:
    """BEF of one HxW channel: how much stronger differences are across 8x8 block edges than inside.

    The boundary counts use ``size // 8 - 1`` edges per row/column, as the authors' code does even
    when a side is not a multiple of 8.
    """
    height, width = channel.shape
    block_cols = np.arange(_JPEG_BLOCK - 1, width - 1, _JPEG_BLOCK)
    block_rows = np.arange(_JPEG_BLOCK - 1, height - 1, _JPEG_BLOCK)
    inner_cols = np.setdiff1d(np.arange(width - 1), block_cols)
    inner_rows = np.setdiff1d(np.arange(height - 1), block_rows)

    def col_diff(cols: np.ndarray) -> float:
        return ((channel[:, cols] - channel[:, cols + 1]) ** 2).sum()

    def row_diff(rows: np.ndarray) -> float:
        return ((channel[rows, :] - channel[rows + 1, :]) ** 2).sum()

    n_boundary_horizontal = height * (width // _JPEG_BLOCK - 1)
    n_boundary_vertical = width * (height // _JPEG_BLOCK - 1)
    boundary = (col_diff(block_cols) + row_diff(block_rows)) / (n_boundary_horizontal + n_boundary_vertical)
    n_inner_horizontal = height * (width - 1) - n_boundary_horizontal
    n_inner_vertical = width * (height - 1) - n_boundary_vertical
    inner = (col_diff(inner_cols) + row_diff(inner_rows)) / (n_inner_horizontal + n_inner_vertical)
    if boundary <= inner:
        return channel.dtype.type(0.0)
    scaler = math.log2(_JPEG_BLOCK) / math.log2(min(height, width))
    return scaler * (boundary - inner)
