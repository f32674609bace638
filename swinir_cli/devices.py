"""Device and precision policy.

:func:`select_device` turns ``--device`` into a :class:`torch.device` and :func:`resolve_precision` turns
``--precision`` into a dtype (refusing what a device cannot do). Which engine computes is
:mod:`swinir_cli.engines`' table; how much of a device's memory a tile may fill is :mod:`swinir_cli.memory`'s
business.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch

from .cpu import cpu_has_bf16
from .errors import UsageError

__all__ = [
    "DEVICE_CHOICES",
    "FP16_MIN_CUDA_CAPABILITY",
    "PRECISIONS",
    "PRECISION_NAMES",
    "check_cpu_precision",
    "cuda_tf32",
    "resolve_precision",
    "select_device",
]

#: What ``--device`` accepts, for messages and help.
DEVICE_CHOICES = "auto, cpu, cuda, cuda:N or mps"

PRECISIONS = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
PRECISION_NAMES = {dtype: name for name, dtype in PRECISIONS.items()}
#: The oldest CUDA compute capability on which ``--precision auto`` is fp16 (Volta: fp16 tensor cores).
FP16_MIN_CUDA_CAPABILITY = (7, 0)


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

    ``auto`` is fp16 on a CUDA GPU of compute capability 7.0 or newer (measured on an H200 within one 8-bit
    level of fp32, see README), fp32 elsewhere (older GPUs, the CPU and MPS). fp16 is refused on the CPU,
    where it is slow and unsupported by some kernels.

    Raises:
        UsageError: unknown precision, or fp16 on the CPU.
    """
    if precision == "auto":
        fast_fp16 = (
            device.type == "cuda" and torch.cuda.get_device_capability(device) >= FP16_MIN_CUDA_CAPABILITY
        )
        return torch.float16 if fast_fp16 else torch.float32
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
