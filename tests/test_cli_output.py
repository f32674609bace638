"""The batch's progress: the time left it shows."""

from __future__ import annotations

import pytest

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
