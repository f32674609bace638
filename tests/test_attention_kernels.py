"""benchmarks/attention_kernels.py --dry-run: FlexAttention's score_mod computes the network's window
attention (bias and shift mask), and the report keeps its shape. The real run needs a CUDA GPU."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "attention_kernels.py"


def test_dry_run_compares_flex_attention_with_sdpa(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--dry-run", "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads((tmp_path / "attention_kernels.json").read_text())
    assert report["meta"]["dry_run"] is True and report["meta"]["device"] == "cpu"
    rows = {(row["layer"], row["way"]): row for row in report["rows"]}
    assert set(rows) == {(layer, way) for layer in ("plain", "shifted") for way in ("sdpa-math", "flex")}
    for row in rows.values():
        assert row["ms"] > 0 and row["max_abs_deviation_vs_fp32_math"] < 1e-4, row
