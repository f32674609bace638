"""The batch's progress: the time left it shows, its plain lines, and its rows on a terminal."""

from __future__ import annotations

import io
import time

import pytest
from rich.console import Console
from rich.progress import Progress

from swinir_cli.cli import output
from swinir_cli.cli.output import BatchProgress, EtaColumn, Output


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
