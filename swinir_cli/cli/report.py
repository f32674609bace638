"""What a restoration batch tells its user: a line per failure, per written image on a terminal, and a
summary; with ``--json`` one record per input on standard output.

A record names files as given; a name that is not UTF-8 is written with each undecodable byte as
``\\xNN`` and comes with ``input_bytes``/``output_bytes``, its exact bytes in base64
(:func:`~swinir_cli.text.json_name`).
"""

from __future__ import annotations

from typing import Any

from ..batch import BatchPlan
from ..jobs import BatchSummary, Job, JobResult, JobStatus
from ..text import json_name, valid_unicode
from .output import Output


def report_not_images(out: Output, plan: BatchPlan) -> None:
    """One line (and ``--json`` record) per file left out: not an image, special, an output of this run;
    a warning per input folder whose sub-folders were not entered."""
    for folder, count in plan.unentered:
        out.warning(f"{folder}: {count} sub-folder(s) not entered; -r (--recursive) restores their images")
    for path in plan.not_images:
        out.info(f"{path}: not an image file, ignored")
        out.result(record(str(path), None, None, 0.0, "ignored", "not an image file"))
    for path, reason in plan.ignored:
        out.info(f"{path}: {reason}, ignored")
        out.result(record(str(path), None, None, 0.0, "ignored", reason))


def report_result(out: Output, result: JobResult, *, single: bool) -> None:
    """A failure always gets its line, and so does an existing output that was redone (its note); in a
    batch, skipped images are only counted (the batch's progress names each written image)."""
    job = result.job
    if result.note is not None:
        out.warning(result.note)
    if result.status == JobStatus.FAILED:
        out.error(result.error or f"{job.input_name}: failed")
    elif result.status == JobStatus.SKIPPED and single:
        out.info(f"{job.input_name}: {job.output_name} exists, skipped (--overwrite redoes it)")
    output = job.recorded_output
    out.result(record(job.input_name, output, result.model, result.seconds, result.status, result.error))


def report_stopped(out: Output, jobs: list[Job], error: str) -> None:
    """The ``--json`` records of the inputs a stopped batch did not reach: each ``failed`` with ``error``
    (the one line the command ends with), or with its own problem when planning found one."""
    for job in jobs:
        error_of_job = job.problem or error
        out.result(record(job.input_name, job.recorded_output, None, 0.0, JobStatus.FAILED, error_of_job))


def record(
    input_name: str, output: str | None, model: str | None, seconds: float, status: str, error: str | None
) -> dict[str, Any]:
    """One ``--json`` line: status is done, skipped, failed, interrupted or ignored (not an image); a
    name that is not UTF-8 adds its bytes (see the module docstring)."""
    return {
        **json_name("input", input_name),
        **json_name("output", output),
        "model": model,
        "seconds": round(seconds, 3),
        "status": status,
        "error": None if error is None else valid_unicode(error),
    }


def report_summary(out: Output, summary: BatchSummary, plan: BatchPlan) -> None:
    """One line: what was written for a single image (a failure already said why), else the counts."""
    left_out = len(plan.not_images) + len(plan.ignored)
    if len(plan.jobs) == 1 and not left_out and not summary.interrupted:
        if summary.count(JobStatus.DONE):
            out.info(f"wrote {plan.jobs[0].output_name} ({summary.seconds:.1f} s)")
        return
    shown = (JobStatus.DONE, JobStatus.SKIPPED, JobStatus.FAILED)
    counts = [f"{summary.count(status)} {status}" for status in shown]
    if left_out:
        counts.append(f"{left_out} ignored" + ("" if plan.ignored else " (not images)"))
    line = f"{', '.join(counts)} in {summary.seconds:.1f} s"
    if summary.interrupted:
        out.error(f"interrupted: {line}")
    else:
        out.info(line)
