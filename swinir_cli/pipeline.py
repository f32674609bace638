"""The restore pipeline: a SwinIR network on a device, applied to images as the authors test them.

The authors' test procedure (``main_test_swinir.py``): scale 8-bit pixels to [0, 1] in float32, flip-pad the
bottom and right up to ``(h // window + 1) * window``, run the network, crop to ``h * scale, w * scale``,
clamp to [0, 1] and round ``x * 255``. :class:`Restorer` does exactly that for a whole image, and hands the
same padded forward to the tiler for large images.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from .buckets import MAX_SIDE_GROWTH, bucket_side
from .checkpoint import load_model
from .cpu import tune_allocator
from .devices import (
    PRECISION_NAMES,
    check_cpu_precision,
    resolve_precision,
    select_device,
)
from .engines import EngineContext, resolve_engine
from .engines.torch_eager import eager_forward
from .ensemble import self_ensemble
from .errors import NonFiniteResultError, UsageError
from .imageio import LoadedImage, to_colour, to_gray
from .memory import choose_tile, restore_with_oom_fallback, tile_memory_budget
from .network import SwinIR
from .settings import RestoreSettings
from .tiling import WHOLE_IMAGE, TileEdges, default_overlap, restore_tiled

__all__ = ["Restorer", "resolve_precision", "select_device"]


class Restorer:
    """A loaded model ready to restore images, computing as its :class:`~swinir_cli.settings.RestoreSettings`
    say (device, tiles, precision, engine, TTA, TF32, alpha, shape buckets: :attr:`shape_buckets` is whether
    they are on for its device and engine: never with an engine that does not take the network's valid
    region, :attr:`~swinir_cli.engines.EngineSpec.takes_valid`).

    Args:
        model: the network (its weights are moved to the settings' device).
        settings: how to compute (the defaults: automatic device, tile and precision, PyTorch).
        on_warning: receives one line when a tile had to shrink after running out of GPU memory, and one
            line the first time a tile overflowed below fp32 and was recomputed in fp32 (later tiles that
            overflow are recomputed without a further line).
        weights_path: the file the weights came from; an engine may cache beside it (OpenVINO keeps its
            converted and compiled models in ``.<file name>.openvino/`` when that folder can be written).

    Raises:
        UsageError: a device, precision or engine this machine or build cannot use.

    On the CPU the C allocator is tuned once per process (:func:`swinir_cli.cpu.tune_allocator`).
    """

    def __init__(
        self,
        model: SwinIR,
        settings: RestoreSettings = RestoreSettings(),
        *,
        on_warning: Callable[[str], None] | None = None,
        weights_path: Path | None = None,
    ) -> None:
        self.settings = settings
        self.device = select_device(settings.device)
        self.dtype = resolve_precision(settings.precision, self.device)
        if self.device.type == "cpu":
            check_cpu_precision(self.dtype)
            tune_allocator()
        self.engine = resolve_engine(settings.engine, self.device.type, PRECISION_NAMES[self.dtype])
        self.model = model.eval().requires_grad_(False).to(self.device)
        self.tile_overlap = (
            default_overlap(self.window) if settings.tile_overlap is None else settings.tile_overlap
        )
        # buckets need the network's valid region, which an engine of fixed exported graphs cannot take
        self.shape_buckets = settings.buckets_on(self.device.type) and self.engine.takes_valid
        self.on_warning = on_warning
        self._overflow_said = False
        context = EngineContext(self.model, self.device, self.dtype, settings.tf32, weights_path)
        self._engine = self.engine.factory(context)
        self._in_fp32 = eager_forward(dataclasses.replace(context, dtype=torch.float32))

    @classmethod
    def from_weights(
        cls,
        path: str | Path,
        settings: RestoreSettings = RestoreSettings(),
        *,
        on_warning: Callable[[str], None] | None = None,
    ) -> Restorer:
        """Load a ``.pth``/``.safetensors`` checkpoint (see :func:`swinir_cli.checkpoint.load_model`);
        a registry name or a path: :func:`swinir_cli.resolve.load_restorer`."""
        return cls(load_model(path), settings, on_warning=on_warning, weights_path=Path(path))

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
        tile's inner edge) only up to the window multiple, which is all the network needs. With
        :attr:`shape_buckets` that padded input is zero-padded on to the sides' bucket
        (:func:`swinir_cli.buckets.bucket_side`) and the network computes its padded region alone (its
        ``valid`` region, :meth:`~swinir_cli.network.SwinIR.forward`): the same pixels within float
        rounding, from one of a few input shapes. The result is cropped all the same.
        """
        h, w = x.shape[-2:]
        for dim, side, on_border in ((2, h, edges.bottom), (3, w, edges.right)):
            target = (side // self.window + 1 if on_border else -(-side // self.window)) * self.window
            while x.shape[dim] < target:  # one flip suffices unless the image is smaller than the pad
                x = torch.cat([x, torch.flip(x, [dim])], dim)
            x = x.narrow(dim, 0, target)
        valid = None
        if self.shape_buckets:
            x, valid = self._to_bucket(x)
        return self._forward(x, valid)[..., : h * self.scale, : w * self.scale]

    def _to_bucket(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(N, C, H', W') padded as the authors pad -> (the input zero-padded to its bucket, the (Hb, Wb)
        bool region of the authors' H' x W' in it, on x's device)."""
        height, width = x.shape[-2:]
        bucket = (bucket_side(height, self.window), bucket_side(width, self.window))
        valid = torch.zeros(bucket, dtype=torch.bool, device=x.device)
        valid[:height, :width] = True
        return F.pad(x, (0, bucket[1] - width, 0, bucket[0] - height)), valid

    def _forward(self, x: torch.Tensor, valid: torch.Tensor | None = None) -> torch.Tensor:
        """The engine's forward; below fp32 a result with inf/NaN is recomputed once in fp32 by PyTorch (the
        first such tile of this restorer is reported), and a result that is still not finite fails the image
        (clamped, NaN would be written black and inf white). ``valid``: the network's valid region in a
        bucketed input (None: the whole input).

        Raises:
            NonFiniteResultError: the fp32 result holds inf or NaN.
        """
        y = self._engine(x) if valid is None else self._engine(x, valid)
        if self.dtype != torch.float32 and not torch.isfinite(y).all():
            if self.on_warning is not None and not self._overflow_said:
                self._overflow_said = True
                self.on_warning(f"{PRECISION_NAMES[self.dtype]} overflowed on a tile; recomputed it in fp32")
            y = self._in_fp32(x, valid)
        if not torch.isfinite(y).all():
            raise NonFiniteResultError(
                "the model's result holds inf or NaN even in fp32 (its weights overflow)"
            )
        return y

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
        quantised: the authors feed noisy inputs unrounded), tiled as the settings' ``tile`` says.

        Returns (H*scale, W*scale, C) numpy, uint8 for ``max_value`` 255 else uint16, rounded as the authors
        round. ``tta`` overrides the restorer's own setting for this call.
        """
        settings = self.settings
        ensemble = settings.tta if tta is None else tta
        forward = self._ensembled if ensemble else self.forward_padded

        def restore(tile: int) -> np.ndarray:
            return restore_tiled(
                x,
                forward,
                scale=self.scale,
                window=self.window,
                tile=tile,
                overlap=self.tile_overlap,
                batch=settings.batch,
                max_value=max_value,
                progress=progress,
            )

        return restore_with_oom_fallback(
            restore,
            tile=settings.tile if settings.tile is not None else self.auto_tile(*x.shape[2:]),
            longest=max(x.shape[2:]),
            window=self.window,
            overlap=self.tile_overlap,
            on_warning=self.on_warning,
        )

    def _ensembled(self, x: torch.Tensor, edges: TileEdges) -> torch.Tensor:
        """The self-ensemble of the padded forward; a flip moves a tile's sides, so every transformed
        tile is padded as a whole image is (the authors' x8 procedure on each tile)."""
        return self_ensemble(self.forward_padded)(x)

    def auto_tile(self, height: int, width: int) -> int:
        """The window-aligned tile of least estimated compute whose estimated peak memory fits the device
        (0: the whole image fits; see :func:`~swinir_cli.memory.choose_tile`). With :attr:`shape_buckets`
        the budget is shrunk by a bucket's largest growth of the padded area
        (:data:`~swinir_cli.buckets.MAX_SIDE_GROWTH` squared), which the estimate, made for the authors'
        padding, does not see."""
        config = self.model.config
        budget = tile_memory_budget(self.device)
        if self.shape_buckets:
            budget = int(budget / MAX_SIDE_GROWTH**2)
        return choose_tile(
            height,
            width,
            budget,
            window=config.window_size,
            overlap=self.tile_overlap,
            batch=self.settings.batch,
            scale=config.upscale,
            embed_dim=config.embed_dim,
            num_heads=max(config.num_heads),
            head_features=config.upsample_features,
            device_type=self.device.type,
            precision=PRECISION_NAMES[self.dtype],
        )

    def restore_image(
        self,
        image: LoadedImage,
        progress: Callable[[int, int], None] | None = None,
    ) -> LoadedImage:
        """Restore a decoded image, keeping what the model does not see.

        A colour image meets a gray model as its luma; a gray image meets a colour model replicated to
        three channels and comes back gray. Alpha is resized with bicubic interpolation or restored by the
        model as a gray image, as the settings' ``alpha`` says. Metadata and bit depth are kept.

        Raises:
            NonFiniteResultError: the model's result holds inf or NaN even in fp32 (the message names
                the image).
        """
        try:
            restored = self._restore_channels(image.pixels, progress)
            if image.alpha is None:
                restored_alpha = None
            elif self.settings.alpha == "model":
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
