"""benchmarks/gpu_batch.py --dry-run: every section runs on the CPU at tiny sizes; the report keeps its shape.

The real run needs a CUDA GPU and the authors' code; this keeps the script from rotting.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import TESTSETS, require_shared

from swinir_cli.cpu import cpu_has_bf16

require_shared()

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu_batch.py"


def test_dry_run_measures_and_compares_both_folders(tmp_path: Path) -> None:
    sources = tmp_path / "sources"
    sources.mkdir()
    for name in ("baby.png", "bird.png"):
        shutil.copy(TESTSETS / "Set5" / "HR" / name, sources / name)
    (sources / "broken.png").write_bytes(b"not a png")
    out = tmp_path / "out"
    command = [sys.executable, str(SCRIPT), "--dry-run", "--images", str(sources), "--out", str(out)]
    # a budget well above the dry run's, so that a loaded machine cannot skip a case
    done = subprocess.run(
        [*command, "--budget-s", "400"], capture_output=True, text=True, timeout=600, cwd=tmp_path
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert f"{sources / 'broken.png'}: not a readable image, left out" in done.stdout  # and the run went on
    assert re.search(r"\] photos: swinir default: [\d.]+ s", done.stdout)  # progress lines

    report = json.loads((out / "gpu_batch.json").read_text())
    assert report["meta"]["dry_run"] is True and report["meta"]["device"] == "cpu"
    sections = report["sections"]
    assert list(sections) == ["inputs", "in_process", "whole_process", "differences"]
    assert all(entry["status"] == "ok" for entry in sections.values()), sections

    photos, frames = sections["inputs"]["rows"]
    assert (photos["folder"], photos["images"], frames["folder"], frames["images"]) == (
        "photos",
        3,
        "frames",
        4,
    )
    shapes = [tuple(map(int, shape.split("x"))) for shape in photos["shapes (h x w)"].split(", ")]
    assert len(set(shapes)) == 3 and all(24 <= side <= 48 for shape in shapes for side in shape)
    assert frames["shapes (h x w)"] == "32x40"

    measured = {row["precision"]: row for row in sections["in_process"]["rows"]}
    assert measured["fp32"]["photos_first_pass_s"] > 0 and measured["fp32"]["frame_warm_ms_median"] > 0
    assert measured["fp32"]["engine"] == "torch" and measured["fp32"]["first_over_second"] > 0
    assert "fp16" in measured["fp16"]["skipped"]  # the Restorer refuses fp16 on the CPU
    assert ("skipped" in measured["bf16"]) != cpu_has_bf16()

    whole = {(row["folder"], row["command"]): row for row in sections["whole_process"]["rows"]}
    for folder, count in (("photos", 3), ("frames", 4)):
        assert whole[folder, "authors main_test_swinir.py"]["skipped"] == "no --authors-code given"
        for label in ("swinir default", "swinir --tile 0"):
            assert whole[folder, label]["seconds"] > 0
            assert whole[folder, label]["images_per_s"] == pytest.approx(
                count / whole[folder, label]["seconds"], abs=0.02
            )  # both rounded
        assert "same command as the default" in whole[folder, "swinir --precision fp32"]["skipped"]
    assert (
        whole["frames", "swinir default"]["predicted_s"] > 0
    )  # from the photos' run and the in-process rate

    differences = {(row["folder"], row["command"]): row for row in sections["differences"]["rows"]}
    for folder, count in (("photos", 3), ("frames", 4)):
        row = differences[folder, "swinir --tile 0"]
        assert row["reference"] == "swinir default"  # no authors' outputs: the default run is the reference
        assert (row["images"], row["missing"], row["max_diff_8bit"]) == (count, 0, 0)
    table = (out / "gpu_batch.md").read_text()
    assert (
        "## whole_process: ok" in table
        and "| photos | swinir --tile 0 | swinir default | 3 | 0 | 0 |" in table
    )
