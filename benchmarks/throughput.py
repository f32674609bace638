"""Images per second of a batch, as ratios measured in one run: serial vs overlapped I/O, 1 vs 2 CPU worker
processes, plain vs Ray (one local Ray actor).

Two batches, written to a fresh folder for every run (outputs are PNG, as by default):

* I/O-bound: ``--io-images`` PNGs of ``--io-size`` pixels through a stand-in for a model on a fast GPU:
  a Lanczos x2 resize, then a wait as long as encoding one output takes (measured first), during which
  the CPU is idle, as it is while a GPU computes (the issue's premise: a 2048x2048 PNG encode costs about
  a SwinIR-S tile batch on a fast GPU). On this CPU even the tiny reference SwinIRs take seconds for
  512x512, so no real model here is I/O-bound.
* compute-bound: ``--compute-images`` images of ``--compute-size`` pixels through SwinIR-S x4
  (``shared/reference/swinir_s_x4_random.pth``: the released architecture, random weights).

The configurations run alternately, ``--rounds`` times; the best round of each is reported. Model loading,
worker start-up and (for Ray) actor start-up are inside the timed run, as a user meets them; starting the
local Ray itself is not (a cluster that ``RAY_ADDRESS`` names is already running): it is started before each
Ray run and stopped after it, so the other configurations run without Ray on the machine and the Ray run
pays for its daemons, as a user's does. Besides
images per second of the whole batch, each configuration's *start-up* (seconds to its first result) and
*steady* rate (images per second after the first result) are printed, so that a fixed cost (worker or
actor start-up) and a cost per image can be told apart: a batch's ratio moves towards the steady ratio as
it grows. Run from the repository root: ``OMP_NUM_THREADS=2 python benchmarks/throughput.py``.
"""

from __future__ import annotations

import argparse
import contextlib
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from swinir_cli.batch import JobSteps, OutputOptions, plan_jobs, resize_image
from swinir_cli.imageio import read_image, write_image
from swinir_cli.jobs import BatchSummary, Job, JobResult, run_batch
from swinir_cli.parallel import CheckpointRunnerFactory, DevicesRunner
from swinir_cli.pipeline import Restorer
from swinir_cli.runners import OverlappedRunner, run_jobs
from swinir_cli.settings import RestoreSettings

SWINIR_S_X4 = Path(__file__).resolve().parents[2] / "shared" / "reference" / "swinir_s_x4_random.pth"
OUTPUT = OutputOptions(suffix="_out")
RESTORER = RestoreSettings(tile=0)

#: ``run(jobs, on_result)``: one batch, ``on_result`` called for each result as the user would see it.
Runner = Callable[[list[Job], Callable[[JobResult], None]], BatchSummary]


def make_images(folder: Path, count: int, size: int) -> Path:
    """Photo-like images (smooth random fields, so PNG compresses them as it does photos)."""
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for index in range(count):
        coarse = rng.integers(0, 256, (size // 8, size // 8, 3), dtype=np.uint8)
        Image.fromarray(coarse).resize((size, size), Image.BICUBIC).save(folder / f"{index:03d}.png")
    return folder


@dataclass(frozen=True)
class Rate:
    """One timed batch: images per second of the whole, seconds to the first result, and images per
    second from the first result to the last."""

    whole: float
    first_result: float
    steady: float


def time_batch(run: Runner, folder: Path, scratch: Path) -> Rate:
    out = scratch / "out"
    jobs = plan_jobs([str(folder)], str(out), OUTPUT).jobs
    arrivals: list[float] = []
    started = time.perf_counter()
    summary = run(jobs, lambda result: arrivals.append(time.perf_counter() - started))
    seconds = time.perf_counter() - started
    assert summary.count("done") == len(jobs), [r.error for r in summary.results if r.error]
    shutil.rmtree(out)
    steady = (len(arrivals) - 1) / max(arrivals[-1] - arrivals[0], 1e-9) if len(arrivals) > 1 else 0.0
    return Rate(len(jobs) / seconds, arrivals[0], steady)


class FastDeviceStandIn:
    """``restore(image, job)``: a Lanczos x2 resize, then ``wait`` seconds with the CPU idle (device time)."""

    def __init__(self, wait: float) -> None:
        self.wait = wait

    def __call__(self, image, job):
        restored = resize_image(image, (image.width * 2, image.height * 2))
        time.sleep(self.wait)
        return restored


def encode_seconds(folder: Path, scratch: Path) -> float:
    """How long writing the x2 result of the first image of ``folder`` takes (median of 3)."""
    image = read_image(sorted(folder.iterdir())[0])
    restored = resize_image(image, (image.width * 2, image.height * 2))
    times = []
    for index in range(3):
        started = time.perf_counter()
        write_image(scratch / f"calibration_{index}.png", restored)
        times.append(time.perf_counter() - started)
    return sorted(times)[1]


class SwinIRSmall:
    """``restore(image, job)`` with SwinIR-S x4; :meth:`load` starts each run, as a user's run loads it."""

    def __init__(self) -> None:
        self.restorer: Restorer | None = None

    def load(self) -> None:
        self.restorer = Restorer.from_weights(SWINIR_S_X4, RestoreSettings(device="cpu", tile=0))

    def __call__(self, image, job):
        return self.restorer.restore_image(image)


def in_process(restore: Callable, *, overlap: bool, load: Callable[[], None] | None = None) -> Runner:
    def run(jobs: list[Job], on_result: Callable[[JobResult], None]) -> BatchSummary:
        if load is not None:
            load()
        steps = JobSteps(restore, OUTPUT)
        if overlap:
            return run_batch(OverlappedRunner(steps), jobs, on_result=on_result)
        return run_jobs(jobs, restore, OUTPUT, overlap=False, on_result=on_result)

    return run


def on_workers(devices: list[str], threads: int) -> Runner:
    factory = CheckpointRunnerFactory(SWINIR_S_X4, OUTPUT, RESTORER)

    def run(jobs: list[Job], on_result: Callable[[JobResult], None]) -> BatchSummary:
        return run_batch(DevicesRunner(factory, tuple(devices), threads), jobs, on_result=on_result)

    return run


def on_ray() -> Runner:
    from swinir_cli.ray_batch import RayRunner

    runner = RayRunner(CheckpointRunnerFactory(SWINIR_S_X4, OUTPUT, RESTORER), workers=1)
    return lambda jobs, on_result: run_batch(runner, jobs, on_result=on_result)


@contextlib.contextmanager
def local_ray(cpus: int) -> Iterator[None]:
    """A local Ray for one timed run (its start is printed, not timed), stopped after it."""
    import ray

    started = time.perf_counter()
    ray.init(num_cpus=cpus, include_dashboard=False, logging_level="ERROR")
    print(f"  (local Ray started in {time.perf_counter() - started:.1f} s, not timed)", flush=True)
    try:
        yield
    finally:
        ray.shutdown()


@dataclass(frozen=True)
class Config:
    """One configuration: its runner, its input folder, and what must be running around a timed run."""

    run: Runner
    folder: Path
    around: Callable[[], contextlib.AbstractContextManager[None]] = field(default=contextlib.nullcontext)


def measure(configs: dict[str, Config], rounds: int, scratch: Path) -> dict[str, Rate]:
    """The best round (by the whole batch's rate) of each configuration, the configurations alternating."""
    best: dict[str, Rate] = {}
    for round_index in range(rounds):
        for name, config in configs.items():
            with config.around():
                rate = time_batch(config.run, config.folder, scratch)
            if name not in best or rate.whole > best[name].whole:
                best[name] = rate
            print(f"  round {round_index + 1}: {name:<34} {describe(rate)}", flush=True)
    return best


def describe(rate: Rate) -> str:
    return (
        f"{rate.whole:7.2f} images/s (first result after {rate.first_result:5.1f} s, "
        f"then {rate.steady:6.2f} images/s)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--io-images", type=int, default=32)
    parser.add_argument("--io-size", type=int, default=512)
    parser.add_argument("--compute-images", type=int, default=24)
    parser.add_argument("--compute-size", type=int, default=256)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--no-ray", action="store_true", help="skip plain vs Ray")
    parser.add_argument(
        "--only", nargs="+", metavar="TEXT", help="run only the configurations whose name contains a TEXT"
    )
    args = parser.parse_args()
    cores = torch.get_num_threads()
    with tempfile.TemporaryDirectory() as tmp:
        scratch = Path(tmp)
        io_folder = make_images(scratch / "io", args.io_images, args.io_size)
        compute_folder = make_images(scratch / "compute", args.compute_images, args.compute_size)
        model = SwinIRSmall()
        fast_device = FastDeviceStandIn(encode_seconds(io_folder, scratch))
        configs: dict[str, Config] = {
            "io-bound serial": Config(in_process(fast_device, overlap=False), io_folder),
            "io-bound overlapped": Config(in_process(fast_device, overlap=True), io_folder),
            "compute-bound serial": Config(in_process(model, overlap=False, load=model.load), compute_folder),
            "compute-bound overlapped (plain)": Config(
                in_process(model, overlap=True, load=model.load), compute_folder
            ),
            "compute-bound 1 CPU worker": Config(on_workers(["cpu"], cores), compute_folder),
            "compute-bound 2 CPU workers": Config(
                on_workers(["cpu", "cpu"], max(1, cores // 2)), compute_folder
            ),
        }
        if not args.no_ray:
            configs["compute-bound Ray, 1 actor"] = Config(on_ray(), compute_folder, lambda: local_ray(cores))
        if args.only:
            configs = {name: c for name, c in configs.items() if any(text in name for text in args.only)}
        print(f"{args.rounds} rounds, {cores} PyTorch threads; io: {args.io_images} x {args.io_size}px "
              f"(device stand-in waits {fast_device.wait:.3f} s, one encode), "
              f"compute: {args.compute_images} x {args.compute_size}px SwinIR-S x4")  # fmt: skip
        best = measure(configs, args.rounds, scratch)
    print("\nbest of the rounds:")
    for name, rate in best.items():
        print(f"  {name:<34} {describe(rate)}")
    print("\nratios (whole batch; steady: after each one's first result):")
    ratios = [
        ("overlapped / serial, io-bound", "io-bound overlapped", "io-bound serial"),
        ("overlapped / serial, compute-bound", "compute-bound overlapped (plain)", "compute-bound serial"),
        ("2 CPU workers / 1, compute-bound", "compute-bound 2 CPU workers", "compute-bound 1 CPU worker"),
        ("Ray / plain, compute-bound", "compute-bound Ray, 1 actor", "compute-bound overlapped (plain)"),
    ]
    for label, numerator, denominator in ratios:
        if numerator in best and denominator in best:
            top, bottom = best[numerator], best[denominator]
            print(f"  {label:<36} {top.whole / bottom.whole:.3f}x   steady {top.steady / bottom.steady:.3f}x")


if __name__ == "__main__":
    main()
