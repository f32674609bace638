"""The restore pipeline: a SwinIR network on a device, applied to images as the authors test them.

The authors' test procedure (``main_test_swinir.py``): scale 8-bit pixels to [0, 1] in float32, flip-pad the
bottom and right up to ``(h // window + 1) * window``, run the network, crop to ``h * scale, w * scale``,
clamp to [0, 1] and round ``x * 255``. :class:`Restorer` does exactly that for a whole image, and hands the
same padded forward to the tiler for large images.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import torch

from .checkpoint import load_model
from .cpu import tune_allocator
from .devices import (
    PRECISION_NAMES,
    check_cpu_precision,
    cuda_tf32,
    resolve_engine,
    resolve_precision,
    select_device,
)
from .download import verified_weights_path
from .ensemble import self_ensemble
from .errors import NonFiniteResultError, UsageError
from .imageio import LoadedImage, to_colour, to_gray
from .memory import choose_tile, restore_with_oom_fallback, tile_memory_budget
from .network import SwinIR
from .registry import get_model
from .tiling import WHOLE_IMAGE, TileEdges, default_overlap

__all__ = ["Restorer", "resolve_precision", "select_device"]


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
            every tile is checked for inf/NaN and recomputed in fp32 when it has any; an fp32 result
            with inf/NaN fails the image (:class:`~swinir_cli.errors.NonFiniteResultError`).
        tta: average the eight flips/rotations of each tile (:mod:`swinir_cli.ensemble`), 8x slower.
        on_warning: receives one line when a tile had to shrink after running out of GPU memory.
        engine: ``auto`` (PyTorch), ``torch`` or ``openvino`` (CPU only, the optional extra; see
            :mod:`swinir_cli.engines.openvino`).
        weights_path: the file the weights came from; the OpenVINO engine keeps its converted and
            compiled models beside it (in ``.<file name>.openvino/``) when that folder can be written.
        tf32: on CUDA, run float32 matmuls and convolutions in TF32 (faster, changes results); off by
            default, and then strictly fp32 while this restorer runs (see
            :func:`swinir_cli.devices.cuda_tf32`). No effect on other devices, or on the fp16/bf16
            matmuls of half precision.

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
        tf32: bool = False,
    ) -> None:
        self.tta = tta
        self.tf32 = tf32
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
        """The network in the chosen precision; a result with inf/NaN is recomputed in fp32, and one that
        is still not finite fails the image (clamped, NaN would be written black and inf white).

        Below fp32 it runs under autocast: matmuls and convolutions in fp16/bf16, LayerNorm in fp32
        (:class:`swinir_cli.network.FloatLayerNorm`), softmax in fp32 inside the attention kernel.

        Raises:
            NonFiniteResultError: the fp32 result holds inf or NaN.
        """
        if self.engine == "openvino":
            y = self._forward_openvino(x)
        else:
            with self._fp32_matmuls():
                y = self._forward_torch(x)
        if not torch.isfinite(y).all():
            raise NonFiniteResultError(
                "the model's result holds inf or NaN even in fp32 (its weights overflow)"
            )
        return y

    def _forward_torch(self, x: torch.Tensor) -> torch.Tensor:
        if self.dtype == torch.float32:
            return self.model(x)
        with torch.autocast(self.device.type, dtype=self.dtype):
            y = self.model(x)
        return y.float() if torch.isfinite(y).all() else self._recompute_in_fp32(x)

    def _recompute_in_fp32(self, x: torch.Tensor) -> torch.Tensor:
        if self.on_warning is not None:
            self.on_warning(f"{PRECISION_NAMES[self.dtype]} overflowed on a tile; recomputed it in fp32")
        return self.model(x)

    def _fp32_matmuls(self) -> contextlib.AbstractContextManager:
        """TF32 on or off as asked, on CUDA only; elsewhere the global settings stay as they are."""
        return cuda_tf32(self.tf32) if self.device.type == "cuda" else contextlib.nullcontext()

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
        return self._recompute_in_fp32(x)

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
        # the integer pixels travel to the device (a quarter of the float32 bytes for uint8) and become
        # float there, in one buffer
        x = torch.from_numpy(np.require(pixels, requirements=["C", "W"])).to(self.device).permute(2, 0, 1)
        return self.restore_tensor(x[None].float().div_(max_value), max_value=max_value, progress=progress)

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
        (0: the whole image fits; see :func:`~swinir_cli.memory.choose_tile`)."""
        config = self.model.config
        return choose_tile(
            height,
            width,
            tile_memory_budget(self.device),
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
            NonFiniteResultError: the model's result holds inf or NaN even in fp32 (the message names
                the image).
        """
        if alpha not in ("bicubic", "model"):
            raise UsageError(f"alpha must be 'bicubic' or 'model', not {alpha!r}")
        try:
            restored = self._restore_channels(image.pixels, progress)
            if image.alpha is None:
                restored_alpha = None
            elif alpha == "model":
                restored_alpha = self._restore_channels(image.alpha[..., None], progress)[..., 0]
            else:
                restored_alpha = self._resize_alpha(image.alpha)
        except NonFiniteResultError as exc:
            raise NonFiniteResultError(f"{image.name}: {exc}; nothing written") from None
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
