"""The command line's output: the batch's time left, its plain lines and its rows on a terminal, and
standard output that fails."""

from __future__ import annotations

import io
import subprocess
import time
from pathlib import Path

import pytest
from helpers import SR_X2, SWINIR, assert_one_clean_error_line, require_shared, run_shells, save_rgb
from hostile import full_disk
from rich.console import Console
from rich.progress import Progress

from swinir_cli.cli import output
from swinir_cli.cli.output import BatchProgress, EtaColumn, Output

require_shared()


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
    redirects = {">&-": "standard output is closed", "> /dev/full": "No space left on device"}
    lines = [" ".join([str(SWINIR), "models", *options, redirect]) for redirect in redirects]
    for result, why in zip(run_shells(lines), redirects.values(), strict=True):
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


def test_plain_lines_name_each_image_when_it_is_written_with_its_seconds(
    capsys: pytest.CaptureFixture[str],
) -> None:
    progress = BatchProgress(Output(), None, total_images=3)  # stderr is not a terminal: plain lines
    progress.start(0, "a.png", "out/a.png")
    progress.start(1, "b.png", "out/b.png")  # overlapped I/O: the next starts before the first is written
    assert capsys.readouterr().err == ""  # an image is named when its result is written
    progress.finished("done", 2.0, ("a.png", "out/a.png"))
    progress.finished("failed", 0.5, ("b.png", "out/b.png"))  # a failure has its own error line
    progress.start(2, "c.png", "out/c.png")
    progress.finished("done", 4.0, ("c.png", "out/c.png"))
    assert capsys.readouterr().err.splitlines() == [
        "[1/3] a.png -> out/a.png (2.0 s, 0:04 left)",
        "[3/3] c.png -> out/c.png (4.0 s)",  # nothing left: no time left to show
    ]


def test_plain_tile_lines_for_a_single_image_and_none_in_a_batch(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(output, "PLAIN_PROGRESS_INTERVAL", 0.0)  # a line at every update
    batch = BatchProgress(Output(), None, total_images=2)
    for index, name in enumerate(("a.png", "b.png")):
        batch.start(index, name, "out.png")
        batch.tiles(1, 4)
    assert capsys.readouterr().err == ""
    single = BatchProgress(Output(), None, total_images=1)
    single.start(0, "a.png", "out.png")
    single.tiles(1, 4)
    assert capsys.readouterr().err.startswith("a.png: 1/4 tiles (25%)")


def _terminal_bar() -> Progress:
    return Progress(console=Console(file=io.StringIO(), force_terminal=True, width=100))


def test_the_time_left_counts_down_between_images() -> None:
    bar = _terminal_bar()
    bar.add_task("images", total=3, eta=10.0, eta_at=time.monotonic() - 3)
    first = EtaColumn().render(bar.tasks[0]).plain
    assert first in ("0:07", "0:06")
    assert EtaColumn().render(bar.tasks[0]).plain <= first  # never rises while an image runs


def test_several_workers_show_each_running_image() -> None:
    bar = _terminal_bar()
    progress = BatchProgress(Output(), bar, total_images=3, workers=2)

    def running() -> list[str]:
        return [
            task.description for task in bar.tasks if task.visible and task.fields.get("unit") == "running"
        ]

    progress.start(0, "a.png", "out/a.png")
    progress.start(1, "b.png", "out/b.png")
    assert running() == ["a.png", "b.png"]
    progress.finished("done", 1.0, ("a.png", "out/a.png"))
    progress.start(2, "c.png", "out/c.png")
    assert running() == ["b.png", "c.png"]
