"""Overlapped I/O and one worker process per device: the same files, records, order and exit codes as a
serial run; reads and writes really run beside the model; a worker crash fails only its image; Ctrl-C
leaves nothing partial."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from batch_folders import (
    DN_COLOR,
    OUTPUT,
    SR_X2,
    assert_same_outputs,
    cli_records,
    factory,
    interrupt_after_first_result,
    make_good_and_bad_folder,
    make_small_then_large_folder,
    outputs,
    plan,
    resume_from,
    save_rgb,
    statuses,
)
from helpers import SWINIR, require_shared, run_many, run_swinir, run_swinir_process, stderr_lines

from swinir_cli.batch import JobSteps
from swinir_cli.errors import UsageError
from swinir_cli.imageio import LoadedImage
from swinir_cli.jobs import Job, JobResult, run_batch
from swinir_cli.parallel import CheckpointRunnerFactory, DevicesRunner, expand_devices, threads_per_worker
from swinir_cli.pipeline import Restorer
from swinir_cli.runners import OverlappedRunner, run_jobs
from swinir_cli.settings import RestoreSettings

require_shared()


#: The serial reference runs on one thread, as each worker does: the same float sums, bit for bit.
pytestmark = pytest.mark.usefixtures("single_thread")


def serial_restore(weights: Path = DN_COLOR) -> Callable[[LoadedImage, Job], LoadedImage]:
    restorer = Restorer.from_weights(weights, RestoreSettings(device="cpu", tile=0))
    return lambda image, job: restorer.restore_image(image)


def run_serial(jobs: list[Job], **kwargs) -> tuple:
    started: list[str] = []
    summary = run_jobs(
        jobs, serial_restore(), OUTPUT, overlap=False, on_start=lambda job, i: started.append(job.input_name)
    )
    return summary, started


def test_overlapped_gives_the_serial_files_records_order_and_exit_code(tmp_path: Path) -> None:
    folder = make_good_and_bad_folder(tmp_path / "in")
    serial_out, overlapped_out = tmp_path / "serial", tmp_path / "overlapped"
    for out in (serial_out, overlapped_out):  # an existing output is skipped, as in a resumed batch
        resume_from(folder, out, "good_1.png")
    serial, serial_started = run_serial(plan(folder, serial_out))
    started: list[str] = []
    reported: list[JobResult] = []
    overlapped = run_jobs(
        plan(folder, overlapped_out),
        serial_restore(),
        OUTPUT,
        on_start=lambda job, index: started.append(job.input_name),
        on_result=reported.append,
    )
    assert statuses(overlapped) == statuses(serial)
    assert ("good_1.png", "skipped") in statuses(serial) and ("corrupt.png", "failed") in statuses(serial)
    assert [r.error for r in overlapped.results] == [r.error for r in serial.results]
    assert reported == overlapped.results
    assert [Path(name).name for name in started] == [Path(name).name for name in serial_started]
    assert overlapped.exit_code == serial.exit_code == 1
    assert_same_outputs(outputs(overlapped_out), outputs(serial_out))


@dataclasses.dataclass(frozen=True)
class RecordingSteps(JobSteps):
    """JobSteps that log (stage, job, thread, start, end) of every read, restore and write."""

    log: list = dataclasses.field(default_factory=list)

    def _timed(self, stage: str, job: Job, work: Callable[[], object]) -> object:
        start = time.perf_counter()
        try:
            return work()
        finally:
            self.log.append((stage, Path(job.input_name).name, threading.current_thread().name, start,
                             time.perf_counter()))  # fmt: skip

    def read(self, job: Job) -> LoadedImage:
        return self._timed("read", job, lambda: JobSteps.read(self, job))

    def restore(self, image: LoadedImage, job: Job) -> LoadedImage:
        time.sleep(0.3)  # a slow model: the next read and the previous write must happen meanwhile
        return self._timed("restore", job, lambda: JobSteps.restore(self, image, job))

    def write(self, job: Job, image: LoadedImage) -> None:
        self._timed("write", job, lambda: JobSteps.write(self, job, image))


def test_reads_ahead_and_writes_behind_on_threads_while_the_model_runs(tmp_path: Path) -> None:
    folder, out = tmp_path / "in", tmp_path / "out"
    folder.mkdir()
    for index in range(3):
        save_rgb(folder / f"{index}.png", seed=index)
    steps = RecordingSteps(serial_restore(), OUTPUT)
    summary = run_batch(OverlappedRunner(steps), plan(folder, out))
    assert statuses(summary) == [("0.png", "done"), ("1.png", "done"), ("2.png", "done")]
    log = {(stage, name): (thread, start, end) for stage, name, thread, start, end in steps.log}
    main = threading.current_thread().name
    assert {log[("restore", f"{i}.png")][0] for i in range(3)} == {main}
    assert log[("read", "1.png")][0].startswith("swinir-read")
    assert log[("write", "0.png")][0].startswith("swinir-write")
    # image 1 was decoded before its restore began, i.e. while image 0 was being restored
    assert log[("read", "1.png")][2] <= log[("restore", "1.png")][1]
    assert log[("read", "1.png")][1] < log[("restore", "0.png")][2]
    # image 0 was written while image 1 was being restored (the sleep leaves plenty of time)
    assert log[("write", "0.png")][2] < log[("restore", "1.png")][2]


def test_a_usage_error_stops_the_overlapped_batch_after_reporting_earlier_jobs(tmp_path: Path) -> None:
    folder, out = tmp_path / "in", tmp_path / "out"
    folder.mkdir()
    for index in range(3):
        save_rgb(folder / f"{index}.png", seed=index)
    restore = serial_restore()

    def refuse_the_second(image: LoadedImage, job: Job) -> LoadedImage:
        if job.source is not None and job.source.name == "1.png":
            raise UsageError("model of the wrong scale")
        return restore(image, job)

    reported: list[JobResult] = []
    with pytest.raises(UsageError, match="wrong scale"):
        run_jobs(plan(folder, out), refuse_the_second, OUTPUT, on_result=reported.append)
    assert [(r.job.source.name, r.status) for r in reported] == [("0.png", "done")]
    assert sorted(outputs(out)) == ["0_out.png"]


def test_two_cpu_workers_give_one_device_outputs_bit_for_bit(tmp_path: Path) -> None:
    folder = make_good_and_bad_folder(tmp_path / "in", good=5)
    serial, _ = run_serial(plan(folder, tmp_path / "serial"))
    started: list[int] = []
    reported: list[JobResult] = []
    parallel = run_batch(
        DevicesRunner(factory(), ("cpu", "cpu"), threads=1),
        plan(folder, tmp_path / "workers"),
        on_start=lambda job, index: started.append(index),
        on_result=reported.append,
    )
    assert statuses(parallel) == statuses(serial)
    assert [r.error for r in parallel.results] == [r.error for r in serial.results]
    assert reported == parallel.results
    assert sorted(started) == list(range(len(serial.results)))
    assert parallel.exit_code == serial.exit_code == 1
    assert_same_outputs(outputs(tmp_path / "workers"), outputs(tmp_path / "serial"))


@dataclasses.dataclass(frozen=True)
class CrashingFactory(CheckpointRunnerFactory):
    """Its worker process dies (SIGKILL, as the out-of-memory killer does) on images named ``crash*``."""

    def __call__(self, device: str, on_warning: Callable[[str], None]) -> Callable[[Job], JobResult]:
        run = super().__call__(device, on_warning)

        def run_or_die(job: Job) -> JobResult:
            if job.source is not None and job.source.name.startswith("crash"):
                os.kill(os.getpid(), signal.SIGKILL)
            return run(job)

        return run_or_die


def test_a_worker_crash_fails_only_its_image_and_the_worker_restarts(tmp_path: Path) -> None:
    folder, out = tmp_path / "in", tmp_path / "out"
    folder.mkdir()
    for name in ("a.png", "crash.png", "c.png", "d.png"):
        save_rgb(folder / name)
    crashing = DevicesRunner(CrashingFactory(DN_COLOR, OUTPUT), ("cpu", "cpu"), threads=1)
    summary = run_batch(crashing, plan(folder, out))
    assert statuses(summary) == [
        ("a.png", "done"),
        ("c.png", "done"),
        ("crash.png", "failed"),
        ("d.png", "done"),
    ]
    (crashed,) = [r for r in summary.results if r.status == "failed"]
    assert crashed.error == f"{folder / 'crash.png'}: the worker process on cpu stopped (exit code -9)"
    assert sorted(outputs(out)) == ["a_out.png", "c_out.png", "d_out.png"]


def test_a_usage_error_in_a_worker_stops_the_batch(tmp_path: Path) -> None:
    folder, out = tmp_path / "in", tmp_path / "out"
    folder.mkdir()
    save_rgb(folder / "a.png")

    fp16_on_cpu = CheckpointRunnerFactory(DN_COLOR, OUTPUT, RestoreSettings(precision="fp16"))
    with pytest.raises(UsageError, match="fp16 is not used on the CPU"):
        run_batch(DevicesRunner(fp16_on_cpu, ("cpu", "cpu"), threads=1), plan(folder, out))
    assert not out.exists()


INTERRUPTED_DRIVER = """
import json, sys
from pathlib import Path
from swinir_cli.batch import OutputOptions, plan_jobs
from swinir_cli.jobs import run_batch
from swinir_cli.parallel import CheckpointRunnerFactory, DevicesRunner
from swinir_cli.settings import RestoreSettings

output = OutputOptions(suffix="_out")
jobs = plan_jobs([sys.argv[1]], sys.argv[2], output).jobs
factory = CheckpointRunnerFactory(Path(sys.argv[3]), output, RestoreSettings(tile=16, tile_overlap=8))
report = lambda result: print(json.dumps([result.job.input_name, result.status]), flush=True)
summary = run_batch(DevicesRunner(factory, ("cpu", "cpu"), threads=1), jobs, on_result=report)
sys.exit(summary.exit_code)
"""


def test_ctrl_c_stops_every_worker_with_130_and_leaves_nothing_partial(tmp_path: Path) -> None:
    folder, out = make_small_then_large_folder(tmp_path / "in"), tmp_path / "out"
    command = [sys.executable, "-c", INTERRUPTED_DRIVER, str(folder), str(out), str(SR_X2)]
    code, records, errors = interrupt_after_first_result(command, timeout=90)
    assert code == 130, errors
    assert "Traceback" not in errors, errors
    assert records[0] == [str(folder / "a_small.png"), "done"]
    assert {status for _, status in records[1:]} <= {"done", "interrupted"}
    assert "interrupted" in {status for _, status in records}
    done = sorted(Path(name).stem + "_out.png" for name, status in records if status == "done")
    assert sorted(outputs(out)) == done  # no partial or hidden temporary file


def test_sigterm_to_the_whole_group_stops_every_worker_cleanly(tmp_path: Path) -> None:
    """systemd and ``docker stop`` send SIGTERM to every process of the service, device workers included:
    the batch ends as after Ctrl-C (exit 130, the ``--json`` records, no partial or temporary file),
    where the workers and the command died at once (issue 18, item 3)."""
    folder, out = make_small_then_large_folder(tmp_path / "in"), tmp_path / "out"
    command = [
        str(SWINIR), "upscale", str(folder), "-o", str(out), "-w", str(SR_X2), "--device", "cpu,cpu",
        "--tile", "16", "--tile-overlap", "8", "--json",
    ]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    process = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, start_new_session=True
    )
    try:
        first = process.stdout.readline()  # the small image is done: the large ones are in flight
        os.killpg(process.pid, signal.SIGTERM)
        rest, errors = process.communicate(timeout=90)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
    assert process.returncode == 130, errors.decode()
    assert b"Traceback" not in errors, errors.decode()
    records = [(Path(r["input"]).name, r["status"]) for r in map(json.loads, (first + rest).splitlines())]
    assert records[0] == ("a_small.png", "done")
    assert {status for _, status in records[1:]} <= {"done", "interrupted"}
    done = sorted(Path(name).stem + "_x2.png" for name, status in records if status == "done")
    assert sorted(outputs(out)) == done  # no partial or hidden temporary file


def test_device_lists() -> None:
    assert expand_devices("cpu,cpu") == ["cpu", "cpu"]
    assert expand_devices(" cpu , cpu ,cpu") == ["cpu", "cpu", "cpu"]
    with pytest.raises(UsageError, match="empty entry"):
        expand_devices("cpu,,cpu")
    if not torch.cuda.is_available():  # no GPU here: the refusals are what can be checked
        with pytest.raises(UsageError, match="no CUDA GPU"):
            expand_devices("cuda:all")
        with pytest.raises(UsageError):
            expand_devices("cpu,cuda:1")


def test_cpu_cores_are_split_between_workers() -> None:
    assert threads_per_worker(["cpu", "cpu"], cpus=2) == 1
    assert threads_per_worker(["cpu", "cpu"], cpus=16) == 8
    assert threads_per_worker(["cpu"] * 3, cpus=2) == 1


def test_cli_device_cpu_cpu_gives_a_plain_runs_outputs_records_and_exit_code(tmp_path: Path) -> None:
    folder = make_good_and_bad_folder(tmp_path / "in")
    command = ["denoise", folder, "--sigma", "15", "--weights", DN_COLOR, "--tile", "0", "--suffix", "_out",
               "--json", "--quiet"]  # fmt: skip
    plain = run_swinir(*command, "-o", tmp_path / "plain", "--device", "cpu")
    two = run_swinir_process(*command, "-o", tmp_path / "two", "--device", "cpu,cpu")  # worker processes
    assert two.returncode == plain.returncode == 1, two.stderr.decode()
    assert cli_records(two) == cli_records(plain)
    assert {status for *_, status, _, _ in cli_records(two)} == {"done", "failed", "ignored"}
    assert_same_outputs(outputs(tmp_path / "two"), outputs(tmp_path / "plain"))


def test_cli_workers_warnings_are_the_commands_lines_and_quiet_silences_them(tmp_path: Path) -> None:
    """A worker's warning (an RGBA image into JPEG loses its alpha) comes back to the command, which
    prints it as its own line, or nothing with --quiet."""
    image = save_rgb(tmp_path / "clear.png", mode="RGBA")
    command = ["upscale", image, "-w", SR_X2, "--tile", "0", "-f", "jpg", "--device", "cpu,cpu"]
    quiet, plain = run_many(
        [[*command, "-o", f"{tmp_path}/quiet/", "--quiet"], [*command, "-o", f"{tmp_path}/plain/"]]
    )
    assert quiet.returncode == plain.returncode == 0, plain.stderr.decode()
    assert quiet.stderr == b"" and quiet.stdout == b""
    assert sorted(outputs(tmp_path / "quiet")) == ["clear_x2.jpg"]
    dropped = [line for line in stderr_lines(plain) if "the transparency is dropped" in line]
    assert len(dropped) == 1 and dropped[0].startswith("warning: "), stderr_lines(plain)


def test_cli_refuses_a_bad_device_list_in_one_line(tmp_path: Path) -> None:
    image = save_rgb(tmp_path / "a.png")
    result = run_swinir("denoise", image, "--sigma", "15", "--weights", DN_COLOR, "--device", "cpu,,cpu")
    assert result.returncode == 2
    assert result.stderr.decode().strip() == "error: --device 'cpu,,cpu' has an empty entry"
