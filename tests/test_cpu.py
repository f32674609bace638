"""CPU specifics: bf16 flags read from cpuinfo text, bf16 refused without them, the allocator setting."""

from __future__ import annotations

import platform
from pathlib import Path

import pytest
import torch
from helpers import REFERENCE, needs_shared, run_python

from swinir_cli import cpu
from swinir_cli.devices import check_cpu_precision
from swinir_cli.errors import UsageError
from swinir_cli.pipeline import Restorer
from swinir_cli.settings import RestoreSettings

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


@needs_shared
def test_bf16_is_refused_on_a_cpu_without_it(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="avx512_bf16"):
        check_cpu_precision(torch.bfloat16, SKYLAKE)
    check_cpu_precision(torch.bfloat16, ZEN4)
    check_cpu_precision(torch.float32, SKYLAKE)
    fake = tmp_path / "cpuinfo"
    fake.write_text(SKYLAKE)
    monkeypatch.setattr(cpu, "CPUINFO", fake)
    with pytest.raises(UsageError, match="bf16 needs a CPU"):
        Restorer.from_weights(
            REFERENCE / "tiny" / "dn_gray.pth", RestoreSettings(device="cpu", precision="bf16")
        )
    assert (
        Restorer.from_weights(REFERENCE / "tiny" / "dn_gray.pth", RestoreSettings(device="cpu")).dtype
        == torch.float32
    )


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallopt is glibc's")
def test_the_allocator_is_tuned_once_per_process() -> None:
    """mallopt accepts the settings, once. Whether a freed 100 MiB block is then reused without page faults
    was seen to vary from process to process (reused in 4 of 6 probes on 2026-12-02), so that gain is
    measured by benchmarks/cpu_allocator.py, not asserted here."""
    probe = "from swinir_cli import cpu; t = cpu.tune_allocator(); print(t, cpu.tune_allocator() is t)"
    done = run_python(probe)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == ["True", "True"]
