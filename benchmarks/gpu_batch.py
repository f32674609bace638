"""Real batches of SwinIR-M x4 real-SR on one GPU: whole processes against the authors' script, and more.

Measures whole processes against the authors' script, in-process milliseconds per image (cold and warm),
and how far this project's outputs are from the authors'.

Writes ``gpu_batch.json`` (every figure) and ``gpu_batch.md`` (tables) under ``--out`` (default ``$OUT``
when set, else ``gpu_batch_out``), rewritten after every section, and prints a progress line per case.
Two input folders are made first, seeded, from the images under ``--images`` (crops at random places of
randomly zoomed copies): ``photos``, 25 images of 120-640 pixels a side, each of its own shape, and
``frames``, 100 images of 640x480. One random checkpoint of the released SwinIR-M x4 real-SR architecture
(``nearest+conv``, saved as the authors save theirs: ``{'params_ema': ...}``, built with their class when
their code is given) serves every case. Sections:

a. ``in_process``: one fresh process per precision, engine (``--engines``, default ``torch``; ``compiled``
   pays its compiling in the first pass) and shape-bucket mode (``--shape-buckets``, default ``auto``: on
   for CUDA) through :class:`swinir_cli.pipeline.Restorer` at its default tile: one warm-up image (CUDA's own
   start-up, not counted below), then the photos twice (first pass: every image a new shape, cold; second
   pass: warm), then ``--in-process-frames`` frames (the first cold, the rest warm).
b. ``whole_process``: seconds of whole processes over each folder: the authors' ``main_test_swinir.py
   --task real_sr --scale 4`` (SwinIR-M, not ``--large_model``; run in a fresh folder, its results read
   from ``results/swinir_real_sr_x4/`` there) against ``swinir upscale`` by default, with ``--tile 0``, and
   with each ``--precision`` (one that the default already resolves to is not run twice).
c. ``differences``: 8-bit differences (largest level, share of values differing) of each ``swinir`` run's
   outputs from the authors' (without them: from ``--precision fp32``, else the default run, as named).

Every case is bounded by ``--budget-s`` (default 320: with the differences after it, the whole run stays
under 6 minutes): the frames' runs are predicted from the photos' (a process's start-up plus the
in-process time per frame, or for the authors the photos' seconds scaled by pixels) and skipped, saying
so, when they do not fit what is left; a process still running at the budget's end is killed and
reported as stopped, with the outputs it wrote.

Needs only the working tree (torch, numpy, opencv; run from the repository root as below). The authors'
code (``--authors-code``: a checkout of JingyunLiang/SwinIR) imports ``timm`` and ``requests``; where
they are not installed, stand-ins are put on its path (``vs_authors.STAND_INS``); any other import it
lacks stops this script at the start with one line. On a lent GPU, the test images copied to an ignored
folder of the repository (``../shared`` is not there):

    PYTHONPATH=. python3 benchmarks/gpu_batch.py --authors-code build/authors --images build/gpu_images \\
        --out $OUT

The compiled engine and shape buckets (issue 22), in-process only, each case in a fresh process:

    PYTHONPATH=. python3 benchmarks/gpu_batch.py --images build/gpu_images --engines torch compiled \\
        --shape-buckets on off --precisions fp16 --in-process-limit-s 200 --budget-s 560 --out $OUT

(four in-process cases; the whole-process section runs in what is left of the budget).

``--dry-run`` runs every section on the CPU at tiny sizes (3 photos, 4 frames; the tiny real-SR x4 model
of ``../shared/reference/tiny``, or with ``--authors-code`` SwinIR-M and their side too) in well under a
minute; tests/test_gpu_batch.py runs it.
"""

from __future__ import annotations

import argparse
import datetime
import multiprocessing
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import torch
from gpu_check import Budget, Report, cpu_name, difference, run_device, unavailable_precision
from vs_authors import REAL_M, authors_command, authors_env, make_checkpoint, timed

from swinir_cli.devices import PRECISION_NAMES, PRECISIONS, resolve_precision
from swinir_cli.engines import ENGINES
from swinir_cli.pipeline import Restorer
from swinir_cli.settings import SHAPE_BUCKET_CHOICES, RestoreSettings

REPO = Path(__file__).resolve().parents[1]
TESTSETS = REPO.parent / "shared" / "testsets"
DEFAULT_IMAGES = (TESTSETS / "McMaster", TESTSETS / "Set12", TESTSETS / "Set5" / "HR")
IMAGE_SUFFIXES = {".png", ".tif", ".tiff", ".bmp", ".jpg", ".jpeg", ".webp"}
#: The dry run's checkpoint without the authors' code: a tiny random real-SR x4 network (nearest+conv)
#: of the reference data, saved as the authors save theirs.
TINY_REAL = REPO.parent / "shared" / "reference" / "tiny" / "real_nearestconv_x4.pth"
AUTHORS = "authors main_test_swinir.py"
#: ``swinir upscale`` configurations: label -> (the precision it asks for, None for the default; options).
OURS: dict[str, tuple[str | None, tuple[str, ...]]] = {
    "swinir default": (None, ()),
    "swinir --tile 0": (None, ("--tile", "0")),
    **{f"swinir --precision {name}": (name, ("--precision", name)) for name in PRECISIONS},
}
#: Whole-process cases per folder, most wanted first (the budget drops the last ones).
ORDER = {
    "photos": (
        AUTHORS,
        "swinir default",
        "swinir --tile 0",
        *(f"swinir --precision {p}" for p in PRECISIONS),
    ),
    "frames": (
        "swinir default",
        AUTHORS,
        "swinir --precision fp16",
        "swinir --precision bf16",
        "swinir --tile 0",
        "swinir --precision fp32",
    ),
}
#: Where each side writes an input's result: the suffix after the input's stem.
OUTPUT_SUFFIX = {"authors": "_SwinIR.png", "swinir": "_x4.png"}
SECTIONS = ("inputs", "in_process", "whole_process", "differences")


@dataclass(frozen=True)
class Plan:
    """Sizes of one run: the real batch on a GPU, or the tiny CPU dry run."""

    device: torch.device
    dry_run: bool
    photos: int = 25
    photo_sides: tuple[int, int] = (120, 640)
    frames: int = 100
    frame_shape: tuple[int, int] = (480, 640)  # height, width
    in_process_frames: int = 10
    engines: tuple[str, ...] = ("torch",)
    shape_buckets: tuple[str, ...] = ("auto",)
    precisions: tuple[str, ...] = tuple(PRECISIONS)
    #: Seconds a case needs at the least to be started (a process's start-up alone takes a few).
    least_case_s: float = 10.0
    #: Longest an in-process case may run.
    in_process_limit_s: float = 90.0

    def __post_init__(self) -> None:
        low, high = self.photo_sides
        if not 8 <= low <= high:
            raise SystemExit(f"gpu_batch: photo sides {self.photo_sides} must rise from 8 pixels or more")
        if min(self.photos, self.frames, self.in_process_frames, *self.frame_shape) < 1:
            raise SystemExit("gpu_batch: photos, frames and their sizes must be positive")
        if self.in_process_frames > self.frames:
            raise SystemExit(f"gpu_batch: {self.in_process_frames} in-process frames of {self.frames}")

    @classmethod
    def for_run(cls, args: argparse.Namespace, device: torch.device) -> Plan:
        engines = tuple(args.engines)
        buckets = tuple(args.shape_buckets)
        precisions = tuple(args.precisions)
        if not args.dry_run:
            return cls(
                device=device,
                dry_run=False,
                photos=args.photos,
                frames=args.frames,
                in_process_frames=min(cls.in_process_frames, args.frames),
                engines=engines,
                shape_buckets=buckets,
                precisions=precisions,
                in_process_limit_s=args.in_process_limit_s,
            )
        return cls(
            device=device,
            dry_run=True,
            engines=engines,
            shape_buckets=buckets,
            precisions=precisions,
            photos=3,
            frames=4,
            photo_sides=(24, 48),
            frame_shape=(32, 40),
            in_process_frames=2,
            least_case_s=1.0,
        )


@dataclass
class Run:
    """What the sections share: the plan, the budget, the checkpoint, the folders and the outputs."""

    plan: Plan
    budget: Budget
    scratch: Path
    checkpoint: Path
    authors: Path | None
    authors_env: dict[str, str] | None
    default_precision: str
    folders: dict[str, Path] = field(default_factory=dict)
    #: folder name -> label -> (outputs folder, suffix of each output after its input's stem)
    outputs: dict[str, dict[str, tuple[Path, str]]] = field(default_factory=dict)
    #: folder name -> label -> seconds of the whole process
    seconds: dict[str, dict[str, float]] = field(default_factory=dict)
    pixels: dict[str, int] = field(default_factory=dict)  # folder name -> pixels of its images
    in_process: dict[str, dict] = field(default_factory=dict)  # precision -> the torch engine's row

    def say(self, text: str) -> None:
        elapsed = self.budget.seconds - self.budget.left()
        print(f"[{elapsed:6.1f} s] {text}", flush=True)


# --------------------------------------------------------------------------------------------------
# Inputs
# --------------------------------------------------------------------------------------------------


def images(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)


def source_images(folders: list[Path]) -> list[np.ndarray]:
    """Every readable image under ``folders`` (BGR, 8-bit, three channels); an unreadable one is said and
    left out.

    Raises:
        SystemExit: a folder is missing, or no image is readable.
    """
    found = []
    for folder in folders:
        if not folder.is_dir():
            raise SystemExit(f"gpu_batch: {folder}: no such folder (--images)")
        for path in sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES):
            image = cv2.imread(str(path), cv2.IMREAD_COLOR)
            if image is None:
                print(f"gpu_batch: {path}: not a readable image, left out", flush=True)
                continue
            found.append(image)
    if not found:
        raise SystemExit(f"gpu_batch: no readable image under {', '.join(map(str, folders))}")
    return found


def crop(image: np.ndarray, height: int, width: int, rng: np.random.Generator) -> np.ndarray:
    """A ``height`` x ``width`` window at a random place of ``image`` zoomed by a random factor (at least
    enough to cover the window, at most half as much again)."""
    h, w = image.shape[:2]
    zoom = max(height / h, width / w) * rng.uniform(1.0, 1.5)
    size = (max(width, round(w * zoom)), max(height, round(h * zoom)))
    zoomed = cv2.resize(image, size, interpolation=cv2.INTER_AREA if zoom < 1 else cv2.INTER_CUBIC)
    top, left = rng.integers(0, size[1] - height + 1), rng.integers(0, size[0] - width + 1)
    return np.ascontiguousarray(zoomed[top : top + height, left : left + width])


def photo_shapes(plan: Plan, rng: np.random.Generator) -> list[tuple[int, int]]:
    """``plan.photos`` distinct (height, width) pairs drawn from the plan's sides."""
    low, high = plan.photo_sides
    shapes: dict[tuple[int, int], None] = {}
    while len(shapes) < min(plan.photos, (high - low + 1) ** 2):
        shapes[tuple(int(side) for side in rng.integers(low, high + 1, 2))] = None
    return list(shapes)


def make_folder(folder: Path, shapes: list[tuple[int, int]], sources: list[np.ndarray], seed: int) -> Path:
    """One PNG per shape, each a crop of a source image taken in turn, named in order."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True)
    for index, (height, width) in enumerate(shapes):
        image = crop(sources[rng.integers(len(sources))], height, width, rng)
        if not cv2.imwrite(str(folder / f"{folder.name}_{index:03d}.png"), image):
            raise SystemExit(f"gpu_batch: could not write {folder / f'{folder.name}_{index:03d}.png'}")
    return folder


def run_inputs(entry: dict, run: Run, sources: list[np.ndarray]) -> None:
    plan = run.plan
    shapes = {
        "photos": photo_shapes(plan, np.random.default_rng(0)),
        "frames": [plan.frame_shape] * plan.frames,
    }
    for seed, (name, folder_shapes) in enumerate(shapes.items(), start=1):
        run.folders[name] = make_folder(run.scratch / name, folder_shapes, sources, seed)
        run.pixels[name] = sum(h * w for h, w in folder_shapes)
        entry["rows"].append(
            {
                "folder": name,
                "images": len(folder_shapes),
                "pixels": run.pixels[name],
                "shapes (h x w)": ", ".join(f"{h}x{w}" for h, w in dict.fromkeys(folder_shapes)),
            }
        )
        run.say(f"{name}: {len(folder_shapes)} images made from {len(sources)} sources")


# --------------------------------------------------------------------------------------------------
# a. in-process
# --------------------------------------------------------------------------------------------------


def in_process_case(
    checkpoint: str,
    device: str,
    settings: tuple[str, str, str],
    photos: list[str],
    frames: list[str],
) -> dict:
    """In a fresh process: load, one warm-up image, the photos twice, then the frames; seconds and ms.
    ``settings``: the precision, engine and shape buckets."""
    rgb = [cv2.cvtColor(cv2.imread(path, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB) for path in [*photos, *frames]]
    photo_pixels, frame_pixels = rgb[: len(photos)], rgb[len(photos) :]
    started = time.perf_counter()
    precision, engine, buckets = settings
    restorer = Restorer.from_weights(
        checkpoint,
        RestoreSettings(device=device, precision=precision, engine=engine, shape_buckets=buckets),
    )
    load_s = time.perf_counter() - started
    shapes = {p.shape[:2] for p in rgb}
    side = 64
    while (side, side + 8) in shapes:  # a warm-up shape none of the measured images has
        side += 8

    def seconds(pixels: np.ndarray) -> float:
        start = time.perf_counter()
        restorer.restore_pixels(pixels)  # returns host memory: the device has finished
        return time.perf_counter() - start

    warm_up = seconds(cv2.resize(photo_pixels[0], (side + 8, side)))
    if restorer.device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(restorer.device)
    first = [seconds(p) for p in photo_pixels]
    second = [seconds(p) for p in photo_pixels]
    frame_times = [seconds(p) for p in frame_pixels]
    warm_frames = frame_times[1:] or frame_times
    row = {
        "load_s": round(load_s, 3),
        "warm_up_image_s": round(warm_up, 3),
        "photos_first_pass_s": round(sum(first), 3),
        "photos_second_pass_s": round(sum(second), 3),
        "first_over_second": round(sum(first) / sum(second), 3),
        "photo_cold_ms_median": round(1000 * statistics.median(first), 2),
        "photo_warm_ms_median": round(1000 * statistics.median(second), 2),
        "frame_cold_ms": round(1000 * frame_times[0], 2),
        "frame_warm_ms_median": round(1000 * statistics.median(warm_frames), 2),
        "frames_per_s_warm": round(1 / statistics.median(warm_frames), 2),
        "frame_tile": restorer.auto_tile(*frame_pixels[0].shape[:2]),
    }
    if restorer.device.type == "cuda":
        row["peak_gpu_bytes"] = torch.cuda.max_memory_allocated(restorer.device)
    return row


def run_in_process(entry: dict, run: Run) -> None:
    plan = run.plan
    photos = [str(p) for p in images(run.folders["photos"])]
    frames = [str(p) for p in images(run.folders["frames"])[: plan.in_process_frames]]
    spawn = multiprocessing.get_context("spawn")  # a fresh process: no shape has been seen before
    cases = [(e, b, p) for e in plan.engines for b in plan.shape_buckets for p in plan.precisions]
    for engine, buckets, precision in cases:
        row = {"precision": precision, "engine": engine, "shape_buckets": buckets}
        reason = unavailable_precision(precision, plan.device)
        if reason is None and run.budget.left() < plan.least_case_s:
            reason = f"out of time: {run.budget.left():.0f} s of the budget left"
        if reason:
            entry["rows"].append({**row, "skipped": reason})
            run.say(f"in-process {precision} {engine} buckets {buckets}: skipped ({reason})")
            continue
        limit = min(run.budget.left(), plan.in_process_limit_s)
        settings = (precision, engine, buckets)
        arguments = (str(run.checkpoint), str(plan.device), settings, photos, frames)
        with spawn.Pool(1) as pool:  # leaving the block ends the worker, also one still running
            pending = pool.apply_async(in_process_case, arguments)
            try:
                row.update(pending.get(timeout=limit))
            except multiprocessing.TimeoutError:
                row["stopped"] = f"still running after {limit:.0f} s"
            except Exception as error:  # the worker's error, re-raised here: a row, not the section
                row["error"] = f"{type(error).__name__}: {str(error).splitlines()[0][:200]}"
        entry["rows"].append(row)
        if (engine, buckets) == ("torch", "auto") and "photos_first_pass_s" in row:
            run.in_process[precision] = row
        run.say(f"in-process {precision} {engine} buckets {buckets}: {describe(row)}")


def describe(row: dict) -> str:
    if "photos_first_pass_s" in row:
        return (
            f"photos first pass {row['photos_first_pass_s']} s, second {row['photos_second_pass_s']} s; "
            f"frame warm {row['frame_warm_ms_median']} ms"
        )
    if "seconds" in row:
        return f"{row['seconds']} s ({row['images_per_s']} images/s)"
    return row.get("stopped") or row.get("failed") or row.get("error") or row.get("skipped") or ""


# --------------------------------------------------------------------------------------------------
# b. whole processes
# --------------------------------------------------------------------------------------------------


def predicted_seconds(label: str, folder: str, run: Run) -> float:
    """Expected seconds of ``label`` over ``folder``: nothing known for the photos (0); for the frames,
    this project's command as the photos' start-up (whole process less its in-process first pass) plus the
    in-process warm time per frame, else the photos' seconds scaled by pixels (an upper bound: start-up
    does not scale)."""
    photos_s = run.seconds.get("photos", {}).get(label)
    if folder == "photos" or photos_s is None:
        return 0.0
    precision = OURS[label][0] if label in OURS else None
    measured = run.in_process.get(precision or run.default_precision)
    if label in OURS and measured:
        start_up = max(photos_s - measured["photos_first_pass_s"], 0.0)
        return start_up + run.plan.frames * measured["frame_warm_ms_median"] / 1000
    return photos_s * run.pixels[folder] / run.pixels["photos"]


def skip_reason(label: str, folder: str, run: Run) -> str | None:
    """Why ``label`` does not run over ``folder``, or None."""
    if label == AUTHORS:
        if run.authors is None:
            return "no --authors-code given"
    else:
        precision = OURS[label][0]
        if precision is not None:
            refusal = unavailable_precision(precision, run.plan.device)
            if refusal:
                return refusal
            if precision == run.default_precision:
                return f"the same command as the default here (auto resolves to {precision})"
    needed = max(predicted_seconds(label, folder, run), run.plan.least_case_s)
    if run.budget.left() < needed:
        return f"out of time: needs about {needed:.0f} s, {run.budget.left():.0f} s of the budget left"
    return None


def whole_process(label: str, folder: str, run: Run) -> tuple[list[str], Path, dict[str, str], Path, str]:
    """(command, folder to run it in, environment, folder its outputs land in, their suffix)."""
    out = run.scratch / "runs" / f"{folder}-{label.replace(' ', '_').replace('-', '')}"
    out.mkdir(parents=True)
    if label == AUTHORS:
        command = authors_command(run.authors, "real_sr", run.checkpoint, run.folders[folder])
        return command, out, run.authors_env, out / "results" / "swinir_real_sr_x4", OUTPUT_SUFFIX["authors"]
    command = [sys.executable, "-m", "swinir_cli", "upscale", str(run.folders[folder]), "-o", f"{out}/"]
    command += [
        "--weights",
        str(run.checkpoint),
        "--device",
        str(run.plan.device),
        "--quiet",
        *OURS[label][1],
    ]
    return command, out, ours_env(), out, OUTPUT_SUFFIX["swinir"]


def ours_env() -> dict[str, str]:
    """This environment with the repository first on the import path (``PYTHONPATH=.`` names it only from
    the repository root, and the processes run elsewhere)."""
    paths = [str(REPO), *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))]
    return {**os.environ, "PYTHONPATH": os.pathsep.join(paths)}


def run_whole_processes(entry: dict, run: Run) -> None:
    for folder, labels in ORDER.items():
        count = len(images(run.folders[folder]))
        for label in labels:
            row: dict = {"folder": folder, "command": label}
            if predicted := predicted_seconds(label, folder, run):
                row["predicted_s"] = round(predicted, 1)
            reason = skip_reason(label, folder, run)
            if reason:
                entry["rows"].append({**row, "skipped": reason})
                run.say(f"{folder}: {label}: skipped ({reason})")
                continue
            command, cwd, env, outputs, suffix = whole_process(label, folder, run)
            limit = run.budget.left()
            started = time.perf_counter()
            try:
                seconds, peak_mib = timed(command, cwd, env, timeout=limit)
            except subprocess.TimeoutExpired:
                written = len(list(outputs.glob(f"*{suffix}")))
                row["stopped"] = f"killed at the budget's end after {time.perf_counter() - started:.0f} s"
                row["outputs_written"] = f"{written} of {count}"
            except subprocess.CalledProcessError as failure:
                lines = [line for line in (failure.stderr or "").splitlines() if line.strip()]
                row["failed"] = (lines[-1] if lines else f"exit code {failure.returncode}")[:300]
            else:
                run.seconds.setdefault(folder, {})[label] = seconds
                run.outputs.setdefault(folder, {})[label] = (outputs, suffix)
                row.update(
                    seconds=round(seconds, 2),
                    images_per_s=round(count / seconds, 2),
                    peak_rss_mib=round(peak_mib),
                )
            entry["rows"].append(row)
            run.say(f"{folder}: {label}: {describe(row)}")
    entry["summary"] = whole_summary(run)


def whole_summary(run: Run) -> dict:
    """Per folder and command: seconds, and the ratio to the authors' seconds where they ran."""
    summary = {}
    for folder, seconds in run.seconds.items():
        authors_s = seconds.get(AUTHORS)
        summary[folder] = {
            label: {"seconds": round(s, 2), **({"x_authors": round(s / authors_s, 3)} if authors_s else {})}
            for label, s in seconds.items()
        }
    return summary


# --------------------------------------------------------------------------------------------------
# c. differences
# --------------------------------------------------------------------------------------------------


def by_input(outputs: Path, suffix: str) -> dict[str, Path]:
    """The outputs of a folder run, by the stem of the input each came from."""
    return {p.name.removesuffix(suffix): p for p in outputs.glob(f"*{suffix}")}


def input_differences(stem: str, reference: dict[str, Path], runs: dict[str, dict[str, Path]]) -> dict:
    """label -> :func:`difference` of that run's output for input ``stem`` from the reference's (the
    reference read once); runs without that output are left out.

    Raises:
        ValueError: an output's shape is not the reference's.
    """
    expected = cv2.imread(str(reference[stem]), cv2.IMREAD_UNCHANGED)
    found = {}
    for label, outputs in runs.items():
        if stem in outputs:
            got = cv2.imread(str(outputs[stem]), cv2.IMREAD_UNCHANGED)
            if got.shape != expected.shape:
                raise ValueError(f"{outputs[stem]}: shape {got.shape}, the reference's is {expected.shape}")
            found[label] = {**difference(got, expected), "values": got.size}
    return found


def compare_runs(reference: dict[str, Path], runs: dict[str, dict[str, Path]]) -> dict[str, dict]:
    """Per run, over every input it and the reference restored: the largest 8-bit difference, the share of
    values that differ, and how many images differ by more than one level; inputs one side lacks are
    counted. The outputs are decoded on a pool of the machine's cores (large PNGs take a while)."""
    with ThreadPoolExecutor(os.cpu_count()) as pool:
        per_input = list(pool.map(lambda stem: input_differences(stem, reference, runs), sorted(reference)))
    summary = {}
    for label, outputs in runs.items():
        found = [each[label] for each in per_input if label in each]
        values = sum(f["values"] for f in found)
        differing = sum(f["differing_fraction"] * f["values"] for f in found)
        summary[label] = {
            "images": len(found),
            "missing": len(outputs.keys() ^ reference.keys()),
            "max_diff_8bit": max((f["max_diff_8bit"] for f in found), default=None),
            "differing_percent": round(100 * differing / max(values, 1), 4),
            "images_over_one_level": sum(f["max_diff_8bit"] > 1 for f in found),
        }
    return summary


def run_differences(entry: dict, run: Run) -> None:
    for folder, outputs in run.outputs.items():
        reference = next(
            (r for r in (AUTHORS, "swinir --precision fp32", "swinir default") if r in outputs), None
        )
        if reference is None:
            continue
        runs = {label: by_input(*place) for label, place in outputs.items() if label != reference}
        for label, found in compare_runs(by_input(*outputs[reference]), runs).items():
            entry["rows"].append({"folder": folder, "command": label, "reference": reference, **found})
            run.say(f"{folder}: {label} vs {reference}: max {found['max_diff_8bit']} levels")
    if not entry["rows"]:
        entry.update(status="skipped", reason="no two runs over the same folder finished")


# --------------------------------------------------------------------------------------------------
# Run
# --------------------------------------------------------------------------------------------------


def check_authors(authors: Path, env: dict[str, str]) -> None:
    """Their script's imports, tried before any time is spent.

    Raises:
        SystemExit: one of them fails here (one line: the missing module or the error).
    """
    imports = "import cv2, numpy, requests, torch, models.network_swinir, utils.util_calculate_psnr_ssim"
    done = subprocess.run(
        [sys.executable, "-c", imports], cwd=authors, env=env, capture_output=True, text=True, timeout=300
    )
    if done.returncode:
        lines = [line for line in done.stderr.splitlines() if line.strip()] or ["(no message)"]
        raise SystemExit(f"gpu_batch: the authors' code in {authors} cannot run here: {lines[-1]}")


def run_meta(plan: Plan, args: argparse.Namespace, config: dict, default_precision: str) -> dict:
    device = plan.device
    return {
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "dry_run": plan.dry_run,
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else cpu_name(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "python": platform.python_version(),
        "budget_s": args.budget_s,
        "model": config,
        "default_precision": default_precision,
        "authors_code": str(args.authors_code) if args.authors_code else None,
        "images": [str(folder) for folder in args.images],
        "argv": sys.argv[1:],
    }


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(os.environ.get("OUT") or "gpu_batch_out"))
    parser.add_argument("--images", type=Path, nargs="+", default=list(DEFAULT_IMAGES), metavar="DIR")
    parser.add_argument("--authors-code", type=Path, metavar="DIR", help="a checkout of JingyunLiang/SwinIR")
    parser.add_argument("--device", default=None, help="default: cuda, or cpu with --dry-run")
    parser.add_argument("--dry-run", action="store_true", help="tiny sizes on the CPU, well under a minute")
    parser.add_argument("--budget-s", type=float, default=None, help="seconds (default 320, dry run 120)")
    parser.add_argument("--photos", type=int, default=25)
    parser.add_argument("--frames", type=int, default=100)
    # the in-process cases: every engine x shape-bucket mode x precision listed
    cases = (
        ("--engines", list(ENGINES), ["torch"], "ENGINE"),
        ("--shape-buckets", list(SHAPE_BUCKET_CHOICES), ["auto"], "MODE"),
        ("--precisions", list(PRECISIONS), list(PRECISIONS), "PRECISION"),
    )
    for flag, choices, default, metavar in cases:
        parser.add_argument(flag, nargs="+", default=default, choices=choices, metavar=metavar)
    parser.add_argument(
        "--in-process-limit-s", type=float, default=90.0, help="longest an in-process case may run"
    )
    args = parser.parse_args()
    args.budget_s = args.budget_s or (120.0 if args.dry_run else 320.0)
    if args.authors_code is not None:
        args.authors_code = args.authors_code.resolve()
        if not (args.authors_code / "main_test_swinir.py").is_file():
            parser.error(f"{args.authors_code} holds no main_test_swinir.py")
    return args


def main() -> None:
    args = parse_args()
    plan = Plan.for_run(args, run_device(args.device, args.dry_run))
    budget = Budget(args.budget_s)
    sources = source_images(args.images)
    scratch = Path(tempfile.mkdtemp(prefix="gpu_batch_"))
    authors = args.authors_code
    env = authors_env(authors, scratch, cuda=plan.device.type == "cuda") if authors else None
    if authors:
        check_authors(authors, env)
    if plan.dry_run and not authors:
        checkpoint, config = TINY_REAL, {"tiny reference checkpoint": str(TINY_REAL)}
    else:
        checkpoint, config = scratch / "real_sr_x4.pth", REAL_M
        make_checkpoint(config, "params_ema", checkpoint, authors, env or ours_env())
    default_precision = PRECISION_NAMES[resolve_precision("auto", plan.device)]
    run = Run(plan, budget, scratch, checkpoint, authors, env, default_precision)
    report = Report(args.out, run_meta(plan, args, config, default_precision), name="gpu_batch")
    run.say(
        f"{plan.device}, checkpoint {checkpoint.name} ({checkpoint.stat().st_size >> 20} MiB), in {scratch}"
    )
    steps = {
        "inputs": lambda entry: run_inputs(entry, run, sources),
        "in_process": lambda entry: run_in_process(entry, run),
        "whole_process": lambda entry: run_whole_processes(entry, run),
        "differences": lambda entry: run_differences(entry, run),
    }
    try:
        for name in SECTIONS:
            with report.section(name, budget) as entry:
                steps[name](entry)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    print((args.out / "gpu_batch.md").read_text())


if __name__ == "__main__":
    main()
