"""Helpers for the throughput tests (parallel, Ray): a folder of good and bad images, the jobs a plain run
plans for it, and what a run left in its output folder."""

from __future__ import annotations

import json
import os
import signal
import subprocess
from pathlib import Path

import numpy as np
from helpers import DN_COLOR, TINY, require_shared, save_rgb

from swinir_cli.batch import OutputOptions, plan_jobs
from swinir_cli.imageio import read_image
from swinir_cli.jobs import BatchSummary, Job
from swinir_cli.parallel import CheckpointRunnerFactory
from swinir_cli.settings import RestoreSettings

require_shared()

SR_X2 = TINY / "sr_pixelshuffle_x2.pth"
OUTPUT = OutputOptions(suffix="_out")
#: Whole images on one thread: the same float sums in every process, so outputs compare bit for bit.
RESTORER = RestoreSettings(tile=0)


def make_good_and_bad_folder(folder: Path, good: int = 4) -> Path:
    """``good`` random PNGs of different sizes, a corrupt one, a truncated one and a text file."""
    folder.mkdir(parents=True)
    for index in range(good):
        save_rgb(folder / f"good_{index}.png", height=16 + 4 * index, width=24 - 2 * index, seed=index)
    (folder / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n not really a png")
    whole = (folder / "good_0.png").read_bytes()
    (folder / "truncated.png").write_bytes(whole[: len(whole) // 2])
    (folder / "notes.txt").write_text("not an image")
    return folder


def plan(folder: Path, out: Path) -> list[Job]:
    return plan_jobs([str(folder)], str(out), OUTPUT).jobs


def factory(weights: Path = DN_COLOR) -> CheckpointRunnerFactory:
    return CheckpointRunnerFactory(weights, OUTPUT, RESTORER)


def outputs(folder: Path) -> dict[str, np.ndarray]:
    """The images a run left in ``folder``, name -> pixels; any hidden file left behind (a temporary
    file, a record beside an output) fails the test: a run leaves nothing but its outputs."""
    names = sorted(os.listdir(folder))
    assert not [name for name in names if name.startswith(".")], names
    return {name: read_image(folder / name).pixels for name in names}


def resume_from(folder: Path, out: Path, name: str) -> None:
    """``out`` as an interrupted batch left it: the output of ``folder/name`` already made."""
    source = folder / name
    (job,) = plan_jobs([str(source)], str(out / f"{source.stem}{OUTPUT.suffix}.png"), OUTPUT).jobs
    assert factory()("cpu", print)(job).status == "done"


def statuses(summary: BatchSummary) -> list[tuple[str, str]]:
    return [(Path(result.job.input_name).name, result.status) for result in summary.results]


def assert_same_outputs(produced: dict[str, np.ndarray], expected: dict[str, np.ndarray]) -> None:
    assert list(produced) == list(expected)
    for name, pixels in expected.items():
        assert np.array_equal(produced[name], pixels), name


def cli_records(result: subprocess.CompletedProcess[bytes]) -> list[tuple]:
    """The ``--json`` records of a run, the output folder left out: (input, output name, status, error,
    model)."""
    records = [json.loads(line) for line in result.stdout.decode().splitlines()]
    return [
        (r["input"], r["output"] and Path(r["output"]).name, r["status"], r["error"], r["model"])
        for r in records
    ]


#: Side of the large images of :func:`make_small_then_large_folder`: still in flight when SIGINT comes.
LARGE_SIDE = 320


def make_small_then_large_folder(folder: Path) -> Path:
    """One 16x16 image that finishes first, then three of :data:`LARGE_SIDE` still in flight when it is
    done."""
    folder.mkdir(parents=True)
    save_rgb(folder / "a_small.png", height=16, width=16)
    for name in ("b_large.png", "c_large.png", "d_large.png"):
        save_rgb(folder / name, height=LARGE_SIDE, width=LARGE_SIDE)
    return folder


def interrupt_after_first_result(
    command: list[str], timeout: float, stop: signal.Signals = signal.SIGINT
) -> tuple[int, list[list[str]], str]:
    """Run a driver that prints one JSON ``[input, status]`` line per result, send it ``stop`` once the
    first such line is out, and return (exit code, every record, its stderr). Other stdout lines (Ray logs
    some there) are not records and are left out."""
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        lines = [process.stdout.readline()]
        while lines[-1] and not lines[-1].startswith(b"["):
            lines.append(process.stdout.readline())
        process.send_signal(stop)  # the small image is done: the large ones are in flight
        rest, errors = process.communicate(timeout=timeout)
    finally:
        process.kill()
    output = (b"".join(lines) + rest).decode().splitlines()
    records = [json.loads(line) for line in output if line.startswith("[")]
    return process.returncode, records, errors.decode()
