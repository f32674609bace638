"""How a :class:`~swinir_cli.pipeline.Restorer` computes, as one value: :class:`RestoreSettings`.

The command line builds it from its options (:func:`swinir_cli.cli.options.restore_settings`, the same for
every command) and hands it on unchanged: the recipe holds it, the model chooser gives it to each
restorer, the restorer keeps it. Its defaults are stated here only. It imports nothing above the engine
table, so building one loads no PyTorch.
"""

from __future__ import annotations

from dataclasses import dataclass

from .engines import AUTO, COMPUTE_PRECISIONS, engine_spec
from .errors import UsageError

__all__ = [
    "ALPHA_MODES",
    "PRECISION_CHOICES",
    "SHAPE_BUCKETS_AUTO_DEVICES",
    "SHAPE_BUCKET_CHOICES",
    "RestoreSettings",
]

#: What ``--precision`` takes; ``auto`` is fp16 on CUDA GPUs of compute capability 7.0+, else fp32 (see
#: :func:`swinir_cli.devices.resolve_precision`).
PRECISION_CHOICES = (AUTO, *COMPUTE_PRECISIONS)
#: What ``--alpha`` takes: transparency resized by bicubic interpolation, or restored by the model.
ALPHA_MODES = ("bicubic", "model")
#: What ``--shape-buckets`` takes (``auto``: see :data:`SHAPE_BUCKETS_AUTO_DEVICES`).
SHAPE_BUCKET_CHOICES = (AUTO, "on", "off")
#: The device types on which ``--shape-buckets auto`` turns buckets on (unless ``--tile 0``): CUDA, where
#: the set-up a shape pays (kernel plans, compiled graphs) is what buckets save. Their pixels are the exact
#: shapes' within float rounding (the network masks the padding: ``valid`` of
#: :meth:`swinir_cli.network.SwinIR.forward`); what they cost is the padded compute: 1.15-1.46 times the
#: forward pixels, and on the CPU, where no set-up is saved, 1.6-1.7 times the seconds (SwinIR-S x4, 12
#: mixed crops, ``python benchmarks/shape_buckets.py``, 2 cores, 2026-12-07).
SHAPE_BUCKETS_AUTO_DEVICES: tuple[str, ...] = ("cuda",)


@dataclass(frozen=True)
class RestoreSettings:
    """How images are computed: where, in which tiles and precision, by which engine.

    Args:
        device: ``auto`` (CUDA, else Apple MPS, else CPU), ``cpu``, ``cuda``, ``cuda:N`` or ``mps`` (see
            :func:`swinir_cli.devices.select_device`); a command's ``--device`` list is spread over
            workers, each of which gets one device.
        tile: tile side in input pixels; 0 runs the whole image at once; None picks the largest tile
            that fits the device's available memory.
        tile_overlap: overlap between tiles in input pixels (None: the tiler's default for the window).
        batch: tiles per forward pass.
        precision: ``auto`` (fp16 on CUDA GPUs of compute capability 7.0 or newer, else fp32), ``fp32``,
            ``fp16`` or ``bf16`` (see :func:`swinir_cli.devices.resolve_precision`); below fp32 every tile
            is checked for inf/NaN and recomputed in fp32 when it has any; an fp32 result with inf/NaN fails
            the image
            (:class:`~swinir_cli.errors.NonFiniteResultError`).
        engine: ``auto`` or an engine of the table (:mod:`swinir_cli.engines`: ``torch``, ``openvino``,
            ``compiled``).
        tta: average the eight flips/rotations of each tile (:mod:`swinir_cli.ensemble`), 8x slower.
        tf32: on CUDA, run float32 matmuls and convolutions in TF32 (faster, changes results); off by
            default, and then strictly fp32 while the restorer runs (see
            :func:`swinir_cli.devices.cuda_tf32`). No effect on other devices, or on the fp16/bf16
            matmuls of half precision.
        alpha: transparency resized with bicubic interpolation (``bicubic``) or restored by the model
            as a gray image (``model``).
        shape_buckets: pad every forward input further, bottom and right, to one of a few canonical
            shapes (:mod:`swinir_cli.buckets`), so that a run of mixed sizes pays each shape's set-up once
            (``on``), or keep the authors' padded shapes (``off``); ``auto`` is on where
            :data:`SHAPE_BUCKETS_AUTO_DEVICES` says (CUDA), unless ``tile`` is 0 (see :meth:`buckets_on`).
            The network computes the authors' padded region alone, so the pixels stay the same within float
            rounding; the padding costs compute. Off with an engine that cannot take the network's valid
            region (OpenVINO: see :class:`~swinir_cli.pipeline.Restorer`).

    Raises:
        UsageError: a value out of range or unknown, naming its option.
    """

    device: str = "auto"
    tile: int | None = None
    tile_overlap: int | None = None
    batch: int = 1
    precision: str = AUTO
    engine: str = AUTO
    tta: bool = False
    tf32: bool = False
    alpha: str = "bicubic"
    shape_buckets: str = AUTO

    def buckets_on(self, device_type: str) -> bool:
        """Whether forward inputs are padded to shape buckets on a ``device_type`` device: as asked, or for
        ``auto`` on the devices of :data:`SHAPE_BUCKETS_AUTO_DEVICES` unless the tile is 0 (whole images at
        the authors' exact shapes)."""
        if self.shape_buckets == AUTO:
            return device_type in SHAPE_BUCKETS_AUTO_DEVICES and self.tile != 0
        return self.shape_buckets == "on"

    def __post_init__(self) -> None:
        if self.tile is not None and self.tile < 0:
            raise UsageError(f"--tile must not be negative, got {self.tile}")
        if self.tile_overlap is not None and self.tile_overlap < 0:
            raise UsageError(f"--tile-overlap must not be negative, got {self.tile_overlap}")
        if self.batch < 1:
            raise UsageError(f"--batch must be at least 1, got {self.batch}")
        if self.precision not in PRECISION_CHOICES:
            raise UsageError(
                f"unknown precision {self.precision!r} (--precision): use {', '.join(PRECISION_CHOICES)}"
            )
        if self.engine != AUTO:
            engine_spec(self.engine)  # refuses an unknown name, listing the table's
        if self.alpha not in ALPHA_MODES:
            raise UsageError(f"--alpha must be bicubic or model, not {self.alpha!r}")
        if self.shape_buckets not in SHAPE_BUCKET_CHOICES:
            raise UsageError(
                f"--shape-buckets must be {', '.join(SHAPE_BUCKET_CHOICES)}, not {self.shape_buckets!r}"
            )
