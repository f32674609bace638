"""The overlapped runner's pools: results reported in input order whatever order the encoders finish in, a
bounded number of images in flight, an encoding error that fails only its image, Ctrl-C that leaves only
whole files. The model is the identity: these tests are about the runner, not the network."""

from __future__ import annotations

import dataclasses
import os
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from helpers import save_rgb

from swinir_cli.batch import JobSteps, OutputOptions, plan_jobs
from swinir_cli.errors import ImageError
from swinir_cli.imageio import LoadedImage, read_image
from swinir_cli.jobs import Job, JobResult, run_batch
from swinir_cli.runners import MAX_ENCODERS, OverlappedRunner, default_encoders

OUTPUT = OutputOptions(suffix="_out")


def identity(image: LoadedImage, job: Job) -> LoadedImage:
    return image


def folder_of(tmp_path: Path, count: int) -> tuple[list[Job], Path]:
    """``count`` random PNGs planned into ``tmp_path/out``."""
    folder, out = tmp_path / "in", tmp_path / "out"
    folder.mkdir()
    for index in range(count):
        save_rgb(folder / f"{index}.png", seed=index)
    return plan_jobs([str(folder)], str(out), OUTPUT).jobs, out


def names(results: list[JobResult]) -> list[tuple[str, str]]:
    return [(Path(result.job.input_name).name, result.status) for result in results]


def assert_whole_outputs(folder: Path, jobs: list[Job]) -> None:
    """Every output present is the identity of its input, and nothing else (no temporary file) is left."""
    left = sorted(os.listdir(folder))
    assert not [name for name in left if name.startswith(".")], left
    for job in jobs:
        if job.target is not None and job.target.exists():
            assert job.source is not None
            np.testing.assert_array_equal(read_image(job.target).pixels, read_image(job.source).pixels)


@dataclasses.dataclass(frozen=True)
class FirstWriteLast(JobSteps):
    """The first image's write waits until the last one's is done: later images finish encoding first."""

    last_written: threading.Event = dataclasses.field(default_factory=threading.Event)
    finished: list = dataclasses.field(default_factory=list)

    def write(self, job: Job, image: LoadedImage) -> None:
        name = Path(job.input_name).name
        if name == "0.png":
            assert self.last_written.wait(60)  # a deadline: the suite may share a loaded machine
        JobSteps.write(self, job, image)
        self.finished.append(name)
        if name == "2.png":
            self.last_written.set()


def test_results_keep_the_input_order_when_later_images_finish_encoding_first(tmp_path: Path) -> None:
    jobs, out = folder_of(tmp_path, 3)
    steps = FirstWriteLast(identity, OUTPUT)
    reported: list[JobResult] = []
    summary = run_batch(OverlappedRunner(steps, encoders=3), jobs, on_result=reported.append)
    assert steps.finished[-1] == "0.png"
    assert (
        names(reported) == names(summary.results) == [("0.png", "done"), ("1.png", "done"), ("2.png", "done")]
    )
    assert len(os.listdir(out)) == 3
    assert_whole_outputs(out, jobs)


@dataclasses.dataclass(frozen=True)
class CountingSteps(JobSteps):
    """Counts the images alive (a read begun, its write not finished) and the reads under way at once;
    writes are slow and the model fast, so results pile up behind the encoders."""

    lock: threading.Lock = dataclasses.field(default_factory=threading.Lock)
    counts: dict = dataclasses.field(default_factory=lambda: {"alive": 0, "reading": 0})
    peaks: dict = dataclasses.field(default_factory=lambda: {"alive": 0, "reading": 0})

    def _add(self, name: str, delta: int) -> None:
        with self.lock:
            self.counts[name] += delta
            self.peaks[name] = max(self.peaks[name], self.counts[name])

    def read(self, job: Job) -> LoadedImage:
        self._add("alive", 1)
        self._add("reading", 1)
        try:
            time.sleep(0.01)
            return JobSteps.read(self, job)
        finally:
            self._add("reading", -1)

    def write(self, job: Job, image: LoadedImage) -> None:
        time.sleep(0.05)
        JobSteps.write(self, job, image)
        self._add("alive", -1)


@pytest.mark.parametrize(("encoders", "read_ahead"), [(1, 1), (2, 2), (3, 1)])
def test_at_most_read_ahead_plus_one_plus_encoders_images_are_in_flight(
    tmp_path: Path, encoders: int, read_ahead: int
) -> None:
    jobs, out = folder_of(tmp_path, 10)
    steps = CountingSteps(identity, OUTPUT)
    summary = run_batch(OverlappedRunner(steps, encoders=encoders, read_ahead=read_ahead), jobs)
    assert [status for _, status in names(summary.results)] == ["done"] * 10
    assert steps.counts == {"alive": 0, "reading": 0}
    assert steps.peaks["reading"] <= read_ahead
    assert encoders < steps.peaks["alive"] <= read_ahead + 1 + encoders
    assert_whole_outputs(out, jobs)


@dataclasses.dataclass(frozen=True)
class FailingWrite(JobSteps):
    """The write of ``1.png`` fails as a full disk would."""

    def write(self, job: Job, image: LoadedImage) -> None:
        if Path(job.input_name).name == "1.png":
            raise ImageError(f"{job.input_name}: no space left on the device")
        JobSteps.write(self, job, image)


def test_an_encoding_error_fails_only_its_image(tmp_path: Path) -> None:
    jobs, out = folder_of(tmp_path, 4)
    summary = run_batch(OverlappedRunner(FailingWrite(identity, OUTPUT), encoders=2), jobs)
    assert names(summary.results) == [
        ("0.png", "done"),
        ("1.png", "failed"),
        ("2.png", "done"),
        ("3.png", "done"),
    ]
    (error,) = [result.error for result in summary.results if result.error is not None]
    assert "\n" not in error and error.endswith("no space left on the device")
    assert sorted(os.listdir(out)) == ["0_out.png", "2_out.png", "3_out.png"]
    assert_whole_outputs(out, jobs)
    assert summary.exit_code == 1


@dataclasses.dataclass(frozen=True)
class InterruptedWhileWriting(JobSteps):
    """Slow writes; Ctrl-C arrives while the model restores ``3.png``, with earlier writes in flight."""

    def restore(self, image: LoadedImage, job: Job) -> LoadedImage:
        if Path(job.input_name).name == "3.png":
            raise KeyboardInterrupt
        return image

    def write(self, job: Job, image: LoadedImage) -> None:
        time.sleep(0.1)
        JobSteps.write(self, job, image)


def test_ctrl_c_completes_and_reports_the_writes_in_flight_and_leaves_nothing_partial(tmp_path: Path) -> None:
    jobs, out = folder_of(tmp_path, 6)
    summary = run_batch(OverlappedRunner(InterruptedWhileWriting(identity, OUTPUT), encoders=3), jobs)
    assert summary.interrupted
    assert names(summary.results) == [
        ("0.png", "done"),
        ("1.png", "done"),
        ("2.png", "done"),
        ("3.png", "interrupted"),
    ]
    assert sorted(os.listdir(out)) == ["0_out.png", "1_out.png", "2_out.png"]
    assert_whole_outputs(out, jobs)


def test_the_default_encoders_are_the_cores_up_to_a_cap() -> None:
    assert default_encoders() == min(len(os.sched_getaffinity(0)), MAX_ENCODERS)
    assert OverlappedRunner(JobSteps(identity, OUTPUT)).encoders == default_encoders()
    with pytest.raises(ValueError, match="encoders"):
        OverlappedRunner(JobSteps(identity, OUTPUT), encoders=0)
