"""Shared fixtures: the reference data in ../shared (beside the repository) and tiny random models."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pytest
import torch
from PIL import Image

from swinir_cli.imageio import LoadedImage, read_image
from swinir_cli.pipeline import Restorer
from swinir_cli.settings import RestoreSettings

if TYPE_CHECKING:
    from hostile import WeightServer

SHARED = Path(__file__).resolve().parents[2] / "shared"
REFERENCE = SHARED / "reference"
TESTSETS = SHARED / "testsets"
TINY_CASES = sorted(p.stem for p in (REFERENCE / "tiny").glob("*.pth"))
SWINIR_S_X4 = REFERENCE / "swinir_s_x4_random.pth"
TINY = REFERENCE / "tiny"
SR_X2 = TINY / "sr_pixelshuffle_x2.pth"
DN_COLOR = TINY / "dn_color.pth"
#: The installed console script, beside this interpreter.
SWINIR = Path(sys.executable).with_name("swinir")
#: Processes run side by side on the 2-core test machines; one thread each keeps them from fighting.
PARALLEL_RUNS = 2


@pytest.fixture
def server() -> Iterator[WeightServer]:
    """A loopback HTTP server (``hostile.WeightServer``) serving the tiny checkpoint as ``/FILE_NAME``."""
    from hostile import FILE_NAME, TINY_BYTES, WeightServer  # hostile imports this module

    weight_server = WeightServer()
    weight_server.files[f"/{FILE_NAME}"] = TINY_BYTES
    yield weight_server
    weight_server.stop()


def official_models() -> list[dict]:
    """The manifest of the 31 released checkpoints (names, urls, hashes, configs, tensor shapes)."""
    return json.loads((REFERENCE / "official_models.json").read_text())


def random_state_dict(shapes: dict[str, list[int]], seed: int = 0) -> dict[str, torch.Tensor]:
    """Random tensors with exactly the given names and shapes (small values keep activations tame)."""
    generator = torch.Generator().manual_seed(seed)
    return {name: torch.randn(shape, generator=generator) * 0.02 for name, shape in shapes.items()}


@pytest.fixture(scope="session")
def reference() -> Path:
    if not REFERENCE.is_dir():
        pytest.fail(f"reference data missing: {REFERENCE} (the repository expects ../shared beside it)")
    return REFERENCE


def run_swinir(
    *args: str | Path,
    cwd: Path | None = None,
    stdin: bytes | None = None,
    timeout: float = 120,
    env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess[bytes]:
    """Run the installed ``swinir`` console script on one thread (``env`` added to this environment);
    stdout and stderr are captured as bytes."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", **(env or {})}
    env.pop("SWINIR_DEBUG", None)
    return subprocess.run(
        [str(SWINIR), *map(str, args)],
        cwd=cwd,
        input=stdin,
        capture_output=True,
        env=env,
        timeout=timeout,
        check=False,
    )


def run_many(commands: Sequence[Sequence[str | Path]], cwd: Path | None = None) -> list:
    """Several independent ``swinir`` runs, side by side (each pays torch's import time)."""
    with ThreadPoolExecutor(PARALLEL_RUNS) as pool:
        return list(pool.map(lambda args: run_swinir(*args, cwd=cwd), commands))


def stderr_lines(result: subprocess.CompletedProcess[bytes]) -> list[str]:
    return result.stderr.decode().splitlines()


def assert_one_clean_error_line(result: subprocess.CompletedProcess[bytes], *words: str) -> None:
    lines = stderr_lines(result)
    assert len(lines) == 1, lines
    assert lines[0].startswith("error: ") and "Traceback" not in lines[0]
    for word in words:
        assert word in lines[0], lines[0]


def save_rgb(path: Path, height: int = 20, width: int = 24, seed: int = 0, mode: str = "RGB") -> Path:
    channels = {"RGB": 3, "RGBA": 4, "L": 0}[mode]
    shape = (height, width, channels) if channels else (height, width)
    Image.fromarray(np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)).save(path)
    return path


@contextmanager
def one_thread() -> Iterator[None]:
    """Compute on one thread, as the commands here do, so that float sums add up in the same order."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def assert_nearly_equal(produced: np.ndarray, expected: np.ndarray) -> None:
    """Equal up to float rounding: at most 1 level off on at most 0.1% of the values.

    The command and this process may run the network on different thread counts, whose float sums can
    differ in the last bit and so, rarely, round to the neighbouring level.
    """
    assert produced.shape == expected.shape and produced.dtype == expected.dtype
    difference = np.abs(produced.astype(np.int32) - expected.astype(np.int32))
    assert difference.max() <= 1
    assert np.count_nonzero(difference) <= 0.001 * difference.size


def api_restore(weights: Path, path: Path, *, tta: bool = False) -> LoadedImage:
    """What the command should write for ``path``: the Python API on the same file, whole image, CPU."""
    with one_thread():
        restorer = Restorer.from_weights(weights, RestoreSettings(device="cpu", tile=0, tta=tta))
        return restorer.restore_image(read_image(path))
