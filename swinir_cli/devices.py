"""Device and precision policy, and how much memory an automatic tile may plan to use.

:func:`select_device` turns ``--device`` into a :class:`torch.device`, :func:`resolve_precision` turns
``--precision`` into a dtype (refusing what a device cannot do), and :func:`tile_memory_budget` is the share
of a device's available memory that :meth:`swinir_cli.pipeline.Restorer.auto_tile` may fill.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch

from .errors import UsageError
from .tiling import available_memory_bytes

__all__ = [
    "CPU_TILE_BUDGET_BYTES",
    "DEVICE_CHOICES",
    "MEMORY_BUDGET_FRACTION",
    "PRECISIONS",
    "PRECISION_NAMES",
    "cuda_tf32",
    "resolve_precision",
    "select_device",
    "tile_memory_budget",
]

#: What ``--device`` accepts, for messages and help.
DEVICE_CHOICES = "auto, cpu, cuda, cuda:N or mps"
#: Share of the device's available memory that an automatic tile may plan to use.
MEMORY_BUDGET_FRACTION = 0.5
#: Cap on the CPU: larger tiles barely speed a CPU up (overlap is a small share of a 256-pixel tile)
#: but raise the peak memory (benchmarks/tile_memory.py).
CPU_TILE_BUDGET_BYTES = 1 << 30

PRECISIONS = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
PRECISION_NAMES = {dtype: name for name, dtype in PRECISIONS.items()}


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
        raise UsageError(f"unknown device {spec!r}: use {DEVICE_CHOICES}") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UsageError(f"device {spec!r} requested, but this PyTorch build sees no CUDA GPU")
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise UsageError(f"device {spec!r} requested, but only {torch.cuda.device_count()} CUDA GPU(s) exist")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise UsageError(f"device {spec!r} requested, but Apple MPS is not available")
    if device.type not in ("cpu", "cuda", "mps"):
        raise UsageError(f"unsupported device {spec!r}: use {DEVICE_CHOICES}")
    return device


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


@contextlib.contextmanager
def cuda_tf32(enabled: bool) -> Iterator[None]:
    """Let CUDA run float32 matmuls and convolutions in TF32 (``enabled``) or strictly in fp32, for the
    duration of the block; the previous settings come back after it (also on error).

    TF32 keeps 10 mantissa bits of the inputs: faster on recent NVIDIA GPUs, but results change.
    """
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = enabled
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


def tile_memory_budget(device: torch.device) -> int:
    """Bytes an automatic tile may plan to use on ``device``: a share of its available memory, capped on
    the CPU (see :data:`CPU_TILE_BUDGET_BYTES`)."""
    budget = int(available_memory_bytes(device) * MEMORY_BUDGET_FRACTION)
    if device.type == "cpu":
        budget = min(budget, CPU_TILE_BUDGET_BYTES)
    return budget
