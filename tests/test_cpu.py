"""CPU specifics: bf16 flags read from cpuinfo text, bf16 refused without them, the allocator setting."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import REFERENCE

from swinir_cli import cpu
from swinir_cli.devices import check_cpu_precision
from swinir_cli.errors import UsageError
from swinir_cli.pipeline import Restorer

ZEN4 = "processor\t: 0\nvendor_id\t: AuthenticAMD\nflags\t\t: fpu sse2 avx2 avx512f avx512_bf16 avx512_vnni\n"
SAPPHIRE_RAPIDS = "processor\t: 0\nflags\t\t: fpu avx2 avx512f amx_bf16 amx_tile amx_int8\n"
SKYLAKE = "processor\t: 0\nflags\t\t: fpu sse2 avx2 avx512f avx512bw avx512_vnni\n"
ARM = "processor\t: 0\nFeatures\t: fp asimd evtstrm bf16\n"


@pytest.mark.parametrize(
    ("text", "native"), [(ZEN4, True), (SAPPHIRE_RAPIDS, True), (SKYLAKE, False), (ARM, False)]
)
def test_bf16_is_native_only_with_avx512_bf16_or_amx(text: str, native: bool) -> None:
    assert cpu.cpu_has_bf16(text) is native


def test_flags_come_from_the_first_flags_line() -> None:
    assert cpu.cpu_flags(SKYLAKE + "processor\t: 1\nflags\t: other\n") == {
        "fpu",
        "sse2",
        "avx2",
        "avx512f",
        "avx512bw",
        "avx512_vnni",
    }
    assert cpu.cpu_flags("") == frozenset()


def test_a_missing_cpuinfo_means_no_flags(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(cpu, "CPUINFO", tmp_path / "absent")
    assert cpu.cpu_flags() == frozenset() and not cpu.cpu_has_bf16()


def test_bf16_is_refused_on_a_cpu_without_it(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="avx512_bf16"):
        check_cpu_precision(torch.bfloat16, SKYLAKE)
    check_cpu_precision(torch.bfloat16, ZEN4)
    check_cpu_precision(torch.float32, SKYLAKE)
    fake = tmp_path / "cpuinfo"
    fake.write_text(SKYLAKE)
    monkeypatch.setattr(cpu, "CPUINFO", fake)
    with pytest.raises(UsageError, match="bf16 needs a CPU"):
        Restorer.from_weights(REFERENCE / "tiny" / "dn_gray.pth", device="cpu", precision="bf16")
    assert Restorer.from_weights(REFERENCE / "tiny" / "dn_gray.pth", device="cpu").dtype == torch.float32


ALLOCATION_FAULTS = """
import json, resource, sys, torch
from swinir_cli.cpu import tune_allocator
applied = tune_allocator() if sys.argv[1] == "tuned" else False
def faults():
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt
block = torch.ones(25 * 2**20)  # 100 MiB, over glibc's largest mmap threshold
del block
before = faults()
block = torch.ones(25 * 2**20)
print(json.dumps({"applied": applied, "faults": faults() - before}))
"""


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallopt is glibc's")
def test_tuned_allocator_keeps_freed_blocks_instead_of_faulting_them_back() -> None:
    def second_allocation(mode: str) -> dict:
        done = subprocess.run(
            [sys.executable, "-c", ALLOCATION_FAULTS, mode],
            check=True,
            capture_output=True,
            text=True,
            env={**os.environ, "OMP_NUM_THREADS": "2"},
        )
        return json.loads(done.stdout)

    # Two threads, as a CPU run has by default. With OMP_NUM_THREADS=1 this probe saw the tuned block
    # faulted back in as well (2026-12-02, not understood yet), so the gain is not claimed for one thread.
    plain, tuned = second_allocation("plain"), second_allocation("tuned")
    pages = 100 * 2**20 // 4096
    assert tuned["applied"]
    assert plain["faults"] > pages // 2  # glibc gave the block back and takes it again, page by page
    assert tuned["faults"] < pages // 20  # the freed block was reused
    assert cpu.tune_allocator() is cpu.tune_allocator()
