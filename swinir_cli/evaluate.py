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
  [IMWRITE_JPEG_QUALITY, q])`` decoded again by OpenCV. Super-resolution inputs are the ground truth cropped
  to a multiple of the scale (the authors' ``modcrop``), then shrunk by MATLAB's ``imresize(img, 1/scale,
  'bicubic')`` as :func:`swinir_cli.matlab_resize.downscale` repeats it; by default in its ``integer`` mode
  (MATLAB on the uint8 image, rounding between its passes), which reproduces the published Set5
  ``LR_bicubic`` X2, X3 and X4 files value for value (``float`` mode reproduces the published X8).
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
* ``--restored``: ground truth ``baby.png`` at scale 4 takes the restored file named ``<input><suffix>``
  with any image extension, where ``<input>`` is one of the input names above (``baby``, ``babyx4``,
  ``baby_x4``) and ``<suffix>`` the one the user gives (``--suffix``), else swinir's default (``_x4``;
  ``_denoised``, ``_dejpeg``), the authors' ``_SwinIR`` or nothing (:func:`restored_stems`). So
  ``swinir upscale LR_bicubic/X4 -o out/`` (``babyx4_x4.png``) and ``--save`` (``baby_SwinIR.png``)
  outputs are both found; a ground truth with none or several, or a file two ground truths claim, is an
  error naming the files.
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
from .imageio import LoadedImage, is_probably_image, read_image, to_8_bit, to_colour, write_image
from .matlab_resize import PASS_MODES, downscale, modcrop
from .metrics import Y_OFFSET, Y_WEIGHTS_BGR, compute_all
from .pipeline import Restorer
from .tasks import TASKS, Task

__all__ = [
    "METRIC_KEYS",
    "EvalSettings",
    "ImagePair",
    "ImageResult",
    "authors_luma_u8",
    "average",
    "check_output_folder",
    "check_synthesis",
    "degraded_input",
    "evaluate_model",
    "evaluate_restored",
    "jpeg_input",
    "jpeg_synthesis",
    "json_figures",
    "lq_name",
    "noisy_input",
    "noisy_synthesis",
    "pair_lq_images",
    "pair_restored_images",
    "prepare_folder",
    "restore_float",
    "restored_stems",
    "restored_suffixes",
]

#: Every figure of one evaluation, in report order; absent ones are None.
METRIC_KEYS = ("psnr", "ssim", "psnr_y", "ssim_y", "psnrb", "psnrb_y")
#: The authors' seed, set again before each image's noise is drawn.
NOISE_SEED = 0
#: The authors' suffix of a saved restoration, as their ``{imgname}_SwinIR.png``.
AUTHORS_SUFFIX = "_SwinIR"
#: Name of a saved restoration.
SAVED_NAME = "{stem}" + AUTHORS_SUFFIX + ".png"


@dataclass(frozen=True)
class EvalSettings:
    """How one model is evaluated.

    ``task`` is a name of :data:`~swinir_cli.tasks.TASKS`; ``level`` (the noise sigma, the JPEG quality) is
    needed only when the degraded inputs are synthesised, except by an upscaling task, whose inputs are
    shrunk by the model's ``scale`` (1 for denoising and JPEG); ``lq_resize`` is the
    :data:`~swinir_cli.matlab_resize.PASS_MODES` mode that shrinks the ground truth into SR inputs.
    """

    task: str
    scale: int = 1
    level: int | None = None
    lq_resize: str = "integer"

    def __post_init__(self) -> None:
        if self.task not in TASKS:
            raise ValueError(f"unknown task {self.task!r}")
        if self.scale < 1:
            raise ValueError(f"scale must be at least 1, got {self.scale}")
        if self.lq_resize not in PASS_MODES:
            raise ValueError(f"unknown resize mode {self.lq_resize!r}")

    @property
    def kind(self) -> Task:
        return TASKS[self.task]

    @property
    def crop_border(self) -> int:
        """Pixels dropped from each side before measuring: the scale for super-resolution, else 0."""
        return self.kind.crop_border(self.scale)

    @property
    def with_psnrb(self) -> bool:
        return self.kind.psnrb


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
        """A JSON-ready dict: the figures of :func:`json_figures`, the input, the saved file and the time."""
        return {
            "name": self.name,
            "input": self.source,
            "saved": None if self.saved is None else str(self.saved),
            "seconds": round(self.seconds, 3),
            **json_figures(self.metrics),
        }


def json_figures(metrics: dict[str, float | None]) -> dict[str, object]:
    """Every figure of :data:`METRIC_KEYS`, JSON-safe: an infinite one (PSNR of identical images) is
    null and named in the list ``"infinite"`` (JSON has no infinity); an absent one is null and not named.
    """
    figures: dict[str, object] = {}
    infinite = []
    for key in METRIC_KEYS:
        value = metrics.get(key)
        if value is not None and math.isinf(value):
            infinite.append(key)
            value = None
        figures[key] = value
    return {**figures, "infinite": infinite}


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
        candidates = input_stems(gt.stem, scale)
        found = next((by_stem[stem] for stem in candidates if stem in by_stem), None)
        if found is None:
            wanted = ", ".join(f"{stem}.*" for stem in candidates)
            raise UsageError(f"no input for {gt.name} in {lq_dir} (looked for {wanted})")
        pairs.append(ImagePair(gt, found))
    return pairs


def input_stems(stem: str, scale: int) -> list[str]:
    """The stems a degraded input of ground truth ``stem`` may have, in order of preference."""
    return [f"{stem}x{scale}", f"{stem}_x{scale}", stem] if scale > 1 else [stem]


def restored_suffixes(settings: EvalSettings, suffix: str | None = None) -> list[str]:
    """The suffixes a restored name may add: ``suffix`` alone when given, else swinir's default for the
    task (``_x4``, ``_denoised``, ``_dejpeg``), the authors' ``_SwinIR`` and none."""
    if suffix is not None:
        return [suffix]
    return [settings.kind.suffix(settings.scale), AUTHORS_SUFFIX, ""]


def restored_stems(stem: str, scale: int, suffixes: Iterable[str]) -> list[str]:
    """Every stem a restoration of ground truth ``stem`` may have: ``stem`` or an input stem, plus a
    suffix; in that order, without repeats."""
    bases = dict.fromkeys([stem, *input_stems(stem, scale)])
    return list(dict.fromkeys(f"{base}{suffix}" for suffix in suffixes for base in bases))


def pair_restored_images(
    gt_dir: Path, restored_dir: Path, scale: int, suffixes: Iterable[str]
) -> tuple[list[ImagePair], list[Path]]:
    """(pairs, restored files that match no ground truth); see :func:`restored_stems` for the names.

    Raises:
        UsageError: a folder is missing or empty, a ground truth has no restored image or several, or a
            restored image belongs to several ground truths; each message names the files (or the names
            that were looked for).
    """
    gts = image_files(gt_dir, "--gt")
    restored = image_files(restored_dir, "--restored")
    suffixes = list(suffixes)
    by_stem: dict[str, list[Path]] = {}
    for path in restored:
        by_stem.setdefault(path.stem, []).append(path)
    owners: dict[Path, Path] = {}
    pairs = []
    for gt in gts:
        wanted = restored_stems(gt.stem, scale, suffixes)
        found = [path for stem in wanted for path in by_stem.get(stem, [])]
        if not found:
            looked = ", ".join(f"{stem}.*" for stem in wanted)
            raise UsageError(
                f"no restored image for {gt.name} in {restored_dir} (looked for {looked}; "
                "--suffix names another suffix)"
            )
        if len(found) > 1:
            names = ", ".join(p.name for p in found)
            raise UsageError(
                f"several restored images match {gt.name} in {restored_dir}: {names} (--suffix picks one)"
            )
        if found[0] in owners:
            raise UsageError(
                f"{found[0].name} in {restored_dir} matches both {owners[found[0]].name} and {gt.name}"
            )
        owners[found[0]] = gt
        pairs.append(ImagePair(gt, found[0]))
    return pairs, [path for path in restored if path not in owners]


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


def fit_channels(pixels: np.ndarray, channels: int, task: Task) -> np.ndarray:
    """HxWxC uint8 turned into the ``channels`` a model takes: colour replicated, or one channel as the
    task makes it (see the module docstring)."""
    if pixels.shape[2] == channels:
        return pixels
    if channels == 3:
        return to_colour(pixels)
    return task.to_one_channel(pixels)  # type: ignore[no-any-return]


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


def noisy_synthesis(gt: np.ndarray, settings: EvalSettings, name: str) -> np.ndarray:
    """The denoising task's synthesis: :func:`noisy_input` at ``settings.level``."""
    return noisy_input(gt, _synthesis_level(settings))


def jpeg_synthesis(gt: np.ndarray, settings: EvalSettings, name: str) -> np.ndarray:
    """The JPEG task's synthesis: :func:`jpeg_input` at ``settings.level``."""
    return jpeg_input(gt, _synthesis_level(settings))


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


def degraded_input(pair: ImagePair, gt: np.ndarray, settings: EvalSettings, channels: int) -> np.ndarray:
    """The HxWxC input for ``pair``: read from ``pair.other`` or synthesised from ``gt`` (fitted already).

    uint8 where the input is an image (a file, a decoded JPEG, a MATLAB-downscaled ground truth), float32
    ``v / 255`` plus noise where it is the authors' unrounded noisy image.

    Raises:
        UsageError: synthesis needs a level (``sigma``/``quality``) that is not set.
        ImageError: the input file cannot be read, or ``gt`` is smaller than the scale.
    """
    if pair.other is not None:
        return fit_channels(read_u8(pair.other), channels, settings.kind)
    check_synthesis(settings)
    return settings.kind.synthesis(gt, settings, pair.name)  # type: ignore[no-any-return]


def low_resolution_input(gt: np.ndarray, settings: EvalSettings, name: str) -> np.ndarray:
    """The authors' SR input: ``imresize(modcrop(gt, scale), 1/scale, 'bicubic')`` in MATLAB's
    ``settings.lq_resize`` mode (the upscaling task's synthesis).

    Raises:
        ImageError: a side of ``gt`` is shorter than ``scale`` (nothing would be left).
    """
    scale = settings.scale
    if min(gt.shape[:2]) < scale:
        raise ImageError(f"{name}: {gt.shape[1]}x{gt.shape[0]} is too small to shrink by {scale}")
    return downscale(modcrop(gt, scale), scale, settings.lq_resize)


def check_synthesis(settings: EvalSettings) -> None:
    """Raise :class:`UsageError` unless degraded inputs can be synthesised for ``settings``: every task but
    an upscaling one (which shrinks by the model's scale) needs its level."""
    if not settings.kind.upscales:
        _synthesis_level(settings)


def _synthesis_level(settings: EvalSettings) -> int:
    task = settings.kind
    if settings.level is None:
        raise UsageError(f"synthesising {task.degraded_words} inputs needs --{task.level_key} (or pass --lq)")
    return settings.level


def lq_name(stem: str, scale: int) -> str:
    """File name of a synthesised input kept with ``--save-lq``: the first name :func:`pair_lq_images`
    looks for, so the folder can be given as ``--lq`` later (``babyx4.png``; ``baby.png`` at scale 1)."""
    return f"{input_stems(stem, scale)[0]}.png"


def check_output_folder(folder: Path, option: str, gt_dirs: Iterable[Path]) -> None:
    """Refuse an output folder (``option``'s) that is a file, or a ground-truth folder: what is saved there
    would be measured as ground truth by the next run.

    Raises:
        UsageError: naming the folder and the reason.
    """
    if folder.exists() and not folder.is_dir():
        raise UsageError(f"{option} {folder} exists and is not a folder")
    if any(folder.resolve() == gt_dir.resolve() for gt_dir in gt_dirs):
        raise UsageError(
            f"{option} {folder} is the --gt folder: what is saved there would be taken for ground truth"
        )


def prepare_folder(folder: Path, option: str) -> None:
    """Create ``folder`` (and its parents) for an option's output unless it is a directory already.

    Raises:
        ImageError: it cannot be created (a file is in the way, no permission...).
    """
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ImageError(f"{option} {folder}: cannot create the folder ({exc.strerror or exc})") from exc


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
    save_lq_dir: Path | None = None,
    tta: bool = False,
    on_image: Callable[[ImageResult], None] | None = None,
    on_start: Callable[[ImagePair], None] | None = None,
) -> list[ImageResult]:
    """Restore and measure every pair the authors' way; see the module docstring.

    ``save_dir`` (created if missing) receives ``<gt stem>_SwinIR.png``; ``save_lq_dir`` the synthesised
    inputs as :func:`lq_name` names them (not the noisy ones of denoising: they are unrounded floats).
    ``on_start``/``on_image`` are called before and after each image.

    Raises:
        UsageError, ImageError: see :func:`degraded_input`, :func:`crop_gt`, :func:`check_output_folder`,
            :func:`prepare_folder`; UsageError for ``save_lq_dir`` with denoising; ImageError for
            unwritable saves.
    """
    pairs = list(pairs)
    task = settings.kind
    if save_lq_dir is not None and not task.synthesis_is_image:
        raise UsageError(
            f"--save-lq cannot keep {task.degraded_words} inputs: "
            "the authors' are unrounded floats, not images"
        )
    for folder, option in ((save_dir, "--save"), (save_lq_dir, "--save-lq")):
        if folder is not None:
            check_output_folder(folder, option, {pair.gt.parent for pair in pairs})
            prepare_folder(folder, option)
    results = []
    for pair in pairs:
        if on_start is not None:
            on_start(pair)
        gt = fit_channels(read_u8(pair.gt), restorer.channels, task)
        lq = degraded_input(pair, gt, settings, restorer.channels)
        if save_lq_dir is not None and pair.other is None:
            lq_image = LoadedImage(pixels=lq, name=pair.name)
            write_image(save_lq_dir / lq_name(pair.gt.stem, settings.scale), lq_image)
        started = time.perf_counter()
        restored = restore_float(restorer, unit_float(lq) if lq.dtype == np.uint8 else lq, tta=tta)
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
        gt = fit_channels(read_u8(pair.gt), restored.shape[2], settings.kind)
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
