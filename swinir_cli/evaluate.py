"""Evaluation against ground truth, exactly as the authors' ``main_test_swinir.py`` evaluates.

What the authors' test script does, and what this module reproduces step by step:

* **Images** are read 8-bit (``cv2.imread``) and scaled to float32 ``v / 255``. Colour models see RGB,
  gray models one channel. A colour ground truth meets a gray JPEG model as the authors' ``bgr2ycbcr`` Y
  (rounded to uint8), and a gray denoising model as OpenCV's BT.601 gray (:func:`~swinir_cli.imageio.to_gray`;
  the authors read ``IMREAD_GRAYSCALE``, where libpng may be one level off for colour PNG files). A gray
  ground truth meets a colour model replicated to three channels. 16-bit files are reduced to 8 bits.
* **Degraded inputs** come from ``--lq`` files or are synthesised from the ground truth:
  denoising adds ``np.random.normal(0, sigma / 255, shape)`` drawn right after ``np.random.seed(0)`` (per
  image, in the BGR channel order the authors' arrays have) to the float image, **without clipping or
  rounding**: the network sees the float noisy image. JPEG models get ``cv2.imencode('.jpg', bgr,
  [IMWRITE_JPEG_QUALITY, q])`` decoded again by OpenCV. Super-resolution needs ``--lq`` files (the authors'
  LR images were made with MATLAB's ``imresize``, which is not reproduced here).
* **Restoration** is the authors' padded forward (:meth:`~swinir_cli.pipeline.Restorer.forward_padded`):
  flip-pad bottom/right to ``(side // window + 1) * window``, run, crop to ``h * scale, w * scale``, then
  ``round(clamp(x, 0, 1) * 255)`` to uint8 (halves to even, as NumPy). With a tile it is the project's tiler.
* **Metrics** (:func:`swinir_cli.metrics.compute_all`, restored image first): the ground truth is cropped to
  ``(h * scale, w * scale)`` of the input first; ``crop_border`` is the scale for super-resolution and 0
  otherwise; Y-channel figures only for colour images; PSNR-B for JPEG models (and on Y for colour ones).
  Averages are plain means over the images, as the authors'.

Pairing (:func:`pair_lq_images`, :func:`pair_restored_images`):

* ``--lq``: ground truth ``baby.png`` pairs with the input whose stem is ``babyx4`` (the authors' names for
  x4), else ``baby_x4``, else ``baby``; any image extension.
* ``--restored``: a restored file belongs to the ground truth whose stem equals its stem, or is a prefix of
  it followed by ``_``, ``-`` or ``.`` (``baby_x4.png``, ``baby_SwinIR.png``, ``baby-restored.png``); the
  longest such ground-truth stem wins (``img_1_x4`` goes to ``img_1``, not ``img``).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch

from .errors import ImageError, UsageError
from .imageio import LoadedImage, is_probably_image, read_image, to_8_bit, to_colour, to_gray, write_image
from .metrics import Y_OFFSET, Y_WEIGHTS_BGR, compute_all
from .network import SwinIRConfig
from .pipeline import Restorer
from .tasks import DEJPEG, DENOISE, TASK_NAMES, UPSCALE
from .tasks import TASKS as TASKS_BY_NAME

__all__ = [
    "METRIC_KEYS",
    "TASKS",
    "EvalSettings",
    "ImagePair",
    "ImageResult",
    "authors_luma_u8",
    "average",
    "check_synthesis",
    "evaluate_model",
    "evaluate_restored",
    "infer_task",
    "jpeg_input",
    "noisy_input",
    "pair_lq_images",
    "pair_restored_images",
    "restore_float",
]

TASKS = TASK_NAMES
#: Every figure of one evaluation, in report order; absent ones are None.
METRIC_KEYS = ("psnr", "ssim", "psnr_y", "ssim_y", "psnrb", "psnrb_y")
#: The window size of the authors' JPEG models (the other released models use 8).
JPEG_WINDOW = DEJPEG.window
#: The authors' seed, set again before each image's noise is drawn.
NOISE_SEED = 0
#: Name of a saved restoration, as the authors' ``{imgname}_SwinIR.png``.
SAVED_NAME = "{stem}_SwinIR.png"
_RESTORED_SEPARATORS = ("_", "-", ".")


@dataclass(frozen=True)
class EvalSettings:
    """How one model is evaluated.

    ``task`` is one of :data:`TASKS`; ``sigma`` (denoising) and ``quality`` (JPEG) are needed only when the
    degraded inputs are synthesised; ``scale`` is the model's (1 for denoising and JPEG).
    """

    task: str
    scale: int = 1
    sigma: int | None = None
    quality: int | None = None

    @property
    def crop_border(self) -> int:
        """Pixels dropped from each side before measuring: the scale for super-resolution, else 0."""
        return TASKS_BY_NAME[self.task].crop_border(self.scale)

    @property
    def with_psnrb(self) -> bool:
        return TASKS_BY_NAME[self.task].psnrb


@dataclass(frozen=True)
class ImagePair:
    """A ground-truth file and its degraded input (``lq``) or restored image; None: synthesised."""

    gt: Path
    other: Path | None

    @property
    def name(self) -> str:
        return self.gt.name


@dataclass
class ImageResult:
    """One image's figures (None where the authors report none) and where its restoration went."""

    name: str
    metrics: dict[str, float | None]
    seconds: float = 0.0
    saved: Path | None = None
    source: str = "synthesised"

    def record(self) -> dict[str, object]:
        """A JSON-ready dict; infinite PSNR (identical images) becomes null."""
        return {
            "name": self.name,
            "input": self.source,
            "saved": None if self.saved is None else str(self.saved),
            "seconds": round(self.seconds, 3),
            **{key: _finite_or_none(self.metrics.get(key)) for key in METRIC_KEYS},
        }


def infer_task(config: SwinIRConfig) -> str:
    """The task a checkpoint was trained for, from its architecture.

    Upscaling models have a scale above 1; of the others, window-7 ones are the authors' JPEG models and
    window-8 ones their denoisers.
    """
    if config.upscale > 1:
        return UPSCALE.name
    return DEJPEG.name if config.window_size == JPEG_WINDOW else DENOISE.name


# --------------------------------------------------------------------------------------------------
# Pairing


def image_files(folder: Path, label: str) -> list[Path]:
    """The image files directly inside ``folder``, sorted by name (as the authors' ``sorted(glob)``).

    Raises:
        UsageError: ``folder`` is not a directory or holds no image.
    """
    if not folder.is_dir():
        raise UsageError(f"{label} {folder} is not a directory")
    files = sorted(p for p in folder.iterdir() if p.is_file() and is_probably_image(p))
    if not files:
        raise UsageError(f"{label} {folder} holds no images")
    return files


def pair_lq_images(gt_dir: Path, lq_dir: Path | None, scale: int) -> list[ImagePair]:
    """Each ground truth with its degraded input (None without ``lq_dir``); see the module docstring.

    Raises:
        UsageError: a folder is missing or empty, or a ground truth has no input in ``lq_dir``.
    """
    gts = image_files(gt_dir, "--gt")
    if lq_dir is None:
        return [ImagePair(gt, None) for gt in gts]
    by_stem: dict[str, Path] = {}
    for path in image_files(lq_dir, "--lq"):
        by_stem.setdefault(path.stem, path)
    pairs = []
    for gt in gts:
        candidates = [f"{gt.stem}x{scale}", f"{gt.stem}_x{scale}", gt.stem] if scale > 1 else [gt.stem]
        found = next((by_stem[stem] for stem in candidates if stem in by_stem), None)
        if found is None:
            wanted = ", ".join(f"{stem}.*" for stem in candidates)
            raise UsageError(f"no input for {gt.name} in {lq_dir} (looked for {wanted})")
        pairs.append(ImagePair(gt, found))
    return pairs


def pair_restored_images(gt_dir: Path, restored_dir: Path) -> tuple[list[ImagePair], list[Path]]:
    """(pairs, restored files that match no ground truth); see the module docstring for the rule.

    Raises:
        UsageError: a folder is missing or empty, a ground truth has no restored image or several,
            or no restored image matches any ground truth.
    """
    gts = image_files(gt_dir, "--gt")
    restored = image_files(restored_dir, "--restored")
    gt_by_stem = {gt.stem: gt for gt in gts}
    matches: dict[Path, list[Path]] = {gt: [] for gt in gts}
    unmatched = []
    for path in restored:
        owner = _restored_owner(path.stem, gt_by_stem)
        if owner is None:
            unmatched.append(path)
        else:
            matches[owner].append(path)
    for gt, found in matches.items():
        if not found:
            raise UsageError(f"no restored image for {gt.name} in {restored_dir}")
        if len(found) > 1:
            names = ", ".join(p.name for p in found)
            raise UsageError(f"several restored images match {gt.name} in {restored_dir}: {names}")
    return [ImagePair(gt, found[0]) for gt, found in matches.items()], unmatched


def _restored_owner(stem: str, gt_by_stem: dict[str, Path]) -> Path | None:
    if stem in gt_by_stem:
        return gt_by_stem[stem]
    cut = max(
        (i for i, char in enumerate(stem) if char in _RESTORED_SEPARATORS and stem[:i] in gt_by_stem),
        default=None,
    )
    return None if cut is None else gt_by_stem[stem[:cut]]


# --------------------------------------------------------------------------------------------------
# Reading and degrading, the authors' way


def read_u8(path: Path) -> np.ndarray:
    """An image file as HxWxC uint8 (C 1 or 3, RGB); 16-bit files as ``round(v / 257)``; alpha dropped.

    Raises:
        ImageError: the file cannot be decoded.
    """
    return to_8_bit(read_image(path).pixels)


def authors_luma_u8(rgb: np.ndarray) -> np.ndarray:
    """HxWx3 RGB uint8 -> HxWx1 uint8 Y as the authors' ``bgr2ycbcr(bgr_uint8, y_only=True)``.

    That is ``round(24.966 B' + 128.553 G' + 65.481 R' + 16)`` with ``X' = float32(X) / 255``.
    """
    bgr_unit = np.ascontiguousarray(rgb[..., ::-1]).astype(np.float32) / 255.0
    luma = np.dot(bgr_unit, Y_WEIGHTS_BGR) + Y_OFFSET
    return luma.round().astype(np.uint8)[..., None]


def fit_channels(pixels: np.ndarray, channels: int, task: str) -> np.ndarray:
    """HxWxC uint8 turned into the ``channels`` a model takes (see the module docstring for how)."""
    if pixels.shape[2] == channels:
        return pixels
    if channels == 3:
        return to_colour(pixels)
    return authors_luma_u8(pixels) if task == "dejpeg" else to_gray(pixels)


def unit_float(pixels: np.ndarray) -> np.ndarray:
    """uint8 -> float32 ``v / 255`` (the authors' ``astype(np.float32) / 255.``)."""
    return pixels.astype(np.float32) / 255.0


def noisy_input(gt: np.ndarray, sigma: float) -> np.ndarray:
    """The authors' noisy input: HxWxC uint8 ground truth -> HxWxC float32, unclipped, unrounded.

    ``np.random.seed(0)`` then ``gt / 255 + np.random.normal(0, sigma / 255, shape)`` in float64, cast to
    float32. The noise is drawn in BGR order (the authors' arrays) and reversed onto the RGB channels.
    The global NumPy random state is reseeded, as in the authors' script.
    """
    np.random.seed(seed=NOISE_SEED)
    noise = np.random.normal(0, sigma / 255.0, gt.shape)
    if gt.shape[2] == 3:
        noise = noise[..., ::-1]
    return (unit_float(gt) + noise).astype(np.float32)


def jpeg_input(gt: np.ndarray, quality: int) -> np.ndarray:
    """The authors' JPEG input: HxWxC uint8 -> the same decoded from OpenCV JPEG at ``quality`` (uint8).

    Colour images are encoded in BGR order, as ``cv2.imencode`` expects.
    """
    source = gt[..., 0] if gt.shape[2] == 1 else np.ascontiguousarray(gt[..., ::-1])
    ok, encoded = cv2.imencode(".jpg", source, [int(cv2.IMWRITE_JPEG_QUALITY), int(quality)])
    if not ok:
        raise ImageError(f"OpenCV could not JPEG-encode a {gt.shape} image at quality {quality}")
    if gt.shape[2] == 1:
        return cv2.imdecode(encoded, cv2.IMREAD_GRAYSCALE)[..., None]
    return cv2.imdecode(encoded, cv2.IMREAD_COLOR)[..., ::-1]


def model_input(pair: ImagePair, gt: np.ndarray, settings: EvalSettings, channels: int) -> np.ndarray:
    """The float32 HxWxC input the network sees for ``pair`` (read from ``pair.other`` or synthesised).

    Raises:
        UsageError: synthesis needs a level (``sigma``/``quality``) that is not set, or is impossible (SR).
        ImageError: the input file cannot be read.
    """
    if pair.other is not None:
        return unit_float(fit_channels(read_u8(pair.other), channels, settings.task))
    check_synthesis(settings)
    if settings.task == "denoise":
        return noisy_input(gt, settings.sigma)  # type: ignore[arg-type]
    return unit_float(jpeg_input(gt, settings.quality))  # type: ignore[arg-type]


def check_synthesis(settings: EvalSettings) -> None:
    """Raise :class:`UsageError` unless degraded inputs can be synthesised for ``settings``."""
    if settings.task == "denoise" and settings.sigma is None:
        raise UsageError("synthesising noisy inputs needs --sigma (or pass --lq)")
    if settings.task == "dejpeg" and settings.quality is None:
        raise UsageError("synthesising JPEG inputs needs --quality (or pass --lq)")
    if settings.task == "upscale":
        raise UsageError(
            "super-resolution evaluation needs --lq with the low-resolution images "
            "(the authors' were made with MATLAB's bicubic imresize, which is not synthesised here)"
        )


# --------------------------------------------------------------------------------------------------
# Running and measuring


def restore_float(restorer: Restorer, image: np.ndarray, *, tta: bool = False) -> np.ndarray:
    """Restore an HxWxC float32 input (about [0, 1], not necessarily quantised) as the authors do.

    Returns (H*scale, W*scale, C) uint8: ``round(clamp(y, 0, 1) * 255)`` of the padded forward, tiled as
    the restorer's ``tile`` says (0: the whole image, the authors' way; None: what fits the device).

    Raises:
        UsageError: the channel count differs from the model's.
    """
    if image.ndim != 3 or image.shape[2] != restorer.channels:
        raise UsageError(f"the model takes {restorer.channels}-channel images, got shape {image.shape}")
    x = torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1)))[None].to(restorer.device)
    return restorer.restore_tensor(x, tta=tta)


def crop_gt(gt: np.ndarray, height: int, width: int, name: str) -> np.ndarray:
    """The ground truth's top-left ``height x width`` (the authors' ``img_gt[:h*scale, :w*scale]``).

    Raises:
        ImageError: the ground truth is smaller than that.
    """
    if gt.shape[0] < height or gt.shape[1] < width:
        raise ImageError(
            f"{name}: ground truth {gt.shape[1]}x{gt.shape[0]} is smaller than the "
            f"{width}x{height} result it is compared with"
        )
    return gt[:height, :width]


def measure(restored: np.ndarray, gt: np.ndarray, settings: EvalSettings) -> dict[str, float | None]:
    """The authors' figures for one uint8 pair (HxWxC, same shape); Y ones only for colour images."""
    figures: dict[str, float | None] = dict.fromkeys(METRIC_KEYS)
    computed = compute_all(restored, gt, crop_border=settings.crop_border, with_psnrb=settings.with_psnrb)
    colour = restored.shape[2] == 3
    for key, value in computed.items():
        if colour or not key.endswith("_y"):
            figures[key] = value
    return figures


def evaluate_model(
    restorer: Restorer,
    pairs: Iterable[ImagePair],
    settings: EvalSettings,
    *,
    save_dir: Path | None = None,
    tta: bool = False,
    on_image: Callable[[ImageResult], None] | None = None,
    on_start: Callable[[ImagePair], None] | None = None,
) -> list[ImageResult]:
    """Restore and measure every pair the authors' way; see the module docstring.

    ``save_dir`` (created if missing) receives ``<gt stem>_SwinIR.png``. ``on_start``/``on_image`` are
    called before and after each image.

    Raises:
        UsageError, ImageError: see :func:`model_input`, :func:`crop_gt`; ImageError for unwritable saves.
    """
    if save_dir is not None:
        save_dir.mkdir(parents=True, exist_ok=True)
    results = []
    for pair in pairs:
        if on_start is not None:
            on_start(pair)
        gt = fit_channels(read_u8(pair.gt), restorer.channels, settings.task)
        x = model_input(pair, gt, settings, restorer.channels)
        started = time.perf_counter()
        restored = restore_float(restorer, x, tta=tta)
        seconds = time.perf_counter() - started
        gt = crop_gt(gt, *restored.shape[:2], pair.name)
        result = ImageResult(
            pair.name,
            measure(restored, gt, settings),
            seconds=seconds,
            source="synthesised" if pair.other is None else str(pair.other),
        )
        if save_dir is not None:
            result.saved = save_dir / SAVED_NAME.format(stem=pair.gt.stem)
            write_image(result.saved, LoadedImage(pixels=restored, name=pair.name))
        results.append(result)
        if on_image is not None:
            on_image(result)
    return results


def evaluate_restored(
    pairs: Iterable[ImagePair],
    settings: EvalSettings,
    on_image: Callable[[ImageResult], None] | None = None,
) -> list[ImageResult]:
    """Measure restored images from any tool against their ground truth.

    The ground truth is cropped at the bottom/right to the restored size only when that size is its own
    rounded down to a multiple of ``settings.scale`` (an SR input whose sides were not multiples).
    A gray ground truth meets a colour restoration replicated; a colour one meets a gray restoration as
    its BT.601 gray (JPEG: the authors' Y).

    Raises:
        ImageError: a file cannot be read or the sizes do not fit.
    """
    results = []
    for pair in pairs:
        assert pair.other is not None, "evaluate_restored needs restored files"
        restored = read_u8(pair.other)
        gt = fit_channels(read_u8(pair.gt), restored.shape[2], settings.task)
        height, width = restored.shape[:2]
        scale = settings.scale
        if (gt.shape[0] // scale * scale, gt.shape[1] // scale * scale) == (height, width):
            gt = gt[:height, :width]
        if gt.shape != restored.shape:
            raise ImageError(
                f"{pair.other.name}: {width}x{height} does not fit its ground truth {pair.gt.name} "
                f"({gt.shape[1]}x{gt.shape[0]}) at scale {scale}"
            )
        result = ImageResult(pair.name, measure(restored, gt, settings), source=str(pair.other))
        results.append(result)
        if on_image is not None:
            on_image(result)
    return results


def average(results: list[ImageResult]) -> dict[str, float | None]:
    """Mean of each figure over the images that have it (None where none has it)."""
    means: dict[str, float | None] = {}
    for key in METRIC_KEYS:
        values = [r.metrics[key] for r in results if r.metrics.get(key) is not None]
        means[key] = sum(values) / len(values) if values else None  # type: ignore[arg-type]
    return means


def _finite_or_none(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None
