"""Device and precision policy, and how much memory an automatic tile may plan to use.

:func:`select_device` turns ``--device`` into a :class:`torch.device`, :func:`resolve_precision` turns
``--precision`` into a dtype (refusing what a device cannot do; which engine computes is
:mod:`swinir_cli.engines`' table), and :func:`tile_memory_budget` is the share
of a device's available memory that :meth:`swinir_cli.pipeline.Restorer.auto_tile` may fill.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch

from .cpu import cpu_has_bf16
from .errors import UsageError
from .tiling import available_memory_bytes

__all__ = [
    "CPU_TILE_BUDGET_BYTES",
    "DEVICE_CHOICES",
    "MEMORY_BUDGET_FRACTION",
    "PRECISIONS",
    "PRECISION_NAMES",
    "check_cpu_precision",
    "cuda_tf32",
    "resolve_precision",
    "select_device",
    "tile_memory_budget",
]

#: What ``--device`` accepts, for messages and help.
DEVICE_CHOICES = "auto, cpu, cuda, cuda:N or mps"
#: Share of the device's available memory that an automatic tile may plan to use.
MEMORY_BUDGET_FRACTION = 0.5
#: Cap on the CPU, for the estimate of :func:`~swinir_cli.tiling.estimate_peak_bytes`: evenly spread
#: tiles of 200-270 pixels compute only 10-20% more than the whole image (benchmarks/tile_waste.py), and
#: the cap keeps a 768x768 SwinIR-S x4 run under 1 GB resident (benchmarks/tile_memory.py; 272-pixel tiles
#: peaked at 1012 MiB there).
CPU_TILE_BUDGET_BYTES = 700 * 2**20

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
