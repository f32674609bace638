"""The compiled engine (--engine compiled): Inductor's graphs give eager's pixels, and a later process
loads them from swinir's cache folder instead of compiling again.

One test, on the smallest SwinIR that still has a plain and a shifted block: compiling even that takes
Inductor over 20 seconds on the CPU (the tiny reference checkpoints take about 30).
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import api_restore, run_swinir, run_swinir_process, save_rgb

from swinir_cli.engines.compiled import INDUCTOR_CACHE_VARIABLE
from swinir_cli.imageio import read_image
from swinir_cli.network import SwinIR, SwinIRConfig

#: Inductor's loggers that say whether a compiled graph came from its disk cache.
CACHE_LOGS = "torch._inductor.codecache,torch._functorch._aot_autograd.autograd_cache"


def smallest_swinir(path: Path) -> Path:
    """A random x2 SwinIR of one residual group of two blocks (plain, shifted), 8 channels, saved as the
    authors save theirs."""
    torch.manual_seed(0)
    config = SwinIRConfig(embed_dim=8, depths=(2,), num_heads=(1,), upscale=2, upsampler="pixelshuffledirect")
    torch.save({"params": SwinIR(config).state_dict()}, path)
    return path


def test_compiled_pixels_match_eager_and_a_later_process_loads_them_from_the_cache(
    tmp_path: Path, cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(INDUCTOR_CACHE_VARIABLE, "the engine sets it")
    monkeypatch.delenv(INDUCTOR_CACHE_VARIABLE)  # unset now, and again after the test, whatever it became
    image, weights = save_rgb(tmp_path / "a.png", height=20, width=24), smallest_swinir(tmp_path / "x2.pth")
    common = ["upscale", image, "-w", weights, "--device", "cpu", "--tile", "0", "--engine", "compiled"]
    first = run_swinir(*common, "--quiet", "-o", tmp_path / "first.png")
    assert first.returncode == 0, first.stderr.decode()[-3000:]
    compiled = read_image(tmp_path / "first.png").pixels
    eager = api_restore(weights, image).pixels
    assert compiled.shape == eager.shape == (40, 48, 3)
    assert np.abs(compiled.astype(np.int16) - eager.astype(np.int16)).max() <= 1
    assert any((cache / "inductor").rglob("*.py")), "Inductor's generated code is in swinir's cache folder"

    monkeypatch.delenv(INDUCTOR_CACHE_VARIABLE)  # the later process places the cache from SWINIR_CACHE_DIR
    second = run_swinir_process(
        *common, "--quiet", "-o", tmp_path / "second.png", env={"TORCH_LOGS": CACHE_LOGS}, timeout=300
    )
    log = second.stderr.decode()
    assert second.returncode == 0, log[-3000:]
    assert re.search(r"cache hit for key", log) and not re.search(r"cache miss for key", log), log[-3000:]
    np.testing.assert_array_equal(read_image(tmp_path / "second.png").pixels, compiled)
