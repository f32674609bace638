"""The restore pipeline: a SwinIR network on a device, applied to images as the authors test them.

The authors' test procedure (``main_test_swinir.py``): scale 8-bit pixels to [0, 1] in float32, flip-pad the
bottom and right up to ``(h // window + 1) * window``, run the network, crop to ``h * scale, w * scale``,
clamp to [0, 1] and round ``x * 255``. :class:`Restorer` does exactly that for a whole image, and hands the
same padded forward to the tiler for large images.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch

from .checkpoint import load_model
from .cpu import cpu_has_bf16, tune_allocator
from .download import verified_weights_path
from .ensemble import self_ensemble
from .errors import ImageError, SwinIRError, UsageError
from .estimate import (
    choose_jpeg_model_quality,
    choose_noise_model_sigma,
    estimate_noise_sigma,
    jpeg_quality_from_tables,
)
from .imageio import LoadedImage, to_8_bit, to_colour, to_gray
from .network import SwinIR
from .registry import AUTO, choose_model, get_model
from .tiling import (
    WHOLE_IMAGE,
    TileEdges,
    available_memory_bytes,
    choose_tile,
    default_overlap,
    restore_with_oom_fallback,
)

__all__ = ["AUTO", "ModelChooser", "ModelRequest", "Restorer", "resolve_precision", "select_device"]

#: Share of the device's available memory that an automatic tile may plan to use.
MEMORY_BUDGET_FRACTION = 0.5
#: Cap on the CPU, for the estimate of :func:`~swinir_cli.tiling.estimate_peak_bytes`: evenly spread
#: tiles of 200-270 pixels compute only 10-20% more than the whole image (benchmarks/tile_waste.py), and
#: the cap keeps a 768x768 SwinIR-S x4 run under 1 GB resident (benchmarks/tile_memory.py; 272-pixel tiles
#: peaked at 1012 MiB there).
CPU_TILE_BUDGET_BYTES = 700 * 2**20


def select_device(spec: str = "auto") -> torch.device:
    """``auto`` (CUDA, else Apple MPS, else CPU), ``cpu``, ``cuda``, ``cuda:N`` or ``mps``.

    Raises:
        UsageError: the device is unknown or not available on this machine.
    """
    if spec == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(spec)
    except RuntimeError:
        raise UsageError(f"unknown device {spec!r}: use auto, cpu, cuda, cuda:N or mps") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UsageError(f"device {spec!r} requested, but this PyTorch build sees no CUDA GPU")
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise UsageError(f"device {spec!r} requested, but only {torch.cuda.device_count()} CUDA GPU(s) exist")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise UsageError(f"device {spec!r} requested, but Apple MPS is not available")
    if device.type not in ("cpu", "cuda", "mps"):
        raise UsageError(f"unsupported device {spec!r}: use auto, cpu, cuda, cuda:N or mps")
    return device


PRECISIONS = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
PRECISION_NAMES = {dtype: name for name, dtype in PRECISIONS.items()}


def resolve_precision(precision: str, device: torch.device) -> torch.dtype:
    """The compute dtype for ``auto``/``fp32``/``fp16``/``bf16`` on ``device``.

    ``auto`` is fp32: half precision has not yet been verified against fp32 on a GPU for this project
    (see README). fp16 is refused on the CPU, where it is slow and unsupported by some kernels.

    Raises:
        UsageError: unknown precision, or fp16 on the CPU.
    """
    if precision == "auto":
        return torch.float32
    if precision not in PRECISIONS:
        raise UsageError(f"unknown precision {precision!r}: use auto, fp32, fp16 or bf16")
    if precision == "fp16" and device.type == "cpu":
        raise UsageError("fp16 is not used on the CPU; use fp32 (or bf16)")
    return PRECISIONS[precision]


ENGINES = ("auto", "torch", "openvino")


def resolve_engine(engine: str, device: torch.device) -> str:
    """``torch`` or ``openvino`` for ``auto``/``torch``/``openvino`` on ``device``; ``auto`` is PyTorch.

    Raises:
        UsageError: an unknown engine, or OpenVINO on a device other than the CPU.
    """
    if engine not in ENGINES:
        raise UsageError(f"unknown engine {engine!r}: use auto, torch or openvino")
    if engine == "openvino" and device.type != "cpu":
        raise UsageError(f"the OpenVINO engine runs on the CPU, not {device.type}; use --engine torch")
    return "torch" if engine == "auto" else engine


def check_cpu_precision(dtype: torch.dtype, cpuinfo: str | None = None) -> None:
    """Refuse bf16 on a CPU without native bf16 (see :func:`swinir_cli.cpu.cpu_has_bf16`).

    Raises:
        UsageError: ``dtype`` is bf16 and the CPU flags (of ``cpuinfo``, default /proc/cpuinfo) lack
            avx512_bf16 and amx_bf16.
    """
    if dtype == torch.bfloat16 and not cpu_has_bf16(cpuinfo):
        raise UsageError(
            "bf16 needs a CPU with AVX-512 BF16 or AMX (flags avx512_bf16/amx_bf16), which this one lacks; "
            "use fp32"
        )


class Restorer:
    """A loaded model ready to restore images.

    Args:
        model: the network (its weights are moved to ``device``).
        device: see :func:`select_device`.
        tile: tile side in input pixels; 0 runs the whole image at once; None picks the largest tile
            that fits the device's available memory.
        tile_overlap: overlap between tiles in input pixels (None: the tiler's default for the window).
        batch: tiles per forward pass.
        precision: ``auto``, ``fp32``, ``fp16`` or ``bf16`` (see :func:`resolve_precision`); below fp32
            every tile is checked for inf/NaN and recomputed in fp32 when it has any.
        tta: average the eight flips/rotations of each tile (:mod:`swinir_cli.ensemble`), 8x slower.
        on_warning: receives one line when a tile had to shrink after running out of GPU memory.
        engine: ``auto`` (PyTorch), ``torch`` or ``openvino`` (CPU only, the optional extra; see
            :mod:`swinir_cli.engines.openvino`).
        weights_path: the file the weights came from; the OpenVINO engine keeps its converted and
            compiled models beside it (in ``.<file name>.openvino/``) when that folder can be written.

    On the CPU the C allocator is tuned once per process (:func:`swinir_cli.cpu.tune_allocator`).
    """

    def __init__(
        self,
        model: SwinIR,
        *,
        device: str | torch.device = "auto",
        tile: int | None = None,
        tile_overlap: int | None = None,
        batch: int = 1,
        precision: str = "auto",
        tta: bool = False,
        on_warning: Callable[[str], None] | None = None,
        engine: str = "auto",
        weights_path: Path | None = None,
    ) -> None:
        self.tta = tta
        self.device = device if isinstance(device, torch.device) else select_device(device)
        self.dtype = resolve_precision(precision, self.device)
        if self.device.type == "cpu":
            check_cpu_precision(self.dtype)
            tune_allocator()
        self.engine = resolve_engine(engine, self.device)
        self.weights_path = weights_path
        self._openvino: Callable[[torch.Tensor], torch.Tensor] | None = None
        self.model = model.eval().requires_grad_(False).to(self.device)
        self.tile = tile
        self.tile_overlap = default_overlap(self.window) if tile_overlap is None else tile_overlap
        self.batch = batch
        self.on_warning = on_warning

    @classmethod
    def from_weights(cls, path: str | Path, **options) -> Restorer:
        """Load a ``.pth``/``.safetensors`` checkpoint (see :func:`swinir_cli.checkpoint.load_model`)."""
        return cls(load_model(path), weights_path=Path(path), **options)

    @classmethod
    def from_name(cls, name: str, **options) -> Restorer:
        """Load a registry model by name (see ``swinir models``), downloading and verifying it if needed."""
        path = verified_weights_path(get_model(name))
        return cls(load_model(path), weights_path=path, **options)

    @property
    def scale(self) -> int:
        return self.model.config.upscale

    @property
    def channels(self) -> int:
        """1 for grayscale models, 3 for RGB models."""
        return self.model.config.in_chans

    @property
    def window(self) -> int:
        return self.model.config.window_size

    def forward_padded(self, x: torch.Tensor, edges: TileEdges = WHOLE_IMAGE) -> torch.Tensor:
        """The authors' padded forward: (N, C, h, w) in [0, 1] -> (N, C, h*scale, w*scale), unclamped.

        A bottom or right side that ``edges`` puts on the image border is mirrored (flip-padded) up to
        ``(side // window + 1) * window``, as the authors pad a whole image; a side inside the image (a
        tile's inner edge) only up to the window multiple, which is all the network needs.
        """
        h, w = x.shape[-2:]
        for dim, side, on_border in ((2, h, edges.bottom), (3, w, edges.right)):
            target = (side // self.window + 1 if on_border else -(-side // self.window)) * self.window
            while x.shape[dim] < target:  # one flip suffices unless the image is smaller than the pad
                x = torch.cat([x, torch.flip(x, [dim])], dim)
            x = x.narrow(dim, 0, target)
        return self._forward(x)[..., : h * self.scale, : w * self.scale]

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        """The network in the chosen precision; a result with inf/NaN is recomputed in fp32."""
        if self.engine == "openvino":
            return self._forward_openvino(x)
        if self.dtype == torch.float32:
            return self.model(x)
        with torch.autocast(self.device.type, dtype=self.dtype):
            y = self.model(x)
        if torch.isfinite(y).all():
            return y.float()
        if self.on_warning is not None:
            self.on_warning(f"{PRECISION_NAMES[self.dtype]} overflowed on a tile; recomputed it in fp32")
        return self.model(x)

    def _forward_openvino(self, x: torch.Tensor) -> torch.Tensor:
        """The network through OpenVINO (compiled per shape on first use); bf16 results with inf/NaN are
        recomputed in fp32 by PyTorch, as on the PyTorch engine."""
        if self._openvino is None:
            from .engines.openvino import OpenVinoForward

            self._openvino = OpenVinoForward(
                self.model, bf16=self.dtype == torch.bfloat16, **self._cache_place()
            )
        y = self._openvino(x)
        if self.dtype == torch.float32 or torch.isfinite(y).all():
            return y
        if self.on_warning is not None:
            self.on_warning(f"{PRECISION_NAMES[self.dtype]} overflowed on a tile; recomputed it in fp32")
        return self.model(x)

    def _cache_place(self) -> dict:
        """The OpenVINO cache folder beside the weights and the key of their file, where it is writable."""
        if self.weights_path is None:
            return {}
        weights = self.weights_path.resolve()
        folder = weights.parent / f".{weights.name}.openvino"
        try:
            folder.mkdir(exist_ok=True)
            stat = weights.stat()
        except OSError:
            return {}
        return {"cache_dir": folder, "weights_key": f"{weights}|{stat.st_size}|{stat.st_mtime_ns}"}

    def restore_pixels(
        self, pixels: np.ndarray, progress: Callable[[int, int], None] | None = None
    ) -> np.ndarray:
        """Restore an (H, W, C) uint8 or uint16 image whose C equals :attr:`channels`.

        Returns (H*scale, W*scale, C) of the same dtype, rounded as the authors round.

        Raises:
            UsageError: the channel count or dtype does not fit.
        """
        if pixels.ndim != 3 or pixels.shape[2] != self.channels:
            raise UsageError(f"the model takes {self.channels}-channel images, got shape {pixels.shape}")
        if pixels.dtype not in (np.uint8, np.uint16):
            raise UsageError(f"pixels must be uint8 or uint16, got {pixels.dtype}")
        max_value = 255 if pixels.dtype == np.uint8 else 65535
        x = torch.from_numpy(np.require(pixels, requirements=["C", "W"])).to(self.device).permute(2, 0, 1)
        return self.restore_tensor(x[None].float() / float(max_value), max_value=max_value, progress=progress)

    @torch.inference_mode()
    def restore_tensor(
        self,
        x: torch.Tensor,
        *,
        max_value: int = 255,
        progress: Callable[[int, int], None] | None = None,
        tta: bool | None = None,
    ) -> np.ndarray:
        """Restore a (1, C, H, W) float image on :attr:`device`, values about [0, 1] (not necessarily
        quantised: the authors feed noisy inputs unrounded), tiled as :attr:`tile` says.

        Returns (H*scale, W*scale, C) numpy, uint8 for ``max_value`` 255 else uint16, rounded as the authors
        round. ``tta`` overrides the restorer's own setting for this call.
        """
        ensemble = self.tta if tta is None else tta
        return restore_with_oom_fallback(
            x,
            self._ensembled if ensemble else self.forward_padded,
            scale=self.scale,
            window=self.window,
            tile=self.tile if self.tile is not None else self.auto_tile(*x.shape[2:]),
            overlap=self.tile_overlap,
            batch=self.batch,
            max_value=max_value,
            progress=progress,
            on_warning=self.on_warning,
        )

    def _ensembled(self, x: torch.Tensor, edges: TileEdges) -> torch.Tensor:
        """The self-ensemble of the padded forward; a flip moves a tile's sides, so every transformed
        tile is padded as a whole image is (the authors' x8 procedure on each tile)."""
        return self_ensemble(self.forward_padded)(x)

    def auto_tile(self, height: int, width: int) -> int:
        """The window-aligned tile of least estimated compute whose estimated peak memory fits the device
        (0: the whole image fits; see :func:`~swinir_cli.tiling.choose_tile`)."""
        config = self.model.config
        budget = int(available_memory_bytes(self.device) * MEMORY_BUDGET_FRACTION)
        if self.device.type == "cpu":
            budget = min(budget, CPU_TILE_BUDGET_BYTES)
        return choose_tile(
            height,
            width,
            budget,
            window=config.window_size,
            overlap=self.tile_overlap,
            batch=self.batch,
            scale=config.upscale,
            embed_dim=config.embed_dim,
            num_heads=max(config.num_heads),
            head_features=config.upsample_features,
        )

    def restore_image(
        self,
        image: LoadedImage,
        progress: Callable[[int, int], None] | None = None,
        *,
        alpha: str = "bicubic",
    ) -> LoadedImage:
        """Restore a decoded image, keeping what the model does not see.

        A colour image meets a gray model as its luma; a gray image meets a colour model replicated to
        three channels and comes back gray. Alpha is resized with bicubic interpolation (``alpha="bicubic"``)
        or restored by the model as a gray image (``alpha="model"``). Metadata and bit depth are kept.

        Raises:
            UsageError: ``alpha`` is neither ``bicubic`` nor ``model``.
        """
        if alpha not in ("bicubic", "model"):
            raise UsageError(f"alpha must be 'bicubic' or 'model', not {alpha!r}")
        restored = self._restore_channels(image.pixels, progress)
        if image.alpha is None:
            restored_alpha = None
        elif alpha == "model":
            restored_alpha = self._restore_channels(image.alpha[..., None], progress)[..., 0]
        else:
            restored_alpha = self._resize_alpha(image.alpha)
        return dataclasses.replace(image, pixels=restored, alpha=restored_alpha)

    def _restore_channels(
        self, pixels: np.ndarray, progress: Callable[[int, int], None] | None
    ) -> np.ndarray:
        """(H, W, 1 or 3) through the model, converted to its channels and back: gray stays gray."""
        restored = self.restore_pixels(to_gray(pixels) if self.channels == 1 else to_colour(pixels), progress)
        return to_gray(restored) if pixels.shape[2] == 1 and restored.shape[2] == 3 else restored

    def _resize_alpha(self, alpha: np.ndarray | None) -> np.ndarray | None:
        if alpha is None or self.scale == 1:
            return alpha
        h, w = alpha.shape
        return cv2.resize(alpha, (w * self.scale, h * self.scale), interpolation=cv2.INTER_CUBIC)


@dataclass(frozen=True)
class ModelRequest:
    """What a restoration command asked for; the model itself may be chosen per image.

    ``weights`` (a local checkpoint) wins over ``model`` (a registry name), which wins over choosing by
    ``task`` and level. ``sigma``/``quality`` may be ``"auto"``: estimated from each image.
    """

    task: str
    model: str | None = None
    weights: Path | None = None
    scale: int | None = None
    sigma: int | str | None = None
    quality: int | str | None = None
    img_range: float | None = None


class ModelChooser:
    """Picks, loads and caches the :class:`Restorer` each image needs.

    Denoising and JPEG models come in gray and colour versions and in levels; without a named model the
    one matching the image's channels (and its estimated noise or JPEG quality, with ``auto``) is used.

    Args:
        request: see :class:`ModelRequest`.
        restorer_options: keyword arguments for :class:`Restorer` (device, tile, ...).
        download_progress: ``progress(done_bytes, total_bytes)`` while weights download.
        notice: receives one line whenever a model is chosen automatically.
    """

    def __init__(
        self,
        request: ModelRequest,
        *,
        restorer_options: dict | None = None,
        download_progress: Callable[[int, int | None], None] | None = None,
        notice: Callable[[str], None] | None = None,
    ) -> None:
        self.request = request
        self.restorer_options = restorer_options or {}
        self.download_progress = download_progress
        self.notice = notice
        self._loaded: dict[str, Restorer | SwinIRError] = {}
        self._fetched: dict[str, Path | SwinIRError] = {}

    def restorer_for(self, image: LoadedImage) -> tuple[str, Restorer]:
        """(model label, restorer) for ``image``. A model that failed to load fails again at once.

        Raises:
            ImageError: the level is ``auto`` and cannot be estimated from this image.
            UsageError, ModelNotFoundError, DownloadError, CheckpointError: the model cannot be used.
        """
        label, path = self._weights_for(image)
        if label not in self._loaded:
            try:
                restorer = Restorer(
                    load_model(path, img_range=self.request.img_range),
                    weights_path=path,
                    **self.restorer_options,
                )
                self._check_scale(restorer, label)
            except SwinIRError as exc:
                self._loaded[label] = exc
                raise
            self._loaded[label] = restorer
        loaded = self._loaded[label]
        if isinstance(loaded, SwinIRError):
            raise loaded
        return label, loaded

    def _weights_for(self, image: LoadedImage) -> tuple[str, Path]:
        request = self.request
        if request.weights is not None:
            return str(request.weights), request.weights
        if request.model is not None:
            entry = get_model(request.model)
            if entry.task != request.task:
                raise UsageError(
                    f"model '{entry.name}' is a {entry.task} model; use `swinir {entry.task}` to run it"
                )
        else:
            entry = choose_model(
                request.task,
                scale=request.scale,
                sigma=self._level(request.sigma, image, "sigma"),
                quality=self._level(request.quality, image, "quality"),
                channels=image.channels,
            )
        if entry.name not in self._fetched:
            try:
                self._fetched[entry.name] = verified_weights_path(entry, progress=self.download_progress)
            except SwinIRError as exc:
                self._fetched[entry.name] = exc
        fetched = self._fetched[entry.name]
        if isinstance(fetched, SwinIRError):
            raise fetched
        return entry.name, fetched

    def _level(self, value: int | str | None, image: LoadedImage, key: str) -> int | None:
        if value != AUTO:
            return value  # type: ignore[return-value]
        if key == "quality":
            estimated = jpeg_quality_from_tables(image.jpeg_quantization)
            if estimated is None:
                raise ImageError(
                    f"{image.name}: cannot estimate the JPEG quality (not a JPEG file); "
                    "pass --quality 10|20|30|40"
                )
            chosen = choose_jpeg_model_quality(estimated)
            found = f"JPEG quality ~{estimated}"
        else:
            estimated_sigma = estimate_noise_sigma(to_8_bit(image.pixels))
            chosen = choose_noise_model_sigma(estimated_sigma)
            found = f"noise sigma ~{estimated_sigma:.1f}"
        if self.notice is not None:
            self.notice(f"{image.name}: {found}, using the {key} {chosen} model")
        return chosen

    def _check_scale(self, restorer: Restorer, label: str) -> None:
        scale = self.request.scale
        if self.request.task == "upscale" and scale is not None and restorer.scale != scale:
            raise UsageError(
                f"{label} upscales x{restorer.scale}, not x{scale}; drop --scale or pick another model"
            )
        if self.request.task != "upscale" and restorer.scale != 1:
            raise UsageError(
                f"{label} is a x{restorer.scale} upscaling model; use `swinir upscale` to run it"
            )
