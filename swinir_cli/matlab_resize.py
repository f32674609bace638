"""MATLAB's ``imresize(img, 1/factor, 'bicubic')`` for shrinking by an integer factor, value for value.

Super-resolution test sets (the authors' Set5/Set14/Urban100 ``LR_bicubic``, DIV2K's) were made with MATLAB's
``imresize``; OpenCV's and Pillow's bicubic differ from it (kernel support when shrinking, edges), so PSNR
measured on their inputs is not comparable with published tables. What MATLAB does, and this module repeats:

* **Kernel**: Keys' cubic with ``a = -0.5``. When shrinking by ``f`` it is widened by ``f`` (antialiasing):
  ``w(d) = cubic(d / f) / f``, support ``4 f`` input pixels.
* **Contributions** (MATLAB's ``contributions``, 1-based): output pixel ``i`` sits at
  ``u = i f + (1 - f) / 2`` in the input; its taps are ``floor(u - 2 f) + 0 .. 4 f + 1``; each row of
  weights is divided by its sum; taps whose weight is 0 everywhere are dropped; taps outside the image are
  mirrored symmetrically (``[1..n, n..1]``, the edge pixel repeated).
* **Order**: the dimension with the larger change first; with equal factors rows (the height) first,
  then columns.
* **Arithmetic**: float64 sums in tap order. MATLAB rounds its uint8/uint16 results half away from zero
  and saturates. On a uint8 or uint16 *array* MATLAB's ``imresize`` stores the intermediate image
  between the two passes in that integer type (``"integer"`` mode, :data:`PASS_MODES`): that is how the
  published Set5 ``LR_bicubic`` X2, X3 and X4 were made. On ``im2double`` data the intermediate stays
  float64 and only the end result is rounded (``"float"`` mode): the published X8 files match this one.

Sides must be multiples of the factor (:func:`modcrop` first, as the authors' ``modcrop`` does):
MATLAB's output size for other sides is ``ceil(side / f)`` with an edge pixel placed off the grid, which
no test set uses; :func:`downscale` refuses them. The measured agreement with the published files and the
speed are printed by ``benchmarks/matlab_resize.py`` (see README).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .errors import UsageError

__all__ = ["PASS_MODES", "Contributions", "contributions", "cubic", "downscale", "mirror", "modcrop"]

#: How the image between the two passes is kept, as MATLAB keeps it; the first is the default.
PASS_MODES = {
    "integer": "rounded to the input's integer type between the passes (imresize on a uint8/uint16 array)",
    "float": "kept in float64, rounded once at the end (imresize on im2double data)",
}
#: Keys' cubic convolution parameter, as MATLAB's ``cubic``.
CUBIC_A = -0.5
#: Support of the unscaled cubic kernel, in pixels.
CUBIC_SUPPORT = 4


@dataclass(frozen=True)
class Contributions:
    """MATLAB's contributions for shrinking one side of ``in_length`` pixels by a whole ``factor``.

    Output pixel ``i`` (0-based) is ``sum_k weights[k] * input[mirror(taps[k] + i * factor)]``: with a
    whole factor each output pixel's taps are the previous one's moved by ``factor`` pixels, at the same
    distances, so every row of MATLAB's weight matrix is the same, value for value. ``taps`` are the
    first output pixel's, 0-based and unmirrored (the first may be negative, the last past the side).
    """

    in_length: int
    factor: int
    taps: np.ndarray
    weights: np.ndarray

    def __post_init__(self) -> None:
        if self.factor < 1 or self.in_length % self.factor or self.weights.ndim != 1:
            raise ValueError(f"no contributions for {self.in_length} pixels by {self.factor}")
        if self.taps.shape != self.weights.shape or np.any(np.diff(self.taps) <= 0):
            raise ValueError(f"taps {self.taps} must rise and match the weights {self.weights.shape}")

    @property
    def out_length(self) -> int:
        return self.in_length // self.factor

    @property
    def span(self) -> range:
        """Every input position the taps reach, unmirrored (0-based; may start below 0, end past the side)."""
        return range(int(self.taps[0]), int(self.taps[-1]) + (self.out_length - 1) * self.factor + 1)

    @property
    def indices(self) -> np.ndarray:
        """MATLAB's index matrix, ``(out_length, taps)``, 0-based and mirrored into the side."""
        rows = np.arange(self.out_length)[:, None] * self.factor
        return mirror(self.taps[None, :] + rows, self.in_length)


def cubic(distance: np.ndarray) -> np.ndarray:
    """Keys' cubic kernel with ``a = -0.5`` at ``distance`` (float64), zero from 2 on."""
    d = np.abs(distance)
    d2, d3 = d * d, d * d * d
    near = (CUBIC_A + 2) * d3 - (CUBIC_A + 3) * d2 + 1
    far = CUBIC_A * d3 - 5 * CUBIC_A * d2 + 8 * CUBIC_A * d - 4 * CUBIC_A
    return np.where(d <= 1, near, np.where(d <= 2, far, 0.0))


def contributions(in_length: int, factor: int) -> Contributions:
    """MATLAB's ``contributions(in_length, out_length, 1/factor, @cubic, 4, true)`` (module docstring),
    computed for the first output pixel (1-based ``u = factor + (1 - factor) / 2``) as MATLAB computes
    every row: taps ``floor(u - 2 factor) + 0 .. 4 factor + 1``, weights ``cubic(d / factor) / factor``
    divided by their sum, zero-weight taps dropped (with an odd factor some fall inside: ``cubic(1) = 0``).

    Raises:
        UsageError: ``factor`` is below 1 or does not divide ``in_length``.
    """
    _check_divides(in_length, factor, "side")
    width = CUBIC_SUPPORT * factor
    centre = factor + 0.5 * (1 - factor)
    left = math.floor(centre - width / 2)
    taps = left + np.arange(math.ceil(width) + 2)  # 1-based
    weights = cubic((centre - taps) / factor) / factor
    weights /= weights.sum()
    used = weights != 0
    return Contributions(in_length, factor, taps=taps[used] - 1, weights=weights[used])


def mirror(indices: np.ndarray, length: int) -> np.ndarray:
    """0-based indices folded into ``[0, length)`` symmetrically, the edge pixel repeated (MATLAB's aux)."""
    folded = np.mod(indices, 2 * length)
    return np.where(folded < length, folded, 2 * length - 1 - folded)


def _check_divides(length: int, factor: int, what: str) -> None:
    if factor < 1:
        raise UsageError(f"the downscaling factor must be a whole number from 1 on, not {factor}")
    if length % factor:
        raise UsageError(
            f"a {what} of {length} pixels is not a multiple of the factor {factor}: crop it first (modcrop)"
        )


def modcrop(pixels: np.ndarray, factor: int) -> np.ndarray:
    """The top-left part whose height and width are multiples of ``factor`` (the authors' ``modcrop``)."""
    height, width = pixels.shape[:2]
    return pixels[: height - height % factor, : width - width % factor]


def downscale(pixels: np.ndarray, factor: int, mode: str = "integer") -> np.ndarray:
    """``imresize(pixels, 1/factor, 'bicubic')`` of an HxW or HxWxC uint8/uint16 image, same dtype.

    ``mode`` is one of :data:`PASS_MODES`. A factor of 1 returns a copy.

    Raises:
        UsageError: another dtype, an unknown mode, or a side that is not a multiple of ``factor``.
    """
    if pixels.dtype not in (np.uint8, np.uint16) or pixels.ndim not in (2, 3):
        raise UsageError(f"MATLAB bicubic resizing takes HxW(xC) uint8/uint16 images, not {pixels.dtype}")
    if mode not in PASS_MODES:
        raise UsageError(f"unknown resize mode {mode!r}: use {' or '.join(PASS_MODES)}")
    height, width = pixels.shape[:2]
    _check_divides(height, factor, "height")
    _check_divides(width, factor, "width")
    ceiling = np.iinfo(pixels.dtype).max
    rows = _resize_axis(pixels, contributions(height, factor), axis=0)
    if mode == "integer":
        rows = _round_saturate(rows, ceiling).astype(pixels.dtype)
    both = _resize_axis(rows, contributions(width, factor), axis=1)
    return _round_saturate(both, ceiling).astype(pixels.dtype)


def _resize_axis(values: np.ndarray, taps: Contributions, axis: int) -> np.ndarray:
    """float64 weighted sums along ``axis`` (0 or 1), added in tap order as MATLAB adds them.

    The input is extended by mirroring once; tap ``k`` of every output pixel is then the strided slice
    ``k, k + factor, ...`` of the extension.
    """
    extended = np.take(values, mirror(np.asarray(taps.span), taps.in_length), axis=axis)
    total = np.zeros((*values.shape[:axis], taps.out_length, *values.shape[axis + 1 :]))
    term = np.empty_like(total)
    reach = (taps.out_length - 1) * taps.factor + 1
    for offset, weight in zip(taps.taps - taps.taps[0], taps.weights, strict=True):
        tap = [slice(None)] * values.ndim
        tap[axis] = slice(offset, offset + reach, taps.factor)
        np.multiply(extended[tuple(tap)], weight, out=term)
        total += term
    return total


def _round_saturate(values: np.ndarray, ceiling: int) -> np.ndarray:
    """Round half away from zero and clip to ``[0, ceiling]`` (MATLAB's conversion to an integer type).

    ``floor(v)`` plus one where the rest is at least a half; a negative value gives at most 0 either way,
    so only the clip decides it. ``values`` is overwritten.
    """
    whole = np.floor(values)
    np.subtract(values, whole, out=values)
    whole += values >= 0.5
    return np.clip(whole, 0, ceiling, out=whole)
