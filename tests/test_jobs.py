"""The one in-order reporter every batch runner reports through: results released in the jobs' order
whatever order they come in, starts and warnings at once, an interrupted batch's records written once; the
status enum keeps the strings records print; the batch modules import downwards only."""

from __future__ import annotations

import ast
import json
import time
from pathlib import Path

import pytest

import swinir_cli
from swinir_cli.jobs import BatchSummary, InOrderReporter, Job, JobResult, JobStatus, run_batch
from swinir_cli.signals import EXIT_INTERRUPTED

JOBS = [Job(Path(f"{name}.png"), Path(f"{name}_x2.png")) for name in "abcde"]


class Heard:
    """What a reporter handed on, in order: ("start", name), ("result", name, status), ("warning", text)."""

    def __init__(self) -> None:
        self.events: list[tuple[str, ...]] = []

    def reporter(self, jobs: list[Job] = JOBS) -> InOrderReporter:
        return InOrderReporter(
            jobs,
            on_start=lambda job, index: self.events.append(("start", job.source.stem)),
            on_result=lambda r: self.events.append(("result", r.job.source.stem, str(r.status))),
            on_warning=lambda message: self.events.append(("warning", message)),
        )


def done(index: int) -> JobResult:
    return JobResult(JOBS[index], JobStatus.DONE, 0.5)


def test_results_are_released_in_the_jobs_order_and_starts_and_warnings_at_once() -> None:
    heard = Heard()
    reporter = heard.reporter()
    reporter.start(1)
    reporter.finish(1, done(1))  # held back: job 0 has not finished
    reporter.warning("b.png: jpg has no alpha channel")
    reporter.finish(0, done(0))
    assert heard.events == [
        ("start", "b"),
        ("warning", "b.png: jpg has no alpha channel"),
        ("result", "a", "done"),
        ("result", "b", "done"),
    ]
    assert not reporter.complete
    for index in (4, 3, 2):
        reporter.finish(index, done(index))
    assert reporter.complete
    summary = reporter.summary()
    assert [r.job for r in summary.results] == JOBS
    assert summary.exit_code == 0 and not summary.interrupted


def test_a_runner_that_does_not_see_starts_has_each_announced_just_before_its_result() -> None:
    heard = Heard()
    reporter = heard.reporter(JOBS[:2])
    reporter.finish(1, done(1), announce_start=True)
    reporter.finish(0, done(0), announce_start=True)
    assert heard.events == [("start", "a"), ("result", "a", "done"), ("start", "b"), ("result", "b", "done")]


def test_an_interrupt_releases_what_arrived_and_marks_only_the_jobs_that_began() -> None:
    heard = Heard()
    reporter = heard.reporter()
    reporter.start(0)
    reporter.start(1)
    reporter.finish(1, done(1))  # arrived behind job 0, which is still in flight
    reporter.finish(3, done(3))  # arrived behind job 2, which never began
    held_since = time.perf_counter() - 2.0
    reporter.interrupt({4: held_since})  # the runner held job 4 (its read, say) when Ctrl-C came
    summary = reporter.summary()
    assert [(Path(r.job.input_name).stem, str(r.status)) for r in summary.results] == [
        ("a", "interrupted"),
        ("b", "done"),
        ("d", "done"),
        ("e", "interrupted"),
    ]
    assert summary.results[0].error == "interrupted"
    assert summary.results[3].seconds >= 2.0  # timed from when the runner took it
    assert summary.interrupted and summary.exit_code == EXIT_INTERRUPTED
    assert [event for event in heard.events if event[0] == "result"] == [
        ("result", "a", "interrupted"),
        ("result", "b", "done"),
        ("result", "d", "done"),
        ("result", "e", "interrupted"),
    ]


def test_run_batch_hands_the_runner_a_reporter_of_the_callbacks() -> None:
    class Backwards:
        """A runner that finishes the last job first."""

        def run(self, jobs, reporter: InOrderReporter) -> BatchSummary:
            for index in reversed(range(len(jobs))):
                reporter.warning(f"job {index}")
                reporter.finish(index, JobResult(jobs[index], "skipped"))
            return reporter.summary()

    reported: list[JobResult] = []
    warnings: list[str] = []
    summary = run_batch(Backwards(), JOBS[:3], on_result=reported.append, on_warning=warnings.append)
    assert [r.job for r in reported] == JOBS[:3] and reported == summary.results
    assert warnings == ["job 2", "job 1", "job 0"]
    assert summary.count(JobStatus.SKIPPED) == 3 and summary.exit_code == 0


def test_statuses_are_an_enum_that_records_print_as_before() -> None:
    result = JobResult(JOBS[0], "failed", error="a.png: broken")
    assert result.status is JobStatus.FAILED and result.status == "failed"
    assert json.dumps({"status": result.status}) == '{"status": "failed"}'
    assert f"{result.status}" == "failed"
    assert BatchSummary([result]).exit_code == 1
    with pytest.raises(ValueError):
        JobResult(JOBS[0], "finished")


def test_a_job_names_its_output_in_records_unless_planning_found_none() -> None:
    assert JOBS[0].recorded_output == "a_x2.png"
    assert Job(Path("gone.png"), None, "gone.png: no such file or folder").recorded_output is None
    assert Job(Path("a.png"), Path("a.png"), "would replace the input").recorded_output == "a.png"
    assert Job(None, None).recorded_output == "<stdout>"


#: module -> the batch modules it may import (lazily and for type checks too): each only downwards.
BATCH_LAYERS = {
    "jobs": set(),
    "batch": {"jobs"},
    "runners": {"jobs", "batch"},
    "recipe": {"jobs", "batch", "runners"},
    "parallel": {"jobs", "batch", "recipe"},
    "ray_batch": {"jobs"},
}


def test_the_batch_modules_import_only_downwards() -> None:
    package = Path(swinir_cli.__file__).parent
    for module, allowed in BATCH_LAYERS.items():
        tree = ast.parse((package / f"{module}.py").read_text())
        imported = {
            (node.module or "").split(".")[0]
            for node in ast.walk(tree)
            if isinstance(node, ast.ImportFrom) and node.level == 1
        }
        assert imported & set(BATCH_LAYERS) <= allowed, module
