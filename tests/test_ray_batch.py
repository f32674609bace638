"""--ray's engine: Ray Data actors give a plain run's files, names, statuses and exit code; a worker process
that dies mid-batch is retried and the batch completes; Ctrl-C of the driver leaves nothing partial; the
map_batches entry point works on a Dataset of one's own; without Ray, one line says how to install it.

A local Ray with 2 CPUs (started once for the module) stands in for a cluster; the drivers of the Ctrl-C
tests join it as a driver joins a cluster (``ray.init(address=...)``), and the command-line test starts its
own, as ``swinir --ray`` does on a machine without ``RAY_ADDRESS``.
"""

from __future__ import annotations

import dataclasses
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from batch_folders import (
    DN_COLOR,
    LARGE_SIDE,
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
from helpers import SWINIR, require_shared, run_swinir, run_swinir_process, stderr_lines

from swinir_cli.errors import UsageError
from swinir_cli.jobs import BatchSummary, Job, JobResult, run_batch
from swinir_cli.parallel import CheckpointRunnerFactory
from swinir_cli.pipeline import Restorer
from swinir_cli.ray_batch import INSTALL_HINT, RayRunner, RestoreBatch, job_rows
from swinir_cli.runners import run_jobs
from swinir_cli.settings import RestoreSettings

require_shared()

ray = pytest.importorskip("ray", reason="the [ray] extra is not installed")
pytestmark = pytest.mark.xdist_group("ray")  # one worker runs them all, on the module's one Ray


@pytest.fixture(scope="module", autouse=True)
def local_ray() -> str:
    """The module's Ray; its address, which another process's driver can join."""
    tests = str(Path(__file__).parent)  # the actors unpickle this module's factories
    ray.init(num_cpus=2, include_dashboard=False, runtime_env={"env_vars": {"PYTHONPATH": tests}})
    yield ray.get_runtime_context().gcs_address
    ray.shutdown()


def serial_run(jobs: list[Job]):
    before = torch.get_num_threads()
    torch.set_num_threads(1)  # as each actor runs (2 CPUs split between 2 actors): bit-for-bit sums
    try:
        restorer = Restorer.from_weights(DN_COLOR, RestoreSettings(device="cpu", tile=0))
        return run_jobs(jobs, lambda image, job: restorer.restore_image(image), OUTPUT, overlap=False)
    finally:
        torch.set_num_threads(before)


def test_ray_gives_a_plain_runs_files_names_statuses_and_exit_code(tmp_path: Path) -> None:
    folder = make_good_and_bad_folder(tmp_path / "in", good=3)
    for out in (tmp_path / "ray", tmp_path / "plain"):  # resumed: an existing output is skipped
        resume_from(folder, out, "good_2.png")
    plain = serial_run(plan(folder, tmp_path / "plain"))
    reported: list[JobResult] = []
    started: list[int] = []
    on_ray = run_batch(
        RayRunner(factory(), workers=2),
        plan(folder, tmp_path / "ray"),
        on_start=lambda job, index: started.append(index),
        on_result=reported.append,
    )
    assert statuses(on_ray) == statuses(plain)
    assert ("good_2.png", "skipped") in statuses(plain) and ("truncated.png", "failed") in statuses(plain)
    assert [r.error for r in on_ray.results] == [r.error for r in plain.results]
    assert reported == on_ray.results and started == list(range(len(plain.results)))
    assert on_ray.exit_code == plain.exit_code == 1
    assert_same_outputs(outputs(tmp_path / "ray"), outputs(tmp_path / "plain"))


@dataclasses.dataclass(frozen=True)
class DiesOnceFactory(CheckpointRunnerFactory):
    """Its worker process is killed (SIGKILL) the first time it starts an image named ``victim*`` (or,
    with ``after_write``, once it has written that image's output and before it answers); the ``marker``
    file remembers that it happened (a real kill of the actor's process, from inside it)."""

    marker: Path = Path()
    after_write: bool = False

    def __call__(self, device: str, on_warning: Callable[[str], None]) -> Callable[[Job], JobResult]:
        run = super().__call__(device, on_warning)

        def die_once(job: Job) -> None:
            if job.source is not None and job.source.name.startswith("victim") and not self.marker.exists():
                self.marker.write_text(str(os.getpid()))
                os.kill(os.getpid(), signal.SIGKILL)

        def run_or_die(job: Job) -> JobResult:
            if not self.after_write:
                die_once(job)
            result = run(job)
            if self.after_write:
                die_once(job)
            return result

        return run_or_die


@pytest.mark.parametrize("after_write", [False, True], ids=["before-its-write", "after-its-write"])
def test_a_worker_killed_mid_batch_is_retried_and_every_image_completes(
    tmp_path: Path, after_write: bool
) -> None:
    folder, out = tmp_path / "in", tmp_path / "out"
    folder.mkdir()
    for name in ("a.png", "b.png", "victim.png", "z.png"):
        save_rgb(folder / name, seed=len(name))
    marker = tmp_path / "killed"
    dies_once = DiesOnceFactory(
        DN_COLOR, OUTPUT, RestoreSettings(tile=0), marker=marker, after_write=after_write
    )
    summary = run_batch(RayRunner(dies_once, workers=2), plan(folder, out))  # a retry after the write too
    assert marker.exists()  # the worker really died
    assert statuses(summary) == [(n, "done") for n in ("a.png", "b.png", "victim.png", "z.png")]
    assert summary.exit_code == 0
    assert_same_outputs(outputs(out), outputs_of_plain_run(folder, tmp_path / "plain"))


def outputs_of_plain_run(folder: Path, out: Path):
    serial_run(plan(folder, out))
    return outputs(out)


#: How long a gated image's worker waits for its gate before it gives up waiting (only a failing test waits
#: this long).
GATE_WAIT_S = 60.0


@dataclasses.dataclass(frozen=True)
class WaitsForGateFactory(CheckpointRunnerFactory):
    """Its worker holds an image named ``gated*`` until the file ``gate`` exists in ``markers``; if that
    takes longer than :data:`GATE_WAIT_S` it writes ``waited_out`` there and goes on. Ray may run the
    images queued on one actor in another order: a gated image that comes before every other image writes
    ``out_of_order`` instead of waiting (nothing could open its gate)."""

    markers: Path = Path()

    def __call__(self, device: str, on_warning: Callable[[str], None]) -> Callable[[Job], JobResult]:
        run = super().__call__(device, on_warning)

        def run_after_gate(job: Job) -> JobResult:
            if job.source is None or not job.source.name.startswith("gated"):
                (self.markers / "started").touch()
            elif not (self.markers / "started").exists():
                (self.markers / "out_of_order").touch()
            else:
                deadline = time.monotonic() + GATE_WAIT_S
                while not (self.markers / "gate").exists():
                    if time.monotonic() > deadline:
                        (self.markers / "waited_out").touch()
                        break
                    time.sleep(0.05)
            return run(job)

        return run_after_gate


def gated_batch(folder: Path, out: Path, markers: Path) -> tuple[BatchSummary, list[str]]:
    """The batch of ``folder`` on one actor that holds ``gated*`` images until a result is reported; the
    names reported before the gate opened."""
    markers.mkdir()
    reported_before_the_gate: list[str] = []

    def open_gate(result: JobResult) -> None:
        if not (markers / "gate").exists():
            reported_before_the_gate.append(Path(result.job.input_name).name)
            (markers / "gate").touch()

    waits = WaitsForGateFactory(SR_X2, OUTPUT, RestoreSettings(tile=0), markers=markers)
    summary = run_batch(RayRunner(waits, workers=1), plan(folder, out), on_result=open_gate)
    return summary, reported_before_the_gate


def test_each_result_is_reported_as_soon_as_its_actor_has_it(tmp_path: Path) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    save_rgb(folder / "a_small.png")
    save_rgb(folder / "gated.png", seed=1)
    for attempt in range(3):  # until the actor runs its two images in order (Ray nearly always does)
        markers = tmp_path / f"markers_{attempt}"
        summary, reported_before_the_gate = gated_batch(folder, tmp_path / f"out_{attempt}", markers)
        if not (markers / "out_of_order").exists():
            break
    else:
        pytest.fail("three batches ran the gated image first")
    assert statuses(summary) == [("a_small.png", "done"), ("gated.png", "done")]
    # The small image's result came while the gated one was held in the actor (Ray Data's prefetching
    # would hold each result back until the next one was done).
    assert reported_before_the_gate == ["a_small.png"]
    assert not (markers / "waited_out").exists()


def test_restore_batch_is_a_map_batches_entry_point_for_a_dataset_of_paths(tmp_path: Path) -> None:
    sources = [save_rgb(tmp_path / f"{name}.png", seed=index) for index, name in enumerate("abc")]
    rows = [{"source": str(p), "target": str(tmp_path / "out" / f"{p.stem}_x2.png")} for p in sources]
    rows.append({"source": str(tmp_path / "missing.png"), "target": str(tmp_path / "out" / "missing.png")})
    restored = ray.data.from_items(rows).map_batches(
        RestoreBatch,
        fn_constructor_kwargs={"factory": CheckpointRunnerFactory(SR_X2, OUTPUT, RestoreSettings(tile=0))},
        batch_size=2,
        concurrency=1,
    )
    records = sorted(restored.take_all(), key=lambda record: record["input"])
    assert [(Path(r["input"]).name, r["status"]) for r in records] == [
        ("a.png", "done"),
        ("b.png", "done"),
        ("c.png", "done"),
        ("missing.png", "failed"),
    ]
    # outputs as --json names them: a failed image's output too
    assert records[0]["output"] == str(tmp_path / "out" / "a_x2.png")
    assert records[3]["output"] == str(tmp_path / "out" / "missing.png")
    assert "missing.png" in records[3]["error"]
    assert outputs(tmp_path / "out")["b_x2.png"].shape == (40, 48, 3)


def test_an_error_that_stops_a_local_batch_stops_the_ray_batch(tmp_path: Path) -> None:
    folder = make_good_and_bad_folder(tmp_path / "in", good=1)
    fp16_on_cpu = CheckpointRunnerFactory(DN_COLOR, OUTPUT, RestoreSettings(precision="fp16"))
    with pytest.raises(UsageError, match="fp16 is not used on the CPU"):
        run_batch(RayRunner(fp16_on_cpu, workers=1), plan(folder, tmp_path / "out"))


def test_standard_input_and_output_are_refused() -> None:
    with pytest.raises(UsageError, match="standard input and output are not supported"):
        job_rows([Job(None, None)])


def test_without_ray_the_error_says_how_to_install_it() -> None:
    script = (
        "import sys; sys.modules['ray'] = None\n"  # as if the extra were not installed
        "from swinir_cli.ray_batch import require_ray\n"
        "from swinir_cli.errors import UsageError\n"
        "try:\n    require_ray()\nexcept UsageError as exc:\n    print(exc); sys.exit(exc.exit_code)\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert result.stdout.strip() == INSTALL_HINT
    assert "pip install 'swinir-cli[ray]'" in INSTALL_HINT


INTERRUPTED_DRIVER = """
import json, sys, threading
from pathlib import Path
import ray
from swinir_cli.batch import OutputOptions, plan_jobs
from swinir_cli.jobs import run_batch
from swinir_cli.parallel import CheckpointRunnerFactory
from swinir_cli.ray_batch import RAY_DATA_THREADS, RayRunner
from swinir_cli.settings import RestoreSettings

ray.init(address=sys.argv[4], logging_level="ERROR")
output = OutputOptions(suffix="_out")
jobs = plan_jobs([sys.argv[1]], sys.argv[2], output).jobs
factory = CheckpointRunnerFactory(Path(sys.argv[3]), output, RestoreSettings(tile=16, tile_overlap=8))
report = lambda result: print(json.dumps([result.job.input_name, result.status]), flush=True)
summary = run_batch(RayRunner(factory, workers=2), jobs, on_result=report)
left = sorted(thread.name for thread in threading.enumerate() if thread.name.startswith(RAY_DATA_THREADS))
print("Ray Data threads left:", left, file=sys.stderr, flush=True)
ray.shutdown()
sys.exit(summary.exit_code)
"""


@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGTERM], ids=lambda s: s.name)
def test_ctrl_c_of_the_driver_exits_130_and_leaves_nothing_partial(
    tmp_path: Path, stop: signal.Signals, local_ray: str
) -> None:
    """SIGTERM as Ctrl-C: ``ray.init``'s own SIGTERM handler exited at once (issue 18, item 3)."""
    folder, out = make_small_then_large_folder(tmp_path / "in"), tmp_path / "out"
    command = [sys.executable, "-c", INTERRUPTED_DRIVER, str(folder), str(out), str(SR_X2), local_ray]
    code, records, errors = interrupt_after_first_result(command, timeout=120, stop=stop)
    assert code == 130, errors
    # none that could touch Ray after it shut down (that ended the driver with exit 1 now and then)
    assert "Ray Data threads left: []" in errors, errors
    assert records[0] == [str(folder / "a_small.png"), "done"]
    assert len(records) < 4
    # Nothing partial: no hidden temporary file, and every output is a whole image. An actor may finish
    # the image it held while Ray shuts down (its write is atomic); every image reported done is there.
    left = outputs(out)
    assert all(not name.startswith(".") for name in left)
    whole = (2 * LARGE_SIDE, 2 * LARGE_SIDE, 3)  # the x2 model's output
    assert all(pixels.shape == whole for name, pixels in left.items() if "large" in name)
    assert {Path(name).stem + "_out.png" for name, status in records if status == "done"} <= set(left)


def test_cli_ray_gives_a_plain_runs_outputs_records_lines_and_exit_code(tmp_path: Path) -> None:
    folder = make_good_and_bad_folder(tmp_path / "in", good=3)
    command = ["denoise", folder, "--sigma", "15", "--weights", DN_COLOR, "--tile", "0", "--suffix", "_out",
               "--json", "--device", "cpu"]  # fmt: skip
    plain = run_swinir(*command, "-o", tmp_path / "plain")
    on_ray = run_swinir_process(*command, "-o", tmp_path / "ray", "--ray", "--ray-workers", "2", timeout=300)
    assert on_ray.returncode == plain.returncode == 1, on_ray.stderr.decode()
    assert cli_records(on_ray) == cli_records(plain)
    assert_same_outputs(outputs(tmp_path / "ray"), outputs(tmp_path / "plain"))
    # only swinir's own lines: none of Ray's (its token warning, its core worker's, Ray Data's notes)
    said_plain = {_without_figures(line, tmp_path / "plain") for line in stderr_lines(plain)}
    said_on_ray = [_without_figures(line, tmp_path / "ray") for line in stderr_lines(on_ray)]
    assert said_on_ray and all(line in said_plain for line in said_on_ray), said_on_ray


def _without_figures(line: str, out: Path) -> str:
    """A line without its output folder and its timings (seconds, time left)."""
    return re.sub(r" \(\d+\.\d s.*\)$| in \d+\.\d s$", "", line.replace(str(out), "OUT"))


def test_cli_ray_without_ray_says_how_to_install_it(tmp_path: Path) -> None:
    hidden = tmp_path / "no_ray"  # a 'ray' package that fails to import, as when the extra is missing
    (hidden / "ray").mkdir(parents=True)
    (hidden / "ray" / "__init__.py").write_text("raise ImportError('No module named ray')\n")
    image = save_rgb(tmp_path / "a.png")
    env = {**os.environ, "PYTHONPATH": str(hidden)}
    command = [str(SWINIR), "denoise", str(image), "--sigma", "15", "--weights", str(DN_COLOR), "--ray"]
    result = subprocess.run(command, capture_output=True, env=env, timeout=120)
    assert result.returncode == 2
    assert result.stderr.decode().strip() == f"error: {INSTALL_HINT}"
    assert not (tmp_path / "a_denoised.png").exists()
