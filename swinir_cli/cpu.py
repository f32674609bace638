"""CPU specifics: the C allocator's settings for large tensors, and which CPUs compute bf16 natively.

The allocator. glibc's ``malloc`` serves every block over its mmap threshold (at most 32 MiB) with a fresh
``mmap`` and returns it to the kernel on ``free``; a SwinIR forward allocates and frees such blocks by the
hundred, and each comes back as page faults, zeroed by the kernel (6.6-7.4 M faults per 520x520 SwinIR-S
forward). :func:`tune_allocator` keeps large blocks in the heap instead and stops glibc from trimming it,
in-process through ``mallopt`` (no ``LD_PRELOAD``). The cost: freed memory stays with the process until it
exits, so its resident size stays at its peak (benchmarks/cpu_allocator.py measures both sides).

bf16. :func:`cpu_has_bf16` reads the CPU flags of /proc/cpuinfo: ``avx512_bf16`` or an AMX tile unit
(``amx_bf16``). Elsewhere bf16 is emulated, slower than fp32, and refused.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import platform
from pathlib import Path

__all__ = ["BF16_FLAGS", "CPUINFO", "cpu_flags", "cpu_has_bf16", "tune_allocator"]

#: glibc ``mallopt`` parameters (malloc.h).
_M_TRIM_THRESHOLD = -1
_M_TOP_PAD = -2
_M_MMAP_MAX = -4
#: Heap kept above the top of the used memory before glibc returns it to the kernel: effectively never.
_TRIM_THRESHOLD_BYTES = 2**31 - 1
#: Heap grown in steps of this much, so that a growing tensor does not move the break per page.
_TOP_PAD_BYTES = 64 * 2**20

#: Where Linux lists the CPU's flags.
CPUINFO = Path("/proc/cpuinfo")
#: CPU flags (as /proc/cpuinfo names them) of native bf16 arithmetic.
BF16_FLAGS = frozenset({"avx512_bf16", "amx_bf16"})

_tuned: bool | None = None


def tune_allocator() -> bool:
    """Keep freed large blocks in the process heap (glibc only); idempotent, returns whether it applied.

    Sets ``M_MMAP_MAX = 0`` (no block is served by its own ``mmap``), a trim threshold of 2 GiB and a top
    pad of 64 MiB. Returns False, changing nothing, where the C library is not glibc or refuses a setting.
    """
    global _tuned
    if _tuned is None:
        _tuned = _apply_mallopt()
    return _tuned


def _apply_mallopt() -> bool:
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    name = ctypes.util.find_library("c")
    if name is None:
        return False
    libc = ctypes.CDLL(name)
    settings = (
        (_M_MMAP_MAX, 0),
        (_M_TRIM_THRESHOLD, _TRIM_THRESHOLD_BYTES),
        (_M_TOP_PAD, _TOP_PAD_BYTES),
    )
    return all(libc.mallopt(ctypes.c_int(param), ctypes.c_int(value)) == 1 for param, value in settings)


def cpu_flags(cpuinfo: str | None = None) -> frozenset[str]:
    """The CPU's feature flags: the first ``flags`` line of ``cpuinfo`` (default: the text of
    :data:`CPUINFO`). Returns an empty set where there is no such file or line (e.g. macOS, or ARM's
    ``Features`` line).
    """
    if cpuinfo is None:
        try:
            cpuinfo = CPUINFO.read_text(errors="replace")
        except OSError:
            return frozenset()
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "flags":
            return frozenset(value.split())
    return frozenset()


def cpu_has_bf16(cpuinfo: str | None = None) -> bool:
    """Whether the CPU computes bf16 natively (AVX-512 BF16 or AMX), from :func:`cpu_flags`."""
    return bool(BF16_FLAGS & cpu_flags(cpuinfo))
