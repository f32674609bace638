"""Helpers the tests import (not a test module): where the reference data is, running the ``swinir``
command, in this process or as its own process, checking what it printed, making small images, and
:class:`LocalNet`, a cheap stand-in for SwinIR that the tiling and memory tests share.

The reference data (``../shared`` beside the project: see README.md, Tests) is not part of the
repository. Without it, a test module that reads it at import calls :func:`require_shared` first and is
skipped whole; a test that reads it when it runs is marked :data:`needs_shared`; both give the one reason
:data:`SHARED_ABSENT`.

:func:`run_swinir` runs the command in this process, as the console script would run it: its own
standard streams (file descriptors 0, 1 and 2 included), one compute thread, the interpreter's default
warning filters and the caller's environment; it pays no interpreter start nor torch import. Tests where
a process boundary is what is tested (signals, pipes and terminals at the descriptor level, two processes
at once, worker processes, the installed entry point) use :func:`run_swinir_process`.
"""

from __future__ import annotations

import io
import json
import math
import os
import subprocess
import sys
import tempfile
import warnings
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any, TextIO

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from swinir_cli import stdout
from swinir_cli.cli import main
from swinir_cli.imageio import LoadedImage, read_image
from swinir_cli.pipeline import Restorer
from swinir_cli.settings import RestoreSettings
from swinir_cli.tiling import WHOLE_IMAGE, TileEdges

SHARED = Path(__file__).resolve().parents[2] / "shared"
REFERENCE = SHARED / "reference"
TESTSETS = SHARED / "testsets"
TINY = REFERENCE / "tiny"
TINY_CASES = sorted(p.stem for p in TINY.glob("*.pth"))
SWINIR_S_X4 = REFERENCE / "swinir_s_x4_random.pth"
SR_X2 = TINY / "sr_pixelshuffle_x2.pth"
DN_COLOR = TINY / "dn_color.pth"
#: The one reason every test that needs the reference data gives when it is absent.
SHARED_ABSENT = (
    f"needs the reference data at {SHARED} (../shared beside the project, not in the repository: "
    "see README.md, Tests)"
)
#: Marks a test that reads the reference data when it runs.
needs_shared = pytest.mark.skipif(not SHARED.is_dir(), reason=SHARED_ABSENT)

#: The installed console script, beside this interpreter.
SWINIR = Path(sys.executable).with_name("swinir")

Completed = subprocess.CompletedProcess[bytes]


def require_shared() -> None:
    """Skip the test module being imported when the reference data is absent (call it before the
    module's first read of the data)."""
    if not SHARED.is_dir():
        pytest.skip(SHARED_ABSENT, allow_module_level=True)


def official_models() -> list[dict]:
    """The manifest of the 31 released checkpoints (names, urls, hashes, configs, tensor shapes)."""
    return json.loads((REFERENCE / "official_models.json").read_text())


def run_swinir(
    *args: str | Path,
    cwd: Path | None = None,
    stdin: bytes | None = None,
    env: Mapping[str, str] | None = None,
    text: bool = False,
) -> subprocess.CompletedProcess[Any]:
    """Run ``swinir ARGS`` in this process (``env`` added to this environment, in ``cwd``, ``stdin`` on
    its standard input, empty by default); stdout and stderr are captured as bytes, as
    :func:`run_swinir_process` captures them, or as strings when ``text``."""
    arguments = [str(arg) for arg in args]
    with (
        _environment(_run_environment(env)),
        _working_directory(cwd),
        one_thread(),
        _default_warnings(),
        _standard_streams(stdin or b"") as (out, err),
    ):
        try:
            code = main(arguments)
        except SystemExit as exit_:
            code = exit_.code if isinstance(exit_.code, int) else 1
    captured = [out.getvalue(), err.getvalue()]
    return subprocess.CompletedProcess(
        ["swinir", *arguments], code, *(data.decode() if text else data for data in captured)
    )


def run_swinir_process(
    *args: str | Path,
    cwd: Path | None = None,
    stdin: bytes | None = None,
    timeout: float = 120,
    env: Mapping[str, str] | None = None,
) -> Completed:
    """Run the installed ``swinir`` console script as its own process on one thread (``env`` added to
    this environment); stdout and stderr are captured as bytes."""
    merged = {**os.environ, **_run_environment(env)}
    environment = {name: value for name, value in merged.items() if value is not None}
    return subprocess.run(
        [str(SWINIR), *map(str, args)],
        cwd=cwd,
        input=stdin,
        capture_output=True,
        env=environment,
        timeout=timeout,
        check=False,
    )


def run_python(
    code: str, *, env: Mapping[str, str] | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """Run ``code`` in a fresh interpreter of this Python (``env`` added to this environment), for what a
    test process cannot show: which modules an import or a load pulls in, a process's peak memory, its
    limits; stdout and stderr are captured as text."""
    return subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=timeout,
        check=False,
    )


def run_shells(lines: Sequence[str], cwd: Path | None = None, timeout: float = 120) -> list[Completed]:
    """Each of ``lines`` run by ``bash -c`` as its own process, all at once (each mostly waits for its
    start-up, so together they take about as long as one); stdout and stderr captured as bytes."""
    started = [
        subprocess.Popen(["bash", "-c", line], cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        for line in lines
    ]
    done = []
    for process in started:
        with process:
            out, err = process.communicate(timeout=timeout)
        done.append(subprocess.CompletedProcess(process.args, process.returncode, out, err))
    return done


def run_many(commands: Sequence[Sequence[str | Path]], cwd: Path | None = None) -> list[Completed]:
    """Several independent ``swinir`` runs in this process, one after the other."""
    return [run_swinir(*args, cwd=cwd) for args in commands]


def _run_environment(env: Mapping[str, str] | None) -> dict[str, str | None]:
    """What a run of the command sees in its environment besides this one: one compute thread unless
    ``env`` says otherwise, ``env``, and no ``SWINIR_DEBUG`` (None: unset), so that errors are one line
    whatever the shell that runs the tests has set."""
    return {"OMP_NUM_THREADS": "1", **(env or {}), "SWINIR_DEBUG": None}


@contextmanager
def _environment(changes: Mapping[str, str | None]) -> Iterator[None]:
    """``os.environ`` with ``changes`` (None: the variable unset), as it was afterwards."""
    with pytest.MonkeyPatch.context() as patch:
        for name, value in changes.items():
            if value is None:
                patch.delenv(name, raising=False)
            else:
                patch.setenv(name, value)
        yield


@contextmanager
def _working_directory(cwd: Path | None) -> Iterator[None]:
    with pytest.MonkeyPatch.context() as patch:
        if cwd is not None:
            patch.chdir(cwd)
        yield


@contextmanager
def _default_warnings() -> Iterator[None]:
    """The warning filters a fresh interpreter has, each warning shown on ``sys.stderr`` (pytest records
    them instead, and a warning shown once in this process would not be shown again)."""
    with warnings.catch_warnings():
        warnings.resetwarnings()
        for category in (DeprecationWarning, PendingDeprecationWarning, ImportWarning, ResourceWarning):
            warnings.simplefilter("ignore", category)
        warnings.filterwarnings("default", category=DeprecationWarning, module="__main__")
        warnings.showwarning = _show_warning
        yield


def _show_warning(
    message: Warning | str,
    category: type[Warning],
    filename: str,
    lineno: int,
    file: TextIO | None = None,
    line: str | None = None,
) -> None:
    sys.stderr.write(warnings.formatwarning(message, category, filename, lineno, line))


@contextmanager
def _standard_streams(stdin: bytes) -> Iterator[tuple[io.BytesIO, io.BytesIO]]:
    """Descriptors 1 and 2 pointed at temporary files and ``sys.stdin``/``stdout``/``stderr`` made
    anew over descriptors 0 (reading ``stdin``), 1 and 2, as in a process of its own; yields two buffers
    that hold what was written to 1 and 2 once the block is left. Standard output's one-per-process
    failure state (:mod:`swinir_cli.stdout`) is cleared afterwards."""
    out, err = io.BytesIO(), io.BytesIO()
    saved = sys.stdin, sys.stdout, sys.stderr
    for stream in saved[1:]:
        stream.flush()
    with tempfile.TemporaryFile() as out_file, tempfile.TemporaryFile() as err_file:
        kept = {1: os.dup(1), 2: os.dup(2)}
        try:
            os.dup2(out_file.fileno(), 1)
            os.dup2(err_file.fileno(), 2)
            own = (
                io.TextIOWrapper(io.BytesIO(stdin)),
                _text_stream(1, errors="strict"),
                _text_stream(2, errors="backslashreplace"),
            )
            sys.stdin, sys.stdout, sys.stderr = own
            try:
                yield out, err
            finally:
                sys.stdin, sys.stdout, sys.stderr = saved
                for stream in own:
                    stream.close()  # flushed; descriptors 1 and 2 stay open
        finally:
            for descriptor, copy in kept.items():
                os.dup2(copy, descriptor)
                os.close(copy)
            stdout._failure = stdout._deferred = None
        out.write(_contents(out_file))
        err.write(_contents(err_file))


def _text_stream(descriptor: int, *, errors: str) -> TextIO:
    """A text stream over ``descriptor`` that leaves it open when closed."""
    return open(descriptor, "w", encoding="utf-8", errors=errors, closefd=False)


def _contents(file: IO[bytes]) -> bytes:
    file.seek(0)
    return file.read()


def stderr_lines(result: Completed) -> list[str]:
    return result.stderr.decode().splitlines()


def assert_one_clean_error_line(result: Completed, *words: str) -> None:
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


def random_state_dict(shapes: dict[str, list[int]], seed: int = 0) -> dict[str, torch.Tensor]:
    """Random tensors with exactly the given names and shapes (small values keep activations tame)."""
    generator = torch.Generator().manual_seed(seed)
    return {name: torch.randn(shape, generator=generator) * 0.02 for name, shape in shapes.items()}


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


# --- a cheap stand-in for SwinIR, for the tiler ----------------------------------------------------------

#: The window of :class:`LocalNet`.
WINDOW = 8


class LocalNet:
    """Maps (N, C, h, w) to (N, C_out, h * scale, w * scale); receptive radius 2 input pixels.

    Two 3x3 convolutions (zero padding at the input's edges) plus a per-position offset that repeats every
    ``window`` pixels from the input's origin, so a tile not aligned to the window shifts it.
    """

    def __init__(
        self, scale: int = 2, channels: int = 3, out_channels: int = 3, window: int = WINDOW
    ) -> None:
        generator = torch.Generator().manual_seed(0)
        self.scale, self.window = scale, window
        self.conv1 = torch.randn(8, channels, 3, 3, generator=generator) * 0.4
        self.conv2 = torch.randn(out_channels * scale**2, 8, 3, 3, generator=generator) * 0.4
        self.offset = torch.randn(window, window, generator=generator)
        self.calls: list[tuple[int, ...]] = []
        self.edges: list[TileEdges] = []

    def __call__(self, x: torch.Tensor, edges: TileEdges = WHOLE_IMAGE) -> torch.Tensor:
        self.calls.append(tuple(x.shape))
        self.edges.append(edges)
        height, width = x.shape[2:]
        hidden = torch.tanh(F.conv2d(x * 2 - 1, self.conv1, padding=1))
        reps = (math.ceil(height / self.window), math.ceil(width / self.window))
        features = F.conv2d(hidden, self.conv2, padding=1) + self.offset.repeat(reps)[:height, :width]
        return F.pixel_shuffle(torch.sigmoid(features), self.scale) * 1.2 - 0.1


def random_image(height: int, width: int, channels: int = 3, seed: int = 1) -> torch.Tensor:
    return torch.rand(1, channels, height, width, generator=torch.Generator().manual_seed(seed))
