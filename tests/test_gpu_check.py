"""benchmarks/gpu_check.py --dry-run: every section's code runs on the CPU and the report keeps its shape.

The real check needs a CUDA GPU (see /work/notes/gpu_run.md); this keeps the script from rotting.
"""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from helpers import REFERENCE, TINY_CASES, require_shared
from torch.cuda._utils import _get_device_index

from swinir_cli.cpu import cpu_has_bf16

require_shared()

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu_check.py"
SECTIONS = {"sdpa_backends", "precision", "speed", "memory", "oom_fallback", "compile"}


def test_dry_run_writes_every_section(tmp_path: Path) -> None:
    # --shared may name the reference folder itself, as a copy carried to a GPU machine can be laid out
    # a budget well above the dry run's half minute, so that a loaded machine cannot cut a section short
    command = [sys.executable, str(SCRIPT), "--dry-run", "--out", str(tmp_path), "--shared", str(REFERENCE)]
    done = subprocess.run(
        [*command, "--budget", "200"], capture_output=True, text=True, timeout=300, cwd=tmp_path
    )
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads((tmp_path / "gpu_check.json").read_text())
    assert report["meta"]["dry_run"] is True and report["meta"]["device"] == "cpu"
    sections = report["sections"]
    assert set(sections) == SECTIONS
    for name in ("sdpa_backends", "precision", "speed", "memory"):
        assert sections[name]["status"] == "ok", (name, sections[name].get("reason"))
    for name in ("oom_fallback", "compile"):  # CUDA-only probes say why they did not run
        assert sections[name]["status"] == "skipped" and sections[name]["reason"]

    precision = sections["precision"]["rows"]
    golden_bf16 = [r for r in precision if r["kind"] == "golden" and r["precision"] == "bf16"]
    assert {r["case"] for r in golden_bf16} == {*TINY_CASES, "swinir_s_x4_random"}
    for row in golden_bf16:  # a CPU without native bf16 (the Restorer refuses it there) says so instead
        if not cpu_has_bf16():
            assert "AVX-512 BF16" in row["skipped"]
            continue
        assert isinstance(row["max_diff_8bit"], int) and 0 <= row["max_diff_8bit"] <= 255
        assert row["nonfinite"] == 0 and row["fp32_fallback"] is False
    golden_fp32 = [r for r in precision if r["kind"] == "golden" and r["precision"] == "fp32"]
    assert len(golden_fp32) == len(golden_bf16) and all(
        r["vs_authors_max_diff_8bit"] <= 1 for r in golden_fp32
    )
    released_bf16 = [r for r in precision if r["kind"] == "released" and r["precision"] == "bf16"]
    assert released_bf16 and all(("max_diff_8bit" in r) == cpu_has_bf16() for r in released_bf16)
    assert all("skipped" in r for r in precision if r["precision"] == "fp16")
    summary = sections["precision"]["summary"]["bf16"]
    assert summary["cases"] == len([r for r in precision if r["precision"] == "bf16" and "skipped" not in r])

    probes = sections["sdpa_backends"]["rows"]
    defaults = [r for r in probes if r["backend"] == "default"]
    assert {(r["head_dim"], r["padded"]) for r in defaults} == {
        (10, False),
        (10, True),
        (30, False),
        (30, True),
    }
    assert all(r["ok"] and r["ops"] for r in defaults)
    assert all(r["ok"] or r["error"] for r in probes)

    speed = [r for r in sections["speed"]["rows"] if "ms_per_image" in r]
    assert {r["variant"] for r in speed} >= {"fp32 authors' order", "fp32", *(["bf16"] * cpu_has_bf16())}
    assert {r["batch"] for r in speed} == {1, 4}
    assert all(r["ms_per_image"] > 0 and r["max_diff_8bit"] >= 0 for r in speed)
    assert all(r["estimated_bytes"] > 0 for r in sections["memory"]["rows"] if "skipped" not in r)
    table = (tmp_path / "gpu_check.md").read_text()
    assert "## precision: ok" in table and "| bf16 |" in table


def test_run_device_carries_the_cuda_index(monkeypatch: pytest.MonkeyPatch) -> None:
    # the out-of-memory section caps memory with torch.cuda.set_per_process_memory_fraction, which refuses
    # a plain "cuda" (no index) through _get_device_index; the GPU is mocked, only the device is built here
    monkeypatch.syspath_prepend(str(SCRIPT.parent))
    gpu_check = importlib.import_module("gpu_check")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 1)
    for asked in (None, "cuda"):
        device = gpu_check.run_device(asked, dry_run=False)
        assert device == torch.device("cuda", 1) and _get_device_index(device) == 1
    assert _get_device_index(gpu_check.run_device("cuda:0", dry_run=False)) == 0
    assert gpu_check.run_device(None, dry_run=True) == torch.device("cpu")
