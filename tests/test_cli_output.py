"""The command line's output: the batch's time left, and standard output that fails."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from conftest import SR_X2, SWINIR, assert_one_clean_error_line, save_rgb
from hostile import full_disk

from swinir_cli.cli.output import BatchProgress, Output


@pytest.mark.parametrize("workers", [1, 2, 4])
def test_time_left_is_the_mean_image_time_times_images_left_over_the_workers(workers: int) -> None:
    progress = BatchProgress(Output(quiet=True), None, total_images=9, workers=workers)
    assert progress.batch_eta() is None  # nothing restored yet
    progress.finished("done", 4.0)
    progress.finished("skipped", 0.0)  # skipped and failed images are not part of the mean
    progress.finished("done", 2.0)
    assert progress.batch_eta() == pytest.approx(3.0 * 6 / workers)


def test_workers_must_be_at_least_one() -> None:
    with pytest.raises(ValueError, match="workers must be at least 1"):
        BatchProgress(Output(quiet=True), None, total_images=1, workers=0)


# ------------------------------------------------------------------------------------------------
# Standard output that fails: one line naming <stdout>, exit 1, and the batch's files still written


def _json_batch(tmp_path: Path) -> list[str]:
    for seed in range(3):
        save_rgb(tmp_path / f"in{seed}.png", seed=seed)
    return [str(SWINIR), "upscale", "in0.png", "in1.png", "in2.png", "-w", str(SR_X2), "-o", "out/", "--json"]


def _assert_batch_written_and_one_stdout_line(tmp_path: Path, code: int, stderr: bytes, why: str) -> None:
    assert code == 1, stderr
    errors = [line for line in stderr.decode().splitlines() if line.startswith("error:")]
    assert errors == [f"error: <stdout>: {why}"], stderr
    assert b"Traceback" not in stderr and b"Exception ignored" not in stderr
    assert sorted(p.name for p in (tmp_path / "out").glob("[!.]*")) == [
        "in0_x2.png",
        "in1_x2.png",
        "in2_x2.png",
    ]


@pytest.mark.parametrize(
    "redirect, why",
    [(">&-", "standard output is closed"), ("> /dev/full", "cannot write (No space left on device)")],
)
def test_json_records_to_a_closed_or_full_stdout_stop_and_the_batch_goes_on(
    tmp_path: Path, redirect: str, why: str
) -> None:
    command = " ".join(_json_batch(tmp_path)) + f" {redirect}"
    result = subprocess.run(["bash", "-c", command], cwd=tmp_path, capture_output=True, timeout=300)
    _assert_batch_written_and_one_stdout_line(tmp_path, result.returncode, result.stderr, why)


def test_json_records_whose_reader_went_away_stop_and_the_batch_goes_on(tmp_path: Path) -> None:
    """`| head -c0`: the reader exits before the first record."""
    with subprocess.Popen(
        _json_batch(tmp_path), cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    ) as process:
        process.stdout.close()  # type: ignore[union-attr]
        _, err = process.communicate(timeout=300)
    _assert_batch_written_and_one_stdout_line(tmp_path, process.returncode, err, "cannot write (Broken pipe)")


def test_an_image_to_stdout_on_a_disk_that_fills_up_is_a_failure(tmp_path: Path) -> None:
    save_rgb(tmp_path / "noise.png", height=64, width=64)  # its x2 result, random, takes ~49 KB as PNG
    with full_disk(tmp_path / "disk", size="16k") as disk, (disk / "result.png").open("wb") as target:
        result = subprocess.run(
            [SWINIR, "upscale", "noise.png", "-w", SR_X2, "-o", "-"],
            cwd=tmp_path,
            stdout=target,
            stderr=subprocess.PIPE,
            timeout=300,
        )
    assert result.returncode == 1, result.stderr
    errors = [line for line in result.stderr.decode().splitlines() if line.startswith("error:")]
    assert errors == ["error: <stdout>: cannot write (No space left on device)"]


@pytest.mark.parametrize("options", [[], ["--json"]])
def test_a_models_listing_to_a_failing_stdout_is_one_line_and_exit_1(options: list[str]) -> None:
    for redirect, why in ((">&-", "standard output is closed"), ("> /dev/full", "No space left on device")):
        command = " ".join([str(SWINIR), "models", *options, redirect])
        result = subprocess.run(["bash", "-c", command], capture_output=True, timeout=120)
        assert result.returncode == 1, result.stderr
        assert_one_clean_error_line(result, "<stdout>", why)
    with subprocess.Popen(
        [SWINIR, "models", *options], stdout=subprocess.PIPE, stderr=subprocess.PIPE
    ) as process:
        process.stdout.close()  # type: ignore[union-attr]
        _, err = process.communicate(timeout=120)
    assert process.returncode == 1 and err.decode().splitlines() == [
        "error: <stdout>: cannot write (Broken pipe)"
    ]
