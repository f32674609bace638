"""Helpers for the throughput tests (parallel, Ray): a folder of good and bad images, the jobs a plain run
plans for it, and what a run left in its output folder."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from PIL import Image

from swinir_cli.batch import BatchSummary, Job, OutputOptions, plan_jobs
from swinir_cli.imageio import read_image
from swinir_cli.parallel import CheckpointRunnerFactory

TINY = Path(__file__).resolve().parents[2] / "shared" / "reference" / "tiny"
DN_COLOR = TINY / "dn_color.pth"
SR_X2 = TINY / "sr_pixelshuffle_x2.pth"
OUTPUT = OutputOptions(suffix="_out")
#: Whole images on one thread: the same float sums in every process, so outputs compare bit for bit.
RESTORER = (("tile", 0),)


def save_rgb(path: Path, height: int = 20, width: int = 24, seed: int = 0) -> Path:
    pixels = np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path)
    return path


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
    """Every file a run left in ``folder`` (hidden temporary files included), name -> pixels."""
    return {name: read_image(folder / name).pixels for name in sorted(os.listdir(folder))}


def statuses(summary: BatchSummary) -> list[tuple[str, str]]:
    return [(Path(result.job.input_name).name, result.status) for result in summary.results]


def assert_same_outputs(produced: dict[str, np.ndarray], expected: dict[str, np.ndarray]) -> None:
    assert list(produced) == list(expected)
    for name, pixels in expected.items():
        assert np.array_equal(produced[name], pixels), name
